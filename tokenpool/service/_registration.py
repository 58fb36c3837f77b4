"""Registration of the servicers, with malformed requests answered cleanly."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.service._session import OpLayer, SessionHandler

logger = logging.getLogger(__name__)

_Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Malformed:
    """Stands in for a request whose bytes did not parse."""

    message_type: str
    error: str


def _lenient(message_class: type[Message]) -> Callable[[bytes], Message | _Malformed]:
    """A deserializer that hands bad bytes to the handler instead of failing."""

    def parse(data: bytes) -> Message | _Malformed:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return _Malformed(message_class.DESCRIPTOR.full_name, str(exc))

    return parse


def _checked(rpc: str, handler: _Handler) -> _Handler:
    """Answers a malformed request INVALID_ARGUMENT; passes the rest on."""

    async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Malformed):
            logger.debug("malformed request rpc=%s error=%s", rpc, request.error)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"The request is not a valid {request.message_type} message "
                f"({request.error}); send a message built from tokenpool.proto.",
            )
        return await handler(request, context)

    return checked


# The unary RPCs a Session stream carries, by the SessionOp field naming them.
_SESSION_OPS = ("Reserve", "Settle", "Release")


def add_service(
    server: grpc.aio.Server,
    servicer: object,
    service: ServiceDescriptor,
    *,
    op_layers: Sequence[OpLayer] = (),
) -> None:
    """Registers every RPC of `service` on `servicer`'s methods.

    The one streaming RPC, Session, runs its operations through the unary
    handlers registered here, wrapped in `op_layers` (the interceptors'
    per-operation layers, outermost first).
    """
    unary: dict[str, _Handler] = {}
    handlers = {}
    for method in service.methods:
        if method.client_streaming:
            continue
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        unary[method.name] = _checked(method.name, getattr(servicer, method.name))
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            unary[method.name],
            request_deserializer=_lenient(request_class),
            response_serializer=response_class.SerializeToString,
        )
    for method in service.methods:
        if not method.client_streaming:
            continue
        session = SessionHandler(
            service.full_name,
            {name: unary[name] for name in _SESSION_OPS},
            op_layers,
        )
        handlers[method.name] = grpc.stream_stream_rpc_method_handler(
            session.serve,
            request_deserializer=_lenient(pb.SessionRequest),
            response_serializer=pb.SessionResponse.SerializeToString,
        )
    generic = grpc.method_handlers_generic_handler(service.full_name, handlers)
    server.add_generic_rpc_handlers((generic,))
