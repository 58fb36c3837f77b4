"""Operator changes to a budget: its capacity and how it splits into pools."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tokenpool._errors import InvalidFieldError
from tokenpool.core import (
    POOL_ORDER,
    BudgetPolicy,
    Pool,
    Shares,
    check_count,
    check_range,
    split_capacity,
)
from tokenpool.engine._base import BudgetState, EngineBase
from tokenpool.engine._events import BudgetChange
from tokenpool.ledger import Entry, EntryKind, LedgerBatch

logger = logging.getLogger(__name__)


class Administering(EngineBase):
    """SetCapacity and Rebalance: each pool's level moves by its capacity's change.

    A shrunk pool whose level falls below zero is in debt (SPEC 12.3), so
    open holds are never lost; a grown pool has the new tokens at once.
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

        policy = budget.policy.model_copy(update={"capacity_tokens": capacity})
        budget.largest_capacity = max(budget.largest_capacity, capacity)
        detail = {
            "capacity_tokens": capacity,
            "previous_capacity_tokens": budget.policy.capacity_tokens,
        }
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
            "previous_shares": {
                pool.value: percent
                for pool, percent in budget.policy.shares.by_pool().items()
            },
        }
        await self._apply(budget, policy, EntryKind.REBALANCE, actor, detail)
        return policy

    async def _apply(
        self,
        budget: BudgetState,
        policy: BudgetPolicy,
        kind: EntryKind,
        actor: str,
        detail: Mapping[str, object],
    ) -> None:
        """Resizes the pools, records the change, and lets waiters use it."""
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        capacities = split_capacity(policy.capacity_tokens, policy.shares.by_pool())
        self._store.resize(policy.name, capacities, now)
        budget.policy = policy
        budget.capacities = capacities
        logger.info(
            "budget changed budget=%s kind=%s actor=%s capacities=%s",
            policy.name,
            kind.value,
            actor or "-",
            {pool.value: tokens for pool, tokens in capacities.items()},
        )

        entry = Entry(
            kind=kind,
            at_wall_ns=wall,
            budget=policy.name,
            tokens=policy.capacity_tokens,
            actor=actor,
            detail={
                **detail,
                "capacities": {pool.value: t for pool, t in capacities.items()},
            },
        )
        batch = LedgerBatch(
            entries=[entry], pools=self._pool_rows(policy.name, now, wall)
        )
        commit = self._submit(batch)
        self._serve_queues(budget)
        await self._settled(commit)
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
