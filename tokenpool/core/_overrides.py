"""Run-time changes against the configuration file: which value of a field wins.

SPEC 8: a change made at run time (a capacity set, a rebalance, a tenant
added, what the autoscaler did) is stored, and wins over the file until the
file's own value for that field changes. So for every field the ledger keeps
two things: the file's value when it was last applied, and the run-time
override, if any. When a file is applied (at start, or on reload):

- no override: the file's value is in force;
- an override, and the file still says what it said when last applied: the
  override stays in force;
- an override, and the file now says something else: the operator edited
  the field on purpose, so the file's value wins and the override is dropped.

A field absent from the file (a tenant added at run time) has the file value
None, and the same rule holds: once the file names that tenant, the file wins.
Values are JSON-shaped (numbers, strings, lists, dicts) and compared by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# A JSON-shaped value, as stored; None means "not in the file" or "removed".
Value = object


@dataclass(frozen=True, slots=True)
class StoredField:
    """What the ledger holds about one field."""

    file_value: Value
    """The file's value when a file was last applied; None if it had none."""
    override: Value
    """The run-time value; None when there is no override."""
    has_override: bool
    """Whether an override is stored (its value may itself be None: removed)."""
    actor: str = ""
    """Who made the run-time change."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of applying a file over what the ledger holds."""

    values: dict[str, Value]
    """The value in force per field; None for a field absent or removed."""
    kept: dict[str, str]
    """Fields whose run-time override stays in force, and who made it."""
    dropped: tuple[str, ...]
    """Fields whose override the file's new value replaced."""
    file_values: dict[str, Value]
    """File values to store as last applied (only those that changed)."""


def resolve(file: Mapping[str, Value], stored: Mapping[str, StoredField]) -> Resolution:
    """Which value of each field is in force once `file` is applied.

    Args:
        file: The file's value per field; a field the file does not name may
            be left out or given as None.
        stored: What the ledger holds per field.
    """
    values: dict[str, Value] = {}
    kept: dict[str, str] = {}
    dropped: list[str] = []
    file_values: dict[str, Value] = {}
    for key in sorted(set(file) | set(stored)):
        now = file.get(key)
        held = stored.get(key)
        if held is None:
            values[key] = now
            if now is not None:
                file_values[key] = now
            continue

        if held.file_value != now:
            file_values[key] = now
        if held.has_override and held.file_value == now:
            values[key] = held.override
            kept[key] = held.actor
        else:
            values[key] = now
            if held.has_override:
                dropped.append(key)
    return Resolution(values, kept, tuple(dropped), file_values)


def capacity_key(budget: str) -> str:
    """The field of a budget's capacity per window."""
    return f"budget/{budget}/capacity_tokens"


def shares_key(budget: str) -> str:
    """The field of a budget's split into pools."""
    return f"budget/{budget}/shares"


def pool_states_key(budget: str) -> str:
    """The field of a budget's paused and draining pools (never in the file)."""
    return f"budget/{budget}/pool_states"


def autoscale_key(budget: str) -> str:
    """The field of a budget's autoscaler switch (enabled and mode)."""
    return f"budget/{budget}/autoscale"


def tenant_key(tenant: str) -> str:
    """The field of one tenant's whole policy (None: not configured)."""
    return f"tenant/{tenant}"


def team_key(team: str) -> str:
    """The field of one team's whole policy (None: not configured)."""
    return f"team/{team}"
