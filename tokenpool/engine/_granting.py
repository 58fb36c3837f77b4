"""One grant: a request's limits checked, its tokens taken, its reservation opened."""

from __future__ import annotations

import uuid
from dataclasses import replace

from tokenpool.core import (
    Breach,
    Draws,
    LimitReason,
    Reach,
    Reservation,
    Sizing,
    TenantPolicy,
    plan_draws,
)
from tokenpool.engine._base import NS_PER_MS, EngineBase
from tokenpool.engine._checks import request_shape
from tokenpool.engine._commands import ReserveCommand
from tokenpool.engine._records import reservation_entry
from tokenpool.engine._state import BudgetState, Waiter
from tokenpool.ledger import EntryKind, LedgerBatch

# What one attempt to grant a request came to.
_GRANTED = "granted"
_SHORT = "short"
"""Not enough tokens where it may draw: it waits, and holds its queue."""
_BLOCKED = "blocked"
"""Its tenant's or team's own limit holds it: others may go first."""
_BUDGET_BLOCKED = "budget_blocked"
"""A budget-wide limit (rate, concurrency) holds everyone."""
_REFUSED = "refused"
"""A limit waiting cannot fix: it is refused (waiter.refusal)."""

# Limits that hold every request of a budget, not one tenant's or team's.
_BUDGET_WIDE = frozenset(
    {LimitReason.BUDGET_RATE_LIMIT, LimitReason.BUDGET_CONCURRENCY}
)


class Granting(EngineBase):
    """Grants one request now, if its tokens and every limit allow it."""

    def _try_grant(
        self,
        budget: BudgetState,
        waiter: Waiter,
        reach: Reach,
        now: int,
        *,
        in_order: bool = True,
    ) -> str:
        """Grants a request if its tokens and every limit allow it now.

        `in_order` is False for a waiter granted ahead of its queue's fair
        order (at its deadline), which leaves the queue's virtual time alone.
        """
        draws = plan_draws(waiter.sizing.tokens, reach)
        if draws is None:
            # Short only because this tenant used up its share of burst: that
            # is its own limit, so the queue goes on without it.
            unlimited = replace(reach, burst_room=reach.burst_available)
            if plan_draws(waiter.sizing.tokens, unlimited) is not None:
                return _BLOCKED
            return _SHORT
        ask = self._ask(
            budget,
            waiter.tenant,
            waiter.sizing.tokens,
            input_tokens=waiter.sizing.input_tokens,
            model=waiter.command.model,
            draws=draws,
        )
        wall = self._clock.wall_ns()
        breach = self._limit_book.check(ask, now, wall)
        if breach is not None:
            return self._held_back(budget, waiter, breach)
        if not self._store.take(budget.policy.name, draws, now):
            return _SHORT

        if waiter.ticket is not None:
            queue = budget.queues[waiter.tenant.tier.pool]
            queue.served(waiter.ticket, in_order=in_order)
        reservation, batch = self._open(
            budget,
            waiter.tenant,
            waiter.command,
            waiter.sizing,
            draws,
            waiter.lease_ns,
            waiter.fingerprint,
            now,
            waiter.arrived_ns,
        )
        self._limit_book.hold(reservation.reservation_id, ask, now, wall)
        reservation.cost_micros = ask.cost_micros or 0
        waiter.reservation = reservation
        waiter.commit = self._submit(batch)
        waiter.event.set()
        return _GRANTED

    def _held_back(self, budget: BudgetState, waiter: Waiter, breach: Breach) -> str:
        """What a limit beside the pools means for a request: wait, or refusal."""
        if breach.waitable:
            waiter.breach = breach
            waiter.blocked_by = breach.reason
            budget_wide = breach.reason in _BUDGET_WIDE
            return _BUDGET_BLOCKED if budget_wide else _BLOCKED

        waiter.refusal = self._limit_refusal(
            budget, waiter.tenant, breach, requested=waiter.sizing.tokens
        )
        if waiter.ticket is not None:
            budget.queues[waiter.tenant.tier.pool].remove(waiter.ticket)
        waiter.event.set()
        return _REFUSED

    def _open(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        command: ReserveCommand,
        sizing: Sizing,
        draws: Draws,
        lease_ns: int,
        fingerprint: str,
        now: int,
        arrived_ns: int,
        *,
        shadow: tuple[str, str] | None = None,
    ) -> tuple[Reservation, LedgerBatch]:
        """Creates a granted reservation whose tokens were just taken.

        `shadow` is the (reason, would) of a shadow-mode grant the rules
        would not have made now.
        """
        wall = self._clock.wall_ns()
        reservation = Reservation(
            reservation_id=uuid.uuid4().hex,
            budget=budget.policy.name,
            tenant=tenant.name,
            pool=tenant.tier.pool,
            hold=sizing.tokens,
            sources=draws,
            requested=sizing.tokens,
            complexity_score=sizing.complexity_score,
            multiplier=sizing.multiplier,
            created_wall_ns=wall,
            lease_expires_wall_ns=wall + lease_ns,
            lease_expires_mono_ns=now + lease_ns,
            waited_ms=(now - arrived_ns) // NS_PER_MS,
            idempotency_key=command.idempotency_key,
            request_fingerprint=fingerprint,
            model=command.model,
            labels=dict(command.labels),
            task_type=sizing.task_type.value,
            output_allowance=sizing.output_allowance,
            output_factor=sizing.output_factor,
            team=tenant.team or "",
            shadow=shadow[0] if shadow else "",
        )
        self._remember(reservation)
        self._hold(budget, reservation)
        detail: dict[str, object] = {}
        if shadow:
            detail["shadow"] = {"reason": shadow[0], "would": shadow[1]}
        entry = reservation_entry(
            EntryKind.RESERVE,
            reservation,
            wall,
            tokens=reservation.hold,
            detail={
                **detail,
                "sources": [[pool, tokens] for pool, tokens in draws],
                "waited_ms": reservation.waited_ms,
                "complexity_score": sizing.complexity_score,
                "multiplier": sizing.multiplier,
                "task_type": sizing.task_type.value,
                "output_allowance": sizing.output_allowance,
                "output_factor": str(sizing.output_factor or ""),
                "model": command.model,
                "labels": reservation.labels,
                "request": request_shape(command),
            },
        )
        return reservation, self._batch(budget, entry, reservation, now, wall)
