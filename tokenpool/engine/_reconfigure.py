"""Live reload: a new configuration put in force without losing state.

Open reservations keep their holds and leases, pools keep their levels
and debts, waiters keep their places. A changed capacity or split moves
each pool's level by its capacity's change, as SetCapacity does, so a
shrink below what is held shows as debt and no hold is lost. A budget may
be dropped only while nothing is held or waiting in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from tokenpool._errors import ConflictError
from tokenpool.core import (
    BudgetPolicy,
    FairQueue,
    InputLimits,
    ModelPrice,
    Pool,
    PoolState,
    PriceTable,
    TeamPolicy,
    TenantPolicy,
)
from tokenpool.engine._autoscaling import Autoscaling
from tokenpool.engine._state import BudgetState, Waiter
from tokenpool.engine._tenancy import Tenancy
from tokenpool.ledger import Entry, EntryKind, FileValueRow, LedgerBatch, PoolRow

logger = logging.getLogger(__name__)

# How much of a changed value a change line shows.
_SHOWN = 80


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What a reload hands the engine: the parts of the settings it runs on."""

    budgets: Sequence[BudgetPolicy]
    tenants: Sequence[TenantPolicy]
    teams: Sequence[TeamPolicy] = ()
    prices: Sequence[ModelPrice] = ()
    limits: InputLimits = field(default_factory=InputLimits)
    pool_states: Mapping[str, Mapping[Pool, PoolState]] = field(default_factory=dict)
    """Pools an operator paused or is draining, by budget (run-time only)."""


def _shown(value: object) -> str:
    text = value.model_dump_json() if isinstance(value, BaseModel) else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _field_changes(kind: str, old: BaseModel, new: BaseModel) -> list[str]:
    """One line per field that differs between two policies."""
    return [
        f"{kind}: {name} {_shown(getattr(old, name))} -> {_shown(getattr(new, name))}"
        for name in type(new).model_fields
        if getattr(old, name) != getattr(new, name)
    ]


def _named_changes(
    kind: str, old: dict[str, BaseModel], new: dict[str, BaseModel]
) -> list[str]:
    changes = [f"{kind} {name} added" for name in new if name not in old]
    changes += [f"{kind} {name} removed" for name in old if name not in new]
    for name in new:
        if name in old and old[name] != new[name]:
            changes += _field_changes(f"{kind} {name}", old[name], new[name])
    return changes


class Reconfiguring(Autoscaling, Tenancy):
    """Applies a reloaded configuration to the running engine."""

    def _budget_changes(self, budgets: Sequence[BudgetPolicy]) -> list[str]:
        """What the new budgets change; refuses to drop a budget in use.

        Raises:
            ConflictError: a budget the new file leaves out still holds
                reservations or waiters.
        """
        wanted = {policy.name for policy in budgets}
        for name, budget in self._budgets.items():
            waiting = sum(len(queue) for queue in budget.queues.values())
            if name not in wanted and (budget.open_reservations or waiting):
                raise ConflictError(
                    f"The new configuration drops budget {name!r}, which holds "
                    f"{budget.open_reservations} open reservations and {waiting} "
                    "waiters; keep it until they end, then reload again."
                )
        old = {name: budget.policy for name, budget in self._budgets.items()}
        new = {policy.name: policy for policy in budgets}
        changes = [f"budget {name} added" for name in new if name not in old]
        changes += [f"budget {name} removed" for name in old if name not in new]
        for name, policy in new.items():
            if name in old and old[name] != policy:
                changes += _budget_field_changes(old[name], policy)
        return changes

    async def reconfigure(
        self,
        config: EngineConfig,
        *,
        file_values: Sequence[FileValueRow] = (),
        notes: Sequence[str] = (),
        actor: str = "",
    ) -> list[str]:
        """Puts a configuration in force; returns what changed, one line each.

        The changes, `notes` (what needs a restart, overrides kept or
        dropped) and the file values go into one `reload` entry, committed
        before this returns; a reload that changes nothing writes no entry.

        Raises:
            ConflictError: the configuration drops a budget still in use.
        """
        self._check_serving()
        changes = self._budget_changes(config.budgets)
        old_tenants = dict(self._tenants)
        old_teams = dict(self._teams)
        new_tenants = {tenant.name: tenant for tenant in config.tenants}
        new_teams = {team.name: team for team in config.teams}
        changes += _named_changes("tenant", dict(old_tenants), dict(new_tenants))
        changes += _named_changes("team", dict(old_teams), dict(new_teams))
        if list(config.prices) != list(self._prices.prices):
            changes.append(f"prices: {len(config.prices)} models")
        if config.limits != self._limits:
            changes += _field_changes("limits", self._limits, config.limits)

        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        pools = self._apply_budgets(config.budgets, now, wall, config.pool_states)
        self._tenants = new_tenants
        self._teams = new_teams
        self._admitted.clear()
        self._prices = PriceTable(config.prices)
        self._limits = config.limits
        self._alerting = any(
            caps.alert_percent for caps in (*new_tenants.values(), *new_teams.values())
        )
        self._start_scalers(now)

        if not (changes or file_values):
            return []
        batch = LedgerBatch(pools=pools, file_values=list(file_values))
        if changes or notes:
            batch.entries.append(
                Entry(
                    kind=EntryKind.RELOAD,
                    at_wall_ns=wall,
                    budget="",
                    actor=actor,
                    detail={"changes": changes, "notes": list(notes)},
                )
            )
        commit = self._submit(batch)
        for budget in self._budgets.values():
            self._serve_queues(budget)
        await self._settled(commit)
        logger.info(
            "configuration reloaded changes=%d actor=%s", len(changes), actor or "-"
        )
        return changes

    def _apply_budgets(
        self,
        budgets: Sequence[BudgetPolicy],
        now: int,
        wall: int,
        pool_states: Mapping[str, Mapping[Pool, PoolState]],
    ) -> list[PoolRow]:
        """Adds, changes and drops budgets; the pool rows that moved.

        A running budget keeps its pools' states (the ledger holds the same
        ones); a budget the file adds takes the stored ones, if any.
        """
        rows: list[PoolRow] = []
        wanted = {policy.name: policy for policy in budgets}
        for name in [name for name in self._budgets if name not in wanted]:
            state = self._budgets.pop(name)
            if state.alarm is not None:
                state.alarm.cancel()
            self._store.remove_budget(name)

        ordered: dict[str, BudgetState] = {}
        for name, policy in wanted.items():
            budget = self._budgets.get(name)
            if budget is None:
                budget = BudgetState.new(policy)
                budget.pool_states.update(pool_states.get(name, {}))
                self._store.add_budget(name, budget.capacities, policy.window_ns, now)
                rows += self._pool_rows(name, now, wall)
            elif budget.policy != policy:
                rows += self._change_budget(budget, policy, now, wall)
            ordered[name] = budget
        self._budgets = ordered
        return rows

    def _change_budget(
        self, budget: BudgetState, policy: BudgetPolicy, now: int, wall: int
    ) -> list[PoolRow]:
        old = budget.policy
        if policy.window_seconds != old.window_seconds:
            # The buckets keep their levels and refill over the new window.
            levels = self._store.levels(old.name, now)
            self._store.remove_budget(old.name)
            self._store.add_budget(
                policy.name, budget.capacities, policy.window_ns, now, levels
            )
        if policy.queueing != old.queueing:
            _requeue(budget, fifo=policy.queueing == "fifo")
        if policy.learning != old.learning:
            budget.estimates.reconfigure(policy.learning)
        if policy.capacity_tokens != old.capacity_tokens and budget.scaler is not None:
            # The file's new capacity is the one a provider cut returns to.
            budget.scaler.capacity_set()
        self._resize(budget, policy, now)
        return self._pool_rows(policy.name, now, wall)


def _budget_field_changes(old: BudgetPolicy, new: BudgetPolicy) -> list[str]:
    """A budget's changed fields; a bound that only follows capacity is left out.

    Bounds are compared as they act (an unset one is the capacity), and a
    bound equal to its capacity on both sides says nothing the capacity's
    own line does not.
    """
    bounds = {
        "min_capacity_tokens": (old.floor_capacity, new.floor_capacity),
        "max_capacity_tokens": (old.peak_capacity, new.peak_capacity),
    }
    changes = []
    for line in _field_changes(f"budget {new.name}", old, new):
        name = line.split(": ", 1)[1].split(" ", 1)[0]
        if name in bounds:
            before, after = bounds[name]
            follows = before == old.capacity_tokens and after == new.capacity_tokens
            if before == after or follows:
                continue
            line = f"budget {new.name}: {name} {before!r} -> {after!r}"
        changes.append(line)
    return changes


def _requeue(budget: BudgetState, *, fifo: bool) -> None:
    """Moves every waiter to a queue of the new kind, in arrival order."""
    for pool in (Pool.BASIC, Pool.PRIORITY):
        old = budget.queues[pool]
        tickets = sorted(old.tickets(), key=lambda ticket: ticket.seq)
        old.drain()
        queue: FairQueue[Waiter] = FairQueue(fifo=fifo)
        for ticket in tickets:
            ticket.item.ticket = queue.push(
                ticket.item,
                tenant=ticket.tenant,
                tokens=ticket.tokens,
                weight=ticket.weight,
                arrived_ns=ticket.arrived_ns,
            )
        budget.queues[pool] = queue
