"""Rows the ledger stores: entries, reservations, pool levels, refusal counts."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tokenpool.core import State

# The ledger stores the core's reservation states as they are.
ReservationState = State

_EMPTY: Mapping[str, object] = MappingProxyType({})


def _no_detail() -> Mapping[str, object]:
    """Share one read-only empty detail; dataclasses refuse it as a default."""
    return _EMPTY


class EntryKind(enum.StrEnum):
    """What an append-only ledger entry records."""

    RESERVE = "reserve"
    SETTLE = "settle"
    RELEASE = "release"
    EXPIRE = "expire"
    EXTEND = "extend"
    OVERRUN = "overrun"
    UNDO = "undo"
    CAPACITY = "capacity"
    REBALANCE = "rebalance"
    TENANT = "tenant"
    TEAM = "team"
    KEY = "key"
    """A tenant API key created, rotated or revoked (never the key itself)."""
    POOL_STATE = "pool_state"
    """An operator paused, drained or resumed one pool."""
    AUTOSCALE = "autoscale"
    """An autoscaler decision, applied or only recommended."""
    RELOAD = "reload"
    """A configuration file applied at run time, and what it changed."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One state change, appended once and never changed.

    `tokens` is the change in tokens held (positive for a reserve or a
    larger extend); `charged`, `refunded` and `overrun` are what the change
    accounted. `detail` holds JSON-serialisable context (sources, usage,
    labels, reason). `id` is the ledger's sequence number, set when an entry
    is read back; it is 0 on an entry not yet stored.
    """

    kind: EntryKind
    at_wall_ns: int
    budget: str
    tenant: str = ""
    reservation_id: str = ""
    pool: str = ""
    tokens: int = 0
    charged: int = 0
    refunded: int = 0
    overrun: int = 0
    actor: str = ""
    detail: Mapping[str, object] = field(default_factory=_no_detail)
    id: int = 0


@dataclass(frozen=True, slots=True)
class ReservationRow:
    """A reservation as stored: enough to restore it after a restart."""

    reservation_id: str
    budget: str
    tenant: str
    pool: str
    state: ReservationState
    hold: int
    sources: tuple[tuple[str, int], ...]
    requested: int
    complexity_score: int
    multiplier: float
    created_wall_ns: int
    lease_expires_wall_ns: int
    ended_wall_ns: int = 0
    idempotency_key: str = ""
    request_fingerprint: str = ""
    settle_fingerprint: str = ""
    charged: int = 0
    refunded: int = 0
    overrun: int = 0
    waited_ms: int = 0
    model: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    task_type: str = ""
    output_allowance: int = 0
    """Output allowance before the learned correction (0: explicit tokens)."""
    output_factor: str = ""
    """The learned correction applied, as "numerator/denominator"; "" if none."""
    used: int = 0
    """Usage a settle reported (what learning compares with the hold)."""
    incomplete: bool = False
    response_cache_hit: bool = False
    team: str = ""
    cost_micros: int = 0
    """Estimated cost of the hold while open; the charged cost once ended."""
    saved_tokens: int = 0
    """Tokens a cache saved at settle (response-cache hit, cached input)."""
    saved_micros: int = 0
    """Money a cache saved at settle, in micro-dollars."""
    shadow: str = ""
    """In shadow mode: the reason an enforcing daemon would have refused it."""


# Grant times are summed in slots of a quarter hour (see ChargedSlot).
CHARGE_SLOT_NS = 15 * 60 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class ChargedSlot:
    """Usage charged to one tenant (and team) for grants in one quarter hour."""

    tenant: str
    team: str
    slot_wall_ns: int
    tokens: int
    micros: int


@dataclass(frozen=True, slots=True)
class PoolRow:
    """A pool's bucket at one wall-clock instant.

    `carry` is the fraction of a token refill has accumulated, as a
    numerator over the window in nanoseconds.
    """

    budget: str
    pool: str
    capacity: int
    level: int
    carry: int
    at_wall_ns: int


@dataclass(frozen=True, slots=True)
class RefusalCount:
    """Refusals of one reason for one tenant in one UTC minute."""

    budget: str
    tenant: str
    minute: int
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class OverrideRow:
    """A run-time value of one configuration field, or its removal (SPEC 8).

    `value` is the JSON text of the value in force; None drops the override,
    so that the file's value applies again.
    """

    key: str
    value: str | None
    actor: str
    at_wall_ns: int


@dataclass(frozen=True, slots=True)
class FileValueRow:
    """The value a configuration file gave one field when it was applied.

    `value` is JSON text, None when the file does not name the field. With
    `drop_override` the field's run-time override goes too: the file's new
    value replaced it.
    """

    key: str
    value: str | None
    at_wall_ns: int
    drop_override: bool = False


@dataclass(frozen=True, slots=True)
class StoredOverride:
    """One field as the ledger holds it: its last file value and its override."""

    key: str
    file_value: str | None
    value: str | None
    has_override: bool
    actor: str
    at_wall_ns: int


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A tenant API key as stored: its digest only, never the key (SPEC 8).

    A key from the configuration file is stored only once revoked at run
    time (source "file"), so that the revocation survives restarts.
    """

    key_id: str
    tenant: str
    sha256: str
    label: str
    created_wall_ns: int
    revoked_wall_ns: int = 0
    """When it was revoked; 0 while it is valid."""
    actor: str = ""
    source: str = "run-time"


@dataclass(slots=True)
class LedgerBatch:
    """Everything one operation writes; committed all together or not at all."""

    entries: list[Entry] = field(default_factory=list)
    reservations: list[ReservationRow] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)
    refusals: list[RefusalCount] = field(default_factory=list)
    overrides: list[OverrideRow] = field(default_factory=list)
    file_values: list[FileValueRow] = field(default_factory=list)
    keys: list[KeyRow] = field(default_factory=list)

    def is_empty(self) -> bool:
        """Whether the batch writes nothing."""
        return not (
            self.entries
            or self.reservations
            or self.pools
            or self.refusals
            or self.overrides
            or self.file_values
            or self.keys
        )


@dataclass(frozen=True, slots=True)
class StoredState:
    """What a restart restores: pool levels and reservations worth keeping."""

    pools: tuple[PoolRow, ...]
    reservations: tuple[ReservationRow, ...]
