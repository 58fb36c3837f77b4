"""The Session stream: many tagged Reserve, Settle and Release calls on one stream.

Each operation runs through the very handler chain of its unary RPC: the
interceptors' per-operation layers (telemetry's span and timer, access
control's check of the operation's tenant), the malformed-request check and
the servicer's method. A small stand-in for the call context catches the
status the handler would have ended the call with and answers it as the
operation's `OpStatus` instead, so a failed operation never ends the stream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, cast

import anyio
import grpc
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from google.protobuf.message import Message
from tokenpool_client.v1 import tokenpool_pb2 as pb

logger = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]

# Results decided in one pass of the event loop go out in one message; this
# bounds a message so that a huge backlog is still sent in pieces.
_MAX_RESULTS_PER_MESSAGE = 1024

# The key gRPC carries a rich status under, in its trailing metadata.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class OpLayer(Protocol):
    """Wraps one operation's handler, as an interceptor wraps a unary call."""

    def __call__(
        self,
        method: str,
        metadata: Sequence[tuple[str, str | bytes]],
        behavior: Behavior,
    ) -> Behavior:
        """The handler of `method` (a full path) wrapped for this stream's caller."""
        ...


class _OpFailed(Exception):
    """Raised when an operation's handler ends it with a status."""

    def __init__(self, status: pb.OpStatus) -> None:
        super().__init__(status.message)
        self.status = status


class _OpContext:
    """The part of a call context an operation's handlers use.

    Args:
        stream: The Session call's own context (peer, metadata).
        timeout_s: The operation's own deadline from now, if it has one.
    """

    def __init__(
        self, stream: grpc.aio.ServicerContext[Any, Any], timeout_s: float | None
    ) -> None:
        self._stream = stream
        self._deadline = None if timeout_s is None else anyio.current_time() + timeout_s
        self._code = grpc.StatusCode.OK

    def time_remaining(self) -> float | None:
        """The operation's deadline, else the stream's, in seconds from now."""
        if self._deadline is not None:
            return max(0.0, self._deadline - anyio.current_time())
        remaining: float | None = self._stream.time_remaining()
        return remaining

    def peer(self) -> str:
        """The stream's peer."""
        peer: str = self._stream.peer()
        return peer

    def invocation_metadata(self) -> Any:
        """The stream's metadata."""
        return self._stream.invocation_metadata()

    def code(self) -> grpc.StatusCode:
        """The status the operation ended with, OK until it failed."""
        return self._code

    async def abort_with_status(self, status: grpc.Status) -> None:
        """Ends the operation (not the stream) with a rich status."""
        self._code = status.code
        raise _OpFailed(_op_status(status))

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        """Ends the operation (not the stream) with a plain status."""
        self._code = code
        raise _OpFailed(pb.OpStatus(code=code.value[0], message=details))


def _status(code: grpc.StatusCode, message: str) -> pb.OpStatus:
    return pb.OpStatus(code=code.value[0], message=message)


class SessionHandler:
    """Serves Session streams with the handlers of the unary RPCs.

    Args:
        service: The full name of the service the unary RPCs belong to.
        handlers: The unary handler (malformed-request check included) of
            Reserve, Settle and Release, by method name.
        layers: Per-operation layers of the server's interceptors, outermost
            first; each stream builds its chains once, with its metadata.
    """

    def __init__(
        self,
        service: str,
        handlers: Mapping[str, Behavior],
        layers: Sequence[OpLayer] = (),
    ) -> None:
        self._service = service
        self._handlers = dict(handlers)
        self._layers = tuple(layers)

    def _chain(
        self, name: str, metadata: Sequence[tuple[str, str | bytes]]
    ) -> Behavior:
        behavior = self._handlers[name]
        method = f"/{self._service}/{name}"
        for layer in reversed(self._layers):
            behavior = layer(method, metadata, behavior)
        return behavior

    async def serve(
        self,
        requests: AsyncIterable[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Answers every operation of the stream until the client closes it.

        When the client half-closes, operations still running finish and are
        answered; when the stream is cancelled, they are cancelled with it, so
        a waiting Reserve is undone as for a unary caller that left.
        """
        metadata = tuple(context.invocation_metadata() or ())
        chains = {name: self._chain(name, metadata) for name in self._handlers}

        def chain_of(name: str, trace: Sequence[tuple[str, str]]) -> Behavior:
            return self._chain(name, (*metadata, *trace))

        send, receive = anyio.create_memory_object_stream[_Decided](math.inf)
        stream = _Stream(chains, chain_of, context, send, receive)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(stream.write_results, tasks.cancel_scope)
                async with send:
                    await stream.run(requests)
        finally:
            # Every operation has ended by now; a grant still unsent when the
            # stream failed reached nobody, so it must not stay held.
            # TODO(#7): a client that stops reading and then cancels leaves
            # a write waiting on flow control that nothing wakes, so the
            # grants decided meanwhile stay held until their leases end.
            with anyio.CancelScope(shield=True):
                await stream.undo_unsent()


class _Decided(NamedTuple):
    """One decided operation, waiting to be sent."""

    tag: int
    kind: str
    """The SessionResult field the answer goes in."""
    message: Message
    undo: pb.ReleaseRequest | None = None
    """How to take back a grant whose answer was never sent, if it may be."""
    registered: bool = True
    """Whether the tag counts among the stream's unanswered ones until sent."""


class _Stream:
    """One stream's operations, by tag, and the answers not yet sent."""

    def __init__(
        self,
        chains: Mapping[str, Behavior],
        chain_of: Callable[[str, Sequence[tuple[str, str]]], Behavior],
        context: grpc.aio.ServicerContext[Any, Any],
        send: MemoryObjectSendStream[_Decided],
        receive: MemoryObjectReceiveStream[_Decided],
    ) -> None:
        self._chains = chains
        self._chain_of = chain_of
        self._context = context
        self._send = send
        self._receive = receive
        self._running: dict[int, anyio.CancelScope] = {}
        # Tags of operations started and not yet put in a sent message.
        self._unanswered: set[int] = set()
        # The message being written: unsent until the write returns.
        self._writing: list[_Decided] = []

    async def write_results(self, stream_scope: anyio.CancelScope) -> None:
        """Sends results as they are decided, those ready together in one message.

        A write that fails (the client is gone) ends the stream's work through
        `stream_scope`; what is left unsent is for `undo_unsent`.
        """
        async for first in self._receive:
            batch = [first]
            while len(batch) < _MAX_RESULTS_PER_MESSAGE:
                try:
                    batch.append(self._receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break

            response = pb.SessionResponse()
            results = response.results
            for decided in batch:
                # Copied once, straight into the message that is sent.
                added = results.add(tag=decided.tag)
                getattr(added, decided.kind).CopyFrom(decided.message)
                if decided.registered:
                    self._unanswered.discard(decided.tag)
            self._writing = batch
            try:
                await self._context.write(response)
            except Exception as exc:
                logger.debug("session write failed error=%r", exc)
                stream_scope.cancel()
                return
            self._writing = []

    async def undo_unsent(self) -> None:
        """Releases the grants decided but never sent, once every operation ended.

        A grant asked with an idempotency key is kept: the caller's retry with
        that key gets it back (a released one would come back dead), and its
        lease ends it otherwise.
        """
        unsent, self._writing = self._writing, []
        while True:
            try:
                unsent.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()

        undos = [decided.undo for decided in unsent if decided.undo is not None]
        if not undos:
            return
        async with anyio.create_task_group() as tasks:
            for request in undos:
                tasks.start_soon(self._undo, request)

    async def _undo(self, request: pb.ReleaseRequest) -> None:
        context = _OpContext(self._context, None)
        try:
            await self._chains["Release"](
                request, cast(grpc.aio.ServicerContext[Any, Any], context)
            )
        except _OpFailed as failed:
            logger.warning(
                "unsent session grant not released reservation_id=%s error=%s",
                request.reservation_id,
                failed.status.message,
            )
            return
        except Exception:
            logger.exception(
                "unsent session grant not released reservation_id=%s",
                request.reservation_id,
            )
            return
        logger.warning(
            "session grant released, its answer was never sent "
            "reservation_id=%s tenant=%s",
            request.reservation_id,
            request.tenant,
        )

    async def run(self, requests: AsyncIterable[Any]) -> None:
        async with anyio.create_task_group() as ops:
            async for message in requests:
                if not isinstance(message, pb.SessionRequest):
                    # A message whose bytes did not parse has no tags to answer.
                    logger.debug("malformed session message error=%s", message)
                    await self._context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "A Session message is not a valid "
                        "tokenpool.v1.SessionRequest; send messages built from "
                        "tokenpool.proto.",
                    )
                for op in message.ops:
                    self._start(ops, op)

    def _start(self, ops: TaskGroup, op: pb.SessionOp) -> None:
        kind = op.WhichOneof("op")
        if kind == "cancel":
            scope = self._running.get(op.cancel)
            if scope is not None:
                scope.cancel()
            return
        refusal = _refusal(op, kind, self._unanswered)
        if refusal is not None:
            # Not registered: the tag may belong to an operation in flight.
            self._send.send_nowait(_Decided(op.tag, "error", refusal, registered=False))
            return

        scope = anyio.CancelScope()
        self._running[op.tag] = scope
        self._unanswered.add(op.tag)
        ops.start_soon(self._run_op, op, kind, scope)

    async def _run_op(
        self, op: pb.SessionOp, kind: str, scope: anyio.CancelScope
    ) -> None:
        rpc = kind.capitalize()
        timeout_s = op.timeout_ms / 1000 if op.timeout_ms > 0 else None
        context = _OpContext(self._context, timeout_s)
        behavior = self._chains[rpc]
        if op.trace_context:
            # The operation's own trace context wins over the stream's.
            behavior = self._chain_of(rpc, sorted(op.trace_context.items()))
        request = getattr(op, kind)
        try:
            with scope:
                with _timeout(timeout_s):
                    response = await behavior(
                        request, cast(grpc.aio.ServicerContext[Any, Any], context)
                    )
                    self._send.send_nowait(
                        _Decided(op.tag, kind, response, _undo_of(op, response))
                    )
                    return
                self._answer(
                    op.tag,
                    "error",
                    _status(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"The {rpc} operation passed its timeout_ms of "
                        f"{op.timeout_ms}; nothing is held for it.",
                    ),
                )
                return
            self._answer(
                op.tag,
                "error",
                _status(
                    grpc.StatusCode.CANCELLED,
                    f"The {rpc} operation was cancelled by the client.",
                ),
            )
        except _OpFailed as failed:
            self._answer(op.tag, "error", failed.status)
        finally:
            self._running.pop(op.tag, None)

    def _answer(self, tag: int, kind: str, message: Message) -> None:
        self._send.send_nowait(_Decided(tag, kind, message))


def _refusal(
    op: pb.SessionOp, kind: str | None, unanswered: set[int]
) -> pb.OpStatus | None:
    """Why an operation is refused before it runs, if it is."""
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    if kind is None:
        return _status(
            invalid, "A Session operation must set reserve, settle, release or cancel."
        )
    if op.tag in unanswered:
        return _status(
            invalid,
            f"tag {op.tag} belongs to an operation of this stream that is not "
            "answered yet; give each unanswered operation its own tag.",
        )
    if op.timeout_ms < 0:
        return _status(
            invalid,
            f"timeout_ms must be 0 (no timeout) or a positive number of "
            f"milliseconds, got {op.timeout_ms}.",
        )
    return None


def _undo_of(op: pb.SessionOp, response: Message) -> pb.ReleaseRequest | None:
    """The Release that takes back op's grant should its answer go unsent."""
    if op.WhichOneof("op") != "reserve" or op.reserve.idempotency_key:
        return None
    granted = cast(pb.ReserveResponse, response)
    return pb.ReleaseRequest(
        reservation_id=granted.reservation_id, tenant=op.reserve.tenant
    )


def _timeout(timeout_s: float | None) -> anyio.CancelScope:
    """A scope that ends the operation at its timeout; a plain one without."""
    if timeout_s is None:
        return anyio.CancelScope()
    return anyio.move_on_after(timeout_s)


def _op_status(status: grpc.Status) -> pb.OpStatus:
    """The OpStatus of a rich gRPC status: its google.rpc.Status, re-read."""
    for key, value in status.trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            found: pb.OpStatus = pb.OpStatus.FromString(value)
            return found
    return pb.OpStatus(code=status.code.value[0], message=status.details)
