"""Clocks the daemon runs on: the system's, one tests drive, one a replay scales."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Alarm(Protocol):
    """A pending callback that can be called off."""

    def cancel(self) -> None:
        """Stops the callback from running, if it has not run yet."""


class Clock(Protocol):
    """Monotonic time for refill, leases and waits; wall time for what is stored."""

    def monotonic_ns(self) -> int:
        """Nanoseconds on a clock that never goes backwards."""

    def wall_ns(self) -> int:
        """UTC wall-clock time in nanoseconds since the epoch."""

    def call_at(self, monotonic_ns: int, callback: Callable[[], None]) -> Alarm:
        """Runs `callback` on the event loop once the clock reaches the time."""


class SystemClock:
    """The host's clocks; alarms run on the asyncio event loop."""

    def monotonic_ns(self) -> int:
        """Nanoseconds from the host's monotonic clock."""
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        """Nanoseconds since the epoch from the host's wall clock."""
        return time.time_ns()

    def call_at(self, monotonic_ns: int, callback: Callable[[], None]) -> Alarm:
        """Schedules the callback with the event loop's timer."""
        delay = max(0.0, (monotonic_ns - time.monotonic_ns()) / 1e9)
        return asyncio.get_running_loop().call_later(delay, callback)


class ScaledClock:
    """A clock that runs `speed` times faster than the host's, from a start.

    A replay at `--speed 60` runs its daemon on this clock so that an hour of
    trace time passes in a minute, and capacities per window keep their
    meaning in trace time.
    """

    def __init__(self, *, speed: float, start_wall_ns: int) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self._speed = speed
        self._origin = time.monotonic_ns()
        self._start_wall_ns = start_wall_ns

    def monotonic_ns(self) -> int:
        """Scaled nanoseconds since the clock was made."""
        return int((time.monotonic_ns() - self._origin) * self._speed)

    def wall_ns(self) -> int:
        """The starting wall time plus scaled elapsed time."""
        return self._start_wall_ns + self.monotonic_ns()

    def call_at(self, monotonic_ns: int, callback: Callable[[], None]) -> Alarm:
        """Schedules the callback after the scaled-down real delay."""
        delay = max(0.0, (monotonic_ns - self.monotonic_ns()) / self._speed / 1e9)
        return asyncio.get_running_loop().call_later(delay, callback)


class _ManualAlarm:
    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to; tests and fast replays drive it.

    Alarms whose time has come run, in time order, inside `advance`.
    """

    def __init__(self, *, start_wall_ns: int | None = None) -> None:
        self._now = 0
        self._start_wall_ns = time.time_ns() if start_wall_ns is None else start_wall_ns
        self._alarms: list[tuple[int, int, _ManualAlarm, Callable[[], None]]] = []
        self._order = itertools.count()

    def monotonic_ns(self) -> int:
        """Nanoseconds the clock has been advanced by."""
        return self._now

    def wall_ns(self) -> int:
        """The starting wall time plus the time advanced."""
        return self._start_wall_ns + self._now

    def call_at(self, monotonic_ns: int, callback: Callable[[], None]) -> Alarm:
        """Registers the callback; it runs when the clock is advanced past the time."""
        alarm = _ManualAlarm(self)
        heapq.heappush(self._alarms, (monotonic_ns, next(self._order), alarm, callback))
        return alarm

    def advance(self, seconds: float) -> None:
        """Moves the clock forward by a number of seconds."""
        self.advance_to(self._now + round(seconds * 1e9))

    def advance_to(self, monotonic_ns: int) -> None:
        """Moves the clock to a time (never backwards), running alarms on the way.

        Each alarm runs with the clock at its own due time, so what it
        decides is what would have been decided then.
        """
        target = max(self._now, monotonic_ns)
        while self._alarms and self._alarms[0][0] <= target:
            due, _, alarm, callback = heapq.heappop(self._alarms)
            if not alarm.cancelled:
                self._now = max(self._now, due)
                callback()
        self._now = target

    @property
    def next_alarm_ns(self) -> int | None:
        """When the earliest pending alarm is due, if any."""
        while self._alarms and self._alarms[0][2].cancelled:
            heapq.heappop(self._alarms)
        return self._alarms[0][0] if self._alarms else None
