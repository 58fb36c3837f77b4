"""Shadow mode: every decision made and recorded, every request granted."""

from __future__ import annotations

from typing import Any

import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import ServeFactory
from tests.engine.test_autoscaling import CAPACITY, decisions, interval, spend
from tests.engine.test_autoscaling import budget as autoscaled
from tests.service._helpers import pool_status

pytestmark = pytest.mark.anyio

SHADOW = {
    "budgets": [
        {
            "name": "b",
            "capacity_tokens": 1000,
            "shadow": True,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
        }
    ],
    "tenants": [{"name": "capped", "max_in_flight_tokens": 100}],
}


async def reserve(s: Any, tokens: int, tenant: str = "t", wait_ms: int = 0) -> Any:
    return await s.api.Reserve(
        pb.ReserveRequest(budget="b", tenant=tenant, tokens=tokens, max_wait_ms=wait_ms)
    )


async def test_shadow_grants_what_enforcing_would_refuse(serve: ServeFactory) -> None:
    async with serve(**SHADOW) as s:
        capped = await reserve(s, 200, tenant="capped")
        fits = await reserve(s, 600)
        short = await reserve(s, 500, wait_ms=2000)
        too_large = await reserve(s, 5000)

        assert [a.granted_tokens for a in (capped, fits, short, too_large)] == [
            200,
            600,
            500,
            5000,
        ]
        assert [a.waited_ms for a in (short, too_large)] == [0, 0]
        basic = (await pool_status(s.api))["basic"]
        # The pool kept count of what was really taken: it is in debt.
        assert basic.in_flight_tokens == 6300
        assert basic.debt_tokens == 5300
        assert basic.waiting == 0

        details = {
            entry.reservation_id: entry.detail.get("shadow")
            for entry in await s.ledger.entries(kinds=["reserve"])
        }
        assert details[fits.reservation_id] is None
        assert details[short.reservation_id] == {
            "reason": "POOL_EXHAUSTED",
            "would": "wait",
        }
        assert details[too_large.reservation_id] == {
            "reason": "REQUEST_TOO_LARGE",
            "would": "refuse",
        }
        assert details[capped.reservation_id] == {
            "reason": "TENANT_IN_FLIGHT_CAP",
            "would": "refuse",
        }
        report = await s.admin.Report(pb.ReportRequest(group_by=["budget"]))
        (row,) = report.rows
        assert (row.reservations, row.shadow_refusals, row.refusals) == (4, 3, 0)


async def test_shadow_holds_settle_and_pay_back_the_debt(serve: ServeFactory) -> None:
    async with serve(**SHADOW) as s:
        first = await reserve(s, 900)
        second = await reserve(s, 900)
        for granted in (first, second):
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=granted.reservation_id,
                    tenant="t",
                    input_tokens=100,
                )
            )

        basic = (await pool_status(s.api))["basic"]
        assert (basic.debt_tokens, basic.in_flight_tokens) == (0, 0)
        assert basic.available_tokens == 800


async def test_budget_without_shadow_still_refuses(serve: ServeFactory) -> None:
    enforcing = {**SHADOW, "budgets": [{**SHADOW["budgets"][0], "shadow": False}]}
    async with serve(**enforcing) as s:
        await reserve(s, 800)
        with pytest.raises(Exception, match="RESOURCE_EXHAUSTED"):
            await reserve(s, 500)


async def test_shadow_budget_autoscaler_only_records(serve: ServeFactory) -> None:
    config = autoscaled()
    config["budgets"][0]["shadow"] = True
    async with serve(**config) as s:
        capacities = [await interval(s, 95) for _ in range(3)]
        await spend(s, 1000, provider_rate_limited=True)
        status = await s.admin.GetAutoscale(pb.GetAutoscaleRequest(budget="b"))

        # Decided as an enforcing budget would (grow after 3 intervals, cut
        # at once), recorded, and not applied.
        assert capacities == [CAPACITY] * 3
        found = await decisions(s)
        assert [(d["action"], d["applied"], d["mode"]) for d in found] == [
            ("grow", False, "shadow"),
            ("provider_cut", False, "shadow"),
        ]
        assert (found[0]["capacity_from"], found[0]["capacity_to"]) == (
            CAPACITY,
            66_000,
        )
        assert found[1]["capacity_to"] == 48_000
        basic = (await pool_status(s.api))["basic"]
        assert basic.capacity_tokens == CAPACITY
        assert (status.enabled, status.mode, status.capacity_tokens) == (
            True,
            "shadow",
            CAPACITY,
        )
