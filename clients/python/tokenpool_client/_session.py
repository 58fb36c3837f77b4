"""The shared Session stream: many callers' operations on one gRPC stream.

`AsyncClient(session=True)` and `Client(session=True)` send Reserve, Settle
and Release over the daemon's `Session` RPC instead of one unary call each.
Every client of a process that talks to the same daemon with the same
credentials shares one stream (per event loop; the blocking client's
streams live on one background loop). Operations queued while a message is
being sent go out together in the next one; answers come back tagged, each
as soon as the daemon decides it. A broken stream fails the operations in
flight with the error it ended with, and the next operation opens a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future as ThreadFuture
from typing import Any, TypeVar

import grpc
from opentelemetry import propagate

from ._codec import CallOptions, open_channel
from ._errors import TokenPoolError, error_from_rpc
from .v1 import tokenpool_pb2 as pb
from .v1 import tokenpool_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# How long past an operation's own deadline the client waits for the
# daemon's answer before giving up on it locally (seconds).
_ANSWER_GRACE_S = 1.0

# The trailing-metadata key a rich status travels under.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# The requests a Session stream carries, and the SessionOp field of each.
SESSION_OPS: dict[type[Any], str] = {
    pb.ReserveRequest: "reserve",
    pb.SettleRequest: "settle",
    pb.ReleaseRequest: "release",
}

# Streams shared in this process, by event loop and connection settings.
_SHARED: dict[tuple[Any, ...], SessionStream] = {}
_SHARED_LOCK = threading.Lock()


def _op_error(status: pb.OpStatus) -> TokenPoolError:
    """The client exception for one failed operation, as its unary RPC raises."""
    code = next(
        (c for c in grpc.StatusCode if c.value[0] == status.code),
        grpc.StatusCode.UNKNOWN,
    )
    trailing = grpc.aio.Metadata((_STATUS_DETAILS_KEY, status.SerializeToString()))
    failed = grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), trailing, details=status.message
    )
    error = error_from_rpc(failed)
    error.__cause__ = failed
    return error


class SessionStream:
    """One Session stream shared by every caller on one event loop.

    Args:
        channel: The channel the stream runs on.
        options: Metadata and credentials sent when the stream is opened.
        owns_channel: Whether `aclose` closes the channel too.
    """

    def __init__(
        self, channel: grpc.aio.Channel, options: CallOptions, *, owns_channel: bool
    ) -> None:
        self.users = 0
        """References to this stream that `SharedSession` handed out."""
        self._channel = channel
        self._owns_channel = owns_channel
        # The generated stub has no annotations; its methods return Any.
        self._stub = pb_grpc.TokenPoolStub(channel)  # type: ignore[no-untyped-call]
        self._metadata = options.metadata
        self._tags = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[pb.SessionResult]] = {}
        self._outbox: list[pb.SessionOp] = []
        self._wake = asyncio.Event()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, kind: str, request: Any, timeout_s: float) -> Any:
        """Sends one operation and returns its response message.

        Raises:
            TokenPoolError: The daemon refused the operation, or the stream
                broke before it was answered.
        """
        if self._closed:
            raise RuntimeError("The session stream is closed; open a new client.")
        if self._call is None:
            self._open()

        tag = next(self._tags)
        op = pb.SessionOp(tag=tag, timeout_ms=max(1, int(timeout_s * 1000)))
        getattr(op, kind).CopyFrom(request)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            op.trace_context.update(carrier)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[tag] = answer
        self._send(op)

        try:
            async with asyncio.timeout(timeout_s + _ANSWER_GRACE_S):
                result = await answer
        except BaseException:
            # A caller that gives up withdraws its operation, as a unary
            # caller's cancellation does: a waiting Reserve is undone.
            if self._waiting.pop(tag, None) is not None:
                self._send(pb.SessionOp(tag=next(self._tags), cancel=tag))
            raise

        if result.WhichOneof("result") == "error":
            raise _op_error(result.error)
        return getattr(result, kind)

    def _send(self, op: pb.SessionOp) -> None:
        self._outbox.append(op)
        self._wake.set()

    def _open(self) -> None:
        self._call = self._stub.Session(self._requests(), metadata=self._metadata)
        self._reader = asyncio.get_running_loop().create_task(
            self._read(self._call), name="tokenpool-session-reader"
        )

    async def _requests(self) -> AsyncIterator[pb.SessionRequest]:
        """Everything queued since the last message, in one message."""
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            ops, self._outbox = self._outbox, []
            if ops:
                yield pb.SessionRequest(ops=ops)

    async def _read(self, call: Any) -> None:
        """Hands each answer to its caller; fails them all when the stream ends."""
        failure: TokenPoolError | None = None
        try:
            async for response in call:
                for result in response.results:
                    answer = self._waiting.pop(result.tag, None)
                    if answer is not None and not answer.done():
                        answer.set_result(result)
        except grpc.RpcError as exc:
            failure = error_from_rpc(exc)
            logger.warning("session stream ended code=%s", failure.code.name)
        except asyncio.CancelledError:
            failure = None
        finally:
            if self._call is call:
                self._call = None
            waiting, self._waiting = self._waiting, {}
            for answer in waiting.values():
                if not answer.done():
                    answer.set_exception(
                        failure
                        or _op_error(
                            pb.OpStatus(
                                code=grpc.StatusCode.UNAVAILABLE.value[0],
                                message="The session stream ended before the "
                                "daemon answered; retry the operation.",
                            )
                        )
                    )

    async def aclose(self) -> None:
        """Ends the stream; operations still waiting fail as UNAVAILABLE."""
        self._closed = True
        self._wake.set()
        call, reader = self._call, self._reader
        if call is not None:
            call.cancel()
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if self._owns_channel:
            await self._channel.close()


class SharedSession:
    """A reference to this process's stream for one daemon and credential set.

    The first reference on an event loop opens a channel and a stream; the
    last one to close closes both.
    """

    def __init__(
        self,
        address: str,
        options: CallOptions,
        credentials: grpc.ChannelCredentials | None,
        tls_server_name: str | None,
    ) -> None:
        self._key = (
            address,
            options.metadata,
            id(credentials) if credentials is not None else None,
            tls_server_name,
        )
        self._address = address
        self._options = options
        self._credentials = credentials
        self._tls_server_name = tls_server_name
        self._loop_key: tuple[Any, ...] | None = None

    def _stream(self) -> SessionStream:
        key = (asyncio.get_running_loop(), *self._key)
        with _SHARED_LOCK:
            stream = _SHARED.get(key)
            if stream is None:
                channel = open_channel(
                    grpc.aio, self._address, self._credentials, self._tls_server_name
                )
                stream = SessionStream(channel, self._options, owns_channel=True)
                _SHARED[key] = stream
            if self._loop_key is None:
                self._loop_key = key
                stream.users += 1
        return stream

    async def run(self, kind: str, request: Any, timeout_s: float) -> Any:
        """Sends one operation on the shared stream; see `SessionStream.run`."""
        return await self._stream().run(kind, request, timeout_s)

    async def aclose(self) -> None:
        """Drops this reference; the last one closes the stream and channel."""
        key, self._loop_key = self._loop_key, None
        if key is None:
            return
        with _SHARED_LOCK:
            stream = _SHARED[key]
            stream.users -= 1
            if stream.users > 0:
                return
            del _SHARED[key]
        await stream.aclose()


class _BackgroundLoop:
    """The event loop the blocking client's shared streams run on."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def submit(self, work: Coroutine[Any, Any, _T]) -> ThreadFuture[_T]:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tokenpool-session", daemon=True
                )
                thread.start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(work, self._loop)


_BACKGROUND = _BackgroundLoop()


class BlockingSession:
    """The blocking client's handle on a shared stream, run on a background loop."""

    def __init__(self, shared: SharedSession) -> None:
        self._shared = shared

    def run(self, kind: str, request: Any, timeout_s: float) -> Any:
        """Sends one operation and blocks until it is answered."""
        future = _BACKGROUND.submit(self._shared.run(kind, request, timeout_s))
        try:
            return future.result(timeout_s + 2 * _ANSWER_GRACE_S)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Drops the reference; the last one closes the stream."""
        _BACKGROUND.submit(self._shared.aclose()).result(10)
