"""The client stub against a real daemon: context manager, errors, sync client."""

from __future__ import annotations

import anyio
import pytest
from tokenpool_client import (
    AsyncClient,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RefusedError,
    TooLargeError,
)
from tokenpool_client.v1 import tokenpool_pb2 as pb

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


async def _available(client: AsyncClient) -> int:
    status = await client.get_budget("b")
    return {pool.name: pool for pool in status.pools}["basic"].available_tokens


async def test_context_manager_settles_on_success(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address) as client:
        async with client.reservation(
            "b", "t", input_tokens=100, max_output_tokens=300
        ) as scope:
            assert scope.reservation.granted_tokens == 400
            scope.record(input_tokens=100, output_tokens=50)

        assert await _available(client) == 850
        assert (await client.get_budget("b")).open_reservations == 0
        kinds = [e.kind for e in await s.ledger.entries()]
        assert kinds == ["reserve", "settle"]


async def test_context_manager_releases_on_error(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address) as client:
        with pytest.raises(RuntimeError, match="provider failed"):
            async with client.reservation("b", "t", tokens=400) as scope:
                scope.billed_input_tokens = 20
                raise RuntimeError("provider failed")

        assert await _available(client) == 980
        kinds = [e.kind for e in await s.ledger.entries()]
        assert kinds == ["reserve", "release"]


async def test_refusal_maps_to_python_exceptions(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address) as client:
        await client.reserve("b", "t", tokens=900)

        with pytest.raises(RefusedError, match="cannot grant") as refused:
            await client.reserve("b", "t", tokens=200)
        assert refused.value.reason == "POOL_EXHAUSTED"
        assert refused.value.largest_grantable_tokens == 100
        assert refused.value.retry_after_s is not None
        with pytest.raises(TooLargeError, match="can never grant"):
            await client.reserve("b", "t", tokens=1001)
        with pytest.raises(NotFoundError, match="Unknown budget"):
            await client.reserve("nope", "t", tokens=1)


async def test_sync_client_round_trip(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s:

        def use_sync_client() -> tuple[int, int]:
            with Client(s.address) as client:
                reservation = client.reserve("b", "t", tokens=300)
                settled = client.settle(
                    reservation.reservation_id, "t", output_tokens=100
                )
                try:
                    client.settle(reservation.reservation_id, "t", output_tokens=99)
                except ConflictError:
                    pass
                else:
                    raise AssertionError("a settle with other figures must conflict")
                return settled.charged_tokens, settled.refunded_tokens

        assert await anyio.to_thread.run_sync(use_sync_client) == (100, 200)


async def test_request_over_grpc_size_limit_is_invalid_not_refused(
    serve: ServeFactory,
) -> None:
    huge = "k" * 5_000_000
    async with serve(**BUDGET) as s, AsyncClient(s.address) as client:
        with pytest.raises(InvalidRequestError, match=r"too large") as by_key:
            await client.reserve("b", "t", tokens=1, idempotency_key=huge)
        with pytest.raises(InvalidRequestError, match=r"too large") as by_model:
            await client.reserve("b", "t", tokens=1, model=huge)
        # Nothing was reserved: the daemon never saw either request.
        assert await _available(client) == 1000

    for caught in (by_key, by_model):
        assert not isinstance(caught.value, RefusedError)
        assert "4194304 bytes" in caught.value.message


async def test_sync_client_request_over_size_limit_is_invalid(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET) as s:

        def reserve_huge_label() -> InvalidRequestError:
            with Client(s.address) as client:
                try:
                    client.reserve("b", "t", tokens=1, labels={"l": "v" * 5_000_000})
                except InvalidRequestError as exc:
                    return exc
            raise AssertionError("a 5 MB label must be refused as too large")

        caught = await anyio.to_thread.run_sync(reserve_huge_label)

    assert "too large" in caught.message


async def test_pool_status_carries_state_and_open_reservations(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET) as s, AsyncClient(s.address) as client:
        await client.reserve("b", "t", tokens=100)
        before = {p.name: p for p in (await client.get_budget("b")).pools}
        await s.admin.SetPoolState(
            pb.SetPoolStateRequest(budget="b", pool="basic", state=pb.POOL_STATE_PAUSED)
        )
        after = {p.name: p for p in (await client.get_budget("b")).pools}

    assert (before["basic"].state, before["basic"].open_reservations) == ("active", 1)
    assert (after["basic"].state, after["basic"].open_reservations) == ("paused", 1)
    assert (after["burst"].state, after["burst"].open_reservations) == ("active", 0)
