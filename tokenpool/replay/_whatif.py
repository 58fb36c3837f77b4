"""What-if replay: recorded calls through the real engine, with no daemon traffic.

The same `Engine` the daemon runs (core rules, queues, sweeper, autoscaler)
is driven directly, in this process, on a `ManualClock`, with a ledger kept
in memory (`MemoryRecorder`): no gRPC, no SQLite, no fsync. The clock moves
from event to event (arrivals, settles) and stops at every alarm the engine
set on the way (refills for waiters, wait deadlines, the sweeper, the
autoscaler's intervals), letting every task run to its next wait before it
moves on, so each decision is taken at the trace time it would have been.
A call granted after a wait settles its modelled duration after its grant,
as in a live replay; the figures therefore match a live `--speed max`
replay of the same rows and configuration (docs/replay.md states the
tolerance the tests hold it to).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from tokenpool._errors import RefusalError, TokenPoolError
from tokenpool.core import BudgetPolicy
from tokenpool.daemon import Settings
from tokenpool.engine import (
    POOL_EXHAUSTED,
    Engine,
    ManualClock,
    ReserveCommand,
    SettleCommand,
)
from tokenpool.replay._caller import LABELS
from tokenpool.replay._plan import Call, ReplayTenant
from tokenpool.replay._recorder import MemoryRecorder
from tokenpool.replay._tally import RunFacts, Tally
from tokenpool.service import budget_status_message, status_code

logger = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000

# Loop turns given to woken tasks (waiters, sweeper, autoscaler) before the
# simulation looks again at whether every reserve has settled down.
_TURNS = 3


@dataclass(frozen=True, slots=True)
class WhatIfSetup:
    """One what-if run: the calls and the configuration they meet."""

    trace: str
    """Where the calls came from (a trace file's name, or the ledger's)."""
    calls: Sequence[Call]
    budget: str
    tenants: Sequence[ReplayTenant]
    max_output_tokens: int
    max_wait_ms: int
    start_wall_ns: int
    seed: int
    skew: float
    settings: Settings
    """The configuration to run, with the replay's tenants added."""


class _Run:
    """Drives the engine through the calls; see the module docstring."""

    def __init__(self, setup: WhatIfSetup, engine: Engine, clock: ManualClock):
        self._setup = setup
        self._engine = engine
        self._clock = clock
        self._tally = Tally()
        self._arrivals = deque(setup.calls)
        self._settles: list[tuple[int, int, Call, str]] = []
        self._running = 0

    @property
    def tally(self) -> Tally:
        return self._tally

    async def run(self, tasks: TaskGroup) -> None:
        clock = self._clock
        while self._arrivals or self._settles or self._running:
            await self._quiesce()
            due = self._next_due()
            alarm = clock.next_alarm_ns
            if due is None:
                if alarm is None:
                    raise TokenPoolError(
                        f"The what-if replay stalled with {self._running} "
                        "requests waiting and no alarm to release them."
                    )
                due = alarm
            step = due if alarm is None else min(due, alarm)
            clock.advance_to(max(step, clock.monotonic_ns()))
            await self._send_due(tasks, clock.monotonic_ns())
        await self._quiesce()

    def _next_due(self) -> int | None:
        times = []
        if self._arrivals:
            times.append(self._arrivals[0].arrival_ns)
        if self._settles:
            times.append(self._settles[0][0])
        return min(times) if times else None

    async def _quiesce(self) -> None:
        """Lets woken tasks run until every reserve left is parked in a queue."""
        while True:
            for _ in range(_TURNS):
                await anyio.lowlevel.checkpoint()
            if self._running == self._engine.waiting:
                return

    async def _send_due(self, tasks: TaskGroup, now: int) -> None:
        # Settles first, as the live replay sends them, then arrivals.
        while self._settles and self._settles[0][0] <= now:
            _, _, call, reservation_id = heapq.heappop(self._settles)
            await self._end(call, reservation_id)
        while self._arrivals and self._arrivals[0].arrival_ns <= now:
            call = self._arrivals.popleft()
            self._running += 1
            tasks.start_soon(self._reserve, call)

    def _command(self, call: Call) -> ReserveCommand:
        setup = self._setup
        return ReserveCommand(
            budget=setup.budget,
            tenant=call.tenant.name,
            tokens=call.tokens,
            input_tokens=0
            if call.tokens
            else (
                call.input_tokens
                if call.request_input_tokens is None
                else call.request_input_tokens
            ),
            max_output_tokens=setup.max_output_tokens
            if call.max_output_tokens is None
            else call.max_output_tokens,
            model=call.model,
            task_type=call.task_type.value,
            max_wait_ms=setup.max_wait_ms
            if call.max_wait_ms is None
            else call.max_wait_ms,
            lease_ms=call.lease_ms,
            idempotency_key=call.idempotency_key,
            labels=dict(call.labels) if call.labels else dict(LABELS),
        )

    async def _reserve(self, call: Call) -> None:
        started = time.perf_counter()
        try:
            granted = await self._engine.reserve(self._command(call))
        except RefusalError as exc:
            # As the live replay counts it: a shortage refusal came after the
            # whole wait.
            max_wait = self._command(call).max_wait_ms
            waited_ms = max_wait if exc.reason == POOL_EXHAUSTED else 0
            self._tally.refused(
                call,
                exc.reason or status_code(exc).name,
                time.perf_counter() - started,
                after_wait=waited_ms > 0,
                requested=exc.requested,
            )
            return
        except TokenPoolError as exc:
            self._tally.refused(
                call,
                status_code(exc).name,
                time.perf_counter() - started,
                after_wait=False,
            )
            return
        finally:
            self._running -= 1

        self._tally.granted_hold(
            call,
            waited_ms=granted.waited_ms,
            hold=granted.hold,
            complexity_score=granted.complexity_score,
            pool=granted.pool.value,
            sources=tuple((pool.value, tokens) for pool, tokens in granted.sources),
            latency_s=time.perf_counter() - started,
        )
        if call.ending == "expire":
            return
        granted_at = call.arrival_ns + granted.waited_ms * _NS_PER_MS
        due = max(granted_at + call.duration_ns, self._clock.monotonic_ns())
        heapq.heappush(self._settles, (due, call.index, call, granted.reservation_id))

    async def _end(self, call: Call, reservation_id: str) -> None:
        started = time.perf_counter()
        error = ""
        try:
            if call.ending == "release":
                await self._engine.release(
                    reservation_id, call.tenant.name, call.billed_input_tokens
                )
            else:
                await self._engine.settle(
                    SettleCommand(
                        reservation_id=reservation_id,
                        tenant=call.tenant.name,
                        input_tokens=call.input_tokens,
                        cached_input_tokens=call.cached_input_tokens,
                        cache_write_tokens=call.cache_write_tokens,
                        output_tokens=call.output_tokens,
                        model=call.model,
                    )
                )
        except TokenPoolError as exc:
            error = status_code(exc).name
        self._tally.settled(call, time.perf_counter() - started, error)


def _policy(settings: Settings, budget: str) -> BudgetPolicy | None:
    return next((b for b in settings.budgets if b.name == budget), None)


async def run_what_if(setup: WhatIfSetup) -> tuple[RunFacts, Tally]:
    """Replays the calls through an in-process engine; its figures and tally.

    Raises:
        TokenPoolError: the configuration cannot run (unknown budget), or
            the run stalled.
    """
    settings = setup.settings
    clock = ManualClock(start_wall_ns=setup.start_wall_ns)
    recorder = MemoryRecorder()
    engine = Engine(
        budgets=settings.budgets,
        tenants=settings.tenants,
        limits=settings.limits,
        clock=clock,
        ledger=recorder,
        teams=settings.teams,
        prices=settings.prices,
        calendar_timezone=settings.calendar_timezone,
    )
    await engine.restore()
    before = budget_status_message(engine.budget_status(setup.budget))
    charged_before = recorder.charged.get(setup.budget, 0)
    run = _Run(setup, engine, clock)
    real_started = time.perf_counter()
    clock_started = clock.monotonic_ns()
    async with anyio.create_task_group() as tasks:
        await tasks.start(engine.run_sweeper)
        await tasks.start(engine.run_autoscaler)
        await run.run(tasks)
        tasks.cancel_scope.cancel()
    real_s = time.perf_counter() - real_started
    trace_s = (clock.monotonic_ns() - clock_started) / 1e9

    after = budget_status_message(engine.budget_status(setup.budget))
    policy = _policy(settings, setup.budget)
    facts = RunFacts(
        trace=setup.trace,
        budget=setup.budget,
        mode="simulated",
        address="what-if",
        speed=None,
        seed=setup.seed,
        skew=setup.skew,
        tenants=[tenant.policy for tenant in setup.tenants],
        task_types={tenant.name: tenant.task_type for tenant in setup.tenants},
        before=before,
        after=after,
        charged_before=charged_before,
        charged_after=recorder.charged.get(setup.budget, 0),
        open_reservations_at_end=sum(
            engine.budget_status(name).open_reservations
            for name in engine.budget_names()
        ),
        real_seconds=real_s,
        daemon_seconds=trace_s,
        trace_seconds=trace_s,
        queueing=None if policy is None else policy.queueing,
        learning=None if policy is None else policy.learning.enabled,
        decisions=tuple(
            {"at_wall_ns": entry.at_wall_ns, **entry.detail}
            for entry in recorder.autoscale
            if entry.budget == setup.budget
        ),
        start_wall_ns=setup.start_wall_ns,
    )
    logger.info(
        "what-if replay finished rows=%d real_s=%.2f entries=%d",
        len(setup.calls),
        real_s,
        recorder.entries,
    )
    return facts, run.tally
