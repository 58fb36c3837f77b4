"""The client's opt-in Session stream against a real daemon."""

from __future__ import annotations

import anyio
import pytest
from tokenpool_client import (
    AsyncClient,
    Client,
    ConflictError,
    DeadlineExceededError,
    NotFoundError,
    RefusedError,
    TooLargeError,
)

from tests.conftest import ServeFactory

pytestmark = pytest.mark.anyio

BUDGET = {
    "budgets": [
        {
            "name": "b",
            "capacity_tokens": 1000,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
        }
    ]
}
BIG = {"budgets": [{"name": "b", "capacity_tokens": 1_000_000}]}


async def _pool(client: AsyncClient, field: str) -> int:
    status = await client.get_budget("b")
    pool = {pool.name: pool for pool in status.pools}["basic"]
    found: int = getattr(pool, field)
    return found


async def test_session_client_reserve_settle_release(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address, session=True) as client:
        first = await client.reserve("b", "t", tokens=300)
        settled = await client.settle(first.reservation_id, "t", output_tokens=100)
        second = await client.reserve("b", "t", tokens=200)
        released = await client.release(
            second.reservation_id, "t", billed_input_tokens=5
        )

        assert (settled.charged_tokens, settled.refunded_tokens) == (100, 200)
        assert (released.charged_tokens, released.refunded_tokens) == (5, 195)
        kinds = [e.kind for e in await s.ledger.entries()]
        assert kinds == ["reserve", "settle", "reserve", "release"]


async def test_session_client_raises_unary_exceptions(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address, session=True) as client:
        held = await client.reserve("b", "t", tokens=900)

        with pytest.raises(RefusedError, match="cannot grant") as refused:
            await client.reserve("b", "t", tokens=200)
        with pytest.raises(TooLargeError, match="can never grant"):
            await client.reserve("b", "t", tokens=1001)
        with pytest.raises(NotFoundError, match="Unknown budget"):
            await client.reserve("nope", "t", tokens=1)
        await client.settle(held.reservation_id, "t", output_tokens=10)
        with pytest.raises(ConflictError):
            await client.settle(held.reservation_id, "t", output_tokens=11)

        assert refused.value.reason == "POOL_EXHAUSTED"
        assert refused.value.largest_grantable_tokens == 100
        assert refused.value.retry_after_s is not None


async def test_session_clients_share_one_stream_concurrently(
    serve: ServeFactory,
) -> None:
    async with (
        serve(**BIG) as s,
        AsyncClient(s.address, session=True) as one,
        AsyncClient(s.address, session=True) as two,
    ):

        async def pair(client: AsyncClient) -> None:
            granted = await client.reserve("b", "t", tokens=10)
            await client.settle(granted.reservation_id, "t", output_tokens=5)

        async with anyio.create_task_group() as tasks:
            for index in range(100):
                tasks.start_soon(pair, one if index % 2 else two)

        kinds = [str(e.kind) for e in await s.ledger.entries(limit=1000)]
        assert kinds.count("reserve") == kinds.count("settle") == 100
        assert await _pool(one, "in_flight_tokens") == 0
        # Many operations shared each commit: the stream batches them.
        assert s.ledger.commits < 150


async def test_session_caller_cancel_undoes_waiting_reserve(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address, session=True) as client:
        held = await client.reserve("b", "t", tokens=1000)
        with anyio.move_on_after(0.3):
            await client.reserve("b", "t", tokens=500, max_wait_ms=60_000)
        with anyio.fail_after(5):
            while await _pool(client, "waiting"):  # noqa: ASYNC110 - over gRPC
                await anyio.sleep(0.01)

        await client.settle(held.reservation_id, "t", output_tokens=1)

        assert await _pool(client, "in_flight_tokens") == 0
        kinds = [str(e.kind) for e in await s.ledger.entries()]
        assert kinds.count("reserve") == 1


async def test_session_timeout_is_deadline_or_refusal(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address, session=True) as client:
        await client.reserve("b", "t", tokens=1000)

        with pytest.raises((RefusedError, DeadlineExceededError)):
            await client.reserve("b", "t", tokens=500, timeout_s=0.2)

        assert await _pool(client, "waiting") == 0


async def test_sync_session_client_round_trip(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s:

        def use_sync_client() -> tuple[int, int]:
            with Client(s.address, session=True) as client:
                reservation = client.reserve("b", "t", tokens=300)
                settled = client.settle(
                    reservation.reservation_id, "t", output_tokens=100
                )
                with pytest.raises(ConflictError):
                    client.settle(reservation.reservation_id, "t", output_tokens=99)
                return settled.charged_tokens, settled.refunded_tokens

        assert await anyio.to_thread.run_sync(use_sync_client) == (100, 200)
