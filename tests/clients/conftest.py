"""Fixtures of the client tests: the anyio backend and a fake daemon."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from tokenpool_client.v1 import tokenpool_pb2 as pb

# A fake RPC: given the request and the servicer context, returns the answer.
Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

# Starts a fake daemon answering the RPCs named by keyword; yields its address.
FakeDaemon = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_tiktoken_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Estimates use the characters rule unless a test gives tiktoken a file."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


@contextlib.asynccontextmanager
async def _serve(**behaviours: Behaviour) -> AsyncIterator[str]:
    service = pb.DESCRIPTOR.services_by_name["TokenPool"]
    handlers = {}
    for name, behaviour in behaviours.items():
        request_class = message_factory.GetMessageClass(
            service.methods_by_name[name].input_type
        )
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=request_class.FromString,
            response_serializer=_serialize,
        )

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
def fake_daemon() -> FakeDaemon:
    """Serve the given TokenPool RPCs on an ephemeral loopback port."""
    return _serve
