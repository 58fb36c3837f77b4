"""The engine: applies the core's rules to live state and records every change."""

from __future__ import annotations

import hashlib
import heapq
import logging
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

import anyio

from tokenpool._errors import (
    ConflictError,
    InsufficientTokensError,
    InvalidFieldError,
    LedgerError,
    LedgerUnavailableError,
    NotOwnerError,
    RefusalError,
    RequestTooLargeError,
    ReservationEndedError,
    ShuttingDownError,
    TenantRefusedError,
    UnknownBudgetError,
    UnknownReservationError,
)
from tokenpool.core import (
    POOL_ORDER,
    BudgetPolicy,
    CallShape,
    Draws,
    InputLimits,
    Outcome,
    Pool,
    Reach,
    Reservation,
    Sizing,
    State,
    TenantPolicy,
    TokenBucket,
    account,
    burst_limit,
    check_count,
    check_labels,
    check_name,
    check_range,
    check_text,
    check_total,
    merge,
    plan_draws,
    plan_overrun,
    plan_refund,
    size_call,
    split_capacity,
    subtract,
    usage_tokens,
)
from tokenpool.engine._clock import Alarm, Clock
from tokenpool.engine._commands import (
    BudgetView,
    ExtendCommand,
    PoolView,
    ReserveCommand,
    SettleCommand,
    TenantView,
)
from tokenpool.engine._records import reservation_from_row, reservation_row
from tokenpool.engine._store import MemoryPoolStore, PoolLevel, PoolStore
from tokenpool.ledger import (
    Entry,
    EntryKind,
    LedgerBatch,
    PoolRow,
    RefusalCount,
    ReservationRow,
    StoredState,
)

logger = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000

# The sweeper looks again at least this often (clock time), to flush
# refusal counts and forget old reservations even when no lease is due.
_SWEEP_IDLE_NS = 1_000_000_000

# A waiter whose pool cannot say when it will fit is looked at again this
# often; settles and releases wake the queue sooner.
_RETRY_POLL_NS = 100 * _NS_PER_MS

# How much sooner than the caller's deadline a wait ends (seconds, at most).
_DEADLINE_MARGIN_S = 0.05

# After a failed commit, how long to let in-flight commits finish before
# state is rebuilt from the database (seconds of real time).
_RECOVERY_PAUSE_S = 0.2

# Unknown tenants admitted under unknown_tenants = "admit" are remembered up
# to this many, so that hostile names cannot grow memory without bound.
_ADMITTED_CACHE_LIMIT = 10_000

# Refusal reasons, sent as ErrorInfo.reason (SPEC 12.1).
POOL_EXHAUSTED = "POOL_EXHAUSTED"
QUEUE_FULL = "QUEUE_FULL"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"


class Recorder(Protocol):
    """The part of the ledger the engine writes and reads through."""

    def submit(self, batch: LedgerBatch) -> Awaitable[None]:
        """Queues a batch for the next group commit."""

    async def load_state(self, *, keep_ended_after_wall_ns: int) -> StoredState:
        """Reads what a restart restores."""

    async def get_reservation(self, reservation_id: str) -> ReservationRow | None:
        """Reads one reservation, however old."""

    @property
    def failed_commits(self) -> int:
        """Commit groups that failed since the ledger was opened."""


@dataclass(eq=False, slots=True)
class _Waiter:
    """A Reserve waiting in a pool's queue for tokens."""

    command: ReserveCommand
    tenant: TenantPolicy
    sizing: Sizing
    lease_ns: int
    fingerprint: str
    arrived_ns: int
    event: anyio.Event = field(default_factory=anyio.Event)
    reservation: Reservation | None = None
    commit: Awaitable[None] | None = None


@dataclass(slots=True)
class _Budget:
    """A budget's live state beside its pool levels."""

    policy: BudgetPolicy
    capacities: dict[Pool, int]
    queues: dict[Pool, deque[_Waiter]]
    in_flight: dict[Pool, int]
    borrowed: dict[Pool, int]
    burst_by_tenant: Counter[str]
    charged: dict[Pool, int]
    open_reservations: int = 0
    alarm: Alarm | None = None
    alarm_at: int = 0

    @classmethod
    def new(cls, policy: BudgetPolicy) -> _Budget:
        return cls(
            policy=policy,
            capacities=split_capacity(policy.capacity_tokens, policy.shares.by_pool()),
            queues={Pool.BASIC: deque(), Pool.PRIORITY: deque()},
            in_flight=dict.fromkeys(POOL_ORDER, 0),
            borrowed=dict.fromkeys(POOL_ORDER, 0),
            burst_by_tenant=Counter(),
            charged=dict.fromkeys(POOL_ORDER, 0),
        )


def _fingerprint(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


class Engine:
    """Grants, settles and expires reservations; the daemon's single authority.

    Every change happens synchronously on the event loop (so no two requests
    see the same tokens), is added to a ledger batch, and is answered only
    once that batch is committed.
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
    ) -> None:
        self._clock = clock
        self._ledger = ledger
        self._owns_store = store is None
        self._store = store or MemoryPoolStore()
        self._limits = limits
        self._budgets = {policy.name: _Budget.new(policy) for policy in budgets}
        self._tenants = {tenant.name: tenant for tenant in tenants}
        self._admitted: dict[str, TenantPolicy] = {}
        self._reservations: dict[str, Reservation] = {}
        self._commits: dict[str, Awaitable[None]] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._idempotency_busy: dict[tuple[str, str], anyio.Event] = {}
        self._leases: list[tuple[int, str]] = []
        self._ended: deque[tuple[int, str]] = deque()
        self._refusals: Counter[tuple[str, str, int, str]] = Counter()
        self._sweep_wake = anyio.Event()
        self._sweep_at: int | None = None
        self._draining = False
        self._degraded = False
        self._failures_seen = ledger.failed_commits

    # -- lifecycle -------------------------------------------------------

    async def restore(self) -> None:
        """Rebuilds pools and reservations from the ledger (SPEC 12.8, 12.10)."""
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        ttl_ns = self._limits.idempotency_ttl_seconds * 1_000_000_000
        state = await self._ledger.load_state(keep_ended_after_wall_ns=wall - ttl_ns)

        stored: dict[str, dict[Pool, PoolLevel]] = {}
        for row in state.pools:
            if row.budget in self._budgets:
                stored.setdefault(row.budget, {})[Pool(row.pool)] = _refilled(
                    row, self._budgets[row.budget].policy.window_ns, wall
                )
        for name, budget in self._budgets.items():
            self._store.add_budget(
                name, budget.capacities, budget.policy.window_ns, now, stored.get(name)
            )

        reopened = 0
        for stored_row in state.reservations:
            reservation = reservation_from_row(stored_row, now, wall)
            if reservation.budget not in self._budgets and reservation.is_open:
                logger.warning(
                    "reservation of an unconfigured budget left alone "
                    "reservation_id=%s budget=%s",
                    reservation.reservation_id,
                    reservation.budget,
                )
                continue
            self._remember(reservation)
            if reservation.is_open:
                self._hold(self._budgets[reservation.budget], reservation)
                reopened += 1
        logger.info(
            "state restored budgets=%d open_reservations=%d remembered=%d",
            len(self._budgets),
            reopened,
            len(self._reservations),
        )

    def begin_shutdown(self) -> None:
        """Refuses new work and sends every waiter away."""
        self._draining = True
        for budget in self._budgets.values():
            for queue in budget.queues.values():
                while queue:
                    queue.popleft().event.set()

    async def run_sweeper(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Expires reservations whose lease ended, and keeps memory bounded."""
        task_status.started()
        while True:
            if self._ledger.failed_commits != self._failures_seen:
                self._failures_seen = self._ledger.failed_commits
                self._degrade()
            if self._degraded:
                await self._recover()
            now = self._clock.monotonic_ns()
            batch = self._expire_due(now)
            self._forget_old(self._clock.wall_ns())
            if self._refusals and batch.is_empty():
                batch.refusals.extend(self._take_refusals())
            if not batch.is_empty():
                try:
                    await self._submit(batch)
                except LedgerUnavailableError as exc:
                    logger.warning("expiry not recorded, will retry error=%s", exc)

            wake_at = now + _SWEEP_IDLE_NS
            if self._leases:
                wake_at = min(wake_at, self._leases[0][0])
            self._sweep_wake = anyio.Event()
            self._sweep_at = wake_at
            alarm = self._clock.call_at(wake_at, self._sweep_wake.set)
            try:
                await self._sweep_wake.wait()
            finally:
                alarm.cancel()

    async def _recover(self) -> None:
        """Reloads state from the ledger after a commit failed.

        Changes whose commit failed were applied in memory but never
        recorded; the database holds the truth, so memory is rebuilt from
        it. Waiters are sent away; new work is refused until this is done.
        """
        logger.warning("ledger failed; rebuilding state from the database")
        await anyio.sleep(_RECOVERY_PAUSE_S)
        for budget in self._budgets.values():
            if budget.alarm is not None:
                budget.alarm.cancel()
            for queue in budget.queues.values():
                while queue:
                    queue.popleft().event.set()
        policies = [budget.policy for budget in self._budgets.values()]
        self._budgets = {policy.name: _Budget.new(policy) for policy in policies}
        self._store = MemoryPoolStore() if self._owns_store else self._store
        self._reservations.clear()
        self._commits.clear()
        self._idempotency.clear()
        self._leases.clear()
        self._ended.clear()
        try:
            await self.restore()
        except LedgerError as exc:
            logger.warning("ledger still unreadable error=%s", exc)
            return
        self._degraded = False
        logger.info("state rebuilt from the ledger; serving again")

    # -- reserve ---------------------------------------------------------

    async def reserve(
        self, command: ReserveCommand, *, deadline_s: float | None = None
    ) -> Reservation:
        """Grants tokens now, after a wait, from a fallback budget, or refuses.

        Raises:
            RefusalError: no budget could grant it (nothing is held).
        """
        self._check_serving()
        check_name("tenant", command.tenant)
        _check_request(command)
        for name in (command.budget, *command.fallback_budgets):
            self._budget(name)
        check_labels(command.labels, self._limits)
        fingerprint = _fingerprint(
            command.budget,
            command.tokens,
            command.input_tokens,
            command.input_chars,
            command.max_output_tokens,
            command.model,
            command.task_type,
            command.output_detail,
            command.structured_output,
            command.context_items,
            command.urgency,
            command.lease_ms,
            command.fallback_budgets,
            sorted(command.labels.items()),
        )

        key = (command.tenant, command.idempotency_key)
        if not command.idempotency_key:
            return await self._reserve_anywhere(command, fingerprint, deadline_s)
        while key in self._idempotency_busy:
            await self._idempotency_busy[key].wait()
        earlier = self._idempotency.get(key)
        if earlier is not None:
            return await self._repeat_reserve(earlier, command, fingerprint)

        self._idempotency_busy[key] = anyio.Event()
        try:
            return await self._reserve_anywhere(command, fingerprint, deadline_s)
        finally:
            self._idempotency_busy.pop(key).set()

    async def _repeat_reserve(
        self, reservation_id: str, command: ReserveCommand, fingerprint: str
    ) -> Reservation:
        reservation = self._reservations[reservation_id]
        if reservation.request_fingerprint != fingerprint:
            raise ConflictError(
                f"idempotency_key {command.idempotency_key!r} was used for a "
                "Reserve with different fields; use a new key for a new request."
            )
        await self._durable(reservation_id)
        return reservation

    async def _reserve_anywhere(
        self, command: ReserveCommand, fingerprint: str, deadline_s: float | None
    ) -> Reservation:
        first: RefusalError | None = None
        for index, name in enumerate((command.budget, *command.fallback_budgets)):
            try:
                return await self._reserve_in(
                    self._budget(name),
                    command,
                    fingerprint,
                    may_wait=index == 0,
                    deadline_s=deadline_s,
                )
            except RefusalError as exc:
                first = first or exc
        assert first is not None
        raise first

    async def _reserve_in(
        self,
        budget: _Budget,
        command: ReserveCommand,
        fingerprint: str,
        *,
        may_wait: bool,
        deadline_s: float | None,
    ) -> Reservation:
        policy = budget.policy
        tenant = self._tenant(command.tenant, policy)
        sizing = size_call(_shape(command), policy)
        check_count("tokens", sizing.tokens)
        wait_ns = (
            check_count("max_wait_ms", command.max_wait_ms, maximum=policy.max_wait_ms)
            * _NS_PER_MS
        )
        lease_ms = check_count(
            "lease_ms", command.lease_ms, maximum=int(policy.max_lease_seconds * 1000)
        )
        lease_ns = lease_ms * _NS_PER_MS or int(policy.lease_seconds * 1e9)
        pool = tenant.tier.pool

        ceiling = self._ceiling(budget, pool, sizing)
        if sizing.tokens > ceiling:
            self._count_refusal(policy.name, tenant.name, REQUEST_TOO_LARGE)
            raise RequestTooLargeError(
                f"Budget {policy.name!r} can never grant {sizing.tokens} tokens "
                f"to tenant {tenant.name!r} (at most {ceiling} from pool {pool} and "
                "burst); split the call or lower max_output_tokens.",
                reason=REQUEST_TOO_LARGE,
                budget=policy.name,
                pool=pool,
                requested=sizing.tokens,
                largest_grantable=ceiling,
                retry_after_ns=None,
            )

        now = self._clock.monotonic_ns()
        queue = budget.queues[pool]
        if not queue:
            draws = plan_draws(
                sizing.tokens, self._reach(budget, tenant, pool, sizing, now)
            )
            if draws and self._store.take(policy.name, draws, now):
                reservation, batch = self._open(
                    budget,
                    tenant,
                    command,
                    sizing,
                    draws,
                    lease_ns,
                    fingerprint,
                    now,
                    now,
                )
                return await self._answer_grant(reservation, self._submit(batch))

        if not may_wait or wait_ns == 0:
            raise self._refusal(budget, tenant, pool, sizing, POOL_EXHAUSTED, now)
        if len(queue) >= policy.queue_limit:
            raise self._refusal(budget, tenant, pool, sizing, QUEUE_FULL, now)
        waiter = _Waiter(command, tenant, sizing, lease_ns, fingerprint, now)
        return await self._wait(budget, waiter, now + wait_ns, deadline_s)

    async def _wait(
        self, budget: _Budget, waiter: _Waiter, until_ns: int, deadline_s: float | None
    ) -> Reservation:
        pool = waiter.tenant.tier.pool
        queue = budget.queues[pool]
        queue.append(waiter)
        self._schedule_queue(budget, waiter.arrived_ns)
        alarm = self._clock.call_at(until_ns, lambda: self._give_up(budget, waiter))
        logger.debug(
            "reserve queued budget=%s tenant=%s tokens=%d position=%d",
            budget.policy.name,
            waiter.tenant.name,
            waiter.sizing.tokens,
            len(queue),
        )

        # End the wait a little before the call's deadline, so the refusal
        # reaches a caller that is still listening.
        if deadline_s is not None:
            deadline_s -= min(_DEADLINE_MARGIN_S, deadline_s * 0.05)
        try:
            with anyio.move_on_after(deadline_s) if deadline_s else nullcontext():
                await waiter.event.wait()
        except BaseException:
            alarm.cancel()
            self._leave_queue(budget, waiter)
            if waiter.reservation is not None:
                self._undo(waiter.reservation)
            raise
        alarm.cancel()
        # The call's own deadline came first: leave the queue as refused.
        self._leave_queue(budget, waiter)

        if waiter.reservation is None or waiter.commit is None:
            self._check_serving()
            now = self._clock.monotonic_ns()
            raise self._refusal(
                budget, waiter.tenant, pool, waiter.sizing, POOL_EXHAUSTED, now
            )
        return await self._answer_grant(waiter.reservation, waiter.commit)

    async def _answer_grant(
        self, reservation: Reservation, commit: Awaitable[None]
    ) -> Reservation:
        try:
            await self._settled(commit)
        except LedgerUnavailableError:
            raise
        except BaseException:
            self._undo(reservation)
            raise
        return reservation

    def _give_up(self, budget: _Budget, waiter: _Waiter) -> None:
        if waiter.reservation is None:
            self._leave_queue(budget, waiter)
            waiter.event.set()

    def _leave_queue(self, budget: _Budget, waiter: _Waiter) -> None:
        queue = budget.queues[waiter.tenant.tier.pool]
        if waiter in queue:
            was_head = queue[0] is waiter
            queue.remove(waiter)
            if was_head:
                self._serve_queues(budget)

    def _serve_queues(self, budget: _Budget) -> None:
        """Grants waiters in arrival order while the head of each queue fits."""
        now = self._clock.monotonic_ns()
        name = budget.policy.name
        for pool, queue in budget.queues.items():
            while queue:
                waiter = queue[0]
                reach = self._reach(budget, waiter.tenant, pool, waiter.sizing, now)
                draws = plan_draws(waiter.sizing.tokens, reach)
                if draws is None or not self._store.take(name, draws, now):
                    break
                queue.popleft()
                waiter.reservation, batch = self._open(
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
                waiter.commit = self._submit(batch)
                waiter.event.set()
        self._schedule_queue(budget, now)

    def _schedule_queue(self, budget: _Budget, now: int) -> None:
        """Sets an alarm for when refill may let a queue's head through."""
        wake_at: int | None = None
        for pool, queue in budget.queues.items():
            if not queue:
                continue
            head = queue[0]
            reach = self._reach(budget, head.tenant, pool, head.sizing, now)
            waits = [_RETRY_POLL_NS]
            own = self._store.ns_until(
                budget.policy.name, pool, head.sizing.tokens - reach.burst_usable, now
            )
            if own is not None:
                waits.append(own)
            from_burst = head.sizing.tokens - reach.own_available
            if from_burst <= reach.burst_room:
                burst = self._store.ns_until(
                    budget.policy.name, Pool.BURST, from_burst, now
                )
                if burst is not None:
                    waits.append(burst)
            due = now + max(_NS_PER_MS, min(waits))
            wake_at = due if wake_at is None else min(wake_at, due)

        if wake_at is None or (budget.alarm is not None and budget.alarm_at <= wake_at):
            return
        if budget.alarm is not None:
            budget.alarm.cancel()
        budget.alarm_at = wake_at
        budget.alarm = self._clock.call_at(
            wake_at, lambda: self._on_queue_alarm(budget)
        )

    def _on_queue_alarm(self, budget: _Budget) -> None:
        budget.alarm = None
        self._serve_queues(budget)

    def _open(
        self,
        budget: _Budget,
        tenant: TenantPolicy,
        command: ReserveCommand,
        sizing: Sizing,
        draws: Draws,
        lease_ns: int,
        fingerprint: str,
        now: int,
        arrived_ns: int,
    ) -> tuple[Reservation, LedgerBatch]:
        """Creates a granted reservation whose tokens were just taken."""
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
            waited_ms=(now - arrived_ns) // _NS_PER_MS,
            idempotency_key=command.idempotency_key,
            request_fingerprint=fingerprint,
            model=command.model,
            labels=dict(command.labels),
        )
        self._remember(reservation)
        self._hold(budget, reservation)
        logger.debug(
            "reserve granted budget=%s tenant=%s reservation_id=%s tokens=%d "
            "sources=%s waited_ms=%d",
            reservation.budget,
            reservation.tenant,
            reservation.reservation_id,
            reservation.hold,
            reservation.sources,
            reservation.waited_ms,
        )
        entry = Entry(
            kind=EntryKind.RESERVE,
            at_wall_ns=wall,
            budget=reservation.budget,
            tenant=reservation.tenant,
            reservation_id=reservation.reservation_id,
            pool=reservation.pool,
            tokens=reservation.hold,
            detail={
                "sources": [[pool, tokens] for pool, tokens in draws],
                "waited_ms": reservation.waited_ms,
                "complexity_score": sizing.complexity_score,
                "multiplier": sizing.multiplier,
                "model": command.model,
                "labels": reservation.labels,
            },
        )
        return reservation, self._batch(budget, entry, reservation, now, wall)

    # -- settle, release, extend, expire ---------------------------------

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
        if command.response_cache_hit and any(figures[:4]):
            raise InvalidFieldError(
                "response_cache_hit",
                "a response-cache hit carries no usage; send the token counts as 0",
            )
        reservation = await self._find(command.reservation_id, command.tenant)
        fingerprint = _fingerprint(
            "settle", *figures[:4], command.incomplete, command.response_cache_hit
        )
        if reservation.state is State.EXPIRED:
            return await self._settle_late(reservation, command, fingerprint)
        if not reservation.is_open:
            return await self._repeat_end(reservation, State.SETTLED, fingerprint)

        policy = self._budgets[reservation.budget].policy
        used = 0
        if not command.response_cache_hit:
            used = _used(command, policy)
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
        if outcome.overrun * 100 > reservation.hold * policy.overrun_limit_percent:
            detail["violation"] = True
            logger.warning(
                "overrun beyond limit budget=%s tenant=%s reservation_id=%s "
                "hold=%d used=%d",
                reservation.budget,
                reservation.tenant,
                reservation.reservation_id,
                reservation.hold,
                outcome.charged,
            )
        return await self._end(
            reservation, State.SETTLED, EntryKind.SETTLE, outcome, fingerprint, detail
        )

    async def release(
        self, reservation_id: str, tenant: str, billed: int
    ) -> Reservation:
        """Ends a reservation whose call never happened; billed input is charged."""
        self._check_serving()
        check_count("billed_input_tokens", billed)
        reservation = await self._find(reservation_id, tenant)
        fingerprint = _fingerprint("release", billed)
        if not reservation.is_open:
            return await self._repeat_end(reservation, State.RELEASED, fingerprint)

        outcome = account(reservation.hold, billed)
        detail: dict[str, object] = {"billed_input_tokens": billed}
        return await self._end(
            reservation, State.RELEASED, EntryKind.RELEASE, outcome, fingerprint, detail
        )

    async def _repeat_end(
        self, reservation: Reservation, state: State, fingerprint: str
    ) -> Reservation:
        if reservation.state is state and reservation.end_fingerprint == fingerprint:
            await self._durable(reservation.reservation_id)
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
        used = _used(command, budget.policy)
        extra = max(0, used - reservation.charged)
        if not reservation.end_fingerprint:
            reservation.end_fingerprint = fingerprint
            if extra:
                now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
                self._charge_overrun(budget, reservation.pool, extra, now)
                reservation.charged += extra
                reservation.overrun += extra
                entry = Entry(
                    kind=EntryKind.OVERRUN,
                    at_wall_ns=wall,
                    budget=reservation.budget,
                    tenant=reservation.tenant,
                    reservation_id=reservation.reservation_id,
                    pool=reservation.pool,
                    charged=extra,
                    overrun=extra,
                    detail={"late_settle": True, "used": used},
                )
                batch = self._batch(budget, entry, reservation, now, wall)
                self._commits[reservation.reservation_id] = self._submit(batch)
        await self._durable(reservation.reservation_id)
        raise ReservationEndedError(
            reservation.reservation_id,
            "expired",
            f"its lease ended before this settle; {extra} tokens of usage beyond "
            "what expiry charged were recorded as overrun.",
        )

    async def _end(
        self,
        reservation: Reservation,
        state: State,
        kind: EntryKind,
        outcome: Outcome,
        fingerprint: str,
        detail: dict[str, object],
    ) -> Reservation:
        budget = self._budgets[reservation.budget]
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        self._finish(budget, reservation, state, outcome, now, wall)
        reservation.end_fingerprint = fingerprint
        logger.debug(
            "%s budget=%s tenant=%s reservation_id=%s charged=%d refunded=%d "
            "overrun=%d",
            kind.value,
            reservation.budget,
            reservation.tenant,
            reservation.reservation_id,
            outcome.charged,
            outcome.refunded,
            outcome.overrun,
        )
        entry = Entry(
            kind=kind,
            at_wall_ns=wall,
            budget=reservation.budget,
            tenant=reservation.tenant,
            reservation_id=reservation.reservation_id,
            pool=reservation.pool,
            tokens=-reservation.hold,
            charged=outcome.charged,
            refunded=outcome.refunded,
            overrun=outcome.overrun,
            detail=detail,
        )
        batch = self._batch(budget, entry, reservation, now, wall)
        self._commits[reservation.reservation_id] = self._submit(batch)
        self._serve_queues(budget)
        await self._durable(reservation.reservation_id)
        return reservation

    def _finish(
        self,
        budget: _Budget,
        reservation: Reservation,
        state: State,
        outcome: Outcome,
        now: int,
        wall: int,
    ) -> None:
        """Ends a hold: gives back the refund, charges any overrun."""
        refund = plan_refund(reservation.sources, outcome.refunded)
        self._unhold(budget, reservation)
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
        self._ended.append((wall, reservation.reservation_id))

    def _charge_overrun(
        self, budget: _Budget, pool: Pool, overrun: int, now: int
    ) -> None:
        levels = self._store.levels(budget.policy.name, now)
        charge = plan_overrun(
            overrun, levels[pool].available, levels[Pool.BURST].available
        )
        self._store.charge(
            budget.policy.name,
            ((pool, charge.from_own + charge.debt), (Pool.BURST, charge.from_burst)),
            now,
        )
        budget.charged[pool] += charge.from_own + charge.debt
        budget.charged[Pool.BURST] += charge.from_burst

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
        self._unhold(budget, reservation)
        if delta > 0:
            extra = Sizing(delta, sizing.complexity_score, sizing.multiplier)
            draws = plan_draws(
                delta, self._reach(budget, tenant, reservation.pool, extra, now)
            )
            if draws is None or not self._store.take(policy.name, draws, now):
                self._hold(budget, reservation)
                raise self._refusal(
                    budget, tenant, reservation.pool, extra, POOL_EXHAUSTED, now
                )
            reservation.sources = merge(reservation.sources, draws)
        elif delta < 0:
            refund = plan_refund(reservation.sources, -delta)
            self._store.give(policy.name, refund, now)
            reservation.sources = subtract(reservation.sources, refund)
        reservation.hold = total
        reservation.lease_expires_wall_ns = lease_wall
        reservation.lease_expires_mono_ns = now + (lease_wall - wall)
        self._hold(budget, reservation)

        entry = Entry(
            kind=EntryKind.EXTEND,
            at_wall_ns=wall,
            budget=reservation.budget,
            tenant=reservation.tenant,
            reservation_id=reservation.reservation_id,
            pool=reservation.pool,
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
        return reservation

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
            self._finish(budget, reservation, State.EXPIRED, outcome, now, wall)
            logger.info(
                "reservation expired budget=%s tenant=%s reservation_id=%s charged=%d",
                reservation.budget,
                reservation.tenant,
                reservation_id,
                outcome.charged,
            )
            batch.entries.append(
                Entry(
                    kind=EntryKind.EXPIRE,
                    at_wall_ns=wall,
                    budget=reservation.budget,
                    tenant=reservation.tenant,
                    reservation_id=reservation_id,
                    pool=reservation.pool,
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

    def _undo(self, reservation: Reservation) -> None:
        """Takes back a grant whose caller left before it was answered."""
        if not reservation.is_open:
            return
        budget = self._budgets[reservation.budget]
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        outcome = Outcome(0, reservation.hold, 0)
        self._finish(budget, reservation, State.UNDONE, outcome, now, wall)
        logger.warning(
            "grant undone, caller left budget=%s tenant=%s reservation_id=%s",
            reservation.budget,
            reservation.tenant,
            reservation.reservation_id,
        )
        entry = Entry(
            kind=EntryKind.UNDO,
            at_wall_ns=wall,
            budget=reservation.budget,
            tenant=reservation.tenant,
            reservation_id=reservation.reservation_id,
            pool=reservation.pool,
            tokens=-reservation.hold,
            refunded=reservation.hold,
        )
        commit = self._submit(self._batch(budget, entry, reservation, now, wall))
        self._commits[reservation.reservation_id] = commit
        self._serve_queues(budget)

    # -- reads -----------------------------------------------------------

    def budget_names(self) -> list[str]:
        """Every configured budget, in configuration order."""
        return list(self._budgets)

    def budget_status(self, name: str) -> BudgetView:
        """A budget's capacity, pools and holds as they stand now."""
        budget = self._budget(name)
        levels = self._store.levels(name, self._clock.monotonic_ns())
        shares = budget.policy.shares.by_pool()
        pools = tuple(
            PoolView(
                name=pool,
                share_percent=shares[pool],
                capacity_tokens=levels[pool].capacity,
                available_tokens=levels[pool].available,
                in_flight_tokens=budget.in_flight[pool],
                debt_tokens=levels[pool].debt,
                waiting=len(budget.queues.get(pool, ())),
                lent_tokens=budget.in_flight[Pool.BURST] if pool is Pool.BURST else 0,
                borrowed_tokens=budget.borrowed[pool],
                charged_tokens=budget.charged[pool],
            )
            for pool in POOL_ORDER
        )
        return BudgetView(
            name=name,
            capacity_tokens=sum(level.capacity for level in levels.values()),
            window_seconds=budget.policy.window_seconds,
            pools=pools,
            open_reservations=budget.open_reservations,
        )

    def tenant_status(self, name: str) -> TenantView:
        """A tenant's tier and what it holds now."""
        check_name("tenant", name)
        tenant = self._tenants.get(name) or TenantPolicy(name=name)
        held = [
            r for r in self._reservations.values() if r.is_open and r.tenant == name
        ]
        return TenantView(
            name=name,
            tier=tenant.tier.value,
            weight=tenant.weight,
            configured=name in self._tenants,
            open_reservations=len(held),
            in_flight_tokens=sum(r.hold for r in held),
        )

    def reservations(
        self, *, budget: str = "", tenant: str = "", limit: int = 100
    ) -> list[Reservation]:
        """Open reservations, newest first, optionally of one budget or tenant."""
        found = [
            r
            for r in reversed(self._reservations.values())
            if r.is_open
            and (not budget or r.budget == budget)
            and (not tenant or r.tenant == tenant)
        ]
        return found[:limit]

    @property
    def waiting(self) -> int:
        """Requests queued for tokens over every budget."""
        return sum(
            len(queue) for b in self._budgets.values() for queue in b.queues.values()
        )

    # -- helpers ---------------------------------------------------------

    def _check_serving(self) -> None:
        if self._draining:
            raise ShuttingDownError()
        if self._degraded:
            raise LedgerUnavailableError(
                "The ledger could not be written; the daemon refuses new work "
                "until it can record again. Retry shortly."
            )

    def _budget(self, name: str) -> _Budget:
        check_name("budget", name)
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
        if not reservation_id or len(reservation_id) > 64:
            raise InvalidFieldError("reservation_id", "must be 1 to 64 characters")
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

    def _reach(
        self,
        budget: _Budget,
        tenant: TenantPolicy,
        pool: Pool,
        sizing: Sizing,
        now: int,
    ) -> Reach:
        levels = self._store.levels(budget.policy.name, now)
        limit = burst_limit(
            budget.capacities[Pool.BURST], _burst_percent(budget, sizing)
        )
        return Reach(
            own_pool=pool,
            own_available=levels[pool].available,
            burst_available=levels[Pool.BURST].available,
            burst_room=limit - budget.burst_by_tenant[tenant.name],
        )

    def _ceiling(self, budget: _Budget, pool: Pool, sizing: Sizing) -> int:
        """The most the budget could ever grant one request from this pool."""
        policy = budget.policy
        peak = split_capacity(policy.peak_capacity, policy.shares.by_pool())
        return peak[pool] + burst_limit(
            peak[Pool.BURST], _burst_percent(budget, sizing)
        )

    def _refusal(
        self,
        budget: _Budget,
        tenant: TenantPolicy,
        pool: Pool,
        sizing: Sizing,
        reason: str,
        now: int,
    ) -> InsufficientTokensError:
        name = budget.policy.name
        reach = self._reach(budget, tenant, pool, sizing, now)
        queued = budget.queues[pool]
        largest = 0 if queued else reach.largest
        ahead = sum(w.sizing.tokens for w in queued)
        wanted = min(
            ahead + sizing.tokens - reach.burst_usable, budget.capacities[pool]
        )
        retry_ns = self._store.ns_until(name, pool, wanted, now)
        if retry_ns is None:
            retry_ns = self._store.ns_until(
                name, Pool.BURST, sizing.tokens - reach.own_available, now
            )
        self._count_refusal(name, tenant.name, reason)
        logger.debug(
            "reserve refused budget=%s tenant=%s tokens=%d reason=%s largest=%d",
            name,
            tenant.name,
            sizing.tokens,
            reason,
            largest,
        )
        what = "its queue is full" if reason == QUEUE_FULL else "not enough tokens"
        return InsufficientTokensError(
            f"Budget {name!r} cannot grant {sizing.tokens} tokens to tenant "
            f"{tenant.name!r} now ({what} in pool {pool}; largest grantable now: "
            f"{largest}); retry later or ask for less.",
            reason=reason,
            budget=name,
            pool=pool,
            requested=sizing.tokens,
            largest_grantable=largest,
            retry_after_ns=max(retry_ns or 0, _NS_PER_MS),
        )

    def _count_refusal(self, budget: str, tenant: str, reason: str) -> None:
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
            self._ended.append((reservation.ended_wall_ns, reservation.reservation_id))

    def _forget_old(self, wall: int) -> None:
        """Drops ended reservations older than the idempotency window."""
        horizon = wall - self._limits.idempotency_ttl_seconds * 1_000_000_000
        while self._ended and self._ended[0][0] < horizon:
            _, reservation_id = self._ended.popleft()
            reservation = self._reservations.pop(reservation_id, None)
            self._commits.pop(reservation_id, None)
            if reservation is not None and reservation.idempotency_key:
                key = (reservation.tenant, reservation.idempotency_key)
                self._idempotency.pop(key, None)

    def _hold(self, budget: _Budget, reservation: Reservation) -> None:
        """Counts an open reservation's draws in its budget's tallies."""
        budget.open_reservations += 1
        for pool, tokens in reservation.sources:
            budget.in_flight[pool] += tokens
            if pool is Pool.BURST:
                budget.borrowed[reservation.pool] += tokens
                budget.burst_by_tenant[reservation.tenant] += tokens
        heapq.heappush(
            self._leases,
            (reservation.lease_expires_mono_ns, reservation.reservation_id),
        )
        if self._sweep_at is not None and reservation.lease_expires_mono_ns < (
            self._sweep_at
        ):
            self._sweep_wake.set()

    def _unhold(self, budget: _Budget, reservation: Reservation) -> None:
        budget.open_reservations -= 1
        for pool, tokens in reservation.sources:
            budget.in_flight[pool] -= tokens
            if pool is Pool.BURST:
                budget.borrowed[reservation.pool] -= tokens
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
        budget: _Budget,
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

    def _submit(self, batch: LedgerBatch) -> Awaitable[None]:
        """Queues a batch for group commit; await the result to know it is kept."""
        if self._refusals:
            batch.refusals.extend(self._take_refusals())
        return self._ledger.submit(batch)

    async def _settled(self, commit: Awaitable[None]) -> None:
        """Waits for a commit; a failed one stops new work until state is rebuilt.

        The ledger's outcome may be awaited by many callers, and a caller
        that is cancelled while waiting does not withdraw the commit.
        """
        try:
            await commit
        except LedgerUnavailableError:
            self._degrade()
            raise

    def _degrade(self) -> None:
        if not self._degraded:
            logger.error("ledger commit failed; refusing new work until rebuilt")
        self._degraded = True
        self._sweep_wake.set()


def _shape(command: ReserveCommand) -> CallShape:
    return CallShape(
        tokens=check_count("tokens", command.tokens),
        input_tokens=check_count("input_tokens", command.input_tokens),
        input_chars=check_count("input_chars", command.input_chars),
        max_output_tokens=check_count("max_output_tokens", command.max_output_tokens),
        task_type=command.task_type,
        output_detail=command.output_detail,
        structured_output=command.structured_output,
        context_items=command.context_items,
    )


# Fallback budgets one request may name.
_MAX_FALLBACKS = 8

# Largest urgency a request may carry; it multiplies a tenant's weight.
_MAX_URGENCY = 1000


def _check_request(command: ReserveCommand) -> None:
    """Refuses malformed optional fields of a Reserve before anything else."""
    check_text("model", command.model)
    check_text("task_type", command.task_type, 64)
    check_text("idempotency_key", command.idempotency_key)
    check_range("output_detail", command.output_detail, 0, 3)
    check_range("context_items", command.context_items, 0, 1_000_000)
    check_range("urgency", command.urgency, 0, _MAX_URGENCY)
    if len(command.fallback_budgets) > _MAX_FALLBACKS:
        raise InvalidFieldError(
            "fallback_budgets",
            f"{len(command.fallback_budgets)} given; at most {_MAX_FALLBACKS}",
        )


def _used(command: SettleCommand, policy: BudgetPolicy) -> int:
    return usage_tokens(
        command.input_tokens,
        command.cached_input_tokens,
        command.cache_write_tokens,
        command.output_tokens,
        policy.cache_read_weight_percent,
    )


def _burst_percent(budget: _Budget, sizing: Sizing) -> int:
    if sizing.complexity_score >= 7:
        return budget.policy.burst_high_complexity_percent
    return budget.policy.burst_tenant_percent


def _refilled(row: PoolRow, window_ns: int, wall: int) -> PoolLevel:
    """A stored level refilled for the wall time since it was stored."""
    bucket = TokenBucket(row.capacity, window_ns, row.level, row.carry, 0)
    bucket.refill(max(0, wall - row.at_wall_ns))
    return PoolLevel(bucket.capacity, bucket.level, bucket.carry)
