"""Tests of AsyncClient against a fake daemon on a loopback port."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from tokenpool_client import AsyncClient, PoolDraw, Reservation, Usage
from tokenpool_client.v1 import tokenpool_pb2 as pb

if TYPE_CHECKING:
    from .conftest import FakeDaemon

pytestmark = pytest.mark.anyio

LEASE_END = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _granted(reservation_id: str = "r-1") -> pb.ReserveResponse:
    response = pb.ReserveResponse(
        reservation_id=reservation_id,
        granted_tokens=900,
        pool="basic",
        budget="default",
        sources=[pb.PoolDraw(pool="basic", tokens=600), pb.PoolDraw(pool="burst")],
        complexity_score=4,
        multiplier=1.5,
        waited_ms=12,
    )
    response.lease_expires_at.FromDatetime(LEASE_END)
    return response


class _Recorder:
    """A fake TokenPool that grants, and records what it was sent."""

    def __init__(self) -> None:
        self.address = ""
        self.requests: dict[str, Any] = {}
        self.time_remaining_s = 0.0
        self.release_error = ""

    async def Reserve(
        self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveResponse:
        self.requests["Reserve"] = request
        self.time_remaining_s = context.time_remaining()
        return _granted()

    async def Settle(
        self, request: pb.SettleRequest, context: grpc.aio.ServicerContext
    ) -> pb.SettleResponse:
        self.requests["Settle"] = request
        return pb.SettleResponse(charged_tokens=120, refunded_tokens=780)

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        self.requests["Release"] = request
        if self.release_error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.release_error)
        return pb.ReleaseResponse(charged_tokens=request.billed_input_tokens)


@pytest.fixture
async def daemon(fake_daemon: FakeDaemon) -> AsyncIterator[_Recorder]:
    recorder = _Recorder()
    behaviours = {
        "Reserve": recorder.Reserve,
        "Settle": recorder.Settle,
        "Release": recorder.Release,
    }
    async with fake_daemon(**behaviours) as recorder.address:
        yield recorder


async def test_reserve_sends_arguments_and_converts_answer(
    daemon: _Recorder,
) -> None:
    async with AsyncClient(daemon.address) as client:
        reservation = await client.reserve(
            "default",
            "team-a",
            input_tokens=300,
            fallback_budgets=("spare",),
            labels={"endpoint": "/chat"},
        )

    sent = daemon.requests["Reserve"]
    assert (sent.budget, sent.tenant, sent.input_tokens) == ("default", "team-a", 300)
    assert list(sent.fallback_budgets) == ["spare"]
    assert dict(sent.labels) == {"endpoint": "/chat"}
    assert reservation == Reservation(
        reservation_id="r-1",
        granted_tokens=900,
        pool="basic",
        budget="default",
        sources=(PoolDraw("basic", 600), PoolDraw("burst", 0)),
        complexity_score=4,
        multiplier=1.5,
        lease_expires_at=LEASE_END,
        waited_ms=12,
    )


async def test_reserve_deadline_includes_max_wait(daemon: _Recorder) -> None:
    async with AsyncClient(daemon.address, timeout_s=1.0) as client:
        await client.reserve("default", "team-a", tokens=10, max_wait_ms=5000)

    # gRPC carries deadlines with some rounding: allow a little either way.
    assert 5.0 < daemon.time_remaining_s <= 6.1


async def test_reservation_settles_recorded_usage(daemon: _Recorder) -> None:
    async with (
        AsyncClient(daemon.address) as client,
        client.reservation("default", "team-a", tokens=900) as scope,
    ):
        scope.record(input_tokens=100, output_tokens=20)

    assert uuid.UUID(daemon.requests["Reserve"].idempotency_key)
    settled = daemon.requests["Settle"]
    assert (settled.reservation_id, settled.tenant) == ("r-1", "team-a")
    assert (settled.input_tokens, settled.output_tokens) == (100, 20)
    assert "Release" not in daemon.requests


async def test_reservation_releases_on_error_and_reraises(
    daemon: _Recorder,
) -> None:
    async with AsyncClient(daemon.address) as client:
        with pytest.raises(ValueError, match=r"provider failed"):
            async with client.reservation(
                "default", "team-a", tokens=900, idempotency_key="k-1"
            ) as scope:
                scope.billed_input_tokens = 40
                raise ValueError("provider failed")

    assert daemon.requests["Reserve"].idempotency_key == "k-1"
    released = daemon.requests["Release"]
    assert (released.reservation_id, released.billed_input_tokens) == ("r-1", 40)
    assert "Settle" not in daemon.requests


async def test_reservation_release_failure_is_logged_not_raised(
    daemon: _Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    daemon.release_error = "Ledger is locked."

    async with AsyncClient(daemon.address) as client:
        with pytest.raises(ValueError, match=r"provider failed"):
            async with client.reservation("default", "team-a", tokens=900):
                raise ValueError("provider failed")

    # Before giving up, the release was retried (UNAVAILABLE), then logged once.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    *retries, record = warnings
    assert [r.name for r in retries] == ["tokenpool_client._retry"] * 3
    assert "release failed after the block raised" in record.getMessage()
    assert "reservation_id=r-1" in record.getMessage()
    assert "Ledger is locked" in record.getMessage()
    assert client.counters().ends_lost == 1


async def test_settle_unknown_usage_field_raises_type_error() -> None:
    async with AsyncClient("127.0.0.1:9") as client:
        with pytest.raises(TypeError, match=r"Unknown usage field 'outputs'"):
            await client.settle("r-1", "team-a", Usage(), outputs=5)


async def test_extend_naive_lease_end_raises_value_error() -> None:
    async with AsyncClient("127.0.0.1:9") as client:
        with pytest.raises(ValueError, match=r"must be timezone-aware"):
            await client.extend("r-1", "team-a", lease_expires_at=datetime(2030, 1, 1))
