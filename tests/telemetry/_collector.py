"""A real OTLP gRPC receiver, and collectors that are down or never answer."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.services: set[str] = set()

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for item in resource_spans.resource.attributes:
                if item.key == "service.name":
                    self.services.add(item.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class Receiver:
    """What an OTLP receiver got, and a way to wait for it."""

    def __init__(self, address: str, service: _TraceService) -> None:
        self.address = address
        self.endpoint = f"http://{address}"
        self._service = service

    @property
    def spans(self) -> list[Span]:
        return list(self._service.spans)

    @property
    def services(self) -> set[str]:
        """The service.name of every resource whose spans arrived."""
        return set(self._service.services)

    def named(self, name: str) -> list[Span]:
        return [span for span in self._service.spans if span.name == name]

    async def wait_for(self, *names: str, timeout_s: float = 10) -> None:
        """Waits until a span of each name has arrived."""
        with anyio.fail_after(timeout_s):
            while not all(self.named(name) for name in names):  # noqa: ASYNC110
                await anyio.sleep(0.02)


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    """An OTLP trace receiver on a loopback port of this event loop."""
    server = grpc.aio.server()
    service = _TraceService()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Receiver(f"127.0.0.1:{port}", service)
    finally:
        await server.stop(None)


def attributes(span: Span) -> dict[str, object]:
    """A span's attributes as plain Python values."""
    return {item.key: _plain(item.value) for item in span.attributes}


def event_names(span: Span) -> list[str]:
    return [event.name for event in span.events]


def _plain(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def dead_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    # The kernel completes handshakes up to the backlog; nobody accepts or reads.
    listener.listen(64)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
