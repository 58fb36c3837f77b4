"""The replay as a discrete-event simulation on a clock it drives itself.

The in-process daemon runs on a `WatchedClock`. The simulation moves that
clock from event to event (row arrivals, and settles once each modelled call
is over), sends the calls due at each moment over gRPC, and moves on only
when the daemon has taken them all in. The daemon therefore sees every call
at its trace time whatever the machine's speed, and the same trace, plan
and configuration always give the same decisions.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

import anyio
from anyio.abc import TaskGroup

from tokenpool.engine import Engine, ManualClock
from tokenpool.replay._caller import Caller
from tokenpool.replay._errors import ReplayError
from tokenpool.replay._plan import Call

logger = logging.getLogger(__name__)

# The simulation looks again at the daemon's state when the daemon reads its
# clock or an answer comes in, and at the latest after this many real
# seconds. It never spins: a busy event loop starves the ledger's and gRPC's
# threads of the GIL, and every commit then takes milliseconds.
_RECHECK_S = 0.005

_NS_PER_MS = 1_000_000


class WatchedClock(ManualClock):
    """A ManualClock that tells the replay whenever the daemon reads it.

    The engine reads the clock as it takes in each call, so a read is the
    moment to look again at whether the daemon is quiescent.
    """

    def __init__(self, *, start_wall_ns: int) -> None:
        super().__init__(start_wall_ns=start_wall_ns)
        self.on_read: Callable[[], None] = lambda: None

    def monotonic_ns(self) -> int:
        """The driven time; also calls `on_read`."""
        self.on_read()
        return super().monotonic_ns()

    @property
    def now_ns(self) -> int:
        """The driven time, read without calling `on_read`."""
        return super().monotonic_ns()


class Simulation:
    """Drives a WatchedClock through the calls, event by event.

    Each step moves the clock to the next arrival or settle (the daemon's own
    alarms, such as refills for waiters and their deadlines, run inside the
    move at their own times), sends the calls due then, and waits until the
    daemon has taken them in: every Reserve sent is answered, parked in a
    queue, or visibly granted (its budget counts it as open), and every
    Settle sent is applied (the pools' charged tokens include it). A grant
    whose answer is still on its way does not hold the clock back, unless
    the next step would pass the earliest moment its settle could fall due.

    Args:
        caller: Sends the calls and records their outcomes.
        calls: The calls, in arrival order.
        clock: The daemon's clock, at the first row's time.
        engine: The daemon's engine, read for queue and reservation counts.
        speed: Trace seconds per real second at most; None runs flat out.
    """

    def __init__(
        self,
        caller: Caller,
        calls: Sequence[Call],
        clock: WatchedClock,
        engine: Engine,
        *,
        speed: float | None = None,
    ) -> None:
        self._caller = caller
        self._clock = clock
        self._engine = engine
        self._speed = speed
        self._arrivals = deque(calls)
        self._settles: list[tuple[int, int, Call, str]] = []
        # Reserves sent and not answered: row index -> the generation (count
        # of confirmations that all pending requests were parked) it was sent in.
        self._pending: dict[int, int] = {}
        self._generation = 0
        # Pending requests known parked at the last confirmation, and when.
        self._parked = 0
        self._parked_at = 0
        # The earliest a settle can fall due: for a request sent since the
        # last confirmation, its arrival plus its length (a heap); for a
        # parked one, the confirmation plus the shortest call of the trace.
        self._dues: list[tuple[int, int]] = []
        self._shortest_ns = min((call.duration_ns for call in calls), default=0)
        self._settling = 0
        self._reserves_sent = 0
        self._reserves_refused = 0
        self._settles_sent = 0
        self._usage_sent = 0
        self._charged_base = 0
        self._held_base = 0
        self._changed = anyio.Event()
        self._moved = True
        self._origin_ns = clock.now_ns
        self._origin_real = time.perf_counter()
        self.stepped_at = self._origin_real
        clock.on_read = self._notice
        caller.wait_s = self._wait_s

    async def run(self) -> None:
        """Replays every call; returns once every row is answered and settled."""
        self._rebase()
        self._origin_real = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._tick)
            while self._arrivals or self._settles or self._pending or self._settling:
                settled = await self._quiesce(strict=False)
                if settled:
                    self._rebase()
                    self._confirm_parked()

                target = self._next_target()
                if target is None:
                    # Nothing to send until answers come in.
                    await self._quiesce(strict=True)
                    continue
                bound = self._bound()
                if target > bound:
                    if not settled:
                        await self._quiesce(strict=True)
                        continue
                    # Only parked requests are pending: none is granted, and
                    # so none settles, before the bound.
                    target = bound

                await self._keep_pace(target)
                self._clock.advance_to(target)
                self.stepped_at = time.perf_counter()
                self._send_due(tasks, target)
            tasks.cancel_scope.cancel()

    def _wait_s(self, started: float, waited_ms: int) -> float:
        """Real seconds a call spent parked, up to its releasing step."""
        return max(0.0, self.stepped_at - started) if waited_ms > 0 else 0.0

    def _notice(self) -> None:
        """Wakes the quiescence check: the daemon has taken something in."""
        self._moved = True
        self._changed.set()

    async def _tick(self) -> None:
        """Wakes the quiescence check now and then, in case nothing else did."""
        while True:
            await anyio.sleep(_RECHECK_S)
            self._changed.set()

    async def _keep_pace(self, target: int) -> None:
        """Holds the clock back to --speed N trace seconds per second."""
        if self._speed is None:
            return
        due = self._origin_real + (target - self._origin_ns) / 1e9 / self._speed
        delay = due - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)

    def _next_target(self) -> int | None:
        """The next time to step to: arrival, settle or alarm.

        None when only answers are outstanding: they must come in first.
        """
        times = []
        if self._arrivals:
            times.append(self._arrivals[0].arrival_ns)
        if self._settles:
            times.append(self._settles[0][0])
        if not times and self._pending and self._settled_fully():
            # Only requests parked in queues are left: their alarms decide.
            alarm = self._clock.next_alarm_ns
            if alarm is None:
                raise ReplayError(
                    f"The simulation stalled with {len(self._pending)} requests "
                    "queued and no alarm due to release them."
                )
            times.append(alarm)
        if not times:
            return None
        return max(min(times), self._clock.now_ns)

    def _confirm_parked(self) -> None:
        """Every pending Reserve is parked now: none is granted before now."""
        self._generation += 1
        self._parked = len(self._pending)
        self._parked_at = self._clock.now_ns
        self._dues.clear()

    def _bound(self) -> int:
        """The clock must not pass the earliest settle of an unanswered grant."""
        while self._dues and self._dues[0][1] not in self._pending:
            heapq.heappop(self._dues)
        bound = self._dues[0][0] if self._dues else 2**63
        if self._parked:
            bound = min(bound, self._parked_at + self._shortest_ns)
        return bound

    def _send_due(self, tasks: TaskGroup, now: int) -> None:
        while self._settles and self._settles[0][0] <= now:
            _, _, call, reservation_id = heapq.heappop(self._settles)
            self._settling += 1
            self._settles_sent += 1
            self._usage_sent += call.used_tokens
            tasks.start_soon(self._settle, call, reservation_id)
        while self._arrivals and self._arrivals[0].arrival_ns <= now:
            call = self._arrivals.popleft()
            self._pending[call.index] = self._generation
            heapq.heappush(self._dues, (call.arrival_ns + call.duration_ns, call.index))
            self._reserves_sent += 1
            tasks.start_soon(self._reserve, call)

    async def _reserve(self, call: Call) -> None:
        reservation = await self._caller.reserve(call)
        self._changed.set()
        if self._pending.pop(call.index) < self._generation:
            self._parked -= 1
        if reservation is None:
            self._reserves_refused += 1
            self._moved = True
            return

        granted_at = call.arrival_ns + reservation.waited_ms * _NS_PER_MS
        due = max(granted_at + call.duration_ns, self._clock.now_ns)
        heapq.heappush(
            self._settles, (due, call.index, call, reservation.reservation_id)
        )

    async def _settle(self, call: Call, reservation_id: str) -> None:
        await self._caller.settle(call, reservation_id)
        self._changed.set()
        self._settling -= 1

    def _totals(self) -> tuple[int, int]:
        """Tokens charged so far, and reservations open or queued now."""
        charged = held = 0
        for name in self._engine.budget_names():
            view = self._engine.budget_status(name)
            held += view.open_reservations
            charged += sum(pool.charged_tokens for pool in view.pools)
        return charged, held + self._engine.waiting

    def _settled_fully(self) -> bool:
        """Every answer is in, apart from requests parked in a queue."""
        return self._settling == 0 and len(self._pending) == self._engine.waiting

    def _taken_in(self) -> bool:
        """Every call sent has been applied, answered or not."""
        charged, held = self._totals()
        expected_held = (
            self._held_base
            + self._reserves_sent
            - self._reserves_refused
            - self._settles_sent
        )
        return (
            charged == self._charged_base + self._usage_sent and held == expected_held
        )

    def _rebase(self) -> None:
        """Takes the daemon's figures as the baseline, at a fully settled point."""
        charged, held = self._totals()
        self._charged_base = charged - self._usage_sent
        self._held_base = held - (
            self._reserves_sent - self._reserves_refused - self._settles_sent
        )

    async def _quiesce(self, *, strict: bool) -> bool:
        """Waits until the daemon has taken everything in; True if fully settled."""
        while True:
            if self._settled_fully():
                return True
            if not strict and self._moved:
                taken_in = self._taken_in()
                # The check reads the clock too: that is no news.
                self._moved = False
                if taken_in:
                    return False

            # A fresh event after the checks, for the same reason.
            self._changed = anyio.Event()
            await self._changed.wait()
