"""Usage reports from the ledger: groups, periods, cost, savings, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal
from tokenpool.engine import ManualClock

pytestmark = pytest.mark.anyio

# 10:00 UTC on a known day: periods in the report are predictable.
START = datetime(2026, 5, 9, 10, 0, tzinfo=UTC)

CONFIG: dict[str, Any] = {
    "budgets": [
        {
            "name": "b",
            "capacity_tokens": 6000,
            "cache_read_weight_percent": 0,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
        }
    ],
    "tenants": [{"name": "web", "team": "red"}, {"name": "etl"}],
    "teams": [{"name": "red"}],
    "prices": [{"model": "m", "input": 2, "cached_input": 1, "output": 8}],
}


async def call(
    s: Served,
    tenant: str,
    tokens: int,
    *,
    label: str = "chat",
    **usage: Any,
) -> None:
    granted = await s.api.Reserve(
        pb.ReserveRequest(
            budget="b",
            tenant=tenant,
            tokens=tokens,
            model="m",
            labels={"endpoint": label},
        )
    )
    await s.api.Settle(
        pb.SettleRequest(
            reservation_id=granted.reservation_id, tenant=tenant, model="m", **usage
        )
    )


async def report(s: Served, **request: Any) -> list[pb.ReportRow]:
    return list((await s.admin.Report(pb.ReportRequest(**request))).rows)


async def test_report_sums_usage_cost_savings_and_accuracy(
    serve: ServeFactory,
) -> None:
    clock = ManualClock(start_wall_ns=int(START.timestamp() * 1e9))
    async with serve(clock=clock, **CONFIG) as s:
        await call(s, "web", 1000, input_tokens=400, output_tokens=100)
        await call(s, "web", 1000, input_tokens=300, cached_input_tokens=500)
        await call(s, "web", 700, label="search", response_cache_hit=True)
        clock.advance(3600)
        await call(s, "etl", 500, label="batch", input_tokens=600)

        by_tenant = {r.tenant: r for r in await report(s, group_by=["tenant"])}
        by_label = await report(s, group_by=["label:endpoint"])
        by_hour = await report(s, group_by=["team"], period="hour")

    web, etl = by_tenant["web"], by_tenant["etl"]
    assert (web.reservations, web.settled, web.tokens_reserved) == (3, 3, 2700)
    # 400 + 100, then 300 (cached reads weigh 0 here), then a cache hit: 800.
    assert (web.tokens_used, web.tokens_charged) == (800, 800)
    # 400 x 2 + 100 x 8, then 300 x 2 + 500 x 1 micro-dollars.
    assert web.cost_micros == 1600 + 1100
    assert web.cache_hits == 1
    # The hit saved its hold and its cost (priced as output: the hold of an
    # explicit count); the cached reads their 500 tokens and 500 x (2 - 1).
    assert web.saved_tokens == 700 + 500
    assert web.saved_micros == 700 * 8 + 500 * (2 - 1)  # hold at output rate
    # Accuracy over the calls that were made: used 800 of 2000 held.
    assert (web.estimate_used, web.estimate_held, web.estimate_settles) == (
        800,
        2000,
        2,
    )
    assert (etl.overruns, etl.tokens_overrun) == (1, 100)
    assert {r.keys["label:endpoint"]: r.reservations for r in by_label} == {
        "batch": 1,
        "chat": 2,
        "search": 1,
    }
    assert all(not r.refusals_known for r in by_label)
    assert [(r.keys["team"], r.keys["period"], r.reservations) for r in by_hour] == [
        ("", "2026-05-09T11:00Z", 1),
        ("red", "2026-05-09T10:00Z", 3),
    ]


async def test_report_filters_by_time_and_counts_refusals(
    serve: ServeFactory,
) -> None:
    clock = ManualClock(start_wall_ns=int(START.timestamp() * 1e9))
    async with serve(clock=clock, **CONFIG) as s:
        await call(s, "web", 5000, input_tokens=5000)
        refused = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="etl", tokens=3000))
        )
        clock.advance(120)
        cut = pb.ReportRequest(group_by=["tenant"])
        cut.since.FromDatetime(datetime(2026, 5, 9, 10, 1, tzinfo=UTC))
        # Refusal counts reach the ledger with the next batch.
        await call(s, "etl", 100, input_tokens=100)
        rows = {r.tenant: r for r in await report(s, group_by=["tenant"])}
        later = await s.admin.Report(cut)
        unknown = await refusal(s.admin.Report(pb.ReportRequest(group_by=["colour"])))

    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rows["etl"].refusals == 1 and rows["etl"].refusals_known
    assert rows["web"].refusals == 0
    assert [r.tenant for r in later.rows] == ["etl"]
    assert unknown.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'colour' is not one of" in unknown.message
