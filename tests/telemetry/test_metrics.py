"""The Prometheus endpoint, scraped over HTTP, counts what the daemon did."""

from __future__ import annotations

from typing import Any

import pytest
from tokenpool_client import AsyncClient, RefusedError

from tests.conftest import ServeFactory
from tests.telemetry._scrape import scrape

pytestmark = pytest.mark.anyio

_BUDGET = {
    "name": "b",
    "capacity_tokens": 1000,
    "shares": {"basic": 100, "priority": 0, "burst": 0},
    "cache_read_weight_percent": 10,
}


def _measured(**telemetry: Any) -> dict[str, Any]:
    return {
        "budgets": [_BUDGET],
        "prices": [{"model": "m", "input": "2", "cached_input": "0.5", "output": "10"}],
        "telemetry": {"metrics_address": "127.0.0.1:0", **telemetry},
    }


async def test_scrape_shows_counters_after_operations(serve: ServeFactory) -> None:
    async with serve(**_measured(metric_labels=["endpoint"])) as s:
        async with AsyncClient(s.address) as client:
            first = await client.reserve(
                "b", "t", tokens=300, model="m", labels={"endpoint": "chat"}
            )
            await client.settle(
                first.reservation_id,
                "t",
                input_tokens=100,
                cached_input_tokens=50,
                output_tokens=50,
                model="m",
            )
            second = await client.reserve("b", "t", tokens=200, model="m")
            await client.settle(second.reservation_id, "t", response_cache_hit=True)
            third = await client.reserve("b", "u", tokens=100)
            await client.release(third.reservation_id, "u")
            with pytest.raises(RefusedError):
                await client.reserve("b", "u", tokens=900)
        metrics = await scrape(s.metrics_address)

    basic = {"budget": "b", "pool": "basic"}
    assert metrics.value("tokenpool_tokens_reserved_total", tenant="t", **basic) == 500
    assert (
        metrics.value(
            "tokenpool_tokens_reserved_total", tenant="t", label_endpoint="chat"
        )
        == 300
    )
    assert metrics.value("tokenpool_tokens_reserved_total", tenant="u") == 100
    # 100 input, 50 cached read at a weight of 10 % (5), 50 output.
    assert metrics.value("tokenpool_tokens_used_total", tenant="t") == 155
    assert metrics.value("tokenpool_tokens_charged_total", tenant="t") == 155
    assert metrics.value("tokenpool_tokens_refunded_total", tenant="t") == 345
    assert metrics.value("tokenpool_tokens_refunded_total", tenant="u") == 100
    assert metrics.value("tokenpool_reservations_total", outcome="granted") == 3
    assert metrics.value("tokenpool_reservations_total", outcome="settled") == 2
    assert metrics.value("tokenpool_reservations_total", outcome="released") == 1
    assert (
        metrics.value("tokenpool_refusals_total", tenant="u", reason="POOL_EXHAUSTED")
        == 1
    )

    # 100 input at $2, 50 cached at $0.5 and 50 output at $10 per million.
    assert metrics.value("tokenpool_cost_USD_total", tenant="t") == pytest.approx(
        0.000725
    )
    # All of it from the call labelled endpoint=chat (the cache hit cost nothing).
    assert metrics.value(
        "tokenpool_cost_USD_total", tenant="t", model="m", label_endpoint="chat"
    ) == pytest.approx(0.000725)
    assert metrics.value("tokenpool_cache_hits_total", cache="response") == 1
    assert metrics.value("tokenpool_cache_hits_total", cache="prompt") == 1
    assert metrics.value("tokenpool_cache_saved_tokens_total", cache="response") == 200
    assert metrics.value("tokenpool_cache_saved_tokens_total", cache="prompt") == 45
    # The hit's hold was priced as 200 output tokens at $10 per million.
    assert metrics.value(
        "tokenpool_cache_saved_cost_USD_total", cache="response"
    ) == pytest.approx(0.002)
    assert metrics.value(
        "tokenpool_cache_saved_cost_USD_total", cache="prompt"
    ) == pytest.approx(0.000075)

    assert metrics.value("tokenpool_pool_capacity", **basic) == 1000
    assert metrics.value("tokenpool_pool_available", **basic) == 845
    assert metrics.value("tokenpool_pool_utilization", **basic) == pytest.approx(0.155)
    assert metrics.value("tokenpool_queue_length", **basic) == 0
    assert (
        metrics.value(
            "rpc_server_call_duration_seconds_count",
            rpc_method="tokenpool.v1.TokenPool/Reserve",
            rpc_response_status_code="OK",
        )
        == 3
    )
    assert (
        metrics.value(
            "rpc_server_call_duration_seconds_count",
            rpc_method="tokenpool.v1.TokenPool/Reserve",
            rpc_response_status_code="RESOURCE_EXHAUSTED",
        )
        == 1
    )
    assert metrics.value("tokenpool_reserve_wait_time_seconds_count", **basic) == 4


async def test_tenants_past_the_cap_are_counted_as_other(serve: ServeFactory) -> None:
    async with serve(**_measured(max_tenants_per_metric=2)) as s:
        async with AsyncClient(s.address) as client:
            for tenant in ("a", "b", "c", "d"):
                await client.reserve("b", tenant, tokens=10)
        metrics = await scrape(s.metrics_address)

    assert metrics.label_values("tokenpool_tokens_reserved_total", "tenant") == {
        "a",
        "b",
        "other",
    }
    assert metrics.value("tokenpool_tokens_reserved_total", tenant="other") == 20


async def test_overrun_and_borrowing_are_counted(serve: ServeFactory) -> None:
    # 10,000 tokens a minute each, split 65/22/13: basic 6500, priority 2200,
    # burst 1300. In "spike" basic's tenants use burst, never a lender; in
    # "loan" burst is closed to tenants and priority borrows from basic.
    budgets = [
        {
            "name": "spike",
            "capacity_tokens": 10_000,
            "lending": {"basic": {"never_borrow": True}},
        },
        {"name": "loan", "capacity_tokens": 10_000, "burst_tenant_percent": 0},
    ]
    config = {
        "budgets": budgets,
        "tenants": [{"name": "vip", "tier": "priority"}],
        "telemetry": {"metrics_address": "127.0.0.1:0"},
    }
    async with serve(**config) as s:
        async with AsyncClient(s.address) as client:
            await client.reserve("spike", "t", tokens=6000)
            spike = await client.reserve("spike", "t", tokens=1000)
            # 300 more than the hold of 1000.
            await client.settle(spike.reservation_id, "t", output_tokens=1300)
            await client.reserve("loan", "vip", tokens=2200)
            loan = await client.reserve("loan", "vip", tokens=1000)
        metrics = await scrape(s.metrics_address)

    assert [(d.pool, d.tokens) for d in spike.sources] == [
        ("basic", 500),
        ("burst", 500),
    ]
    assert [(d.pool, d.tokens) for d in loan.sources] == [("basic", 1000)]
    assert metrics.label_values("tokenpool_tokens_borrowed_total", "lender") == {
        "burst",
        "basic",
    }
    assert (
        metrics.value(
            "tokenpool_tokens_borrowed_total",
            budget="spike",
            pool="basic",
            lender="burst",
            tenant="t",
        )
        == 500
    )
    assert (
        metrics.value(
            "tokenpool_tokens_borrowed_total",
            budget="loan",
            pool="priority",
            lender="basic",
            tenant="vip",
        )
        == 1000
    )
    assert metrics.value("tokenpool_tokens_borrowed_total") == 1500

    assert (
        metrics.value(
            "tokenpool_tokens_overrun_total", budget="spike", pool="basic", tenant="t"
        )
        == 300
    )
    assert metrics.value("tokenpool_tokens_overrun_total") == 300
    assert metrics.value("tokenpool_tokens_charged_total", budget="spike") == 1300
