"""Operator changes to a budget: its capacity, its split, its pools' states."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping

from tokenpool._errors import InvalidFieldError, LedgerUnavailableError
from tokenpool._fields import log_event
from tokenpool.core import (
    POOL_ORDER,
    BudgetPolicy,
    Pool,
    PoolState,
    Shares,
    capacity_key,
    check_count,
    check_range,
    pool_states_key,
    shares_key,
    split_capacity,
)
from tokenpool.engine._base import EngineBase
from tokenpool.engine._events import BudgetChange
from tokenpool.engine._state import BudgetState
from tokenpool.ledger import Entry, EntryKind, LedgerBatch, OverrideRow

logger = logging.getLogger(__name__)


def to_json(value: object) -> str:
    """A configuration value as the overrides table stores it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def shares_value(shares: Shares) -> dict[str, int]:
    """A split as a stored value: pool name to percent."""
    return {pool.value: percent for pool, percent in shares.by_pool().items()}


def pool_states_value(states: Mapping[Pool, PoolState]) -> dict[str, str]:
    """A budget's paused and draining pools as a stored value; active ones left out."""
    return {
        pool.value: state.value
        for pool, state in states.items()
        if state is not PoolState.ACTIVE
    }


def _pool(name: str) -> Pool:
    known = {pool.value for pool in POOL_ORDER}
    if name not in known:
        raise InvalidFieldError(
            "pool", f"{name[:64]!r} is not a pool; use basic, priority or burst"
        )
    return Pool(name)


class Administering(EngineBase):
    """SetCapacity, Rebalance and pool states, each kept as a run-time override.

    A capacity change or rebalance moves each pool's level by its
    capacity's change: a shrunk pool whose level falls below zero is in
    debt (SPEC 12.3), so open holds are never lost; a grown pool has the
    new tokens at once. Each change is stored as a run-time override of the
    configuration (SPEC 8) in the same commit as its ledger entry.
    """

    async def set_pool_state(
        self, name: str, pool_name: str, state: PoolState, *, actor: str = ""
    ) -> PoolState:
        """Pauses, drains or resumes one pool of a budget (SPEC 8).

        Paused or draining, the pool grants nothing new (see `PoolState`);
        draining also refuses its waiters at once. Resumed, its queue is
        served again. Setting the state a pool already has changes nothing
        and writes no entry. Returns the state before the change.

        Raises:
            InvalidFieldError: `pool` names no pool.
            UnknownBudgetError: no budget has that name.
        """
        self._check_serving()
        budget = self._budget(name)
        pool = _pool(pool_name)
        previous = budget.pool_states[pool]
        if state is previous:
            logger.debug(
                "pool state unchanged budget=%s pool=%s state=%s",
                name,
                pool.value,
                state.value,
            )
            return previous

        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        budget.pool_states[pool] = state
        refused = (
            self._refuse_drained(budget, pool) if state is PoolState.DRAINING else 0
        )
        detail: dict[str, object] = {
            "state": state.value,
            "previous_state": previous.value,
            "waiters_refused": refused,
            "open_reservations": budget.open_by_pool[pool],
            "in_flight_tokens": budget.in_flight[pool],
        }
        entry = Entry(
            kind=EntryKind.POOL_STATE,
            at_wall_ns=wall,
            budget=name,
            pool=pool.value,
            actor=actor,
            detail=detail,
        )
        override = OverrideRow(
            pool_states_key(name),
            to_json(pool_states_value(budget.pool_states)),
            actor,
            wall,
        )
        commit = self._submit(
            LedgerBatch(
                entries=[entry],
                pools=self._pool_rows(name, now, wall),
                overrides=[override],
            )
        )
        # Waiters held back by this pool (or its tokens) may go now.
        self._serve_queues(budget)
        log_event(
            logger,
            logging.INFO,
            "pool state changed",
            {"budget": name, "pool": pool.value, "actor": actor or "-", **detail},
        )
        try:
            await self._settled(commit)
        except LedgerUnavailableError:
            # Not recorded, so not in force: memory is rebuilt from the ledger.
            budget.pool_states[pool] = previous
            raise
        self._observer.budget_changed(
            BudgetChange(
                budget=name,
                kind=EntryKind.POOL_STATE.value,
                actor=actor,
                capacity_tokens=budget.policy.capacity_tokens,
                capacities=budget.capacities,
                detail={"pool": pool.value, **detail},
            )
        )
        return previous

    def _refuse_drained(self, budget: BudgetState, pool: Pool) -> int:
        """Refuses every request waiting in a draining pool's queue; how many."""
        queue = budget.queues.get(pool)
        if queue is None:
            return 0
        waiters = queue.drain()
        for waiter in waiters:
            waiter.refusal = self._stopped(
                budget, waiter.tenant, pool, waiter.sizing.tokens
            )
            waiter.event.set()
        return len(waiters)

    async def set_capacity(
        self, name: str, capacity: int, *, actor: str = ""
    ) -> BudgetPolicy:
        """Sets a budget's capacity per window, keeping its shares."""
        self._check_serving()
        budget = self._budget(name)
        check_count("capacity_tokens", capacity)
        configured_max = budget.policy.max_capacity_tokens
        if configured_max is not None and capacity > configured_max:
            raise InvalidFieldError(
                "capacity_tokens",
                f"{capacity} is above the budget's max_capacity_tokens "
                f"({configured_max}); raise that in the configuration first",
            )

        policy = budget.policy.with_capacity(capacity)
        detail = {
            "capacity_tokens": capacity,
            "previous_capacity_tokens": budget.policy.capacity_tokens,
        }
        if budget.scaler is not None:
            # The operator's figure is the one to come back to now.
            budget.scaler.capacity_set()
        await self._apply(budget, policy, EntryKind.CAPACITY, actor, detail)
        return policy

    async def rebalance(
        self, name: str, shares: Mapping[str, int], *, actor: str = ""
    ) -> BudgetPolicy:
        """Sets some or all pools' shares; the others keep theirs (SPEC 12.11)."""
        self._check_serving()
        budget = self._budget(name)
        if not shares:
            raise InvalidFieldError(
                "shares", "names no pool; give a percent for basic, priority or burst"
            )
        current = budget.policy.shares.by_pool()
        known = {pool.value for pool in POOL_ORDER}
        for pool_name, percent in shares.items():
            if pool_name not in known:
                raise InvalidFieldError(
                    "shares",
                    f"{pool_name!r} is not a pool; use basic, priority or burst",
                )
            check_range(f"shares[{pool_name}]", percent, 0, 100)
            current[Pool(pool_name)] = percent
        total = sum(current.values())
        if total != 100:
            raise InvalidFieldError(
                "shares",
                f"the resulting shares sum to {total}, not 100 ("
                + ", ".join(f"{pool}={current[pool]}" for pool in POOL_ORDER)
                + ")",
            )

        new_shares = Shares(
            basic=current[Pool.BASIC],
            priority=current[Pool.PRIORITY],
            burst=current[Pool.BURST],
        )
        policy = budget.policy.model_copy(update={"shares": new_shares})
        detail = {
            "shares": {pool.value: percent for pool, percent in current.items()},
            "previous_shares": shares_value(budget.policy.shares),
        }
        await self._apply(budget, policy, EntryKind.REBALANCE, actor, detail)
        return policy

    def _resize(
        self, budget: BudgetState, policy: BudgetPolicy, now: int
    ) -> dict[Pool, int]:
        """Puts a new capacity or split in force; levels move by the change."""
        capacities = split_capacity(policy.capacity_tokens, policy.shares.by_pool())
        self._store.resize(policy.name, capacities, now)
        budget.policy = policy
        budget.capacities = capacities
        budget.largest_capacity = max(budget.largest_capacity, policy.capacity_tokens)
        return capacities

    def _override_rows(
        self, before: BudgetPolicy, after: BudgetPolicy, actor: str, wall: int
    ) -> list[OverrideRow]:
        """Run-time overrides for the fields a change touched."""
        rows = []
        if after.capacity_tokens != before.capacity_tokens:
            rows.append(
                OverrideRow(
                    capacity_key(after.name),
                    to_json(after.capacity_tokens),
                    actor,
                    wall,
                )
            )
        if after.shares != before.shares:
            rows.append(
                OverrideRow(
                    shares_key(after.name),
                    to_json(shares_value(after.shares)),
                    actor,
                    wall,
                )
            )
        return rows

    def _changed(
        self,
        budget: BudgetState,
        policy: BudgetPolicy,
        entry: Entry,
        actor: str,
    ) -> Awaitable[int]:
        """Resizes, records the entry and the overrides, lets waiters use it.

        Synchronous up to the commit, which the caller awaits: nothing is
        granted between the change and its record.
        """
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        overrides = self._override_rows(budget.policy, policy, actor, wall)
        capacities = self._resize(budget, policy, now)
        batch = LedgerBatch(
            entries=[entry],
            pools=self._pool_rows(policy.name, now, wall),
            overrides=overrides,
        )
        logger.info(
            "budget changed budget=%s kind=%s actor=%s capacities=%s",
            policy.name,
            entry.kind.value,
            actor or "-",
            {pool.value: tokens for pool, tokens in capacities.items()},
        )
        commit = self._submit(batch)
        self._serve_queues(budget)
        return commit

    async def _apply(
        self,
        budget: BudgetState,
        policy: BudgetPolicy,
        kind: EntryKind,
        actor: str,
        detail: Mapping[str, object],
    ) -> None:
        """Resizes the pools, records the change, and lets waiters use it."""
        capacities = split_capacity(policy.capacity_tokens, policy.shares.by_pool())
        entry = Entry(
            kind=kind,
            at_wall_ns=self._clock.wall_ns(),
            budget=policy.name,
            tokens=policy.capacity_tokens,
            actor=actor,
            detail={
                **detail,
                "capacities": {pool.value: t for pool, t in capacities.items()},
            },
        )
        await self._settled(self._changed(budget, policy, entry, actor))
        self._observer.budget_changed(
            BudgetChange(
                budget=policy.name,
                kind=kind.value,
                actor=actor,
                capacity_tokens=policy.capacity_tokens,
                capacities=capacities,
                detail=detail,
            )
        )
