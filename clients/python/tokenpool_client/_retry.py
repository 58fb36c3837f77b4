"""Retries of calls the daemon answered UNAVAILABLE, with backoff.

Only UNAVAILABLE is retried: the daemon could not be reached, is shutting
down, or cannot write its ledger. Each retry sends the very request message
of the first attempt, so a Reserve carries the same idempotency key and the
daemon returns the original reservation if an earlier attempt got through
(SPEC 12.7); Settle and Release with the same figures, and Extend (absolute
arguments), are harmless to repeat too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from ._errors import UnavailableError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, a call answered UNAVAILABLE is retried.

    The n-th retry waits `initial_backoff_s * 2**(n-1)` seconds plus up to
    `jitter_s` of random jitter, never more than `max_backoff_s`. Retrying
    stops after `attempts` attempts in all, or once `max_elapsed_s` have
    passed since the first attempt, whichever comes first; the last
    `UnavailableError` is then raised (or handled by the client's
    `when_unreachable` choice, for a Reserve).
    """

    attempts: int = 4
    """Attempts in all, the first included; 1 turns retries off."""
    initial_backoff_s: float = 0.1
    """Wait before the first retry, in seconds."""
    max_backoff_s: float = 2.0
    """Longest wait between two attempts, in seconds."""
    jitter_s: float = 0.1
    """Random extra wait of up to this many seconds, so clients spread out."""
    max_elapsed_s: float = 10.0
    """No new attempt starts this many seconds after the first one."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(
                f"attempts must be 1 or more (1 turns retries off), "
                f"got {self.attempts!r}."
            )
        for name in ("initial_backoff_s", "max_backoff_s", "jitter_s"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be 0 or more seconds, got {value!r}.")
        if self.max_elapsed_s <= 0:
            raise ValueError(
                f"max_elapsed_s must be a positive number of seconds, "
                f"got {self.max_elapsed_s!r}."
            )


# Retrying when the caller says nothing: a few quick attempts, seconds apart.
DEFAULT_RETRY = RetryPolicy()

# One attempt and no retry, for `retry=NO_RETRY`.
NO_RETRY = RetryPolicy(attempts=1)


class Counter:
    """A thread-safe tally of named events, read as a snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        """Count amount more name events."""
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        """Return the counts so far."""
        with self._lock:
            return dict(self._counts)


class Retrier:
    """Runs one client's calls under its `RetryPolicy`, counting retries."""

    def __init__(self, policy: RetryPolicy, counter: Counter) -> None:
        self._policy = policy
        self._counter = counter

    def _arguments(self, rpc: str) -> dict[str, object]:
        policy = self._policy

        def before_sleep(state: RetryCallState) -> None:
            self._counter.add("retries")
            delay_s = state.next_action.sleep if state.next_action else 0.0
            logger.warning(
                "daemon unavailable; retrying rpc=%s attempt=%d delay_s=%.3f "
                "code=UNAVAILABLE",
                rpc,
                state.attempt_number + 1,
                delay_s,
                extra={"rpc": rpc, "attempt": state.attempt_number + 1},
            )

        return {
            "retry": retry_if_exception_type(UnavailableError),
            "stop": stop_after_attempt(policy.attempts)
            | stop_after_delay(policy.max_elapsed_s),
            "wait": wait_exponential_jitter(
                multiplier=policy.initial_backoff_s,
                max=policy.max_backoff_s,
                jitter=policy.jitter_s,
            ),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def call(self, rpc: str, attempt: Callable[[], _T]) -> _T:
        """Run attempt, again after a backoff while it raises UnavailableError."""
        result: _T = Retrying(**self._arguments(rpc))(attempt)  # type: ignore[arg-type]
        return result

    async def acall(self, rpc: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Await attempt, again after a backoff while it raises UnavailableError."""
        retrying = AsyncRetrying(**self._arguments(rpc))  # type: ignore[arg-type]
        result: _T = await retrying(attempt)
        return result
