"""The autoscaler in a real daemon, driven through intervals by a manual clock."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import pool_status, wait_until
from tokenpool.ledger import EntryKind

pytestmark = pytest.mark.anyio

# 60,000 tokens a minute, all in basic: 10,000 are offered per 10 s interval.
CAPACITY = 60_000
INTERVAL_S = 10


def budget(**autoscale: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "enabled": True,
        "interval_seconds": INTERVAL_S,
        "grow_after_intervals": 3,
        "cooldown_seconds": 0,
        "step_percent": 10,
        "shift_percent": 0,
        "high_watermark_percent": 90,
        "low_watermark_percent": 50,
    }
    settings.update(autoscale)
    return {
        "budgets": [
            {
                "name": "b",
                "capacity_tokens": CAPACITY,
                "max_capacity_tokens": 90_000,
                "shares": {"basic": 100, "priority": 0, "burst": 0},
                "autoscale": settings,
            }
        ]
    }


async def spend(s: Served, tokens: int, **provider: Any) -> None:
    """One call that holds and then uses `tokens` (charged at once)."""
    granted = await s.api.Reserve(
        pb.ReserveRequest(budget="b", tenant="t", tokens=tokens)
    )
    await s.api.Settle(
        pb.SettleRequest(
            reservation_id=granted.reservation_id,
            tenant="t",
            input_tokens=tokens,
            **provider,
        )
    )


async def interval(s: Served, use_percent: int) -> int:
    """Spends `use_percent` of an interval's tokens, ends it; the capacity then."""
    readings = s.engine.autoscale_view("b").readings
    status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    offered = status.capacity_tokens * INTERVAL_S // 60
    await spend(s, offered * use_percent // 100)
    s.clock.advance(INTERVAL_S)

    async def read() -> bool:
        return s.engine.autoscale_view("b").readings > readings

    await wait_until(read)
    # A decision is committed before the next interval can start.
    await anyio.sleep(0.01)
    return (await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))).capacity_tokens


async def decisions(s: Served) -> list[dict[str, Any]]:
    entries = await s.ledger.entries(kinds=[EntryKind.AUTOSCALE.value])
    assert all(entry.actor == "autoscaler" for entry in entries)
    return [dict(entry.detail) for entry in entries]


async def test_demand_step_grows_after_exactly_n_intervals(
    serve: ServeFactory,
) -> None:
    async with serve(**budget()) as s:
        steady = [await interval(s, 60) for _ in range(4)]
        step = [await interval(s, 95) for _ in range(3)]

        assert steady == [CAPACITY] * 4
        assert step == [CAPACITY, CAPACITY, 66_000]
        found = await decisions(s)
        assert [(d["action"], d["capacity_to"], d["applied"]) for d in found] == [
            ("grow", 66_000, True)
        ]
        assert "high watermark 90%" in found[0]["reason"]
        assert found[0]["figures"]["utilisation"] == 0.95
        # The level moved by the capacity's change, as with SetCapacity.
        basic = (await pool_status(s.api))["basic"]
        assert basic.capacity_tokens == 66_000


async def test_grows_stop_at_max_and_wait_out_the_cooldown(
    serve: ServeFactory,
) -> None:
    config = budget(grow_after_intervals=1, cooldown_seconds=25)
    config["budgets"][0]["max_capacity_tokens"] = 72_000
    async with serve(**config) as s:
        capacities = [await interval(s, 98) for _ in range(8)]

        # Grows at 10 s, then not before 35 s (cooldown 25 s): at 40 s, capped.
        assert capacities == [66_000, 66_000, 66_000, 72_000] + [72_000] * 4
        assert [d["capacity_to"] for d in await decisions(s)] == [66_000, 72_000]


async def test_provider_rate_limit_cuts_capacity_at_once(serve: ServeFactory) -> None:
    async with serve(**budget()) as s:
        await spend(s, 1000, provider_rate_limited=True)
        cut = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        await spend(s, 1000, provider_limit_tokens=30_000, provider_remaining_tokens=5)
        limited = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))

        assert cut.capacity_tokens == 48_000  # 20 % off, before any clock tick
        assert limited.capacity_tokens == 30_000
        found = await decisions(s)
        assert [d["action"] for d in found] == ["provider_cut", "provider_cut"]
        assert found[1]["figures"]["provider_limit_tokens"] == 30_000


async def test_recommend_only_changes_nothing(serve: ServeFactory) -> None:
    async with serve(**budget(mode="recommend")) as s:
        before = await pool_status(s.api)
        capacities = [await interval(s, 95) for _ in range(3)]
        await spend(s, 1000, provider_rate_limited=True)

        assert capacities == [CAPACITY] * 3
        after = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert after.capacity_tokens == CAPACITY
        assert after.pools[0].capacity_tokens == before["basic"].capacity_tokens
        found = await decisions(s)
        assert [(d["action"], d["applied"], d["mode"]) for d in found] == [
            ("grow", False, "recommend"),
            ("provider_cut", False, "recommend"),
        ]
        assert found[0]["capacity_to"] == 66_000


async def test_hook_receives_each_decision(serve: ServeFactory, tmp_path: Path) -> None:
    received = tmp_path / "hook.jsonl"
    script = (
        "import sys; "
        f"open({str(received)!r}, 'a').write(sys.stdin.read().strip() + '\\n')"
    )
    hook = {"command": [sys.executable, "-c", script], "events": ["autoscale"]}
    async with serve(**budget(), hook=hook) as s:
        await spend(s, 1000, provider_rate_limited=True)

        async def delivered() -> bool:
            return await anyio.Path(received).exists()

        await wait_until(delivered, timeout_s=10)
        text = await anyio.Path(received).read_text()
        events = [json.loads(line) for line in text.splitlines()]

    assert len(events) == 1
    event = events[0]
    assert event["event"] == "autoscale"
    assert (event["budget"], event["action"], event["applied"]) == (
        "b",
        "provider_cut",
        True,
    )
    assert (event["capacity_from"], event["capacity_to"]) == (CAPACITY, 48_000)
    assert "rate-limited" in event["reason"]


async def test_disabled_autoscaler_reads_nothing(serve: ServeFactory) -> None:
    config = budget()
    config["budgets"][0]["autoscale"]["enabled"] = False
    async with serve(**config) as s:
        await spend(s, 1000, provider_rate_limited=True)
        s.clock.advance(100)
        await anyio.sleep(0.05)

        view = s.engine.autoscale_view("b")
        assert (view.enabled, view.readings) == (False, 0)
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert status.capacity_tokens == CAPACITY
        assert await decisions(s) == []
