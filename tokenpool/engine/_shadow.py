"""Shadow mode: every request decided as usual, then granted whatever was decided."""

from __future__ import annotations

import logging

from tokenpool._fields import log_event
from tokenpool.core import Reservation, merge, plan_draws
from tokenpool.engine._base import POOL_EXHAUSTED, REQUEST_TOO_LARGE
from tokenpool.engine._reserving import Reserving
from tokenpool.engine._state import BudgetState, Waiter

logger = logging.getLogger(__name__)


class Shadowing(Reserving):
    """Grants what an enforcing daemon would have made wait or refused (SPEC 8)."""

    def _reserve_shadow(
        self, budget: BudgetState, waiter: Waiter, ceiling: int, *, may_wait: bool
    ) -> Reservation:
        """Shadow mode: decides as usual, then grants whatever was decided.

        A request the rules grant now is granted as usual. Any other is
        granted too, at once: it takes what its own pool, burst and lenders
        have, and the rest is charged to its own pool as debt, so the pools
        keep tracking what was really taken and later decisions read the
        real load. The reservation records why an enforcing daemon would not
        have granted it now (`shadow`), and whether it would have waited or
        been refused, in its reserve entry. Nobody ever waits in shadow
        mode, so the queues stay empty.
        """
        now = self._clock.monotonic_ns()
        tenant, sizing = waiter.tenant, waiter.sizing
        pool = tenant.tier.pool
        reason = REQUEST_TOO_LARGE if sizing.tokens > ceiling else ""
        reach = self._reach(budget, tenant, pool, sizing, now)
        if not reason:
            self._try_grant(budget, waiter, reach, now)
            if waiter.reservation is not None:
                return waiter.reservation
            if waiter.refusal is not None:
                reason = waiter.refusal.reason
            else:
                reason = waiter.blocked_by or POOL_EXHAUSTED
            reach = self._reach(budget, tenant, pool, sizing, now)

        # What the pools can give, then the rest as debt on the own pool.
        fits = plan_draws(min(sizing.tokens, reach.largest), reach) or ()
        shortfall = sizing.tokens - sum(tokens for _, tokens in fits)
        name = budget.policy.name
        self._store.take(name, fits, now)
        if shortfall:
            self._store.charge(name, ((pool, shortfall),), now)
        draws = merge(fits, ((pool, shortfall),) if shortfall else (), pool)
        would = "wait" if may_wait and reason != REQUEST_TOO_LARGE else "refuse"
        ask = self._ask(
            budget,
            tenant,
            sizing.tokens,
            input_tokens=sizing.input_tokens,
            model=waiter.command.model,
            draws=draws,
        )
        reservation, batch = self._open(
            budget,
            tenant,
            waiter.command,
            sizing,
            draws,
            waiter.lease_ns,
            waiter.fingerprint,
            now,
            waiter.arrived_ns,
            shadow=(reason, would),
        )
        self._limit_book.hold(
            reservation.reservation_id, ask, now, self._clock.wall_ns()
        )
        reservation.cost_micros = ask.cost_micros or 0
        waiter.reservation = reservation
        waiter.commit = self._submit(batch)
        log_event(
            logger,
            logging.DEBUG,
            "shadow grant",
            {
                "budget": name,
                "tenant": tenant.name,
                "tokens_granted": sizing.tokens,
                "reason": reason,
                "would": would,
                "debt": shortfall,
            },
        )
        return reservation
