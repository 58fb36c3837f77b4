"""Tests of the blocking Client against a fake daemon on a loopback port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
import grpc
import pytest
from tokenpool_client import Client
from tokenpool_client.v1 import tokenpool_pb2 as pb

if TYPE_CHECKING:
    from .conftest import FakeDaemon

pytestmark = pytest.mark.anyio


async def test_reservation_settles_on_normal_exit(fake_daemon: FakeDaemon) -> None:
    sent: list[Any] = []

    async def reserve(request: Any, context: grpc.aio.ServicerContext) -> Any:
        sent.append(request)
        return pb.ReserveResponse(reservation_id="r-7", granted_tokens=50)

    async def settle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        sent.append(request)
        return pb.SettleResponse(charged_tokens=30, refunded_tokens=20)

    def run(address: str) -> None:
        with (
            Client(address) as client,
            client.reservation("default", "team-a", tokens=50) as scope,
        ):
            scope.usage.output_tokens = 30

    async with fake_daemon(Reserve=reserve, Settle=settle) as address:
        # The fake daemon runs on this event loop: block in a thread instead.
        await anyio.to_thread.run_sync(run, address)

    reserved, settled = sent
    assert reserved.idempotency_key
    assert (settled.reservation_id, settled.output_tokens) == ("r-7", 30)


async def test_reservation_releases_on_error(fake_daemon: FakeDaemon) -> None:
    released: list[Any] = []

    async def reserve(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ReserveResponse(reservation_id="r-8", granted_tokens=50)

    async def release(request: Any, context: grpc.aio.ServicerContext) -> Any:
        released.append(request)
        return pb.ReleaseResponse(refunded_tokens=50)

    def run(address: str) -> None:
        with (
            Client(address) as client,
            client.reservation("default", "team-a", tokens=50),
        ):
            raise KeyError("no answer")

    async with fake_daemon(Reserve=reserve, Release=release) as address:
        with pytest.raises(KeyError, match=r"no answer"):
            await anyio.to_thread.run_sync(run, address)

    assert [r.reservation_id for r in released] == ["r-8"]
