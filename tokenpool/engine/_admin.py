"""Operator changes to a budget: its capacity and how it splits into pools."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping

from tokenpool._errors import InvalidFieldError
from tokenpool.core import (
    POOL_ORDER,
    BudgetPolicy,
    Pool,
    Shares,
    capacity_key,
    check_count,
    check_range,
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


class Administering(EngineBase):
    """SetCapacity and Rebalance: each pool's level moves by its capacity's change.

    A shrunk pool whose level falls below zero is in debt (SPEC 12.3), so
    open holds are never lost; a grown pool has the new tokens at once.
    Each change is stored as a run-time override of the configuration
    (SPEC 8) in the same commit as its ledger entry.
    """

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
