"""Loans between pools and burst use, through gRPC on the driven clock."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import Pending, drawn, pool_status, refusal, wait_until

pytestmark = pytest.mark.anyio

# A premium tenant: its own pool is priority, and it may borrow from basic.
VIP = [{"name": "vip", "tier": "priority"}]


def _budget(**policy: Any) -> dict[str, Any]:
    """10,000 tokens a minute, split 65/22/13: basic 6500, priority 2200, burst 1300."""
    return {"budgets": [{"name": "b", "capacity_tokens": 10_000, **policy}]}


def _ask(tenant: str, tokens: int, max_wait_ms: int = 0) -> pb.ReserveRequest:
    return pb.ReserveRequest(
        budget="b", tenant=tenant, tokens=tokens, max_wait_ms=max_wait_ms
    )


async def _largest_grantable(s: Served, tenant: str, tokens: int) -> int:
    """Asks for tokens that must be refused; returns the largest it could get."""
    refused = await refusal(s.api.Reserve(_ask(tenant, tokens)))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.detail is not None
    return refused.detail.largest_grantable_tokens


async def _loans(s: Served) -> dict[str, tuple[int, int, int]]:
    """Per pool: in flight, lent and borrowed tokens."""
    return {
        name: (pool.in_flight_tokens, pool.lent_tokens, pool.borrowed_tokens)
        for name, pool in (await pool_status(s.api)).items()
    }


async def _open_holds_by_pool(s: Served) -> Counter[str]:
    """What the open reservations drew from each pool, as the admin lists them."""
    listed = await s.admin.ListReservations(pb.ListReservationsRequest(budget="b"))
    drawn_from: Counter[str] = Counter()
    for reservation in listed.reservations:
        assert sum(d.tokens for d in reservation.sources) == (
            reservation.granted_tokens
        )
        for draw in reservation.sources:
            drawn_from[draw.pool] += draw.tokens
    return drawn_from


async def _levels(s: Served) -> dict[str, int]:
    return {name: p.available_tokens for name, p in (await pool_status(s.api)).items()}


@pytest.mark.parametrize(
    ("lending", "share"),
    [
        ({}, 1625),  # 25 % of basic's 6500
        ({"lendable_percent": 10, "lend_threshold_percent": 90}, 650),
    ],
)
async def test_priority_borrows_up_to_the_lendable_share(
    serve: ServeFactory, lending: dict[str, int], share: int
) -> None:
    policy = _budget(burst_tenant_percent=0, lending={"basic": lending})
    async with serve(**policy, tenants=VIP) as s:
        own = await s.api.Reserve(_ask("vip", 2200))
        assert drawn(own) == [("priority", 2200)]

        assert await _largest_grantable(s, "vip", share + 1) == share
        loan = await s.api.Reserve(_ask("vip", share))

        assert drawn(loan) == [("basic", share)]
        assert await _loans(s) == {
            "basic": (share, share, 0),
            "priority": (2200, 0, share),
            "burst": (0, 0, 0),
        }
        # Basic is far below its threshold, but its share is out on loan.
        assert (await _levels(s))["basic"] == 6500 - share
        assert await _largest_grantable(s, "vip", 1) == 0


@pytest.mark.parametrize(("threshold", "lendable"), [(75, 875), (80, 1200)])
async def test_lender_lends_only_down_to_its_threshold(
    serve: ServeFactory, threshold: int, lendable: int
) -> None:
    lending = {"basic": {"lend_threshold_percent": threshold}}
    async with serve(
        **_budget(burst_tenant_percent=0, lending=lending), tenants=VIP
    ) as s:
        await s.api.Reserve(_ask("vip", 2200))
        # Basic's own tenant holds 4000: 2500 left, 61.5 % in use. A loan may
        # take it up to the threshold and no further, well within its share.
        await s.api.Reserve(_ask("bt", 4000))

        assert await _largest_grantable(s, "vip", lendable + 1) == lendable
        loan = await s.api.Reserve(_ask("vip", lendable))

        assert drawn(loan) == [("basic", lendable)]
        basic = (await pool_status(s.api))["basic"]
        assert basic.utilization == pytest.approx(threshold / 100)
        assert basic.lent_tokens == lendable
        assert await _largest_grantable(s, "vip", 1) == 0


@pytest.mark.parametrize(
    "lending",
    [{"basic": {"never_lend": True}}, {"priority": {"never_borrow": True}}],
    ids=["basic-never-lends", "priority-never-borrows"],
)
async def test_never_lend_and_never_borrow_hold(
    serve: ServeFactory, lending: dict[str, Any]
) -> None:
    async with serve(
        **_budget(burst_tenant_percent=0, lending=lending), tenants=VIP
    ) as s:
        await s.api.Reserve(_ask("vip", 1000))

        # Basic is idle, but the priority tenant gets its own pool only,
        assert await _largest_grantable(s, "vip", 1201) == 1200
        # and more than its own pool could ever hold is out of range.
        too_big = await refusal(s.api.Reserve(_ask("vip", 2201)))
        assert too_big.code == grpc.StatusCode.OUT_OF_RANGE
        # The other direction is not switched off: basic borrows from priority.
        await s.api.Reserve(_ask("bt", 6500))
        loan = await s.api.Reserve(_ask("bt", 100))

        assert drawn(loan) == [("priority", 100)]
        assert await _loans(s) == {
            "basic": (6500, 0, 100),
            "priority": (1100, 100, 0),
            "burst": (0, 0, 0),
        }


async def test_refunds_go_back_to_lenders_first(serve: ServeFactory) -> None:
    async with serve(**_budget(), tenants=VIP) as s:
        vip = await s.api.Reserve(_ask("vip", 4000))
        assert drawn(vip) == [("priority", 2200), ("burst", 650), ("basic", 1150)]
        await s.api.Reserve(_ask("bt", 1000))
        assert await _loans(s) == {
            "basic": (2150, 1150, 0),
            "priority": (2200, 0, 1800),
            "burst": (650, 650, 0),
        }
        assert await _open_holds_by_pool(s) == {
            "basic": 2150,
            "priority": 2200,
            "burst": 650,
        }

        # Shrinking the hold by 1000 pays basic's loan down first.
        await s.api.Extend(
            pb.ExtendRequest(
                reservation_id=vip.reservation_id, tenant="vip", total_tokens=3000
            )
        )

        assert await _loans(s) == {
            "basic": (1150, 150, 0),
            "priority": (2200, 0, 800),
            "burst": (650, 650, 0),
        }
        assert await _open_holds_by_pool(s) == {
            "basic": 1150,
            "priority": 2200,
            "burst": 650,
        }
        assert await _levels(s) == {"basic": 5350, "priority": 0, "burst": 650}

        # Settling 1000 under the hold: 150 to basic, 650 to burst, 200 home.
        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=vip.reservation_id, tenant="vip", output_tokens=2000
            )
        )

        assert (settled.charged_tokens, settled.refunded_tokens) == (2000, 1000)
        assert await _levels(s) == {"basic": 5500, "priority": 200, "burst": 1300}
        assert await _loans(s) == {
            "basic": (1000, 0, 0),
            "priority": (0, 0, 0),
            "burst": (0, 0, 0),
        }
        assert await _open_holds_by_pool(s) == {"basic": 1000}


async def _waiting_are(s: Served, basic: int, priority: int) -> bool:
    status = await pool_status(s.api)
    return (status["basic"].waiting, status["priority"].waiting) == (basic, priority)


async def test_lenders_own_waiter_goes_before_borrowers(serve: ServeFactory) -> None:
    lending = {"basic": {"lend_threshold_percent": 100}}
    async with serve(
        **_budget(burst_tenant_percent=0, lending=lending), tenants=VIP
    ) as s:
        await s.api.Reserve(_ask("vip", 2200))
        held = await s.api.Reserve(_ask("bt", 6000))
        # With nobody waiting on basic, its last 500 may be lent.
        loan = await s.api.Reserve(_ask("vip", 100))
        assert drawn(loan) == [("basic", 100)]
        await s.api.Release(
            pb.ReleaseRequest(reservation_id=loan.reservation_id, tenant="vip")
        )

        own_waiter, borrower = Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(own_waiter.send, s.api, _ask("bw", 600, 60_000))
            await wait_until(partial(_waiting_are, s, 1, 0))

            # Basic's own tenant waits: basic lends nothing, not even the 500
            # it has, to a new borrower.
            assert await _largest_grantable(s, "vip", 100) == 0
            tasks.start_soon(borrower.send, s.api, _ask("vip", 100, 60_000))
            await wait_until(partial(_waiting_are, s, 1, 1))

            # 100 come back: 600 is exactly what basic's waiter needs.
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=held.reservation_id, tenant="bt", output_tokens=5900
                )
            )
            served = await own_waiter.answered()
            assert drawn(served) == [("basic", 600)]
            assert await _waiting_are(s, 0, 1)

            # Once basic's queue is empty, it lends again.
            await s.api.Release(
                pb.ReleaseRequest(reservation_id=served.reservation_id, tenant="bw")
            )

            assert drawn(await borrower.answered()) == [("basic", 100)]


async def test_sources_are_recorded_in_drawing_order(serve: ServeFactory) -> None:
    async with serve(**_budget(), tenants=VIP) as s:
        await s.api.Reserve(_ask("vip", 1200))

        granted = await s.api.Reserve(_ask("vip", 2000))

        expected = [("priority", 1000), ("burst", 650), ("basic", 350)]
        assert drawn(granted) == expected
        assert granted.pool == "priority"
        (entry,) = [
            e
            for e in await s.ledger.entries()
            if e.reservation_id == granted.reservation_id
        ]
        assert entry.kind == "reserve"
        assert entry.pool == "priority"
        assert entry.detail["sources"] == [list(draw) for draw in expected]
        assert await _loans(s) == {
            "basic": (350, 350, 0),
            "priority": (2200, 0, 1000),
            "burst": (650, 650, 0),
        }


async def test_pool_in_debt_lends_nothing(serve: ServeFactory) -> None:
    # Basic could lend all it has (no threshold), but never while in debt.
    lending = {"basic": {"lend_threshold_percent": 100}}
    async with serve(
        **_budget(burst_tenant_percent=0, lending=lending), tenants=VIP
    ) as s:
        await s.api.Reserve(_ask("vip", 2200))
        held = await s.api.Reserve(_ask("bt", 6500))
        # 1800 over the hold: basic has nothing, burst gives 1300, 500 is debt.
        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=held.reservation_id, tenant="bt", output_tokens=8300
            )
        )
        assert settled.overrun_tokens == 1800
        status = await pool_status(s.api)
        assert (status["basic"].debt_tokens, status["burst"].available_tokens) == (
            500,
            0,
        )

        assert await _largest_grantable(s, "vip", 1) == 0
        # Three seconds refill basic by 325 (still 175 in debt) and priority
        # by 110: the priority tenant gets its own 110 and no loan.
        s.clock.advance(3)
        assert (await pool_status(s.api))["basic"].debt_tokens == 175
        assert await _largest_grantable(s, "vip", 111) == 110
        # Three more: basic is out of debt with 150, which it lends again.
        s.clock.advance(3)
        assert await _largest_grantable(s, "vip", 371) == 370
        granted = await s.api.Reserve(_ask("vip", 370))

        assert drawn(granted) == [("priority", 220), ("basic", 150)]
