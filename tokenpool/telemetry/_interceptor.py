"""A server span and a duration per RPC, continuing the caller's W3C trace."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import grpc
from opentelemetry import propagate
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_METHOD,
    RPC_RESPONSE_STATUS_CODE,
    RPC_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
)
from opentelemetry.semconv.attributes.server_attributes import (
    SERVER_ADDRESS,
    SERVER_PORT,
)
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from tokenpool.telemetry._metrics import Metrics

logger = logging.getLogger(__name__)

# Codes that mean the server failed, as OpenTelemetry's gRPC conventions
# say for server spans; the others are the caller's concern.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

_Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the unary RPCs of the named services in a span and a timer.

    The span is a SERVER span named after the method, a child of the
    caller's span when the call carried W3C trace context (`traceparent`
    metadata); the engine's events land on it. Health checks and reflection
    are left alone: they would only add noise.
    """

    def __init__(
        self,
        services: Collection[str],
        *,
        tracer: Tracer | None,
        metrics: Metrics | None,
        server_address: str,
    ) -> None:
        self._services = frozenset(services)
        self._tracer = tracer
        self._metrics = metrics
        host, _, port = server_address.rpartition(":")
        self._server: dict[str, str | int] = {SERVER_ADDRESS: host.strip("[]")}
        if port.isdigit():
            self._server[SERVER_PORT] = int(port)

    def listening_on(self, address: str) -> None:
        """Records the address actually bound (a port of 0 picks one)."""
        host, _, port = address.rpartition(":")
        self._server = {SERVER_ADDRESS: host.strip("[]"), SERVER_PORT: int(port)}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method.lstrip("/")
        service = method.partition("/")[0]
        if handler is None or handler.unary_unary is None:
            return handler
        if service not in self._services:
            return handler

        metadata = handler_call_details.invocation_metadata or ()
        observed = self._observed(method, metadata, handler.unary_unary)
        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def op_layer(self, method: str, metadata: Any, behavior: _Behavior) -> _Behavior:
        """Wraps one operation of a Session stream as its unary RPC is wrapped.

        Each operation gets the span and duration its unary RPC would get,
        named after that RPC (`tokenpool.v1.TokenPool/Reserve`), a child of
        the trace context the stream was opened with.
        """
        name = method.lstrip("/")
        if name.partition("/")[0] not in self._services:
            return behavior
        return self._observed(name, metadata, behavior)

    def _observed(self, method: str, metadata: Any, behavior: _Behavior) -> _Behavior:
        tracer, metrics = self._tracer, self._metrics

        async def observed(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            started = time.perf_counter()
            if tracer is None:
                code = grpc.StatusCode.OK
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    code = _code_of(exc, context)
                    raise
                finally:
                    if metrics is not None:
                        metrics.rpc_finished(
                            method, code.name, time.perf_counter() - started
                        )

            carrier = {
                item[0]: item[1] for item in metadata if isinstance(item[1], str)
            }
            parent = propagate.extract(carrier)
            attributes: dict[str, str | int] = {
                RPC_SYSTEM_NAME: "grpc",
                RPC_METHOD: method,
                **self._server,
                **_peer(context.peer()),
            }
            with tracer.start_as_current_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                code = grpc.StatusCode.OK
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    code = _code_of(exc, context)
                    raise
                finally:
                    span.set_attribute(RPC_RESPONSE_STATUS_CODE, code.name)
                    if code in _SERVER_ERRORS:
                        span.set_attribute(ERROR_TYPE, code.name)
                        span.set_status(Status(StatusCode.ERROR, code.name))
                    if metrics is not None:
                        metrics.rpc_finished(
                            method, code.name, time.perf_counter() - started
                        )

        return observed


def _code_of(
    exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]
) -> grpc.StatusCode:
    """The status an RPC ended with once its handler raised."""
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return code
    return grpc.StatusCode.UNKNOWN


def _peer(peer: str) -> dict[str, str | int]:
    """network.peer.* from gRPC's peer string (ipv4:127.0.0.1:5000, ipv6:[::1]:5)."""
    _, _, where = peer.partition(":")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return {}
    return {NETWORK_PEER_ADDRESS: host.strip("[]"), NETWORK_PEER_PORT: int(port)}
