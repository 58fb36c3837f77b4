"""Ending and changing reservations: settle, release, extend and expiry."""

from __future__ import annotations

import heapq
import logging

from tokenpool._errors import (
    InvalidFieldError,
    RequestTooLargeError,
    ReservationEndedError,
    UnknownReservationError,
)
from tokenpool._fields import log_event
from tokenpool.core import (
    Ask,
    CacheSavings,
    Draws,
    Outcome,
    Reservation,
    ScaleDecision,
    Sizing,
    State,
    TenantPolicy,
    account,
    check_count,
    check_micros,
    check_text,
    check_total,
    corrected_allowance,
    merge,
    plan_draws,
    plan_refund,
    prompt_cache_savings,
    response_cache_savings,
    subtract,
)
from tokenpool.engine._base import POOL_EXHAUSTED, REQUEST_TOO_LARGE, EngineBase
from tokenpool.engine._checks import counted_usage, digest
from tokenpool.engine._commands import ExtendCommand, SettleCommand
from tokenpool.engine._events import Ending, EndKind, ending_fields, reservation_fields
from tokenpool.engine._records import reservation_entry, reservation_row
from tokenpool.engine._state import BudgetState
from tokenpool.ledger import EntryKind, LedgerBatch

logger = logging.getLogger(__name__)


class Closing(EngineBase):
    """Settle, Release, Extend and lease expiry of open reservations."""

    async def settle(self, command: SettleCommand) -> Reservation:
        """Charges what a call used and gives the rest back (SPEC 4, 12.5-12.6)."""
        self._check_serving()
        figures = [
            check_count(name, getattr(command, name))
            for name in (
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "output_tokens",
                "provider_remaining_tokens",
                "provider_limit_tokens",
            )
        ]
        check_total("usage", *figures[:4])
        check_text("model", command.model)
        if command.response_cache_hit and any(figures[:4]):
            raise InvalidFieldError(
                "response_cache_hit",
                "a response-cache hit carries no usage; send the token counts as 0",
            )
        reservation = await self._find(command.reservation_id, command.tenant)
        fingerprint = digest(
            "settle", *figures[:4], command.incomplete, command.response_cache_hit
        )
        if reservation.state is State.EXPIRED:
            return await self._settle_late(reservation, command, fingerprint)
        if not reservation.is_open:
            return await self._repeat_end(reservation, State.SETTLED, fingerprint)

        policy = self._budgets[reservation.budget].policy
        used = 0
        if not command.response_cache_hit:
            used = counted_usage(command, policy)
        outcome = account(reservation.hold, used, incomplete=command.incomplete)
        detail: dict[str, object] = {
            "input_tokens": command.input_tokens,
            "cached_input_tokens": command.cached_input_tokens,
            "cache_write_tokens": command.cache_write_tokens,
            "output_tokens": command.output_tokens,
            "incomplete": command.incomplete,
            "response_cache_hit": command.response_cache_hit,
            "model": command.model or reservation.model,
        }
        if command.provider_rate_limited or command.provider_limit_tokens:
            detail["provider"] = {
                "rate_limited": command.provider_rate_limited,
                "remaining_tokens": command.provider_remaining_tokens,
                "limit_tokens": command.provider_limit_tokens,
            }
        violation = _violates(
            reservation, outcome.overrun, policy.overrun_limit_percent
        )
        if violation:
            detail["violation"] = True
            _log_violation(reservation, used, outcome.overrun)
        model = command.model or reservation.model
        # Priced before anything changes: a cost the ledger cannot record is
        # refused (INVALID_ARGUMENT) with the reservation left as it was.
        micros = 0
        if not command.response_cache_hit:
            micros = self._price_usage(
                model,
                command.input_tokens,
                command.cached_input_tokens,
                command.cache_write_tokens,
                command.output_tokens,
            )
            # A cut-off call charged its hold pays for the rest as output.
            micros += self._price_usage(model, 0, output_tokens=outcome.charged - used)
        if command.response_cache_hit:
            # Still the hold's estimate: the call avoided is what was saved.
            hit = response_cache_savings(reservation.hold, reservation.cost_micros)
            savings: tuple[CacheSavings, ...] = (hit,)
        else:
            saved = prompt_cache_savings(
                command.cached_input_tokens,
                policy.cache_read_weight_percent,
                self._prices.price_of(model),
            )
            savings = () if saved is None else (saved,)
            if saved is not None:
                check_micros("cached_input_tokens", saved.micros, model)
        reservation.used = used
        reservation.incomplete = command.incomplete
        reservation.response_cache_hit = command.response_cache_hit
        self._learn(self._budgets[reservation.budget], reservation)
        reservation.saved_tokens = sum(saved.tokens for saved in savings)
        reservation.saved_micros = sum(saved.micros for saved in savings)
        ending = Ending(
            EndKind.SETTLED,
            reservation,
            outcome.charged,
            outcome.refunded,
            outcome.overrun,
            used=used,
            cost_micros=micros,
            cached_input_tokens=command.cached_input_tokens,
            savings=savings,
            violation=violation,
            provider_rate_limited=command.provider_rate_limited,
            provider_remaining_tokens=command.provider_remaining_tokens,
            provider_limit_tokens=command.provider_limit_tokens,
        )
        decision = self._provider_decision(self._budgets[reservation.budget], command)
        return await self._end(
            reservation,
            State.SETTLED,
            EntryKind.SETTLE,
            ending,
            fingerprint,
            detail,
            decision=decision,
        )

    async def release_any(
        self, reservation_id: str, billed: int, *, actor: str = ""
    ) -> Reservation:
        """An operator's Release of any tenant's reservation (Admin)."""
        self._check_serving()
        check_text("reservation_id", reservation_id, 64)
        found = self._reservations.get(reservation_id)
        tenant = found.tenant if found is not None else ""
        if found is None:
            row = await self._ledger.get_reservation(reservation_id)
            if row is None:
                raise UnknownReservationError(reservation_id)
            tenant = row.tenant
        return await self.release(reservation_id, tenant, billed, actor=actor)

    async def release(
        self, reservation_id: str, tenant: str, billed: int, *, actor: str = ""
    ) -> Reservation:
        """Ends a reservation whose call never happened; billed input is charged."""
        self._check_serving()
        check_count("billed_input_tokens", billed)
        reservation = await self._find(reservation_id, tenant)
        fingerprint = digest("release", billed)
        if not reservation.is_open:
            return await self._repeat_end(reservation, State.RELEASED, fingerprint)

        outcome = account(reservation.hold, billed)
        detail: dict[str, object] = {"billed_input_tokens": billed}
        micros = self._price_usage(reservation.model, billed)
        ending = Ending(
            EndKind.RELEASED,
            reservation,
            outcome.charged,
            outcome.refunded,
            outcome.overrun,
            used=billed,
            cost_micros=micros,
        )
        return await self._end(
            reservation,
            State.RELEASED,
            EntryKind.RELEASE,
            ending,
            fingerprint,
            detail,
            actor=actor,
        )

    async def _repeat_end(
        self, reservation: Reservation, state: State, fingerprint: str
    ) -> Reservation:
        if reservation.state is state and reservation.end_fingerprint == fingerprint:
            await self._durable(reservation.reservation_id)
            kind = EndKind.SETTLED if state is State.SETTLED else EndKind.RELEASED
            repeat = Ending(
                kind,
                reservation,
                reservation.charged,
                reservation.refunded,
                reservation.overrun,
                used=reservation.used,
                cost_micros=reservation.cost_micros,
                repeated=True,
            )
            self._observer.reservation_ended(repeat)
            return reservation
        detail = ""
        if reservation.state is state:
            detail = "with different figures; a repeat must send the same ones."
        raise ReservationEndedError(
            reservation.reservation_id, reservation.state.value, detail
        )

    async def _settle_late(
        self, reservation: Reservation, command: SettleCommand, fingerprint: str
    ) -> Reservation:
        """Charges usage beyond what expiry charged, then says it had expired."""
        if reservation.end_fingerprint and reservation.end_fingerprint != fingerprint:
            raise ReservationEndedError(
                reservation.reservation_id,
                "expired",
                "a late settle was already recorded with different figures.",
            )
        budget = self._budgets[reservation.budget]
        used = counted_usage(command, budget.policy)
        extra = max(0, used - reservation.charged)
        late = Ending(
            EndKind.LATE_SETTLE, reservation, 0, 0, 0, used=used, repeated=True
        )
        # Charged as an overrun (SPEC 12.2), so flagged as one (SPEC 4): usage
        # past the hold by more than the limit, whatever expiry charged.
        violation = _violates(
            reservation, used - reservation.hold, budget.policy.overrun_limit_percent
        )
        if extra and not reservation.end_fingerprint:
            now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
            reservation.end_fingerprint = fingerprint
            self._charge_overrun(budget, reservation.pool, extra, now)
            micros = self._price_usage(reservation.model, 0, output_tokens=extra)
            self._limit_book.add_charge(
                self._charge_target(reservation), extra, micros, wall
            )
            reservation.charged += extra
            reservation.overrun += extra
            reservation.cost_micros += micros
            entry = reservation_entry(
                EntryKind.OVERRUN,
                reservation,
                wall,
                charged=extra,
                overrun=extra,
                detail={"late_settle": True, "used": used}
                | ({"violation": True} if violation else {}),
            )
            if violation:
                _log_violation(reservation, used, used - reservation.hold)
            batch = self._batch(budget, entry, reservation, now, wall)
            self._commits[reservation.reservation_id] = self._submit(batch)
            late = Ending(
                EndKind.LATE_SETTLE,
                reservation,
                extra,
                0,
                extra,
                used=used,
                cost_micros=micros,
                violation=violation,
            )
        await self._durable(reservation.reservation_id)
        log_event(logger, logging.INFO, "settle after expiry", ending_fields(late))
        self._observer.reservation_ended(late)
        if not late.repeated:
            self._raise_alerts(reservation, self._clock.wall_ns())
        raise ReservationEndedError(
            reservation.reservation_id,
            "expired",
            f"its lease ended before this settle; {reservation.overrun} tokens of "
            "usage beyond what expiry charged were recorded as overrun.",
        )

    async def _end(
        self,
        reservation: Reservation,
        state: State,
        kind: EntryKind,
        ending: Ending,
        fingerprint: str,
        detail: dict[str, object],
        *,
        actor: str = "",
        decision: ScaleDecision | None = None,
    ) -> Reservation:
        """Ends a hold, records it, and applies a provider cut the settle brought."""
        budget = self._budgets[reservation.budget]
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        outcome = Outcome(ending.charged, ending.refunded, ending.overrun)
        self._finish(budget, reservation, state, outcome, now, wall, ending.cost_micros)
        reservation.end_fingerprint = fingerprint
        entry = reservation_entry(
            kind,
            reservation,
            wall,
            tokens=-reservation.hold,
            charged=outcome.charged,
            refunded=outcome.refunded,
            overrun=outcome.overrun,
            detail=detail,
            actor=actor,
        )
        batch = self._batch(budget, entry, reservation, now, wall)
        self._commits[reservation.reservation_id] = self._submit(batch)
        self._serve_queues(budget)
        # A provider cut is in force before anything else is granted.
        cut = None if decision is None else self._enact(budget, decision)
        await self._durable(reservation.reservation_id)
        if cut is not None:
            await self._settled(cut)

        if logger.isEnabledFor(logging.DEBUG):
            log_event(logger, logging.DEBUG, ending.kind.value, ending_fields(ending))
        # Overruns past the limit have a WARNING line of their own.
        if ending.overrun and not ending.violation and not ending.repeated:
            quieted = self._repeated_lines.loud(("overrun", reservation.budget), now)
            if quieted is not None:
                fields = ending_fields(ending)
                fields["quieted"] = quieted
                log_event(logger, logging.INFO, "overrun", fields)
        self._observer.reservation_ended(ending)
        self._raise_alerts(reservation, wall)
        return reservation

    async def extend(self, command: ExtendCommand) -> Reservation:
        """Sets a new total hold and/or lease end; a repeat changes nothing."""
        self._check_serving()
        check_count("total_tokens", command.total_tokens)
        reservation = await self._find(command.reservation_id, command.tenant)
        if not reservation.is_open:
            raise ReservationEndedError(
                reservation.reservation_id, reservation.state.value
            )
        budget = self._budgets[reservation.budget]
        policy = budget.policy
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()

        lease_wall = reservation.lease_expires_wall_ns
        if command.lease_expires_wall_ns is not None:
            lease_wall = command.lease_expires_wall_ns
            latest = wall + int(policy.max_lease_seconds * 1e9)
            if lease_wall <= wall or lease_wall > latest:
                raise InvalidFieldError(
                    "lease_expires_at",
                    "must be in the future and at most "
                    f"{policy.max_lease_seconds:g} s from now",
                )
        total = command.total_tokens or reservation.hold
        delta = total - reservation.hold
        if delta == 0 and lease_wall == reservation.lease_expires_wall_ns:
            await self._durable(reservation.reservation_id)
            return reservation

        tenant = self._tenant(reservation.tenant, policy)
        draws: Draws = ()
        if delta > 0:
            draws = self._plan_growth(budget, tenant, reservation, total, now, wall)
        self._unhold(budget, reservation)
        if delta > 0:
            reservation.sources = merge(reservation.sources, draws, reservation.pool)
        elif delta < 0:
            refund = plan_refund(reservation.sources, -delta)
            self._store.give(policy.name, refund, now)
            reservation.sources = subtract(reservation.sources, refund)
        if delta:
            ask = self._extended_ask(budget, tenant, reservation, total, ())
            self._limit_book.change(reservation.reservation_id, ask, wall)
            reservation.cost_micros = ask.cost_micros or 0
        reservation.hold = total
        reservation.lease_expires_wall_ns = lease_wall
        reservation.lease_expires_mono_ns = now + (lease_wall - wall)
        self._hold(budget, reservation)

        entry = reservation_entry(
            EntryKind.EXTEND,
            reservation,
            wall,
            tokens=delta,
            detail={
                "sources": [[pool, tokens] for pool, tokens in reservation.sources],
                "lease_expires_wall_ns": lease_wall,
            },
        )
        batch = self._batch(budget, entry, reservation, now, wall)
        self._commits[reservation.reservation_id] = self._submit(batch)
        if delta < 0:
            self._serve_queues(budget)
        await self._durable(reservation.reservation_id)

        if logger.isEnabledFor(logging.DEBUG):
            fields = reservation_fields(reservation)
            fields["tokens_delta"] = delta
            log_event(logger, logging.DEBUG, "reservation extended", fields)
        self._observer.reservation_extended(reservation, delta)
        return reservation

    def _plan_growth(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        reservation: Reservation,
        total: int,
        now: int,
        wall: int,
    ) -> Draws:
        """Takes the tokens an Extend adds, under the rules a Reserve meets.

        The reservation stays counted meanwhile, so its own burst and loans
        count against the tenant's burst limit and the lenders' shares.

        Raises:
            RefusalError: the budget could never hold the new total, or the
                pools or a limit cannot give the growth now.
        """
        policy = budget.policy
        sizing = Sizing(total, reservation.complexity_score, reservation.multiplier)
        ceiling = self._ceiling(budget, reservation.pool, sizing)
        if total > ceiling:
            raise RequestTooLargeError(
                f"total_tokens {total} is more than budget {policy.name!r} can "
                f"ever hold for tenant {tenant.name!r} ({ceiling}).",
                reason=REQUEST_TOO_LARGE,
                budget=policy.name,
                pool=reservation.pool,
                requested=total,
                largest_grantable=ceiling,
                retry_after_ns=None,
            )

        delta = total - reservation.hold
        extra = Sizing(delta, sizing.complexity_score, sizing.multiplier)
        reach = self._reach(budget, tenant, reservation.pool, extra, now)
        draws = plan_draws(delta, reach)
        # The limits first: a cap or calendar budget the growth breaks is the
        # answer, whatever the pools hold now.
        ask = self._extended_ask(budget, tenant, reservation, total, draws)
        breach = self._limit_book.check_change(reservation.reservation_id, ask, wall)
        if breach is not None:
            raise self._limit_refusal(budget, tenant, breach, requested=total)
        if draws is None or not self._store.take(policy.name, draws, now):
            raise self._refusal(
                budget,
                tenant,
                reservation.pool,
                extra,
                POOL_EXHAUSTED,
                now,
                held=reservation.hold,
            )
        return draws

    def _extended_ask(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        reservation: Reservation,
        total: int,
        extra: Draws | None,
    ) -> Ask:
        """A reservation at its new total, as the limit book counts it.

        `extra` is what the change draws; None when the pools cannot give
        it, so the ask carries no sources (pool-share caps are not judged).
        """
        output = corrected_allowance(
            reservation.output_allowance, reservation.output_factor
        )
        return self._ask(
            budget,
            tenant,
            total,
            input_tokens=min(total, max(0, reservation.requested - output)),
            model=reservation.model,
            draws=()
            if extra is None
            else merge(reservation.sources, extra, reservation.pool),
        )

    def _expire_due(self, now: int) -> LedgerBatch:
        """Ends every open reservation whose lease has run out."""
        batch = LedgerBatch()
        wall = self._clock.wall_ns()
        touched: set[str] = set()
        while self._leases and self._leases[0][0] <= now:
            _, reservation_id = heapq.heappop(self._leases)
            reservation = self._reservations.get(reservation_id)
            if (
                reservation is None
                or not reservation.is_open
                or reservation.lease_expires_mono_ns > now
            ):
                continue
            budget = self._budgets[reservation.budget]
            hold = reservation.hold
            refunded = hold if budget.policy.refund_on_expiry else 0
            outcome = Outcome(hold - refunded, refunded, 0)
            micros = 0 if refunded else reservation.cost_micros
            self._finish(budget, reservation, State.EXPIRED, outcome, now, wall, micros)
            ending = Ending(
                EndKind.EXPIRED,
                reservation,
                outcome.charged,
                outcome.refunded,
                0,
                cost_micros=micros,
            )
            log_event(
                logger, logging.INFO, "reservation expired", ending_fields(ending)
            )
            self._observer.reservation_ended(ending)
            self._raise_alerts(reservation, wall)
            batch.entries.append(
                reservation_entry(
                    EntryKind.EXPIRE,
                    reservation,
                    wall,
                    tokens=-hold,
                    charged=outcome.charged,
                    refunded=outcome.refunded,
                )
            )
            batch.reservations.append(reservation_row(reservation))
            touched.add(reservation.budget)
        for name in touched:
            batch.pools.extend(self._pool_rows(name, now, wall))
            self._serve_queues(self._budgets[name])
        return batch


def _violates(reservation: Reservation, overrun: int, limit_percent: int) -> bool:
    """Whether usage `overrun` tokens past the hold passes the overrun limit."""
    return overrun * 100 > reservation.hold * limit_percent


def _log_violation(reservation: Reservation, used: int, overrun: int) -> None:
    log_event(
        logger,
        logging.WARNING,
        "overrun beyond limit",
        {
            "budget": reservation.budget,
            "tenant": reservation.tenant,
            "reservation_id": reservation.reservation_id,
            "tokens_granted": reservation.hold,
            "tokens_used": used,
            "tokens_overrun": overrun,
        },
    )
