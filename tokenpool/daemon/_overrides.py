"""The configuration in force: a file's settings with the stored run-time changes.

The rule of which value wins is the core's (`tokenpool.core.resolve`); this
module turns settings into the fields it compares, and its answer back into
the policies the engine runs on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from tokenpool.core import (
    BudgetPolicy,
    Pool,
    PoolState,
    Shares,
    StoredField,
    TeamPolicy,
    TenantPolicy,
    autoscale_key,
    capacity_key,
    pool_states_key,
    resolve,
    shares_key,
    team_key,
    tenant_key,
)
from tokenpool.daemon._config import Settings
from tokenpool.engine import EngineConfig
from tokenpool.ledger import FileValueRow, StoredOverride

logger = logging.getLogger(__name__)

_P = TypeVar("_P", TenantPolicy, TeamPolicy)

_TENANT_PREFIX = tenant_key("")
_TEAM_PREFIX = team_key("")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def file_fields(settings: Settings) -> dict[str, object]:
    """The fields a file sets that run-time changes may override."""
    fields: dict[str, object] = {}
    for budget in settings.budgets:
        fields[capacity_key(budget.name)] = budget.capacity_tokens
        fields[shares_key(budget.name)] = {
            pool.value: percent for pool, percent in budget.shares.by_pool().items()
        }
        fields[autoscale_key(budget.name)] = {
            "enabled": budget.autoscale.enabled,
            "mode": budget.autoscale.mode,
        }
    for tenant in settings.tenants:
        fields[tenant_key(tenant.name)] = tenant.model_dump(mode="json")
    for team in settings.teams:
        fields[team_key(team.name)] = team.model_dump(mode="json")
    return fields


@dataclass(frozen=True, slots=True)
class Applied:
    """A file applied over the ledger's overrides: what the engine runs on."""

    config: EngineConfig
    file_values: list[FileValueRow]
    """File values to store, and overrides the file's new values replaced."""
    notes: list[str] = field(default_factory=list)
    """Overrides kept and dropped, in words, for the reload's entry."""


def _stored(row: StoredOverride) -> StoredField:
    return StoredField(
        file_value=None if row.file_value is None else json.loads(row.file_value),
        override=None if row.value is None else json.loads(row.value),
        has_override=row.has_override,
        actor=row.actor,
    )


def _budget(policy: BudgetPolicy, values: Mapping[str, object]) -> BudgetPolicy:
    """A file's budget with the run-time capacity, split and autoscaler in force."""
    capacity = values.get(capacity_key(policy.name))
    if isinstance(capacity, int) and capacity != policy.capacity_tokens:
        policy = policy.with_capacity(capacity)
    shares = values.get(shares_key(policy.name))
    if isinstance(shares, dict) and shares != policy.shares.model_dump():
        policy = policy.model_copy(update={"shares": Shares.model_validate(shares)})
    autoscale = values.get(autoscale_key(policy.name))
    if isinstance(autoscale, dict):
        switch = {"enabled": policy.autoscale.enabled, "mode": policy.autoscale.mode}
        if autoscale != switch:
            merged = {**policy.autoscale.model_dump(), **autoscale}
            policy = policy.model_copy(
                update={"autoscale": type(policy.autoscale).model_validate(merged)}
            )
    return policy


def apply_overrides(
    settings: Settings, stored: Mapping[str, StoredOverride], wall_ns: int
) -> Applied:
    """The settings with each stored run-time change that still wins (SPEC 8)."""
    resolution = resolve(
        file_fields(settings), {key: _stored(row) for key, row in stored.items()}
    )
    values = resolution.values
    budgets = [_budget(policy, values) for policy in settings.budgets]

    notes = [
        f"run-time value kept: {key} (set by {actor or '-'})"
        for key, actor in sorted(resolution.kept.items())
    ]
    notes += [
        f"run-time value replaced by the file: {key}" for key in resolution.dropped
    ]
    teams = _policies(TeamPolicy, _TEAM_PREFIX, values, notes)
    known = {team.name for team in teams}
    tenants = []
    for tenant in _policies(TenantPolicy, _TENANT_PREFIX, values, notes):
        if tenant.team is not None and tenant.team not in known:
            # A team removed at run time that a file tenant still names.
            notes.append(f"tenant {tenant.name}: team {tenant.team} is gone; dropped")
            tenant = tenant.model_copy(update={"team": None})
        tenants.append(tenant)

    rows = [
        FileValueRow(
            key,
            None if value is None else _json(value),
            wall_ns,
            drop_override=key in resolution.dropped,
        )
        for key, value in resolution.file_values.items()
    ]
    config = EngineConfig(
        pool_states=_pool_states(budgets, values, notes),
        budgets=budgets,
        tenants=tenants,
        teams=teams,
        prices=settings.prices,
        limits=settings.limits,
    )
    return Applied(config, rows, notes)


def _pool_states(
    budgets: list[BudgetPolicy], values: Mapping[str, object], notes: list[str]
) -> dict[str, dict[Pool, PoolState]]:
    """Pools an operator paused or is draining; the file never names these."""
    found: dict[str, dict[Pool, PoolState]] = {}
    for policy in budgets:
        key = pool_states_key(policy.name)
        value = values.get(key)
        if not isinstance(value, dict):
            continue
        try:
            found[policy.name] = {
                Pool(pool): PoolState(state) for pool, state in value.items()
            }
        except ValueError as exc:
            logger.warning("stored override unreadable key=%s error=%s", key, exc)
            notes.append(f"run-time value unreadable, skipped: {key}")
    return found


def _policies(
    kind: type[_P], prefix: str, values: Mapping[str, object], notes: list[str]
) -> list[_P]:
    """The tenants or teams in force, by name; unreadable overrides are skipped."""
    found: list[_P] = []
    for key in sorted(values):
        value = values[key]
        if not key.startswith(prefix) or value is None:
            continue
        try:
            found.append(kind.model_validate(value))
        except ValidationError as exc:
            logger.warning("stored override unreadable key=%s error=%s", key, exc)
            notes.append(f"run-time value unreadable, skipped: {key}")
    return found
