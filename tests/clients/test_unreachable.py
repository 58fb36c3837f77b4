"""Fail-closed, fail-open and the local allowance, with nothing listening."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import grpc
import pytest
from tokenpool_client import (
    AsyncClient,
    Client,
    ClientCounters,
    LocalAllowance,
    LocalAllowanceExhaustedError,
    RetryPolicy,
    UnavailableError,
)
from tokenpool_client.v1 import tokenpool_pb2 as pb

if TYPE_CHECKING:
    from .conftest import Behaviour, FakeDaemon

pytestmark = pytest.mark.anyio

# Quick retries, so a test with nothing listening ends in well under a second.
FAST = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


@pytest.fixture
def nowhere() -> str:
    """A loopback address where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_fail_closed_raises_after_retries(
    nowhere: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncClient(nowhere, retry=FAST) as client:
        with pytest.raises(UnavailableError):
            await client.reserve("b", "svc", tokens=100)
        counters = client.counters()

    assert counters == ClientCounters(retries=2, unreachable=1, failed_closed=1)
    assert "reserve refused (fail-closed)" in caplog.text


async def test_fail_open_grants_locally_and_settles_locally(
    nowhere: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncClient(nowhere, retry=FAST, when_unreachable="fail-open") as pool:
        async with pool.reservation(
            "b", "svc", input_tokens=100, max_output_tokens=50
        ) as scope:
            scope.record(input_tokens=90, output_tokens=20)
        settled = await pool.settle(scope.reservation.reservation_id, "svc")
        counters = pool.counters()

    assert scope.reservation.local
    assert scope.reservation.reservation_id.startswith("local-")
    assert scope.reservation.granted_tokens == 150
    assert counters.failed_open == 1
    assert counters.local_ended == 1
    # The second settle found nothing open: nothing more is counted.
    assert (settled.charged_tokens, settled.refunded_tokens) == (0, 0)
    assert "reserve granted locally (fail-open)" in caplog.text


async def test_local_allowance_grants_up_to_bucket_then_refuses(
    nowhere: str,
) -> None:
    clock = _Clock()
    allowance = LocalAllowance(tokens_per_minute=600, clock=clock)

    async with AsyncClient(nowhere, retry=FAST, when_unreachable=allowance) as pool:
        first = await pool.reserve("b", "svc", tokens=400)
        await pool.reserve("b", "svc", tokens=200)
        with pytest.raises(LocalAllowanceExhaustedError, match="0 tokens of the 100"):
            await pool.reserve("b", "svc", tokens=100)

        # The first call used 100 of its 400: 300 go back to the bucket.
        settled = await pool.settle(first.reservation_id, "svc", output_tokens=100)
        await pool.reserve("b", "svc", tokens=300)

        # Refill: 600 a minute is 10 a second.
        with pytest.raises(LocalAllowanceExhaustedError) as refused:
            await pool.reserve("b", "svc", tokens=50)
        clock.now += 5
        await pool.reserve("b", "svc", tokens=50)
        counters = pool.counters()

    assert (settled.charged_tokens, settled.refunded_tokens) == (100, 300)
    assert refused.value.retry_after_s == pytest.approx(5.0)
    assert isinstance(refused.value, UnavailableError)
    assert counters.local_granted == 4
    assert counters.local_refused == 2
    assert counters.unreachable == 6


async def test_local_incomplete_settle_charges_hold(nowhere: str) -> None:
    allowance = LocalAllowance(tokens_per_minute=1000, clock=_Clock())

    async with AsyncClient(nowhere, retry=FAST, when_unreachable=allowance) as pool:
        reservation = await pool.reserve("b", "svc", tokens=400)
        settled = await pool.settle(
            reservation.reservation_id, "svc", output_tokens=10, incomplete=True
        )

    assert (settled.charged_tokens, settled.refunded_tokens) == (400, 0)


def _settle_unavailable() -> dict[str, Behaviour]:
    """A daemon that grants, then cannot be reached for the settle."""

    async def reserve(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ReserveResponse(reservation_id="r-gone", granted_tokens=10)

    async def settle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "shutting down")

    return {"Reserve": reserve, "Settle": settle}


async def test_fail_open_logs_lost_settle_of_daemon_reservation(
    fake_daemon: FakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        fake_daemon(**_settle_unavailable()) as address,
        AsyncClient(address, retry=FAST, when_unreachable="fail-open") as pool,
    ):
        async with pool.reservation("b", "svc", tokens=10) as scope:
            scope.record(output_tokens=5)
        counters = pool.counters()

    assert (counters.ends_lost, counters.retries) == (1, 2)
    [lost] = [r for r in caplog.records if r.name == "tokenpool_client._fallback"]
    assert lost.levelno == logging.WARNING
    assert "settle failed at the end of the block" in lost.getMessage()
    assert "reservation_id=r-gone" in lost.getMessage()


async def test_fail_closed_raises_lost_settle(fake_daemon: FakeDaemon) -> None:
    async with (
        fake_daemon(**_settle_unavailable()) as address,
        AsyncClient(address, retry=FAST) as pool,
    ):
        with pytest.raises(UnavailableError, match="shutting down"):
            async with pool.reservation("b", "svc", tokens=10):
                pass


async def test_sync_client_fail_open(nowhere: str) -> None:
    def run() -> tuple[bool, ClientCounters]:
        with Client(nowhere, retry=FAST, when_unreachable="fail-open") as pool:
            with pool.reservation("b", "svc", tokens=10) as scope:
                scope.record(output_tokens=5)
            return scope.reservation.local, pool.counters()

    local, counters = await anyio.to_thread.run_sync(run)

    assert local
    assert (counters.failed_open, counters.local_ended, counters.retries) == (1, 1, 2)


def test_bad_when_unreachable_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"when_unreachable must be 'fail-open'"):
        Client("127.0.0.1:9", when_unreachable="open")  # type: ignore[arg-type]


def test_bad_retry_policy_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"attempts must be 1 or more"):
        RetryPolicy(attempts=0)
