"""Concurrent Reserves on a frozen clock grant exactly what capacity allows."""

from __future__ import annotations

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import ServeFactory
from tests.service._helpers import BUDGET_1000, pools

pytestmark = pytest.mark.anyio

RUNS = 20


@pytest.mark.parametrize("run", range(RUNS))
async def test_fifty_concurrent_reserves_grant_exactly_25(
    serve: ServeFactory, run: int
) -> None:
    async with serve(**BUDGET_1000) as s:
        granted: list[tuple[str, str]] = []
        refused: list[grpc.StatusCode] = []
        start = anyio.Event()

        async def reserve(tenant: str) -> None:
            await start.wait()
            request = pb.ReserveRequest(budget="b", tenant=tenant, tokens=40)
            try:
                answer = await s.api.Reserve(request)
            except grpc.aio.AioRpcError as exc:
                refused.append(exc.code())
            else:
                granted.append((tenant, answer.reservation_id))

        async def settle(tenant: str, reservation_id: str) -> None:
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=reservation_id, tenant=tenant, output_tokens=10
                )
            )

        async with anyio.create_task_group() as tasks:
            for index in range(50):
                tasks.start_soon(reserve, f"t{index % 7}")
            await anyio.sleep(0.02)
            start.set()

        assert len(granted) == 25
        assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 25
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert (basic.available_tokens, basic.in_flight_tokens) == (0, 1000)

        async with anyio.create_task_group() as tasks:
            for tenant, reservation_id in granted:
                tasks.start_soon(settle, tenant, reservation_id)

        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].available_tokens == 750
        assert pools(status)["basic"].in_flight_tokens == 0
        assert status.open_reservations == 0
