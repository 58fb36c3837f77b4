"""State every engine operation shares, and the helpers that read and change it."""

from __future__ import annotations

import heapq
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol

import anyio

from tokenpool._errors import (
    InsufficientTokensError,
    InvalidFieldError,
    LedgerUnavailableError,
    NotOwnerError,
    PoolPausedError,
    RefusalError,
    RequestTooLargeError,
    ShuttingDownError,
    TenantRefusedError,
    UnknownBudgetError,
    UnknownReservationError,
)
from tokenpool._fields import RepeatedLines, log_event
from tokenpool.core import (
    AlertBook,
    Ask,
    Breach,
    BudgetPolicy,
    CalendarPeriods,
    CallShape,
    ChargeTarget,
    Draws,
    InputLimits,
    LimitBook,
    ModelPrice,
    Outcome,
    Pool,
    PoolState,
    PriceTable,
    Reservation,
    ScaleDecision,
    Sizing,
    State,
    Subject,
    SubjectKind,
    TeamPolicy,
    TenantPolicy,
    check_micros,
    check_name,
    check_text,
    corrected_allowance,
    cost_micros,
    hold_cost_micros,
    plan_overrun,
    plan_refund,
)
from tokenpool.engine._clock import Clock
from tokenpool.engine._commands import SettleCommand
from tokenpool.engine._events import Observer, alert_fields
from tokenpool.engine._reach import Reaching
from tokenpool.engine._records import reservation_from_row, reservation_row
from tokenpool.engine._state import BudgetState
from tokenpool.engine._store import MemoryPoolStore, PoolStore
from tokenpool.ledger import (
    ChargedSlot,
    Entry,
    LedgerBatch,
    PoolRow,
    RefusalCount,
    ReservationRow,
    StoredState,
)

logger = logging.getLogger(__name__)

# Nanoseconds per millisecond, for the millisecond fields of the API.
NS_PER_MS = 1_000_000

# Refusals (per budget and reason) and overruns (per budget) get one INFO
# line in this long; the others alike are DEBUG, counted in the next line.
_REPEATED_LINE_INTERVAL_NS = 10 * 1_000_000_000

# Unknown tenants admitted under unknown_tenants = "admit" are remembered up
# to this many, so that hostile names cannot grow memory without bound.
_ADMITTED_CACHE_LIMIT = 10_000

# How long an ended reservation stays whole in memory (wall time): repeats
# that come at once are answered from memory, later ones from the ledger.
ENDED_KEPT_NS = 60 * 1_000_000_000

# Reservation ids are 32 hex digits; anything much longer is not one of ours.
_MAX_RESERVATION_ID_LENGTH = 64

# A retry-after hint is never longer than a day: past that, it says nothing.
_MAX_RETRY_AFTER_NS = 86_400 * 1_000_000_000

# Retry hint for a cap that frees up when one of the tenant's calls ends.
_CAP_RETRY_NS = 1_000_000_000

# Refusal reasons, sent as ErrorInfo.reason (SPEC 12.1).
POOL_EXHAUSTED = "POOL_EXHAUSTED"
QUEUE_FULL = "QUEUE_FULL"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
POOL_PAUSED = "POOL_PAUSED"
POOL_DRAINING = "POOL_DRAINING"

# Refusals for want of tokens (not a cap): what the autoscaler counts.
_SHORTAGES = frozenset({POOL_EXHAUSTED, QUEUE_FULL})


class Recorder(Protocol):
    """The part of the ledger the engine writes and reads through."""

    def submit(self, batch: LedgerBatch) -> Awaitable[int]:
        """Queues a batch for the next group commit; awaiting gives its size."""

    async def load_state(self, *, keep_ended_after_wall_ns: int) -> StoredState:
        """Reads what a restart restores."""

    async def get_reservation(self, reservation_id: str) -> ReservationRow | None:
        """Reads one reservation, however old."""

    async def charged_since(self, wall_ns: int) -> list[ChargedSlot]:
        """Usage charged to ended reservations granted since then."""

    @property
    def failed_commits(self) -> int:
        """Commit groups that failed since the ledger was opened."""


class EngineBase(Reaching):
    """Live state of the engine and the helpers its operations share.

    What a request may reach comes from `_reach`. The operations themselves
    live in `_reserving` (waiting, queues), `_granting` (one grant) and
    `_closing` (settle, release, extend, expiry); `Engine` joins them.
    """

    def __init__(
        self,
        *,
        budgets: Sequence[BudgetPolicy],
        tenants: Sequence[TenantPolicy],
        limits: InputLimits,
        clock: Clock,
        ledger: Recorder,
        store: PoolStore | None = None,
        teams: Sequence[TeamPolicy] = (),
        prices: Sequence[ModelPrice] = (),
        calendar_timezone: str = "UTC",
        observer: Observer | None = None,
        pool_states: Mapping[str, Mapping[Pool, PoolState]] | None = None,
    ) -> None:
        self._clock = clock
        self._observer = observer or Observer()
        self._ledger = ledger
        self._owns_store = store is None
        self._store = store or MemoryPoolStore()
        self._limits = limits
        self._budgets = {policy.name: BudgetState.new(policy) for policy in budgets}
        for name, states in (pool_states or {}).items():
            if name in self._budgets:
                self._budgets[name].pool_states.update(states)
        self._tenants = {tenant.name: tenant for tenant in tenants}
        self._teams = {team.name: team for team in teams}
        self._prices = PriceTable(prices)
        self._calendar_timezone = calendar_timezone
        self._limit_book = LimitBook(CalendarPeriods(calendar_timezone))
        self._admitted: dict[str, TenantPolicy] = {}
        # Sizings by budget and call shape, with the policy that decided them:
        # scoring is exact (Fraction) arithmetic, and callers repeat shapes.
        self._sizings: dict[tuple[str, CallShape], tuple[BudgetPolicy, Sizing]] = {}
        self._reservations: dict[str, Reservation] = {}
        self._commits: dict[str, Awaitable[int]] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._idempotency_busy: dict[tuple[str, str], anyio.Event] = {}
        self._leases: list[tuple[int, str]] = []
        # Ended reservations stay whole only briefly (for repeats that come
        # at once); their idempotency keys stay for the idempotency window.
        self._ended: deque[tuple[int, str]] = deque()
        self._ended_keys: deque[tuple[int, str, str, str]] = deque()
        self._refusals: Counter[tuple[str, str, int, str]] = Counter()
        self._sweep_wake = anyio.Event()
        self._sweep_at: int | None = None
        self._draining = False
        self._degraded = False
        self._failures_seen = ledger.failed_commits
        self._autoscale_wake: anyio.Event | None = None
        self._alerts = AlertBook()
        self._repeated_lines = RepeatedLines(_REPEATED_LINE_INTERVAL_NS)
        # Soft thresholds are looked at only when some tenant or team has one.
        self._alerting = any(
            caps.alert_percent for caps in (*self._tenants.values(), *teams)
        )

    def _check_serving(self) -> None:
        if self._draining:
            raise ShuttingDownError()
        if self._degraded:
            raise LedgerUnavailableError(
                "The ledger could not be written; the daemon refuses new work "
                "until it can record again. Retry shortly."
            )

    def _budget(self, name: str, field: str = "budget") -> BudgetState:
        check_name(field, name)
        budget = self._budgets.get(name)
        if budget is None:
            raise UnknownBudgetError(name, list(self._budgets))
        return budget

    def _tenant(self, name: str, policy: BudgetPolicy) -> TenantPolicy:
        tenant = self._tenants.get(name)
        if tenant is not None:
            return tenant
        if policy.unknown_tenants == "refuse":
            raise TenantRefusedError(name, policy.name)
        admitted = self._admitted.get(name)
        if admitted is None:
            admitted = TenantPolicy(name=name)
            if len(self._admitted) < _ADMITTED_CACHE_LIMIT:
                self._admitted[name] = admitted
        return admitted

    async def _find(self, reservation_id: str, tenant: str) -> Reservation:
        """Looks a reservation up in memory, then in the ledger."""
        check_name("tenant", tenant)
        if not reservation_id:
            raise InvalidFieldError("reservation_id", "must not be empty")
        check_text("reservation_id", reservation_id, _MAX_RESERVATION_ID_LENGTH)
        reservation = self._reservations.get(reservation_id)
        if reservation is None:
            row = await self._ledger.get_reservation(reservation_id)
            if row is not None and row.budget in self._budgets:
                now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
                reservation = reservation_from_row(row, now, wall)
                if reservation.is_open:
                    reservation = None
                else:
                    self._remember(reservation)
        if reservation is None:
            raise UnknownReservationError(reservation_id)
        if reservation.tenant != tenant:
            raise NotOwnerError(reservation_id, tenant)
        return reservation

    async def _durable(self, reservation_id: str) -> None:
        commit = self._commits.get(reservation_id)
        if commit is not None:
            await self._settled(commit)
            # Kept: nothing left to wait for.
            if self._commits.get(reservation_id) is commit:
                del self._commits[reservation_id]

    async def _settled(self, commit: Awaitable[int]) -> None:
        """Waits for a commit; a failed one stops new work until state is rebuilt.

        The ledger's outcome may be awaited by many callers, and a caller
        that is cancelled while waiting does not withdraw the commit.
        """
        with self._observer.ledger_commit() as note:
            try:
                note.batches = await commit
            except LedgerUnavailableError:
                note.failed = True
                self._degrade()
                raise

    def _degrade(self) -> None:
        if not self._degraded:
            logger.error("ledger commit failed; refusing new work until rebuilt")
        self._degraded = True
        self._sweep_wake.set()

    def _refusal(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        pool: Pool,
        sizing: Sizing,
        reason: str,
        now: int,
        *,
        held: int = 0,
    ) -> InsufficientTokensError:
        """The refusal for tokens the pools cannot give now, with a retry hint.

        `held` is what an Extend's reservation holds already: its refusal
        speaks in totals, as Extend's argument does (the total asked, and
        the largest total it could have now). A tenant whose pool is paused
        or draining is told so.
        """
        if budget.pool_states[pool] is not PoolState.ACTIVE:
            return self._stopped(budget, tenant, pool, sizing.tokens + held)
        name = budget.policy.name
        reach = self._reach(budget, tenant, pool, sizing, now)
        queued = budget.queues[pool]
        largest = 0 if len(queued) else reach.largest
        ahead = sum(ticket.tokens for ticket in queued.tickets())
        wanted = min(ahead + sizing.tokens - reach.shared, budget.capacities[pool])
        retry_ns = self._store.ns_until(name, pool, wanted, now)
        if retry_ns is None:
            retry_ns = self._store.ns_until(
                name, Pool.BURST, sizing.tokens - reach.own_available, now
            )
        if retry_ns is None:
            # No refill will ever make room (a pool of capacity 0, say):
            # suggest a window, not a hammering 1 ms.
            retry_ns = budget.policy.window_ns
        self._count_refusal(name, tenant.name, reason)
        log_event(
            logger,
            logging.DEBUG,
            "not enough tokens",
            {
                "budget": name,
                "tenant": tenant.name,
                "pool": pool.value,
                "tokens_requested": sizing.tokens,
                "reason": reason,
                "largest_grantable": largest,
            },
        )
        what = "its queue is full" if reason == QUEUE_FULL else "not enough tokens"
        requested, largest = sizing.tokens + held, largest + held
        # An Extend's refusal names its field: the new total it asked for.
        asked = (
            f"a hold of {requested} tokens (total_tokens)"
            if held
            else f"{requested} tokens"
        )
        return InsufficientTokensError(
            f"Budget {name!r} cannot grant {asked} to tenant "
            f"{tenant.name!r} now ({what} in pool {pool}; largest grantable now: "
            f"{largest}); retry later or ask for less.",
            reason=reason,
            budget=name,
            pool=pool,
            requested=requested,
            largest_grantable=largest,
            retry_after_ns=min(max(retry_ns or 0, NS_PER_MS), _MAX_RETRY_AFTER_NS),
        )

    def _stopped(
        self, budget: BudgetState, tenant: TenantPolicy, pool: Pool, requested: int
    ) -> PoolPausedError:
        """The refusal for a tenant whose pool an operator paused or is draining.

        No refill helps, so the retry hint is the budget's window.
        """
        state = budget.pool_states[pool]
        reason = POOL_DRAINING if state is PoolState.DRAINING else POOL_PAUSED
        self._count_refusal(budget.policy.name, tenant.name, reason)
        return PoolPausedError(
            reason=reason,
            state=state.value,
            budget=budget.policy.name,
            pool=pool,
            requested=requested,
            retry_after_ns=min(budget.policy.window_ns, _MAX_RETRY_AFTER_NS),
        )

    def _ask(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        tokens: int,
        *,
        input_tokens: int,
        model: str,
        draws: Draws = (),
    ) -> Ask:
        """A request as the limit book sees it: whose, where from, what cost."""
        team = self._teams.get(tenant.team) if tenant.team else None
        price = self._prices.price_of(model)
        cost = None
        if price is not None:
            cost = hold_cost_micros(price, input_tokens, tokens - input_tokens)
            check_micros("tokens", cost, model)
        policy = budget.policy
        return Ask(
            budget=policy.name,
            tenant=tenant.name,
            tokens=tokens,
            draws=draws,
            tenant_caps=tenant,
            team=team.name if team else None,
            team_caps=team,
            cost_micros=cost,
            model=model,
            pool_capacities=budget.capacities,
            peak_pool_capacities=self._peak(budget),
            requests_per_minute=policy.requests_per_minute,
            max_concurrent_reservations=policy.max_concurrent_reservations,
        )

    def _limit_refusal(
        self,
        budget: BudgetState,
        tenant: TenantPolicy,
        breach: Breach,
        *,
        requested: int,
    ) -> RefusalError:
        """The refusal for a limit beside the pools (caps, calendar, rate).

        `requested` is the tokens asked for: the breach counts in its own
        unit (tokens, micro-dollars, requests), the wire in tokens.
        """
        name = budget.policy.name
        self._count_refusal(name, tenant.name, breach.reason)
        logger.debug(
            "reserve refused by a limit budget=%s tenant=%s reason=%s subject=%s "
            "limit=%d current=%d requested=%d",
            name,
            tenant.name,
            breach.reason,
            breach.subject,
            breach.limit,
            breach.current,
            breach.requested,
        )
        error = RequestTooLargeError if breach.never else InsufficientTokensError
        retry_ns = None
        if not breach.never:
            # Calendar budgets say when their period ends, however far off;
            # caps that free up when a reservation ends suggest a short wait.
            retry_ns = breach.retry_after_ns or _CAP_RETRY_NS
        return error(
            breach.message,
            reason=breach.reason,
            budget=name,
            pool=breach.pool or tenant.tier.pool,
            requested=requested,
            largest_grantable=breach.largest_grantable,
            retry_after_ns=retry_ns,
        )

    def _price_usage(
        self,
        model: str,
        input_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        output_tokens: int = 0,
    ) -> int:
        """What usage cost in micro-dollars; 0 for a model with no price.

        Raises:
            InvalidFieldError: the cost is more than the ledger can record.
        """
        price = self._prices.price_of(model)
        if price is None:
            return 0
        micros = cost_micros(
            price, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens
        )
        return check_micros("usage", micros, model)

    def _charge_target(self, reservation: Reservation) -> ChargeTarget:
        """Where a reservation's usage counts: its tenant, team and grant periods."""
        periods = self._limit_book.calendar.of(reservation.created_wall_ns)
        subjects = [Subject(SubjectKind.TENANT, reservation.tenant)]
        if reservation.team:
            subjects.append(Subject(SubjectKind.TEAM, reservation.team))
        return ChargeTarget(tuple(subjects), periods.day, periods.month)

    def _count_refusal(self, budget: str, tenant: str, reason: str) -> None:
        state = self._budgets.get(budget)
        if state is not None and state.policy.shadow:
            # Shadow mode grants it anyway: the reservation records the reason.
            return
        minute = self._clock.wall_ns() // 60_000_000_000
        self._refusals[(budget, tenant, minute, reason)] += 1

    def _take_refusals(self) -> list[RefusalCount]:
        counts = [
            RefusalCount(budget, tenant, minute, reason, count)
            for (budget, tenant, minute, reason), count in self._refusals.items()
        ]
        self._refusals.clear()
        return counts

    def _remember(self, reservation: Reservation) -> None:
        self._reservations[reservation.reservation_id] = reservation
        if reservation.idempotency_key:
            key = (reservation.tenant, reservation.idempotency_key)
            self._idempotency[key] = reservation.reservation_id
        if not reservation.is_open:
            self._note_ended(reservation, reservation.ended_wall_ns)

    def _note_ended(self, reservation: Reservation, wall: int) -> None:
        """Schedules an ended reservation, and later its key, to be forgotten."""
        self._ended.append((wall, reservation.reservation_id))
        if reservation.idempotency_key:
            self._ended_keys.append(
                (
                    wall,
                    reservation.tenant,
                    reservation.idempotency_key,
                    reservation.reservation_id,
                )
            )

    def _forget_old(self, wall: int) -> None:
        """Keeps memory for ended reservations small and bounded.

        An ended reservation is dropped from memory `ENDED_KEPT_NS` after it
        ended (a later repeat of its Settle or Release reads it back from
        the ledger); its idempotency key, all a repeated Reserve needs to
        find it, is dropped after the idempotency window.
        """
        horizon = wall - ENDED_KEPT_NS
        while self._ended and self._ended[0][0] < horizon:
            _, reservation_id = self._ended.popleft()
            reservation = self._reservations.get(reservation_id)
            if reservation is not None and not reservation.is_open:
                del self._reservations[reservation_id]
                self._commits.pop(reservation_id, None)

        horizon = wall - self._limits.idempotency_ttl_seconds * 1_000_000_000
        while self._ended_keys and self._ended_keys[0][0] < horizon:
            _, tenant, idempotency_key, reservation_id = self._ended_keys.popleft()
            if self._idempotency.get((tenant, idempotency_key)) == reservation_id:
                del self._idempotency[(tenant, idempotency_key)]

    async def _recall(self, reservation_id: str) -> Reservation | None:
        """An ended reservation, from memory or else from the ledger."""
        reservation = self._reservations.get(reservation_id)
        if reservation is not None:
            return reservation

        row = await self._ledger.get_reservation(reservation_id)
        if row is None or row.budget not in self._budgets:
            return None
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        return reservation_from_row(row, now, wall)

    def _hold(self, budget: BudgetState, reservation: Reservation) -> None:
        """Counts an open reservation's draws in its budget's tallies."""
        budget.open_reservations += 1
        budget.open_by_pool.update({pool for pool, _ in reservation.sources})
        for pool, tokens in reservation.sources:
            budget.in_flight[pool] += tokens
            if pool is not reservation.pool:
                budget.borrowed[reservation.pool] += tokens
                budget.lent[pool] += tokens
            if pool is Pool.BURST:
                budget.burst_by_tenant[reservation.tenant] += tokens
        heapq.heappush(
            self._leases,
            (reservation.lease_expires_mono_ns, reservation.reservation_id),
        )
        if self._sweep_at is not None and reservation.lease_expires_mono_ns < (
            self._sweep_at
        ):
            self._sweep_wake.set()

    def _unhold(self, budget: BudgetState, reservation: Reservation) -> None:
        budget.open_reservations -= 1
        budget.open_by_pool.subtract({pool for pool, _ in reservation.sources})
        for pool, tokens in reservation.sources:
            budget.in_flight[pool] -= tokens
            if pool is not reservation.pool:
                budget.borrowed[reservation.pool] -= tokens
                budget.lent[pool] -= tokens
            if pool is Pool.BURST:
                budget.burst_by_tenant[reservation.tenant] -= tokens
                if budget.burst_by_tenant[reservation.tenant] <= 0:
                    del budget.burst_by_tenant[reservation.tenant]

    def _pool_rows(self, name: str, now: int, wall: int) -> list[PoolRow]:
        return [
            PoolRow(name, pool.value, level.capacity, level.level, level.carry, wall)
            for pool, level in self._store.levels(name, now).items()
        ]

    def _batch(
        self,
        budget: BudgetState,
        entry: Entry,
        reservation: Reservation,
        now: int,
        wall: int,
    ) -> LedgerBatch:
        return LedgerBatch(
            entries=[entry],
            reservations=[reservation_row(reservation)],
            pools=self._pool_rows(budget.policy.name, now, wall),
        )

    def _submit(self, batch: LedgerBatch) -> Awaitable[int]:
        """Queues a batch for group commit; await the result to know it is kept."""
        if self._refusals:
            batch.refusals.extend(self._take_refusals())
        return self._ledger.submit(batch)

    def _finish(
        self,
        budget: BudgetState,
        reservation: Reservation,
        state: State,
        outcome: Outcome,
        now: int,
        wall: int,
        micros: int = 0,
    ) -> None:
        """Ends a hold: gives back the refund, charges any overrun.

        `micros` is what the call cost, charged with the tokens to the
        calendar budgets of the period the reservation was granted in.
        """
        refund = plan_refund(reservation.sources, outcome.refunded)
        self._unhold(budget, reservation)
        self._limit_book.end(reservation.reservation_id, outcome.charged, micros, wall)
        reservation.cost_micros = micros
        self._store.give(budget.policy.name, refund, now)
        for pool, tokens in reservation.sources:
            budget.charged[pool] += tokens
        for pool, tokens in refund:
            budget.charged[pool] -= tokens
        if outcome.overrun:
            self._charge_overrun(budget, reservation.pool, outcome.overrun, now)
        reservation.state = state
        reservation.charged = outcome.charged
        reservation.refunded = outcome.refunded
        reservation.overrun = outcome.overrun
        reservation.ended_wall_ns = wall
        self._note_ended(reservation, wall)

    def _charge_overrun(
        self, budget: BudgetState, pool: Pool, overrun: int, now: int
    ) -> None:
        levels = self._store.levels(budget.policy.name, now)
        floor = -levels[pool].capacity * budget.policy.max_debt_windows
        charge = plan_overrun(
            overrun,
            levels[pool].available,
            levels[Pool.BURST].available,
            debt_room=min(levels[pool].level, 0) - floor,
        )
        counted = charge.from_own + charge.from_burst + charge.debt
        if counted < overrun:
            logger.warning(
                "pool debt at its limit; overrun not counted by the pool budget=%s "
                "pool=%s overrun=%d counted=%d",
                budget.policy.name,
                pool,
                overrun,
                counted,
            )
        self._store.charge(
            budget.policy.name,
            ((pool, charge.from_own + charge.debt), (Pool.BURST, charge.from_burst)),
            now,
        )
        budget.charged[pool] += charge.from_own + charge.debt
        budget.charged[Pool.BURST] += charge.from_burst

    def _raise_alerts(self, reservation: Reservation, wall: int) -> None:
        """Reports soft thresholds its tenant's or team's charges just reached."""
        if not self._alerting:
            return

        subjects: list[tuple[Subject, TenantPolicy | TeamPolicy | None]] = [
            (
                Subject(SubjectKind.TENANT, reservation.tenant),
                self._tenants.get(reservation.tenant),
            )
        ]
        if reservation.team:
            subjects.append(
                (
                    Subject(SubjectKind.TEAM, reservation.team),
                    self._teams.get(reservation.team),
                )
            )
        for subject, caps in subjects:
            if caps is None or not caps.alert_percent:
                continue
            usage = self._limit_book.usage(subject, wall)
            for alert in self._alerts.check(subject, caps, usage):
                log_event(logger, logging.WARNING, "budget alert", alert_fields(alert))
                self._observer.budget_alert(alert)

    def _mark_alerts(self, wall: int) -> None:
        """Counts thresholds already reached as raised, so a restart is quiet."""
        if not self._alerting:
            return

        configured: list[tuple[Subject, TenantPolicy | TeamPolicy]] = [
            (Subject(SubjectKind.TENANT, tenant.name), tenant)
            for tenant in self._tenants.values()
        ]
        configured += [
            (Subject(SubjectKind.TEAM, team.name), team)
            for team in self._teams.values()
        ]
        for subject, caps in configured:
            if caps.alert_percent:
                self._alerts.check(subject, caps, self._limit_book.usage(subject, wall))

    def _learn(self, budget: BudgetState, reservation: Reservation) -> None:
        """Feeds a settled reservation's use to its budget's estimate book."""
        if reservation.response_cache_hit:
            return
        held = corrected_allowance(
            reservation.output_allowance, reservation.output_factor
        )
        if reservation.hold < held:
            # An Extend shrank the hold below its output allowance: there is
            # no telling input from output any more, so it is not learned.
            return
        budget.estimates.observe(
            reservation.tenant,
            reservation.task_type or "other",
            hold=reservation.hold,
            output_allowance=reservation.output_allowance,
            used=reservation.used,
            incomplete=reservation.incomplete,
            applied_factor=reservation.output_factor,
        )

    def _serve_queues(self, budget: BudgetState) -> None:
        """Grants queued waiters that fit now; `_reserving` implements it."""
        raise NotImplementedError

    def _provider_decision(
        self, budget: BudgetState, command: SettleCommand
    ) -> ScaleDecision | None:
        """What a settle's provider figures call for; `_autoscaling` implements it."""
        raise NotImplementedError

    def _enact(self, budget: BudgetState, decision: ScaleDecision) -> Awaitable[int]:
        """Records and applies a decision; `_autoscaling` implements it."""
        raise NotImplementedError

    def _note_wait(self, name: str, waited_ms: int) -> None:
        """Counts how long a granted request waited, for the interval's p95."""
        budget = self._budgets.get(name)
        if budget is not None and budget.scaler is not None:
            budget.interval_waits.append(waited_ms)

    def _note_refusal(self, name: str, reason: str, waited_ms: int) -> None:
        """Counts a refusal for want of tokens, and its wait if it waited."""
        budget = self._budgets.get(name)
        if budget is None or budget.scaler is None or reason not in _SHORTAGES:
            return
        budget.interval_refusals += 1
        if waited_ms > 0:
            budget.interval_waits.append(waited_ms)
