"""Caps, teams, calendar budgets and request limits, through the real daemon.

Every limit that applies to a Reserve is checked with the pools: it is
granted on all of them or on none, and a refusal changes no counter.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal, wait_until, waiting
from tokenpool._errors import ConfigError
from tokenpool.daemon import load_settings
from tokenpool.engine import ManualClock

pytestmark = pytest.mark.anyio

# 2026-05-09 12:00:00 UTC: twelve hours before the day ends.
NOON_NS = 1_778_328_000 * 1_000_000_000
HOUR_NS = 3600 * 1_000_000_000


def _config(**budget: Any) -> dict[str, Any]:
    return {
        "budgets": [{"name": "b", "capacity_tokens": 1_000_000, **budget}],
        "teams": [{"name": "search", "max_in_flight_tokens": 1000}],
        "tenants": [
            {"name": "alice", "team": "search", "max_in_flight_tokens": 800},
            {"name": "bob", "team": "search"},
            {"name": "carol", "max_in_flight_tokens": 300, "daily_tokens": 5000},
        ],
        "prices": [
            {"model": "small", "input": "0.15", "output": "0.60"},
            {"model": "big", "input": 3, "output": 15},
        ],
    }


async def _reserve(s: Served, tenant: str, tokens: int, **extra: Any) -> Any:
    return await s.api.Reserve(
        pb.ReserveRequest(budget="b", tenant=tenant, tokens=tokens, **extra)
    )


async def _counters(s: Served) -> tuple[object, ...]:
    """Everything a refused Reserve must leave as it was."""
    alice = await s.api.GetTenant(pb.GetTenantRequest(tenant="alice"))
    bob = await s.api.GetTenant(pb.GetTenantRequest(tenant="bob"))
    team = await s.api.GetTeam(pb.GetTeamRequest(team="search"))
    budget = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    entries = await s.ledger.entry_count()
    return (
        alice.SerializeToString(),
        bob.SerializeToString(),
        team.SerializeToString(),
        budget.SerializeToString(),
        entries,
    )


async def test_team_cap_refuses_what_the_tenant_cap_allows(
    serve: ServeFactory,
) -> None:
    async with serve(clock=ManualClock(start_wall_ns=NOON_NS), **_config()) as s:
        await _reserve(s, "bob", 600)
        before = await _counters(s)

        # Alice may hold 800, but her team holds 600 of its 1000 already.
        failed = await refusal(_reserve(s, "alice", 500))

        after = await _counters(s)
        granted = await _reserve(s, "alice", 400)
        team = await s.api.GetTeam(pb.GetTeamRequest(team="search"))

    assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.reason == "TEAM_IN_FLIGHT_CAP"
    assert "search" in failed.message
    assert failed.detail is not None
    assert failed.detail.largest_grantable_tokens == 400
    assert after == before
    assert granted.granted_tokens == 400
    assert team.in_flight_tokens == 1000
    assert sorted(team.members) == ["alice", "bob"]


async def test_a_capped_waiter_lets_other_tenants_pass_and_goes_when_room_frees(
    serve: ServeFactory,
) -> None:
    budget = {"shares": {"basic": 100, "priority": 0, "burst": 0}}
    async with serve(**_config(capacity_tokens=1000, **budget)) as s:
        first = await _reserve(s, "carol", 300)

        async with anyio.create_task_group() as tasks:
            result: list[Any] = []

            async def capped() -> None:
                result.append(await _reserve(s, "carol", 200, max_wait_ms=30_000))

            tasks.start_soon(capped)
            await wait_until(partial(_waiting_is, s, 1))
            # Carol waits on her own cap; the pool still serves others.
            other = await _reserve(s, "dave", 500)
            await s.api.Settle(
                pb.SettleRequest(reservation_id=first.reservation_id, tenant="carol")
            )

        [second] = result
        assert other.granted_tokens == 500
        assert second.granted_tokens == 200


async def _waiting_is(s: Served, count: int) -> bool:
    return await waiting(s.api) == count


async def test_spent_daily_budget_refuses_until_midnight(
    serve: ServeFactory, tmp_path: Path
) -> None:
    db = tmp_path / "daily.db"
    clock = ManualClock(start_wall_ns=NOON_NS)
    async with serve(db_path=db, clock=clock, **_config()) as s:
        for _ in range(20):
            granted = await _reserve(s, "carol", 250)
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=granted.reservation_id,
                    tenant="carol",
                    input_tokens=250,
                )
            )
        spent = await refusal(_reserve(s, "carol", 1))
        status = await s.api.GetTenant(pb.GetTenantRequest(tenant="carol"))

    # A restart keeps the day's usage: the ledger remembers it.
    restarted_clock = ManualClock(start_wall_ns=NOON_NS + HOUR_NS)
    async with serve(db_path=db, clock=restarted_clock, **_config()) as s:
        still_spent = await refusal(_reserve(s, "carol", 1, max_wait_ms=5000))
        s.clock.advance(11 * 3600)
        next_day = await _reserve(s, "carol", 100)

    assert spent.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert spent.reason == "TENANT_DAILY_TOKENS"
    assert spent.retry_after_s == pytest.approx(12 * 3600, abs=1)
    assert (status.day.period, status.day.charged_tokens) == ("2026-05-09", 5000)
    assert status.month.charged_tokens == 5000
    assert still_spent.reason == "TENANT_DAILY_TOKENS"
    assert still_spent.retry_after_s == pytest.approx(11 * 3600, abs=1)
    assert next_day.granted_tokens == 100


async def test_money_budget_counts_cost_from_the_price_table(
    serve: ServeFactory,
) -> None:
    config = _config()
    config["tenants"].append({"name": "erin", "daily_cost_usd": "0.01"})
    async with serve(clock=ManualClock(start_wall_ns=NOON_NS), **config) as s:
        # 1000 input + 500 output on "big": 0.003 + 0.0075 = 0.0105 USD.
        too_dear = await refusal(
            s.api.Reserve(
                pb.ReserveRequest(
                    budget="b",
                    tenant="erin",
                    input_tokens=1000,
                    max_output_tokens=500,
                    model="big",
                )
            )
        )
        cheap = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b",
                tenant="erin",
                input_tokens=1000,
                max_output_tokens=500,
                model="small",
            )
        )
        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=cheap.reservation_id,
                tenant="erin",
                input_tokens=1000,
                output_tokens=100,
            )
        )
        unpriced = await refusal(
            s.api.Reserve(
                pb.ReserveRequest(budget="b", tenant="erin", tokens=10, model="mystery")
            )
        )
        status = await s.api.GetTenant(pb.GetTenantRequest(tenant="erin"))

    # More than the whole day's money: no wait can help.
    assert too_dear.code == grpc.StatusCode.OUT_OF_RANGE
    assert too_dear.reason == "TENANT_DAILY_COST"
    # 1000 x 0.15 + 100 x 0.60 micro-dollars.
    assert status.day.charged_micros == 150 + 60
    assert unpriced.code == grpc.StatusCode.OUT_OF_RANGE
    assert unpriced.reason == "MODEL_UNPRICED"
    assert "mystery" in unpriced.message


async def test_cap_of_zero_is_out_of_range(serve: ServeFactory) -> None:
    config = _config()
    config["tenants"].append({"name": "frozen", "max_in_flight_tokens": 0})
    async with serve(**config) as s:
        failed = await refusal(_reserve(s, "frozen", 1, max_wait_ms=5000))

    assert failed.code == grpc.StatusCode.OUT_OF_RANGE
    assert failed.retry_after_s is None


async def test_requests_per_minute_is_a_token_bucket(serve: ServeFactory) -> None:
    async with serve(**_config(requests_per_minute=2)) as s:
        await _reserve(s, "dave", 1)
        await _reserve(s, "dave", 1)
        limited = await refusal(_reserve(s, "dave", 1))
        s.clock.advance(30)  # one request's worth of refill, no window edge
        again = await _reserve(s, "dave", 1)
        limited_again = await refusal(_reserve(s, "dave", 1))

    assert limited.reason == "BUDGET_RATE_LIMIT"
    assert limited.retry_after_s == pytest.approx(30, abs=0.1)
    assert again.granted_tokens == 1
    assert limited_again.reason == "BUDGET_RATE_LIMIT"


async def test_concurrent_reservations_are_capped_and_a_waiter_follows_a_settle(
    serve: ServeFactory,
) -> None:
    async with serve(**_config(max_concurrent_reservations=1)) as s:
        first = await _reserve(s, "dave", 10)
        refused = await refusal(_reserve(s, "erin", 10))

        async with anyio.create_task_group() as tasks:
            result: list[Any] = []

            async def later() -> None:
                result.append(await _reserve(s, "erin", 10, max_wait_ms=30_000))

            tasks.start_soon(later)
            await wait_until(partial(_waiting_is, s, 1))
            await s.api.Settle(
                pb.SettleRequest(reservation_id=first.reservation_id, tenant="dave")
            )

    assert refused.reason == "BUDGET_CONCURRENCY"
    assert result[0].granted_tokens == 10


async def test_fallback_budget_grants_and_says_so(serve: ServeFactory) -> None:
    config = {
        "budgets": [
            {"name": "main", "capacity_tokens": 1000},
            {"name": "spare", "capacity_tokens": 100_000},
        ]
    }
    async with serve(**config) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(
                budget="main", tenant="t", tokens=5000, fallback_budgets=["spare"]
            )
        )

    assert (granted.budget, granted.granted_tokens) == ("spare", 5000)


async def test_a_fallback_that_refuses_the_tenant_passes_to_the_next(
    serve: ServeFactory,
) -> None:
    config = {
        "budgets": [
            {"name": "main", "capacity_tokens": 1000},
            {"name": "strict", "capacity_tokens": 100_000, "unknown_tenants": "refuse"},
            {"name": "spare", "capacity_tokens": 100_000},
        ]
    }
    async with serve(**config) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(
                budget="main",
                tenant="t",
                tokens=5000,
                fallback_budgets=["strict", "spare"],
            )
        )
        # When every budget says no, the first one's answer is the one given.
        refused = await refusal(
            s.api.Reserve(
                pb.ReserveRequest(
                    budget="main",
                    tenant="t",
                    tokens=50_000,
                    fallback_budgets=["strict"],
                )
            )
        )

    assert (granted.budget, granted.granted_tokens) == ("spare", 5000)
    assert refused.code == grpc.StatusCode.OUT_OF_RANGE


def test_a_tenant_of_an_unknown_team_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[tenants]]\nname = "x"\nteam = "ghosts"\n', encoding="utf-8")

    with pytest.raises(ConfigError, match="team 'ghosts'"):
        load_settings(path)


def _share_config() -> dict[str, Any]:
    """Basic 1000 tokens alone; gina may hold 10 % of a pool, team ops 20 %."""
    return {
        "budgets": [
            {
                "name": "b",
                "capacity_tokens": 1000,
                "shares": {"basic": 100, "priority": 0, "burst": 0},
            }
        ],
        "teams": [{"name": "ops", "max_pool_percent": 20}],
        "tenants": [
            {"name": "gina", "max_pool_percent": 10},
            {"name": "hana", "team": "ops"},
            {"name": "ivan", "team": "ops", "max_pool_percent": 50},
        ],
    }


async def _share_counters(s: Served) -> tuple[object, ...]:
    """Every counter a refusal must leave as it was, for the share tests."""
    found: list[object] = []
    for tenant in ("gina", "hana", "ivan"):
        status = await s.api.GetTenant(pb.GetTenantRequest(tenant=tenant))
        found.append(status.SerializeToString())
    team = await s.api.GetTeam(pb.GetTeamRequest(team="ops"))
    budget = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    found += [team.SerializeToString(), budget.SerializeToString()]
    found.append(await s.ledger.entry_count())
    return tuple(found)


async def test_pool_share_cap_refuses_past_the_share_and_changes_nothing(
    serve: ServeFactory,
) -> None:
    async with serve(**_share_config()) as s:
        await _reserve(s, "gina", 60)
        before = await _share_counters(s)

        # 10 % of basic's 1000 is 100: 60 held, 50 more would pass it.
        failed = await refusal(_reserve(s, "gina", 50))
        after = await _share_counters(s)
        # More than 10 % of every pool together can never be granted.
        never = await refusal(_reserve(s, "gina", 101, max_wait_ms=5000))
        granted = await _reserve(s, "gina", 40)
        full = await refusal(_reserve(s, "gina", 1))
        status = await s.api.GetTenant(pb.GetTenantRequest(tenant="gina"))

    assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.reason == "TENANT_POOL_SHARE_CAP"
    assert "gina" in failed.message
    assert failed.detail is not None
    assert failed.detail.largest_grantable_tokens == 40
    assert after == before
    assert never.code == grpc.StatusCode.OUT_OF_RANGE
    assert never.reason == "TENANT_POOL_SHARE_CAP"
    assert granted.granted_tokens == 40
    assert full.reason == "TENANT_POOL_SHARE_CAP"
    assert status.in_flight_tokens == 100


async def test_team_pool_share_refuses_what_the_tenant_share_allows(
    serve: ServeFactory,
) -> None:
    async with serve(**_share_config()) as s:
        await _reserve(s, "hana", 150)
        before = await _share_counters(s)

        # Ivan may hold 50 % of basic, but ops holds 150 of its 200 already.
        failed = await refusal(_reserve(s, "ivan", 100))
        after = await _share_counters(s)
        granted = await _reserve(s, "ivan", 50)
        team = await s.api.GetTeam(pb.GetTeamRequest(team="ops"))
        ivan = await s.api.GetTenant(pb.GetTenantRequest(tenant="ivan"))

    assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.reason == "TEAM_POOL_SHARE_CAP"
    assert "ops" in failed.message
    assert failed.detail is not None
    assert failed.detail.largest_grantable_tokens == 50
    assert after == before
    assert granted.granted_tokens == 50
    assert (team.in_flight_tokens, ivan.in_flight_tokens) == (200, 50)


async def test_team_daily_budget_refuses_what_the_tenant_allows(
    serve: ServeFactory,
) -> None:
    config = _share_config()
    config["teams"] = [{"name": "ops", "daily_tokens": 300}]
    clock = ManualClock(start_wall_ns=NOON_NS)
    async with serve(clock=clock, **config) as s:
        used = await _reserve(s, "hana", 250)
        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=used.reservation_id, tenant="hana", output_tokens=200
            )
        )
        before = await _share_counters(s)

        # Ivan has no calendar budget; ops has 100 of its 300 left today.
        failed = await refusal(_reserve(s, "ivan", 150, max_wait_ms=5000))
        after = await _share_counters(s)
        granted = await _reserve(s, "ivan", 100)
        team = await s.api.GetTeam(pb.GetTeamRequest(team="ops"))

    assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.reason == "TEAM_DAILY_TOKENS"
    assert failed.retry_after_s == pytest.approx(12 * 3600, abs=1)
    assert after == before
    assert granted.granted_tokens == 100
    assert (team.day.charged_tokens, team.day.held_tokens) == (200, 100)
