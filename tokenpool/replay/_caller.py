"""One row's Reserve and Settle over gRPC, and what each call reports."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tokenpool_client import (
    AsyncClient,
    InvalidRequestError,
    NotFoundError,
    Reservation,
    UnauthenticatedError,
    UnavailableError,
)
from tokenpool_client import TokenPoolError as ClientError

from tokenpool.engine import POOL_EXHAUSTED
from tokenpool.replay._plan import Call
from tokenpool.replay._tally import Tally

logger = logging.getLogger(__name__)

# Labels every replayed Reserve carries, so reports can tell replays apart.
LABELS = {"source": "replay"}

# Deadline of each call in real seconds; a Reserve adds its max wait on top.
CALL_TIMEOUT_S = 60.0

# Errors that would fail every row the same way: the replay stops at once.
FATAL_ERRORS = (
    InvalidRequestError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)

# Real seconds a call spent waiting for tokens, from the real time it was
# sent and the wait the daemon reported (in the daemon's clock ms).
WaitMeasure = Callable[[float, int], float]


def _no_scaling(_: float, waited_ms: int) -> float:
    return waited_ms / 1000


class Caller:
    """Sends one row's Reserve and Settle and records what came back."""

    def __init__(
        self,
        client: AsyncClient,
        tally: Tally,
        *,
        budget: str,
        max_output_tokens: int,
        max_wait_ms: int,
    ) -> None:
        self._client = client
        self._tally = tally
        self._budget = budget
        self._max_output_tokens = max_output_tokens
        self._max_wait_ms = max_wait_ms
        self._logged: set[str] = set()
        self.wait_s: WaitMeasure = _no_scaling
        """How long a call waited for tokens, in real seconds."""

    async def reserve(self, call: Call) -> Reservation | None:
        """Reserves for the call; None when refused (nothing to settle).

        Raises:
            tokenpool_client.TokenPoolError: one of FATAL_ERRORS, which every
                other row would meet too.
        """
        started = time.perf_counter()
        try:
            reservation = await self._client.reserve(
                self._budget,
                call.tenant.name,
                input_tokens=call.input_tokens,
                task_type=call.task_type.value,
                max_output_tokens=self._max_output_tokens,
                max_wait_ms=self._max_wait_ms,
                lease_ms=call.lease_ms,
                idempotency_key=call.idempotency_key,
                labels=LABELS,
            )
        except FATAL_ERRORS:
            raise
        except ClientError as exc:
            # A refusal for want of tokens comes at the end of the full wait.
            waited_ms = self._max_wait_ms if exc.reason == POOL_EXHAUSTED else 0
            waited = self.wait_s(started, waited_ms)
            latency = max(0.0, time.perf_counter() - started - waited)
            reason = exc.reason or exc.code.name
            requested = getattr(exc, "requested_tokens", None) or 0
            self._tally.refused(
                call,
                reason,
                latency,
                after_wait=waited_ms > 0,
                requested=requested,
            )
            logger.debug(
                "reserve refused row=%d reason=%s error=%s", call.index, reason, exc
            )
            return None

        waited = self.wait_s(started, reservation.waited_ms)
        latency = max(0.0, time.perf_counter() - started - waited)
        self._tally.granted(call, reservation, latency)
        return reservation

    async def settle(self, call: Call, reservation_id: str) -> None:
        """Settles the call's real usage; a failure is counted, not raised.

        Raises:
            tokenpool_client.UnavailableError: the daemon went away.
        """
        started = time.perf_counter()
        error = ""
        try:
            await self._client.settle(
                reservation_id,
                call.tenant.name,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
            )
        except UnavailableError:
            raise
        except ClientError as exc:
            error = exc.code.name
            self._log_once(error, call, exc)
        self._tally.settled(call, time.perf_counter() - started, error)

    def _log_once(self, kind: str, call: Call, exc: ClientError) -> None:
        """Logs the first settle failure of each kind; the report counts all."""
        level = logging.DEBUG if kind in self._logged else logging.WARNING
        self._logged.add(kind)
        logger.log(level, "settle failed row=%d error=%s", call.index, exc)
