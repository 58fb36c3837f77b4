"""What a client does when the daemon cannot be reached, and its counters.

After its retries, a Reserve that still gets UNAVAILABLE is handled by the
client's `when_unreachable` choice:

- ``"fail-closed"`` (the default): `UnavailableError` is raised, and the
  API call does not happen.
- ``"fail-open"``: a local reservation is granted, holding nothing, so the
  service goes on unmetered until the daemon is back.
- `LocalAllowance`: a token bucket in this process grants local
  reservations up to a safe rate; past it, `LocalAllowanceExhaustedError`.

Local reservations have ids starting `local-`; settling, releasing or
extending them is answered here, without the daemon. Each decision is
logged at WARNING and counted in `ClientCounters`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import grpc

from ._errors import LocalAllowanceExhaustedError, UnavailableError
from ._estimate import CHARS_PER_TOKEN
from ._retry import Counter
from ._types import (
    Extension,
    PoolDraw,
    Release,
    Reservation,
    ReserveOptions,
    Settlement,
    Usage,
)

logger = logging.getLogger(__name__)

# Prefix of the ids of reservations granted locally, never by a daemon.
LOCAL_ID_PREFIX = "local-"

# Output tokens a local reservation holds for a call that gives no max
# output tokens (the daemon would use its task-type allowance instead).
LOCAL_OUTPUT_ALLOWANCE_TOKENS = 1024

# Lease of a local reservation that asks for none (the daemon's default).
LOCAL_LEASE_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class LocalAllowance:
    """A safe rate of tokens to grant locally while the daemon is unreachable.

    A token bucket of `burst_tokens` that refills at `tokens_per_minute`
    (and starts full): each local reservation takes its hold out of it, and
    a settle or release gives back what the call did not use. Keep it well
    under the provider's own limit: every process of the service has one.
    """

    tokens_per_minute: int
    """Refill rate of the bucket, in tokens per minute."""
    burst_tokens: int = 0
    """Size of the bucket; 0 means one minute's worth (tokens_per_minute)."""
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    """Monotonic seconds; tests pass a clock they drive."""

    def __post_init__(self) -> None:
        if self.tokens_per_minute < 1:
            raise ValueError(
                f"tokens_per_minute must be 1 or more, got {self.tokens_per_minute!r}."
            )
        if self.burst_tokens < 0:
            raise ValueError(
                f"burst_tokens must be 0 (a minute's worth) or more, "
                f"got {self.burst_tokens!r}."
            )


# The choices of when_unreachable.
WhenUnreachable = Literal["fail-open", "fail-closed"] | LocalAllowance


@dataclass(frozen=True, slots=True)
class ClientCounters:
    """What one client did about an unreachable daemon, since it was created."""

    retries: int = 0
    """Attempts repeated after UNAVAILABLE (all RPCs)."""
    unreachable: int = 0
    """Reserves still UNAVAILABLE after their retries."""
    failed_closed: int = 0
    """Of those, refused with UnavailableError (fail-closed)."""
    failed_open: int = 0
    """Of those, granted locally holding nothing (fail-open)."""
    local_granted: int = 0
    """Of those, granted from the local allowance."""
    local_refused: int = 0
    """Of those, refused because the local allowance was spent."""
    local_ended: int = 0
    """Local reservations settled or released."""
    ends_lost: int = 0
    """Settles and releases of daemon reservations that failed and were
    logged instead of raised (their leases expire on the daemon)."""


def local_hold(options: ReserveOptions) -> int:
    """Tokens a local reservation holds: the count asked for, else an estimate."""
    tokens = options.get("tokens", 0)
    if tokens > 0:
        return tokens
    input_tokens = options.get("input_tokens", 0) or math.ceil(
        options.get("input_chars", 0) / CHARS_PER_TOKEN
    )
    output = options.get("max_output_tokens", 0) or LOCAL_OUTPUT_ALLOWANCE_TOKENS
    return input_tokens + output


@dataclass
class _Local:
    hold: int
    tenant: str
    lease_expires_at: datetime
    from_bucket: bool


class _Bucket:
    """The local allowance's token bucket (not thread-safe: lock outside)."""

    def __init__(self, allowance: LocalAllowance) -> None:
        self._clock = allowance.clock
        self._rate_per_s = allowance.tokens_per_minute / 60
        self.capacity = allowance.burst_tokens or allowance.tokens_per_minute
        self._level = float(self.capacity)
        self._at = self._clock()

    def level(self) -> float:
        now = self._clock()
        self._level = min(
            self.capacity, self._level + (now - self._at) * self._rate_per_s
        )
        self._at = now
        return self._level

    def take(self, tokens: int) -> bool:
        if self.level() < tokens:
            return False
        self._level -= tokens
        return True

    def give_back(self, tokens: int) -> None:
        """Refund (positive) or charge an overrun (negative, may go into debt)."""
        self._level = min(self.capacity, self.level() + tokens)

    def wait_s(self, tokens: int) -> float:
        return max(tokens - self.level(), 0) / self._rate_per_s


class Fallback:
    """One client's `when_unreachable` choice, local reservations and counts."""

    def __init__(self, choice: WhenUnreachable, counter: Counter) -> None:
        if not isinstance(choice, LocalAllowance) and choice not in (
            "fail-open",
            "fail-closed",
        ):
            raise ValueError(
                f"when_unreachable must be 'fail-open', 'fail-closed' or a "
                f"LocalAllowance, got {choice!r}."
            )
        self._choice = choice
        self._counter = counter
        self._lock = threading.Lock()
        self._open: dict[str, _Local] = {}
        self._bucket = _Bucket(choice) if isinstance(choice, LocalAllowance) else None

    @property
    def forgiving(self) -> bool:
        """Whether a lost settle is logged rather than raised (not fail-closed)."""
        return self._choice != "fail-closed"

    def counters(self) -> ClientCounters:
        """Return the counts so far."""
        return ClientCounters(**self._counter.snapshot())

    def note_lost_end(
        self, rpc: str, reservation_id: str, exc: Exception, *, after_error: bool
    ) -> None:
        """Count and log a settle or release that failed and is not raised."""
        self._counter.add("ends_lost")
        when = "after the block raised" if after_error else "at the end of the block"
        logger.warning(
            "%s failed %s; the lease will expire rpc=%s reservation_id=%s error=%r",
            rpc.lower(),
            when,
            rpc,
            reservation_id,
            exc,
            extra={"rpc": rpc, "reservation_id": reservation_id},
        )

    def reserve(
        self,
        budget: str,
        tenant: str,
        options: ReserveOptions,
        error: UnavailableError,
    ) -> Reservation:
        """Answer a Reserve the daemon did not, or raise error."""
        self._counter.add("unreachable")
        hold = local_hold(options)
        context = {"budget": budget, "tenant": tenant, "tokens": hold}
        if self._choice == "fail-closed":
            self._counter.add("failed_closed")
            logger.warning(
                "daemon unreachable; reserve refused (fail-closed) "
                "budget=%s tenant=%s tokens=%d",
                budget,
                tenant,
                hold,
                extra=context,
            )
            raise error

        with self._lock:
            bucket = self._bucket
            granted = bucket is None or bucket.take(hold)
            if granted:
                reservation = self._grant(budget, tenant, options, hold)
            else:
                assert bucket is not None
                available = max(int(bucket.level()), 0)
                retry_after_s = bucket.wait_s(hold)

        if not granted:
            self._counter.add("local_refused")
            logger.warning(
                "daemon unreachable; local allowance spent, reserve refused "
                "budget=%s tenant=%s tokens=%d available=%d",
                budget,
                tenant,
                hold,
                available,
                extra=context,
            )
            raise LocalAllowanceExhaustedError(
                hold, available, retry_after_s, capacity=self._local_capacity()
            ) from error

        mode = "local allowance" if self._bucket is not None else "fail-open"
        self._counter.add("local_granted" if self._bucket else "failed_open")
        logger.warning(
            "daemon unreachable; reserve granted locally (%s) "
            "budget=%s tenant=%s tokens=%d reservation_id=%s",
            mode,
            budget,
            tenant,
            hold,
            reservation.reservation_id,
            extra={**context, "reservation_id": reservation.reservation_id},
        )
        return reservation

    def _local_capacity(self) -> int:
        return self._bucket.capacity if self._bucket is not None else 0

    def _grant(
        self, budget: str, tenant: str, options: ReserveOptions, hold: int
    ) -> Reservation:
        now = datetime.now(UTC)
        expired = [key for key, o in self._open.items() if o.lease_expires_at <= now]
        for key in expired:
            del self._open[key]
        lease_ms = options.get("lease_ms", 0) or LOCAL_LEASE_MS
        lease_end = now + timedelta(milliseconds=lease_ms)
        reservation_id = LOCAL_ID_PREFIX + uuid.uuid4().hex
        from_bucket = self._bucket is not None
        self._open[reservation_id] = _Local(hold, tenant, lease_end, from_bucket)
        return Reservation(
            reservation_id=reservation_id,
            granted_tokens=hold,
            pool="local",
            budget=budget,
            sources=(PoolDraw("local", hold),),
            complexity_score=0,
            multiplier=1.0,
            lease_expires_at=lease_end,
            waited_ms=0,
            local=True,
        )

    @staticmethod
    def owns(reservation_id: str) -> bool:
        """Whether reservation_id names a local reservation."""
        return reservation_id.startswith(LOCAL_ID_PREFIX)

    def _end(self, reservation_id: str, charged: int) -> tuple[int, int]:
        """End a local reservation charging charged; return (refund, overrun)."""
        with self._lock:
            local = self._open.pop(reservation_id, None)
            if local is None:
                return 0, 0
            refunded = max(local.hold - charged, 0)
            overrun = max(charged - local.hold, 0)
            if self._bucket is not None and local.from_bucket:
                self._bucket.give_back(refunded - overrun)
        self._counter.add("local_ended")
        return refunded, overrun

    def settle(self, reservation_id: str, usage: Usage) -> Settlement:
        """Settle a local reservation as the daemon would (SPEC 4, 12.6)."""
        with self._lock:
            local = self._open.get(reservation_id)
        hold = local.hold if local is not None else 0
        used = 0
        if not usage.response_cache_hit:
            used = (
                usage.input_tokens
                + usage.cached_input_tokens
                + usage.cache_write_tokens
                + usage.output_tokens
            )
        charged = max(used, hold) if usage.incomplete else used
        refunded, overrun = self._end(reservation_id, charged)
        return Settlement(
            charged_tokens=charged, refunded_tokens=refunded, overrun_tokens=overrun
        )

    def release(self, reservation_id: str, billed_input_tokens: int) -> Release:
        """Release a local reservation, charging billed input tokens."""
        refunded, _ = self._end(reservation_id, billed_input_tokens)
        return Release(charged_tokens=billed_input_tokens, refunded_tokens=refunded)

    def extend(
        self,
        reservation_id: str,
        total_tokens: int,
        lease_expires_at: datetime | None,
    ) -> Extension:
        """Change a local reservation's hold and lease, within the allowance."""
        with self._lock:
            local = self._open.get(reservation_id)
            if local is None:
                raise UnavailableError(
                    f"Local reservation {reservation_id!r} is not open here; "
                    "it was settled, released, expired or made by another client.",
                    code=grpc.StatusCode.UNAVAILABLE,
                )
            more = max(total_tokens - local.hold, 0)
            if more and self._bucket is not None and not self._bucket.take(more):
                available = max(int(self._bucket.level()), 0)
                raise LocalAllowanceExhaustedError(
                    more,
                    available,
                    self._bucket.wait_s(more),
                    capacity=self._bucket.capacity,
                )
            if total_tokens and self._bucket is not None and local.from_bucket:
                self._bucket.give_back(max(local.hold - total_tokens, 0))
            if total_tokens:
                local.hold = total_tokens
            if lease_expires_at is not None:
                local.lease_expires_at = lease_expires_at
            return Extension(
                granted_tokens=local.hold,
                sources=(PoolDraw("local", local.hold),),
                lease_expires_at=local.lease_expires_at,
            )
