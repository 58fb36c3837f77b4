"""Granting reservations: at once, after a wait in a pool's queue, or refused."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from contextlib import nullcontext

import anyio

from tokenpool._errors import (
    ConflictError,
    LedgerUnavailableError,
    RefusalError,
    RequestTooLargeError,
    TenantRefusedError,
)
from tokenpool._fields import log_event
from tokenpool.core import (
    Draws,
    Outcome,
    Pool,
    PoolState,
    Reservation,
    Sizing,
    State,
    TenantPolicy,
    check_count,
    check_labels,
    check_name,
    plan_draws,
    projected_reach,
    size_call,
)
from tokenpool.engine._base import (
    NS_PER_MS,
    POOL_EXHAUSTED,
    QUEUE_FULL,
    REQUEST_TOO_LARGE,
)
from tokenpool.engine._checks import check_request, digest, shape
from tokenpool.engine._commands import ReserveCommand
from tokenpool.engine._events import (
    Ending,
    EndKind,
    Queued,
    refusal_fields,
    reservation_fields,
)
from tokenpool.engine._granting import (
    _BUDGET_BLOCKED,
    _GRANTED,
    _REFUSED,
    _SHORT,
    Granting,
)
from tokenpool.engine._records import reservation_entry
from tokenpool.engine._state import BudgetState, Waiter
from tokenpool.ledger import EntryKind

logger = logging.getLogger(__name__)

# Sizings remembered per engine before the memo starts afresh: a few
# thousand distinct call shapes cover a steady workload.
_SIZINGS_KEPT = 4096

# A waiter whose pool cannot say when it will fit is looked at again this
# often; settles and releases wake the queue sooner.
_RETRY_POLL_NS = 100 * NS_PER_MS

# How much sooner than the caller's deadline a wait ends (seconds, at most).
_DEADLINE_MARGIN_S = 0.05


class Reserving(Granting):
    """Reserve: grant from the own pool, burst and lenders, queue fairly, refuse."""

    async def reserve(
        self, command: ReserveCommand, *, deadline_s: float | None = None
    ) -> Reservation:
        """Grants tokens now, after a wait, from a fallback budget, or refuses.

        Raises:
            RefusalError: no budget could grant it (nothing is held).
        """
        self._check_serving()
        check_name("tenant", command.tenant)
        check_request(command)
        self._budget(command.budget)
        for name in command.fallback_budgets:
            self._budget(name, "fallback_budgets")
        check_labels(command.labels, self._limits)
        # Only a keyed request can be repeated, so only it needs a fingerprint.
        fingerprint = command.idempotency_key and digest(
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

        arrived_ns = self._clock.monotonic_ns()
        try:
            reservation, repeated = await self._reserve_keyed(
                command, fingerprint, deadline_s
            )
        except RefusalError as exc:
            now_ns = self._clock.monotonic_ns()
            waited_ms = (now_ns - arrived_ns) // NS_PER_MS
            self._note_refusal(exc.budget, exc.reason, waited_ms)
            fields = refusal_fields(command.tenant, exc, waited_ms)
            key = ("refused", exc.budget, exc.reason)
            quieted = self._repeated_lines.loud(key, now_ns)
            if quieted is None:
                log_event(logger, logging.DEBUG, "reserve refused", fields)
            else:
                fields["quieted"] = quieted
                log_event(logger, logging.INFO, "reserve refused", fields)
            self._observer.reserve_refused(command, exc, waited_ms)
            raise

        if not repeated:
            self._note_wait(reservation.budget, reservation.waited_ms)
        if logger.isEnabledFor(logging.DEBUG):
            fields = reservation_fields(reservation)
            fields["outcome"] = "repeated" if repeated else "granted"
            log_event(logger, logging.DEBUG, "reserve answered", fields)
        self._observer.reserve_granted(reservation, repeated=repeated)
        return reservation

    async def _reserve_keyed(
        self, command: ReserveCommand, fingerprint: str, deadline_s: float | None
    ) -> tuple[Reservation, bool]:
        """Grants a request once per idempotency key; True when it was a repeat."""
        key = (command.tenant, command.idempotency_key)
        if not command.idempotency_key:
            return await self._reserve_anywhere(command, fingerprint, deadline_s), False
        while key in self._idempotency_busy:
            await self._idempotency_busy[key].wait()
        self._idempotency_busy[key] = anyio.Event()
        try:
            earlier_id = self._idempotency.get(key)
            earlier = None if earlier_id is None else await self._recall(earlier_id)
            # An undone grant never reached its caller, like a refused attempt:
            # the retry is decided afresh instead of getting a dead reservation.
            if earlier is not None and earlier.state is not State.UNDONE:
                return await self._repeat_reserve(earlier, command, fingerprint), True
            return await self._reserve_anywhere(command, fingerprint, deadline_s), False
        finally:
            self._idempotency_busy.pop(key).set()

    async def _repeat_reserve(
        self, reservation: Reservation, command: ReserveCommand, fingerprint: str
    ) -> Reservation:
        reservation_id = reservation.reservation_id
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
        """Tries the budget, then each fallback in order; raises the first no.

        A budget that refuses the tenant itself (unknown tenants refused) is
        a no like a refusal for tokens: the next fallback is tried.
        """
        first: RefusalError | TenantRefusedError | None = None
        arrived_ns = self._clock.monotonic_ns()
        for index, name in enumerate((command.budget, *command.fallback_budgets)):
            try:
                return await self._reserve_in(
                    self._budget(name),
                    command,
                    fingerprint,
                    may_wait=index == 0,
                    deadline_s=deadline_s,
                    arrived_ns=arrived_ns,
                )
            except (RefusalError, TenantRefusedError) as exc:
                first = first or exc
        assert first is not None
        raise first

    async def _reserve_in(
        self,
        budget: BudgetState,
        command: ReserveCommand,
        fingerprint: str,
        *,
        may_wait: bool,
        deadline_s: float | None,
        arrived_ns: int,
    ) -> Reservation:
        """Grants in one budget, waiting in its queue only when `may_wait`.

        A fallback budget (may_wait False) is tried without waiting, so its
        own wait limit does not apply to the request's max_wait_ms.
        """
        policy = budget.policy
        tenant = self._tenant(command.tenant, policy)
        wait_ns = 0
        if may_wait:
            wait_ns = NS_PER_MS * check_count(
                "max_wait_ms", command.max_wait_ms, maximum=policy.max_wait_ms
            )
        lease_ms = check_count(
            "lease_ms", command.lease_ms, maximum=int(policy.max_lease_seconds * 1000)
        )
        lease_ns = lease_ms * NS_PER_MS or int(policy.lease_seconds * 1e9)
        sizing = self._size(budget, tenant, command)
        check_count(
            "tokens" if command.tokens else "input_tokens + output", sizing.tokens
        )
        pool = tenant.tier.pool

        ceiling = self._ceiling(budget, pool, sizing)
        if policy.shadow:
            waiter = Waiter(command, tenant, sizing, lease_ns, fingerprint, arrived_ns)
            shadowed = self._reserve_shadow(
                budget, waiter, ceiling, may_wait=may_wait and wait_ns > 0
            )
            assert waiter.commit is not None
            return await self._answer_grant(shadowed, waiter.commit)
        if sizing.tokens > ceiling:
            self._count_refusal(policy.name, tenant.name, REQUEST_TOO_LARGE)
            raise RequestTooLargeError(
                f"Budget {policy.name!r} can never grant {sizing.tokens} tokens "
                f"to tenant {tenant.name!r} (at most {ceiling} from pool {pool}, "
                "burst and loans); split the call or lower max_output_tokens.",
                reason=REQUEST_TOO_LARGE,
                budget=policy.name,
                pool=pool,
                requested=sizing.tokens,
                largest_grantable=ceiling,
                retry_after_ns=None,
            )

        if budget.pool_states[pool] is PoolState.DRAINING:
            # A draining pool takes no new work, waiting or not (SPEC 8).
            raise self._stopped(budget, tenant, pool, sizing.tokens)

        now = self._clock.monotonic_ns()
        waiter = Waiter(command, tenant, sizing, lease_ns, fingerprint, arrived_ns)
        queue = budget.queues[pool]
        if not any(len(line) for line in budget.queues.values()):
            # Nobody waits: the request may use everything it can reach.
            reach = self._reach(budget, tenant, pool, sizing, now)
            self._try_grant(budget, waiter, reach, now)
        else:
            # Others wait: it takes its fair place, and goes now only if
            # that place is first and its tokens are there.
            self._refuse_if_never(budget, waiter, now)
            if len(queue) < policy.queue_limit:
                self._enqueue(budget, waiter)
                self._serve_queues(budget)
        if waiter.reservation is not None and waiter.commit is not None:
            return await self._answer_grant(waiter.reservation, waiter.commit)
        if waiter.refusal is not None:
            raise waiter.refusal

        full = waiter.ticket is None and len(queue) >= policy.queue_limit
        if waiter.ticket is None:
            # Whatever the pools hold, a spent calendar budget or a cap the
            # request can never pass is the answer that helps the caller.
            self._refuse_if_never(budget, waiter, now)
        if not may_wait or wait_ns == 0 or full:
            self._leave_queue(budget, waiter)
            reason = QUEUE_FULL if full and may_wait and wait_ns else None
            raise self._refused(budget, waiter, now, reason)
        waiter.deadline_ns = now + wait_ns
        if deadline_s is not None:
            waiter.deadline_ns = min(waiter.deadline_ns, now + int(deadline_s * 1e9))
        if waiter.ticket is None:
            self._enqueue(budget, waiter)
        return await self._wait(budget, waiter, now + wait_ns, deadline_s)

    def _reserve_shadow(
        self, budget: BudgetState, waiter: Waiter, ceiling: int, *, may_wait: bool
    ) -> Reservation:
        """Shadow mode's grant of anything; `_shadow` implements it."""
        raise NotImplementedError

    def _size(
        self, budget: BudgetState, tenant: TenantPolicy, command: ReserveCommand
    ) -> Sizing:
        """Scores and sizes a call, with the learned correction when it is on."""
        policy = budget.policy
        call = shape(command)
        cached = self._sizings.get((policy.name, call))
        if cached is not None and cached[0] is policy:
            sizing = cached[1]
        else:
            sizing = size_call(call, policy)
            if len(self._sizings) >= _SIZINGS_KEPT:
                self._sizings.clear()
            self._sizings[policy.name, call] = (policy, sizing)
        if sizing.unknown_task_type:
            budget.unknown_task_types += 1
            logger.debug(
                "unknown task type scored as other budget=%s tenant=%s task_type=%r",
                policy.name,
                tenant.name,
                command.task_type[:64],
            )
        if policy.learning.enabled and sizing.output_allowance:
            factor = budget.estimates.output_factor(tenant.name, sizing.task_type)
            if factor is not None:
                sizing = size_call(call, policy, output_factor=factor)
        return sizing

    def _weight(self, waiter: Waiter) -> int:
        """A waiter's share weight: 1 in basic, tenant weight x urgency in priority."""
        if waiter.tenant.tier.pool is Pool.PRIORITY:
            return waiter.tenant.weight * max(1, waiter.command.urgency)
        return 1

    def _refuse_if_never(self, budget: BudgetState, waiter: Waiter, now: int) -> None:
        """Refuses at once what no wait can help: spent calendar budgets, caps.

        Raises:
            RefusalError: a limit beside the pools refuses it whatever the
                pools hold (OUT_OF_RANGE when it never could pass).
        """
        ask = self._ask(
            budget,
            waiter.tenant,
            waiter.sizing.tokens,
            input_tokens=waiter.sizing.input_tokens,
            model=waiter.command.model,
        )
        breach = self._limit_book.check(ask, now, self._clock.wall_ns())
        if breach is not None and not breach.waitable:
            raise self._limit_refusal(
                budget, waiter.tenant, breach, requested=waiter.sizing.tokens
            )

    def _enqueue(self, budget: BudgetState, waiter: Waiter) -> None:
        pool = waiter.tenant.tier.pool
        waiter.ticket = budget.queues[pool].push(
            waiter,
            tenant=waiter.tenant.name,
            tokens=waiter.sizing.tokens,
            weight=self._weight(waiter),
            arrived_ns=waiter.arrived_ns,
        )
        self._schedule_queue(budget, waiter.arrived_ns)
        queued = Queued(
            budget.policy.name,
            waiter.tenant.name,
            pool,
            waiter.sizing.tokens,
            len(budget.queues[pool]),
        )
        log_event(
            logger,
            logging.DEBUG,
            "reserve queued",
            {
                "budget": queued.budget,
                "tenant": queued.tenant,
                "pool": pool.value,
                "tokens_requested": queued.tokens,
                "queue_length": queued.queue_length,
            },
        )
        self._observer.reserve_queued(queued)

    def _refused(
        self, budget: BudgetState, waiter: Waiter, now: int, reason: str | None
    ) -> RefusalError:
        """The refusal for a request that got nothing: which limit, and when."""
        pool = waiter.tenant.tier.pool
        if budget.pool_states[pool] is not PoolState.ACTIVE:
            return self._stopped(budget, waiter.tenant, pool, waiter.sizing.tokens)
        if reason is None and waiter.breach is not None:
            return self._limit_refusal(
                budget, waiter.tenant, waiter.breach, requested=waiter.sizing.tokens
            )
        return self._refusal(
            budget,
            waiter.tenant,
            waiter.tenant.tier.pool,
            waiter.sizing,
            reason or waiter.blocked_by or POOL_EXHAUSTED,
            now,
        )

    async def _wait(
        self,
        budget: BudgetState,
        waiter: Waiter,
        until_ns: int,
        deadline_s: float | None,
    ) -> Reservation:
        alarm = self._clock.call_at(until_ns, lambda: self._give_up(budget, waiter))

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
        # The call's own deadline came first: a last chance, then refused.
        if waiter.reservation is None and waiter.refusal is None:
            self._grant_at_deadline(budget, waiter)
        self._leave_queue(budget, waiter)

        if waiter.reservation is not None and waiter.commit is not None:
            return await self._answer_grant(waiter.reservation, waiter.commit)
        if waiter.refusal is not None:
            raise waiter.refusal
        self._check_serving()
        raise self._refused(budget, waiter, self._clock.monotonic_ns(), None)

    async def _answer_grant(
        self, reservation: Reservation, commit: Awaitable[int]
    ) -> Reservation:
        try:
            await self._settled(commit)
        except LedgerUnavailableError:
            raise
        except BaseException:
            self._undo(reservation)
            raise
        return reservation

    def _give_up(self, budget: BudgetState, waiter: Waiter) -> None:
        if waiter.reservation is None:
            self._grant_at_deadline(budget, waiter)
            self._leave_queue(budget, waiter)
            waiter.event.set()

    def _grant_at_deadline(self, budget: BudgetState, waiter: Waiter) -> None:
        """Grants a waiter whose wait is over if its tokens are there now.

        Fair order can leave a request behind a larger one whose tokens are
        still being gathered; refusing it then would leave its tokens to
        that head while it could have been served. It is granted out of
        order when every queue's head still gets its tokens by its own
        deadline (or never could), so no request is refused for it.
        """
        ticket = waiter.ticket
        if ticket is None or not ticket.queued:
            return
        now = self._clock.monotonic_ns()
        pool = waiter.tenant.tier.pool
        reach = self._reach(budget, waiter.tenant, pool, waiter.sizing, now)
        draws = plan_draws(waiter.sizing.tokens, reach)
        if draws is None or not self._heads_keep_deadlines(budget, waiter, draws, now):
            return

        result = self._try_grant(budget, waiter, reach, now, in_order=False)
        if result is _GRANTED:
            logger.debug(
                "reserve granted at its deadline budget=%s tenant=%s tokens=%d",
                budget.policy.name,
                waiter.tenant.name,
                waiter.sizing.tokens,
            )
            self._schedule_queue(budget, now)

    def _heads_keep_deadlines(
        self, budget: BudgetState, waiter: Waiter, draws: Draws, now: int
    ) -> bool:
        """Whether each queue's head, short now, is still served in time.

        A head that fits by its deadline without the draws must still fit
        with them taken; one that never would is not made worse off.
        """
        for pool, queue in budget.queues.items():
            head = queue.first()
            if (
                head is None
                or head.item is waiter
                or budget.pool_states[pool] is not PoolState.ACTIVE
            ):
                continue
            ahead = head.item
            if self._fits_by_deadline(
                budget, ahead, pool, (), now
            ) and not self._fits_by_deadline(budget, ahead, pool, draws, now):
                return False
        return True

    def _fits_by_deadline(
        self, budget: BudgetState, waiter: Waiter, pool: Pool, taken: Draws, now: int
    ) -> bool:
        """Whether refill alone brings a waiter its tokens before its wait ends."""
        levels = self._store.levels(budget.policy.name, now)
        reach = self._reach(budget, waiter.tenant, pool, waiter.sizing, now)
        later = projected_reach(
            reach,
            {pool: level.capacity for pool, level in levels.items()},
            taken=taken,
            window_ns=budget.policy.window_ns,
            elapsed_ns=waiter.deadline_ns - now,
        )
        return plan_draws(waiter.sizing.tokens, later) is not None

    def _leave_queue(self, budget: BudgetState, waiter: Waiter) -> None:
        """Takes a waiter out; those it held back may now go."""
        if waiter.ticket is not None and waiter.ticket.queued:
            budget.queues[waiter.tenant.tier.pool].remove(waiter.ticket)
            self._serve_queues(budget)

    def _serve_queues(self, budget: BudgetState) -> None:
        """Grants waiters, in fair order, while their tokens are there."""
        now = self._clock.monotonic_ns()
        while self._serve_next(budget, now):
            pass
        self._schedule_queue(budget, now)

    def _serve_next(self, budget: BudgetState, now: int) -> bool:
        """Grants (or refuses) one waiter; False when nobody can go now.

        Queues are visited in precedence order for the pools they share
        (burst, lenders). Within a queue, a tenant held back by its own
        limits is passed over, but a request short of tokens holds its queue
        (fair order is strict), and once a queue is held, later queues may
        only use their own pools, so the shared tokens are left for it. A
        paused pool's queue is passed over whole: it holds nothing back.
        """
        shared_open = True
        for pool in self._precedence(budget, now):
            if budget.pool_states[pool] is not PoolState.ACTIVE:
                continue
            for ticket in budget.queues[pool].in_order():
                waiter = ticket.item
                reach = self._reach(budget, waiter.tenant, pool, waiter.sizing, now)
                if not shared_open:
                    reach = reach.own_only()
                result = self._try_grant(budget, waiter, reach, now)
                if result in (_GRANTED, _REFUSED):
                    return True
                if result is _BUDGET_BLOCKED:
                    return False
                if result is _SHORT:
                    shared_open = False
                    break
        return False

    def _precedence(self, budget: BudgetState, now: int) -> list[Pool]:
        """Which queue goes first for shared pools: higher tier, unless aged.

        A basic waiter that has waited past the starvation age goes before
        priority waiters that arrived after it, so no tier starves.
        """
        priority = budget.queues[Pool.PRIORITY].first()
        if priority is None or not len(budget.queues[Pool.BASIC]):
            return [Pool.PRIORITY, Pool.BASIC]
        # The longest-waiting basic request heads its tenant's line, though
        # not necessarily the basic queue, whose fair order may put a light
        # tenant first: it is the one whose age counts.
        oldest = min(t.arrived_ns for t in budget.queues[Pool.BASIC].in_order())
        age_ns = budget.policy.starvation_age_ms * NS_PER_MS
        if now - oldest >= age_ns and oldest < priority.arrived_ns:
            return [Pool.BASIC, Pool.PRIORITY]
        return [Pool.PRIORITY, Pool.BASIC]

    def _schedule_queue(self, budget: BudgetState, now: int) -> None:
        """Sets an alarm for when refill may let a queue's first waiter through."""
        wake_at: int | None = None
        name = budget.policy.name
        for pool, queue in budget.queues.items():
            head = queue.first()
            if head is None or budget.pool_states[pool] is not PoolState.ACTIVE:
                # A paused queue moves only when it is resumed.
                continue
            waiter = head.item
            reach = self._reach(budget, waiter.tenant, pool, waiter.sizing, now)
            waits = [_RETRY_POLL_NS]
            own = self._store.ns_until(name, pool, head.tokens - reach.shared, now)
            if own is not None:
                waits.append(own)
            from_burst = head.tokens - reach.own_available - reach.lendable
            if from_burst <= reach.burst_room:
                burst = self._store.ns_until(name, Pool.BURST, from_burst, now)
                if burst is not None:
                    waits.append(burst)
            due = now + max(NS_PER_MS, min(waits))
            wake_at = due if wake_at is None else min(wake_at, due)

        if wake_at is None or (budget.alarm is not None and budget.alarm_at <= wake_at):
            return
        if budget.alarm is not None:
            budget.alarm.cancel()
        budget.alarm_at = wake_at
        budget.alarm = self._clock.call_at(
            wake_at, lambda: self._on_queue_alarm(budget)
        )

    def _on_queue_alarm(self, budget: BudgetState) -> None:
        budget.alarm = None
        self._serve_queues(budget)

    def _undo(self, granted: Reservation) -> None:
        """Takes back a grant whose caller left before it was answered.

        The grant is looked up by id: if the state was rebuilt from the
        ledger meanwhile, the object granted is stale, and only what the
        ledger recorded (the grant, or nothing) is in memory to undo.
        """
        reservation = self._reservations.get(granted.reservation_id)
        if reservation is None or not reservation.is_open:
            return
        budget = self._budgets[reservation.budget]
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        outcome = Outcome(0, reservation.hold, 0)
        self._finish(budget, reservation, State.UNDONE, outcome, now, wall)
        ending = Ending(EndKind.UNDONE, reservation, 0, reservation.hold, 0)
        log_event(
            logger,
            logging.WARNING,
            "grant undone, caller left",
            {
                "budget": reservation.budget,
                "tenant": reservation.tenant,
                "reservation_id": reservation.reservation_id,
                "tokens_refunded": reservation.hold,
            },
        )
        self._observer.reservation_ended(ending)
        entry = reservation_entry(
            EntryKind.UNDO,
            reservation,
            wall,
            tokens=-reservation.hold,
            refunded=reservation.hold,
        )
        commit = self._submit(self._batch(budget, entry, reservation, now, wall))
        self._commits[reservation.reservation_id] = commit
        self._serve_queues(budget)
