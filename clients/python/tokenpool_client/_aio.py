"""Asyncio client of the tokenpool daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, Unpack

import grpc

from . import _codec
from ._errors import UnavailableError, error_from_rpc
from ._fallback import ClientCounters, Fallback, WhenUnreachable
from ._retry import DEFAULT_RETRY, Counter, Retrier, RetryPolicy
from ._session import SESSION_OPS, SessionStream, SharedSession
from ._types import (
    BudgetStatus,
    Extension,
    Release,
    Reservation,
    ReservationScope,
    ReserveOptions,
    Settlement,
    TenantStatus,
    Usage,
)
from .v1 import tokenpool_pb2 as pb
from .v1 import tokenpool_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

_R = TypeVar("_R")


class AsyncClient:
    """Asyncio client of the daemon's TokenPool service.

    Create it inside the event loop that uses it, and use it as an async
    context manager (or await `close()`). Every failed call raises a
    `TokenPoolError` subclass chained to the original `grpc.RpcError`.

    Args:
        address: host:port of the daemon.
        timeout_s: Deadline of each call in seconds; Reserve adds its
            max_wait_ms on top.
        metadata: gRPC metadata sent with every call.
        channel: A channel to use instead of opening one to address; the
            caller keeps ownership and closes it.
        token: A tenant API key or the admin token, sent with every call as
            'authorization: Bearer <token>'.
        credentials: Channel credentials for TLS (see `tls_credentials`);
            a plaintext channel when None.
        tls_server_name: The name the server's certificate must carry, when
            it differs from the host in address.
        session: Send Reserve, Settle and Release over the daemon's Session
            stream, one per process shared by every such client, instead of
            one unary call each (much cheaper under load; needs a daemon that
            serves Session). With channel given, the stream runs on it and
            is this client's own.
        retry: How calls answered UNAVAILABLE are retried (`RetryPolicy`);
            `NO_RETRY` turns retries off.
        when_unreachable: What a Reserve does when the daemon still cannot
            be reached after its retries: "fail-closed" (raise
            `UnavailableError`, the default), "fail-open" (grant locally,
            holding nothing) or a `LocalAllowance` (grant locally up to a
            safe rate).
    """

    def __init__(
        self,
        address: str = _codec.DEFAULT_ADDRESS,
        *,
        timeout_s: float = _codec.DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        tls_server_name: str | None = None,
        session: bool = False,
        retry: RetryPolicy = DEFAULT_RETRY,
        when_unreachable: WhenUnreachable = "fail-closed",
    ) -> None:
        self._options = _codec.CallOptions(timeout_s, metadata, token)
        counter = Counter()
        self._retrier = Retrier(retry, counter)
        self._fallback = Fallback(when_unreachable, counter)
        self._session: SharedSession | SessionStream | None = None
        if session and channel is None:
            self._session = SharedSession(
                address, self._options, credentials, tls_server_name
            )
        elif session and channel is not None:
            # The caller's channel: one stream of this client's own on it.
            self._session = SessionStream(channel, self._options, owns_channel=False)
        self._owns_channel = channel is None
        self._channel = channel or _codec.open_channel(
            grpc.aio, address, credentials, tls_server_name
        )
        # The generated stub has no annotations; its methods return Any.
        self._stub = pb_grpc.TokenPoolStub(  # type: ignore[no-untyped-call]
            self._channel
        )
        # Releases of grants whose caller was cancelled, kept until done.
        self._undoing: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel, unless the caller passed it in.

        Releases of grants that reached cancelled callers finish first.
        """
        if self._undoing:
            await asyncio.gather(*self._undoing, return_exceptions=True)
        if self._session is not None:
            await self._session.aclose()
        if self._owns_channel:
            await self._channel.close()

    def counters(self) -> ClientCounters:
        """Return the retries and unreachable-daemon decisions counted so far."""
        return self._fallback.counters()

    async def _call(
        self,
        rpc: Callable[..., Awaitable[_R]],
        request: Any,
        timeout_s: float | None = None,
    ) -> _R:
        kind = SESSION_OPS.get(type(request))
        session = self._session if kind is not None else None

        async def attempt() -> _R:
            if session is not None and kind is not None:
                timeout = self._options.timeout_s if timeout_s is None else timeout_s
                answer: _R = await session.run(kind, request, timeout)
                return answer
            try:
                call = rpc(request, **self._options.kwargs(timeout_s))
                if isinstance(request, pb.ReserveRequest):
                    granted: _R = await self._granted_or_undone(call, request.tenant)
                    return granted
                answer = await call
                return answer
            except grpc.RpcError as exc:
                raise error_from_rpc(exc) from exc

        return await self._retrier.acall(_codec.rpc_name(rpc), attempt)

    async def _granted_or_undone(self, call: Any, tenant: str) -> Any:
        """Awaits a Reserve call; a grant its cancelled caller missed is released.

        The call is shielded from the caller's cancellation so that, when the
        cancellation comes, the call can be asked whether it had already
        ended: if not, cancelling it tells the daemon, which undoes the
        Reserve; if so, its answer is read in the background and a grant is
        released.
        """
        answer = asyncio.ensure_future(_answer_of(call))
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            if call.cancel():
                answer.add_done_callback(_drop_outcome)
            else:
                undo = asyncio.get_running_loop().create_task(
                    self._release_missed(answer, tenant)
                )
                self._undoing.add(undo)
                undo.add_done_callback(self._undoing.discard)
            raise

    async def _release_missed(self, answer: asyncio.Future[Any], tenant: str) -> None:
        """Releases the reservation a cancelled caller was granted, if it was."""
        try:
            granted = await answer
        except Exception:
            return

        try:
            await self.release(granted.reservation_id, tenant)
        except Exception as exc:
            logger.warning(
                "grant to a cancelled caller not released reservation_id=%s error=%s",
                granted.reservation_id,
                exc,
                extra={"reservation_id": granted.reservation_id},
            )
            return
        logger.info(
            "grant to a cancelled caller released reservation_id=%s",
            granted.reservation_id,
            extra={"reservation_id": granted.reservation_id},
        )

    async def reserve(
        self,
        budget: str,
        tenant: str,
        *,
        timeout_s: float | None = None,
        **options: Unpack[ReserveOptions],
    ) -> Reservation:
        """Hold tokens for one API call, waiting up to max_wait_ms for them.

        Args:
            budget: Budget to draw on.
            tenant: Who spends the tokens.
            timeout_s: Deadline in seconds, to which max_wait_ms is added;
                None takes the client's.
            **options: The optional request fields, all described under
                `ReserveOptions`, e.g. `tokens=1200` or `input_tokens=800,
                max_output_tokens=400, max_wait_ms=2000`.

        Returns:
            The granted reservation.

        A request with no idempotency key gets a fresh one, which its
        retries reuse. When the daemon stays unreachable, the client's
        `when_unreachable` choice decides.

        Raises:
            RefusedError: Too few tokens are free now; retry later.
            TooLargeError: The request could never be granted.
            UnavailableError: The daemon cannot be reached (fail-closed).
            LocalAllowanceExhaustedError: Nor can the local allowance grant.
            TypeError: An option is not a field of `ReserveOptions`.
        """
        options = _codec.with_idempotency_key(options)
        request = _codec.reserve_request(budget, tenant, options)
        timeout = self._options.reserve_timeout_s(timeout_s, options)
        try:
            response = await self._call(self._stub.Reserve, request, timeout)
        except UnavailableError as exc:
            return self._fallback.reserve(budget, tenant, options, exc)
        return _codec.reservation(response)

    async def settle(
        self,
        reservation_id: str,
        tenant: str,
        usage: Usage | None = None,
        **usage_fields: int | bool | str,
    ) -> Settlement:
        """Report what the call really used; unused tokens go back.

        Keyword fields (the names of `Usage`) override those of usage.
        """
        if self._fallback.owns(reservation_id):
            return self._fallback.settle(
                reservation_id, _codec.merged_usage(usage, usage_fields)
            )
        request = _codec.settle_request(reservation_id, tenant, usage, usage_fields)
        return _codec.settlement(await self._call(self._stub.Settle, request))

    async def release(
        self, reservation_id: str, tenant: str, *, billed_input_tokens: int = 0
    ) -> Release:
        """End a reservation whose call never happened or failed.

        Give billed_input_tokens when the provider billed the input anyway.
        """
        if self._fallback.owns(reservation_id):
            return self._fallback.release(reservation_id, billed_input_tokens)
        request = _codec.release_request(reservation_id, tenant, billed_input_tokens)
        return _codec.release(await self._call(self._stub.Release, request))

    async def extend(
        self,
        reservation_id: str,
        tenant: str,
        *,
        total_tokens: int = 0,
        lease_expires_at: datetime | None = None,
    ) -> Extension:
        """Set a new total hold and/or lease end for a running call.

        0 and None keep the current hold and lease end; lease_expires_at must
        be timezone-aware.
        """
        if self._fallback.owns(reservation_id):
            return self._fallback.extend(reservation_id, total_tokens, lease_expires_at)
        request = _codec.extend_request(
            reservation_id, tenant, total_tokens, lease_expires_at
        )
        return _codec.extension(await self._call(self._stub.Extend, request))

    async def get_budget(self, budget: str) -> BudgetStatus:
        """Return one budget's capacity and pools as they stand now."""
        request = pb.GetBudgetRequest(budget=budget)
        return _codec.budget_status(await self._call(self._stub.GetBudget, request))

    async def list_budgets(self) -> tuple[BudgetStatus, ...]:
        """Return every budget the daemon serves, in configuration order."""
        request = pb.ListBudgetsRequest()
        return _codec.budget_statuses(await self._call(self._stub.ListBudgets, request))

    async def get_tenant(self, tenant: str) -> TenantStatus:
        """Return a tenant's tier, weight and what it holds now."""
        request = pb.GetTenantRequest(tenant=tenant)
        return _codec.tenant_status(await self._call(self._stub.GetTenant, request))

    @contextlib.asynccontextmanager
    async def reservation(
        self,
        budget: str,
        tenant: str,
        *,
        timeout_s: float | None = None,
        **options: Unpack[ReserveOptions],
    ) -> AsyncIterator[ReservationScope]:
        """Reserve on entry, settle on exit, and release if the block raises.

        Fill in `scope.usage` (or call `scope.record(...)`,
        `scope.record_openai(...)`, `scope.record_anthropic(...)` or iterate
        `scope.meter(stream)`) inside the block. When the block raises, the
        reservation is released, charging `scope.billed_input_tokens`, and
        the exception propagates; but a call that reached the provider (see
        `ReservationScope`) is settled instead. A failed release or settle
        after an error is logged, never raised over it. A settle that fails
        at the end of a good block raises, except under fail-open or a local
        allowance, where it is logged and counted (`ends_lost`). A cancelled block is
        released too, unless the release is itself cancelled (as under a
        cancel scope that stays cancelled): the lease then expires.

        Args:
            budget: Budget to draw on.
            tenant: Who spends the tokens.
            timeout_s: Reserve's deadline, as for `reserve`.
            **options: As for `reserve`; a fresh idempotency key is used
                unless one is given.

        Yields:
            The reservation and the usage to settle.
        """
        options = _codec.with_idempotency_key(options)
        reservation = await self.reserve(budget, tenant, timeout_s=timeout_s, **options)
        scope = ReservationScope(reservation)
        try:
            yield scope
        except BaseException:
            await self._end_scope(scope, tenant, failed=True)
            raise

        await self._end_scope(scope, tenant, failed=False)

    async def _end_scope(
        self, scope: ReservationScope, tenant: str, *, failed: bool
    ) -> None:
        """Settle or release scope's reservation; after a failure, never raise."""
        if scope.metering:
            # Estimating a cut-off stream's output may load tiktoken's files.
            await asyncio.to_thread(scope.take_meter)
        reservation_id = scope.reservation.reservation_id
        settles = not failed or scope.reached_provider
        try:
            if settles:
                await self.settle(reservation_id, tenant, scope.usage)
            else:
                await self.release(
                    reservation_id,
                    tenant,
                    billed_input_tokens=scope.billed_input_tokens,
                )
        except Exception as exc:
            forgiven = self._fallback.forgiving and isinstance(exc, UnavailableError)
            if not failed and not forgiven:
                raise
            rpc = "Settle" if settles else "Release"
            self._fallback.note_lost_end(rpc, reservation_id, exc, after_error=failed)


async def _answer_of(call: Any) -> Any:
    return await call


def _drop_outcome(answer: asyncio.Future[Any]) -> None:
    """Reads a cancelled call's outcome, which nobody awaits any more."""
    if not answer.cancelled():
        answer.exception()
