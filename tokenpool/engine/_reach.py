"""Reach: what a request may draw from its own pool, burst and lenders (SPEC 3)."""

from __future__ import annotations

from tokenpool.core import (
    POOL_ORDER,
    Pool,
    PoolState,
    Reach,
    Sizing,
    TenantPolicy,
    burst_limit,
    lendable_now,
    split_capacity,
)
from tokenpool.engine._state import BudgetState
from tokenpool.engine._store import PoolStore


class Reaching:
    """What a request may draw now, and the most it ever could; `EngineBase` has it."""

    # Set by `EngineBase.__init__`.
    _store: PoolStore

    def _reach(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        pool: Pool,
        sizing: Sizing,
        now: int,
    ) -> Reach:
        """What a request may draw now: own pool, burst and lenders (SPEC 3).

        A pool an operator paused or is draining gives nothing: not to its
        own tenants (they reach nothing at all), not as burst, not as a loan.
        """
        states = budget.pool_states
        if states[pool] is not PoolState.ACTIVE:
            return Reach(
                own_pool=pool, own_available=0, burst_available=0, burst_room=0
            )
        levels = self._store.levels(budget.policy.name, now)
        limit = burst_limit(
            budget.capacities[Pool.BURST], _burst_percent(budget, sizing)
        )
        lenders: list[tuple[Pool, int]] = []
        borrower = budget.policy.lending.of(pool)
        for lender in POOL_ORDER:
            rules = budget.policy.lending.of(lender)
            if (
                lender is pool
                or rules is None
                or borrower is None
                or borrower.never_borrow
                or rules.never_lend
                or len(budget.queues[lender])
                or states[lender] is not PoolState.ACTIVE
            ):
                continue
            lenders.append(
                (
                    lender,
                    lendable_now(
                        levels[lender].capacity,
                        levels[lender].available,
                        budget.lent[lender],
                        rules.lendable_percent,
                        rules.lend_threshold_percent,
                    ),
                )
            )
        return Reach(
            own_pool=pool,
            own_available=levels[pool].available,
            burst_available=(
                levels[Pool.BURST].available
                if states[Pool.BURST] is PoolState.ACTIVE
                else 0
            ),
            burst_room=limit - budget.burst_by_tenant[tenant.name],
            lenders=tuple(lenders),
        )

    def _peak(self, budget: BudgetState) -> dict[Pool, int]:
        """Each pool's capacity at the budget's largest capacity."""
        peak = split_capacity(
            max(
                budget.policy.peak_capacity,
                budget.largest_capacity,
                sum(budget.capacities.values()),
            ),
            budget.policy.shares.by_pool(),
        )
        for pool, capacity in budget.capacities.items():
            peak[pool] = max(peak[pool], capacity)
        return peak

    def _ceiling(self, budget: BudgetState, pool: Pool, sizing: Sizing) -> int:
        """The most the budget could ever grant one request from this pool.

        Everything the tenant could reach at the budget's largest capacity:
        its own pool, its burst limit, and what lenders may lend.
        """
        policy = budget.policy
        peak = self._peak(budget)
        ceiling = peak[pool] + burst_limit(
            peak[Pool.BURST], _burst_percent(budget, sizing)
        )
        borrower = policy.lending.of(pool)
        for lender in POOL_ORDER:
            rules = policy.lending.of(lender)
            if (
                lender is pool
                or rules is None
                or borrower is None
                or borrower.never_borrow
                or rules.never_lend
            ):
                continue
            ceiling += lendable_now(
                peak[lender],
                peak[lender],
                0,
                rules.lendable_percent,
                rules.lend_threshold_percent,
            )
        return ceiling


def _burst_percent(budget: BudgetState, sizing: Sizing) -> int:
    if sizing.complexity_score >= 7:
        return budget.policy.burst_high_complexity_percent
    return budget.policy.burst_tenant_percent
