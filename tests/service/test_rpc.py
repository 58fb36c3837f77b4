"""Reserve, Settle, Release, Extend and expiry through a real gRPC server."""

from __future__ import annotations

import sqlite3
from functools import partial

import anyio
import grpc
import pytest
from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import (
    BUDGET_1000,
    Refusal,
    pools,
    refusal,
    wait_until,
    waiting,
    write_lock_held,
)

pytestmark = pytest.mark.anyio

# Default split 65/22/13 of 10,000 tokens: basic 6500, priority 2200, burst 1300.
SPLIT_10K = {"budgets": [{"name": "b", "capacity_tokens": 10_000}]}


async def _waiting_is(s: Served, count: int) -> bool:
    return await waiting(s.api) == count


async def _open_count(s: Served, count: int) -> bool:
    status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    return status.open_reservations == count


async def _entries(served: object, kind: str) -> int:
    ledger = served.ledger  # type: ignore[attr-defined]
    return sum(1 for e in await ledger.entries(limit=10_000) if e.kind == kind)


async def test_reserve_then_settle_refunds_unused(serve: ServeFactory) -> None:
    async with serve(**SPLIT_10K) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=300, max_output_tokens=200
            )
        )
        assert granted.granted_tokens == 500
        assert granted.pool == "basic"
        assert [(d.pool, d.tokens) for d in granted.sources] == [("basic", 500)]
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].available_tokens == 6000
        assert pools(status)["basic"].in_flight_tokens == 500

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id,
                tenant="t",
                input_tokens=300,
                output_tokens=50,
            )
        )

        assert (settled.charged_tokens, settled.refunded_tokens) == (350, 150)
        assert settled.overrun_tokens == 0
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].available_tokens == 6150
        assert pools(status)["basic"].in_flight_tokens == 0
        assert status.open_reservations == 0
        assert await _entries(s, "settle") == 1


async def test_settle_overrun_becomes_debt(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        first = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=900)
        )

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=first.reservation_id, tenant="t", output_tokens=1300
            )
        )

        assert (settled.charged_tokens, settled.overrun_tokens) == (1300, 400)
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert (basic.available_tokens, basic.debt_tokens) == (0, 300)
        # A pool in debt grants nothing until refill pays it off.
        assert (
            await refusal(
                s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1))
            )
        ).code == grpc.StatusCode.RESOURCE_EXHAUSTED
        s.clock.advance(18.06)  # 1000/60 s: 301 tokens of refill
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert (basic.available_tokens, basic.debt_tokens) == (1, 0)


async def test_incomplete_settle_charges_at_least_the_hold(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=400)
        )

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id,
                tenant="t",
                output_tokens=100,
                incomplete=True,
            )
        )

        assert (settled.charged_tokens, settled.refunded_tokens) == (400, 0)


async def test_response_cache_hit_refunds_everything(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=400)
        )

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id,
                tenant="t",
                response_cache_hit=True,
            )
        )

        assert (settled.charged_tokens, settled.refunded_tokens) == (0, 400)


async def test_release_gives_back_all_but_billed_input(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=400)
        )

        released = await s.api.Release(
            pb.ReleaseRequest(
                reservation_id=granted.reservation_id,
                tenant="t",
                billed_input_tokens=30,
            )
        )

        assert (released.charged_tokens, released.refunded_tokens) == (30, 370)
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert basic.available_tokens == 970
        again = await refusal(
            s.api.Settle(
                pb.SettleRequest(reservation_id=granted.reservation_id, tenant="t")
            )
        )
        assert again.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "released" in again.message


async def test_extend_grows_shrinks_and_moves_lease(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=400)
        )
        rid = granted.reservation_id

        grown = await s.api.Extend(
            pb.ExtendRequest(reservation_id=rid, tenant="t", total_tokens=700)
        )
        assert grown.granted_tokens == 700
        again = await s.api.Extend(
            pb.ExtendRequest(reservation_id=rid, tenant="t", total_tokens=700)
        )
        assert again.granted_tokens == 700
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert (basic.available_tokens, basic.in_flight_tokens) == (300, 700)

        shrunk = await s.api.Extend(
            pb.ExtendRequest(reservation_id=rid, tenant="t", total_tokens=100)
        )
        assert shrunk.granted_tokens == 100
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert (basic.available_tokens, basic.in_flight_tokens) == (900, 100)

        too_much = await refusal(
            s.api.Extend(
                pb.ExtendRequest(reservation_id=rid, tenant="t", total_tokens=1001)
            )
        )
        assert too_much.code == grpc.StatusCode.OUT_OF_RANGE

        later = timestamp_pb2.Timestamp()
        later.FromNanoseconds(s.clock.wall_ns() + 30 * 60 * 10**9)
        moved = await s.api.Extend(
            pb.ExtendRequest(reservation_id=rid, tenant="t", lease_expires_at=later)
        )
        assert moved.lease_expires_at == later
        assert await _entries(s, "extend") == 3


async def test_sweeper_expires_a_lease_on_the_driven_clock(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=400, lease_ms=10_000)
        )
        s.clock.advance(9.9)
        await anyio.sleep(0.05)
        assert (
            await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        ).open_reservations == 1

        s.clock.advance(0.2)
        await wait_until(lambda: _open_count(s, 0))

        assert await _entries(s, "expire") == 1
        # Expired holds are charged by default: nothing came back to the pool
        # beyond 10 s of refill (166 tokens).
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert basic.available_tokens == 600 + 168
        late = await refusal(
            s.api.Settle(
                pb.SettleRequest(
                    reservation_id=granted.reservation_id, tenant="t", output_tokens=500
                )
            )
        )
        assert late.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "100 tokens" in late.message
        assert await _entries(s, "overrun") == 1
        # A repeat of the same late settle charges nothing more.
        await refusal(
            s.api.Settle(
                pb.SettleRequest(
                    reservation_id=granted.reservation_id, tenant="t", output_tokens=500
                )
            )
        )
        assert await _entries(s, "overrun") == 1


async def test_idempotent_reserve_returns_the_original(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        request = pb.ReserveRequest(
            budget="b", tenant="t", tokens=300, idempotency_key="k1"
        )

        first, second = await s.api.Reserve(request), await s.api.Reserve(request)

        assert first == second
        basic = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))["basic"]
        assert basic.in_flight_tokens == 300
        changed = pb.ReserveRequest(
            budget="b", tenant="t", tokens=301, idempotency_key="k1"
        )
        conflict = await refusal(s.api.Reserve(changed))
        assert conflict.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "idempotency_key" in conflict.message
        # The same key for another tenant is another request.
        other = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="u", tokens=300, idempotency_key="k1")
        )
        assert other.reservation_id != first.reservation_id
        assert await _entries(s, "reserve") == 2


async def test_concurrent_repeats_of_a_key_hold_once(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        request = pb.ReserveRequest(
            budget="b", tenant="t", tokens=300, idempotency_key="k"
        )
        answers: list[pb.ReserveResponse] = []

        async def send() -> None:
            answers.append(await s.api.Reserve(request))

        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(send)

        assert len({a.reservation_id for a in answers}) == 1
        assert await _entries(s, "reserve") == 1


async def test_refused_key_is_decided_afresh(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=900))
        request = pb.ReserveRequest(
            budget="b", tenant="t", tokens=500, idempotency_key="k"
        )
        assert (await refusal(s.api.Reserve(request))).code == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )

        s.clock.advance(30)  # 500 tokens of refill

        assert (await s.api.Reserve(request)).granted_tokens == 500


async def test_undone_key_is_decided_afresh(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        request = pb.ReserveRequest(
            budget="b", tenant="t", tokens=300, idempotency_key="k"
        )
        # The commit waits on the lock; the caller gives up, the grant is undone.
        async with write_lock_held(s.db_path):
            gave_up = await refusal(s.api.Reserve(request, timeout=0.2))
        assert gave_up.code == grpc.StatusCode.DEADLINE_EXCEEDED
        await wait_until(lambda: _open_count(s, 0))

        retried = await s.api.Reserve(request)
        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=retried.reservation_id, tenant="t", output_tokens=100
            )
        )

        assert settled.charged_tokens == 100
        assert [await _entries(s, kind) for kind in ("reserve", "undo")] == [2, 1]


async def test_waiter_is_granted_when_tokens_come_back(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        held = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=800)
        )
        answers: list[pb.ReserveResponse] = []

        async def wait_for_tokens() -> None:
            answers.append(
                await s.api.Reserve(
                    pb.ReserveRequest(
                        budget="b", tenant="u", tokens=500, max_wait_ms=30_000
                    )
                )
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_tokens)
            await wait_until(lambda: _waiting_is(s, 1))
            s.clock.advance(2)
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=held.reservation_id, tenant="t", output_tokens=100
                )
            )

        assert answers[0].granted_tokens == 500
        assert answers[0].waited_ms == 2000


@pytest.mark.parametrize(
    ("queueing", "expected"),
    [("fifo", ["big", "small"]), ("fair", ["small", "big"])],
)
async def test_a_light_tenant_goes_first_only_under_fair_queueing(
    serve: ServeFactory, queueing: str, expected: list[str]
) -> None:
    shares = {"basic": 100, "priority": 0, "burst": 0}
    budgets = [
        {"name": "b", "capacity_tokens": 1000, "shares": shares, "queueing": queueing}
    ]
    async with serve(budgets=budgets) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1000))
        order: list[str] = []

        async def wait(tenant: str, tokens: int) -> None:
            await s.api.Reserve(
                pb.ReserveRequest(
                    budget="b", tenant=tenant, tokens=tokens, max_wait_ms=60_000
                )
            )
            order.append(tenant)

        async with anyio.create_task_group() as tasks:
            for tenant, tokens in (("big", 600), ("small", 10)):
                tasks.start_soon(wait, tenant, tokens)
                queued = 1 if tenant == "big" else 2
                await wait_until(partial(_waiting_is, s, queued))
            # 10 tokens refill within a second; 600 take most of a minute.
            # FIFO keeps the small request behind the big one; fair queuing
            # serves it first, since its tenant has had nothing yet.
            s.clock.advance(1)
            await anyio.sleep(0.05)
            assert order == expected[:1] if queueing == "fair" else order == []
            s.clock.advance(60)
            await wait_until(partial(_waiting_is, s, 0))

        assert order == expected
        grants = [e.tenant for e in await s.ledger.entries() if e.kind == "reserve"]
        assert grants == ["t", *expected]


async def test_wait_ends_in_refusal_at_max_wait(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1000))
        outcome: list[Refusal] = []

        async def wait() -> None:
            outcome.append(
                await refusal(
                    s.api.Reserve(
                        pb.ReserveRequest(
                            budget="b", tenant="u", tokens=500, max_wait_ms=1000
                        )
                    )
                )
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await wait_until(lambda: _waiting_is(s, 1))
            s.clock.advance(1.0)

        assert outcome[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].waiting == 0
        assert pools(status)["basic"].in_flight_tokens == 1000


async def test_caller_that_gives_up_leaves_the_queue(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1000))

        failed = await refusal(
            s.api.Reserve(
                pb.ReserveRequest(
                    budget="b", tenant="u", tokens=500, max_wait_ms=60_000
                ),
                timeout=0.3,
            )
        )

        # The daemon ends the wait just before the deadline; whether its refusal
        # or the caller's own deadline arrives first is a race either way.
        assert failed.code in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        await wait_until(lambda: _waiting_is(s, 0))
        s.clock.advance(60)
        await anyio.sleep(0.05)
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].in_flight_tokens == 1000
        assert status.open_reservations == 1


async def test_burst_covers_a_spike_within_the_tenant_limit(
    serve: ServeFactory,
) -> None:
    no_loans = {"basic": {"never_borrow": True}}
    budgets = [{"name": "b", "capacity_tokens": 10_000, "lending": no_loans}]
    async with serve(budgets=budgets) as s:
        first = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=6000)
        )
        assert [(d.pool, d.tokens) for d in first.sources] == [("basic", 6000)]

        spike = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=1000)
        )

        assert [(d.pool, d.tokens) for d in spike.sources] == [
            ("basic", 500),
            ("burst", 500),
        ]
        status = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))
        assert status["burst"].lent_tokens == 500
        assert status["basic"].borrowed_tokens == 500
        # Burst is 1300; one tenant may hold half of it (650): 150 more, not 151.
        over = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=151))
        )
        assert over.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert over.detail is not None and over.detail.largest_grantable_tokens == 150
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="other", tokens=600))

        await s.api.Settle(
            pb.SettleRequest(reservation_id=spike.reservation_id, tenant="t")
        )

        status = pools(await s.api.GetBudget(pb.GetBudgetRequest(budget="b")))
        assert status["burst"].lent_tokens == 600
        assert status["basic"].borrowed_tokens == 600


async def test_priority_tenant_draws_on_priority_pool(serve: ServeFactory) -> None:
    tenants = [{"name": "vip", "tier": "priority", "weight": 2}]
    async with serve(**SPLIT_10K, tenants=tenants) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="vip", tokens=100)
        )

        assert granted.pool == "priority"
        tenant = await s.api.GetTenant(pb.GetTenantRequest(tenant="vip"))
        assert (tenant.tier, tenant.weight, tenant.configured) == ("priority", 2, True)
        assert tenant.in_flight_tokens == 100


async def test_fallback_budget_grants_when_first_refuses(serve: ServeFactory) -> None:
    budgets = [
        {
            "name": "small",
            "capacity_tokens": 100,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
        },
        {"name": "big", "capacity_tokens": 1000},
    ]
    async with serve(budgets=budgets) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(
                budget="small", tenant="t", tokens=90, fallback_budgets=["big"]
            )
        )
        assert granted.budget == "small"

        second = await s.api.Reserve(
            pb.ReserveRequest(
                budget="small", tenant="t", tokens=90, fallback_budgets=["big"]
            )
        )

        assert second.budget == "big"
        listed = await s.admin.ListReservations(
            pb.ListReservationsRequest(budget="big")
        )
        assert [r.reservation_id for r in listed.reservations] == [
            second.reservation_id
        ]


async def test_report_sums_the_ledger(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=300)
        )
        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id, tenant="t", output_tokens=120
            )
        )
        await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=999))
        )
        s.clock.advance(1)
        with anyio.fail_after(5):
            while True:
                report = await s.admin.Report(pb.ReportRequest(budget="b"))
                if report.rows and report.rows[0].refusals:
                    break
                await anyio.sleep(0.01)

        (row,) = report.rows
        assert (row.reservations, row.tokens_reserved, row.tokens_charged) == (
            1,
            300,
            120,
        )
        assert (row.tokens_refunded, row.refusals) == (180, 1)


async def test_set_capacity_stops_at_the_configured_maximum(
    serve: ServeFactory,
) -> None:
    budgets = [
        {"name": "capped", "capacity_tokens": 10_000, "max_capacity_tokens": 20_000},
        {"name": "free", "capacity_tokens": 10_000},
    ]
    async with serve(budgets=budgets) as s:
        above = await refusal(
            s.admin.SetCapacity(
                pb.SetCapacityRequest(budget="capped", capacity_tokens=20_001)
            )
        )
        unchanged = await s.api.GetBudget(pb.GetBudgetRequest(budget="capped"))
        at_max = await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="capped", capacity_tokens=20_000)
        )
        # With no maximum configured, an operator may raise it as far as needed.
        raised = await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="free", capacity_tokens=50_000)
        )
        again = await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="free", capacity_tokens=80_000)
        )

    assert above.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "capacity_tokens" in above.message and "20000" in above.message
    assert unchanged.capacity_tokens == 10_000
    assert at_max.capacity_tokens == 20_000
    assert (raised.capacity_tokens, again.capacity_tokens) == (50_000, 80_000)


async def test_refusal_counts_are_written_at_shutdown(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        for _ in range(5):
            await refusal(
                s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=5000))
            )

    # Nothing else committed after them: only the shutdown could write them.
    with sqlite3.connect(s.db_path) as db:
        [(count,)] = db.execute("SELECT SUM(count) FROM refusals").fetchall()
    assert count == 5
