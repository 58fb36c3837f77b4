"""Accounting cases other token schedulers got wrong, each through real gRPC.

One pool (shares 100 / 0 / 0) on the fixture's frozen ManualClock, so refill
plays no part unless a test moves the clock.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import (
    BUDGET_1000,
    pool_status,
    refusal,
    wait_until,
    write_lock_held,
)
from tokenpool.ledger import Entry

pytestmark = pytest.mark.anyio

ONE_POOL = {"basic": 100, "priority": 0, "burst": 0}


def _budget(capacity: int, **fields: Any) -> dict[str, Any]:
    return {
        "budgets": [
            {"name": "b", "capacity_tokens": capacity, "shares": ONE_POOL, **fields}
        ]
    }


async def _reserve(s: Served, tokens: int, **fields: Any) -> pb.ReserveResponse:
    request = pb.ReserveRequest(budget="b", tenant="t", tokens=tokens, **fields)
    return await s.api.Reserve(request)


async def _settle(s: Served, rid: str, **usage: Any) -> pb.SettleResponse:
    return await s.api.Settle(pb.SettleRequest(reservation_id=rid, tenant="t", **usage))


async def _refused(s: Served, tokens: int) -> grpc.StatusCode:
    return (await refusal(_reserve(s, tokens))).code


async def _entries(s: Served) -> list[Entry]:
    return await s.ledger.entries(limit=10_000)


async def _basic(s: Served) -> pb.PoolStatus:
    return (await pool_status(s.api))["basic"]


async def test_refusals_charge_nothing_and_leave_the_rest_grantable(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET_1000) as s:
        await _reserve(s, 900)

        codes = [await _refused(s, 150) for _ in range(10)]

        assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 10
        assert (await _basic(s)).available_tokens == 100
        entries = await _entries(s)
        assert [e.kind for e in entries] == ["reserve"]
        assert sum(e.charged for e in entries) == 0
        assert (await _reserve(s, 100)).granted_tokens == 100
        assert (await _basic(s)).available_tokens == 0


async def test_refund_into_an_empty_pool_is_not_lost(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        held = await _reserve(s, 1000)
        assert await _refused(s, 1) == grpc.StatusCode.RESOURCE_EXHAUSTED

        settled = await _settle(s, held.reservation_id, output_tokens=300)

        assert (settled.charged_tokens, settled.refunded_tokens) == (300, 700)
        assert (await _basic(s)).available_tokens == 700


async def test_overrun_is_recorded_whole_and_becomes_debt(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s:
        first = await _reserve(s, 600)
        second = await _reserve(s, 400)

        settled = await _settle(s, first.reservation_id, output_tokens=800)

        assert (settled.charged_tokens, settled.overrun_tokens) == (800, 200)
        entry = (await _entries(s))[-1]
        assert (entry.kind, entry.charged, entry.overrun) == ("settle", 800, 200)
        basic = await _basic(s)
        assert (basic.available_tokens, basic.debt_tokens) == (0, 200)
        assert await _refused(s, 1) == grpc.StatusCode.RESOURCE_EXHAUSTED
        await _settle(s, second.reservation_id, output_tokens=100)
        basic = await _basic(s)
        assert (basic.available_tokens, basic.debt_tokens) == (100, 0)


async def test_refused_reserves_do_not_extend_leases_that_then_expire(
    serve: ServeFactory,
) -> None:
    async with serve(**_budget(10_000, window_seconds=86_400)) as s:
        held = [await _reserve(s, 1000, lease_ms=30_000) for _ in range(10)]
        leases = {h.reservation_id: h.lease_expires_at for h in held}

        for _ in range(14):  # 2 s to 28 s
            s.clock.advance(2)
            assert await _refused(s, 1000) == grpc.StatusCode.RESOURCE_EXHAUSTED
        listed = await s.admin.ListReservations(pb.ListReservationsRequest())
        assert {r.reservation_id: r.lease_expires_at for r in listed.reservations} == (
            leases
        )
        s.clock.advance(3)  # 31 s

        async def all_expired() -> bool:
            kinds = [str(e.kind) for e in await _entries(s)]
            return kinds.count("expire") == 10

        await wait_until(all_expired)
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert status.open_reservations == 0
        assert (await _basic(s)).in_flight_tokens == 0
        assert [str(e.kind) for e in await _entries(s)].count("extend") == 0


async def test_late_settle_after_expiry_leaves_the_next_hold_alone(
    serve: ServeFactory,
) -> None:
    async with serve(**_budget(1000, window_seconds=86_400)) as s:
        first = await _reserve(s, 600, lease_ms=10_000)
        s.clock.advance(11)

        async def expired() -> bool:
            return any(e.kind == "expire" for e in await _entries(s))

        await wait_until(expired)
        expiry = (await _entries(s))[-1]
        assert (expiry.reservation_id, expiry.charged) == (first.reservation_id, 600)
        second = await _reserve(s, 400)
        before = (await _basic(s), len(await _entries(s)))

        late = await refusal(_settle(s, first.reservation_id, output_tokens=500))

        assert late.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "expired" in late.message
        assert (await _basic(s), len(await _entries(s))) == before
        listed = await s.admin.ListReservations(pb.ListReservationsRequest())
        assert [(r.reservation_id, r.granted_tokens) for r in listed.reservations] == [
            (second.reservation_id, 400)
        ]


async def test_incomplete_settle_is_charged_the_whole_hold(serve: ServeFactory) -> None:
    async with serve(**_budget(10_000)) as s:
        cut = await _reserve(s, 2000)
        silent = await _reserve(s, 2000)

        measured = await _settle(
            s, cut.reservation_id, output_tokens=500, incomplete=True
        )
        nothing = await _settle(s, silent.reservation_id, incomplete=True)

        assert (measured.charged_tokens, measured.refunded_tokens) == (2000, 0)
        assert (nothing.charged_tokens, nothing.refunded_tokens) == (2000, 0)
        assert (await _basic(s)).available_tokens == 6000


@pytest.mark.parametrize(
    ("weight_percent", "cache_read_charge"), [(None, 2550), (10, 50 + 240 + 100)]
)
async def test_cache_reads_and_writes_are_charged_by_their_weights(
    serve: ServeFactory, weight_percent: int | None, cache_read_charge: int
) -> None:
    weight = {} if weight_percent is None else {"cache_read_weight_percent": 10}
    async with serve(**_budget(10_000, **weight)) as s:
        written = await _reserve(s, 3000)
        read = await _reserve(s, 3000)

        write_settle = await _settle(
            s,
            written.reservation_id,
            input_tokens=200,
            cache_write_tokens=1500,
            output_tokens=300,
        )
        read_settle = await _settle(
            s,
            read.reservation_id,
            input_tokens=50,
            cached_input_tokens=2400,
            output_tokens=100,
        )

        assert write_settle.charged_tokens == 2000
        assert read_settle.charged_tokens == cache_read_charge
        charged = [e.charged for e in await _entries(s) if e.kind == "settle"]
        assert charged == [2000, cache_read_charge]


async def test_same_settle_twice_answers_alike_and_records_once(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET_1000) as s:
        granted = await _reserve(s, 300)
        request = pb.SettleRequest(
            reservation_id=granted.reservation_id, tenant="t", output_tokens=100
        )

        first = await s.api.Settle(request)
        entries = len(await _entries(s))
        second = await s.api.Settle(request)

        assert first == second
        assert len(await _entries(s)) == entries
        different = pb.SettleRequest(
            reservation_id=granted.reservation_id, tenant="t", output_tokens=101
        )
        conflict = await refusal(s.api.Settle(different))
        assert conflict.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "different figures" in conflict.message
        assert len(await _entries(s)) == entries


async def test_callers_that_give_up_on_a_slow_daemon_hold_and_pay_nothing(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET_1000) as s:
        codes: list[grpc.StatusCode] = []

        # Commits wait on the lock, so no grant is answered within 5 ms.
        async with write_lock_held(s.db_path):
            for i in range(100):
                request = pb.ReserveRequest(budget="b", tenant=f"t{i % 10}", tokens=10)
                gave_up = await refusal(s.api.Reserve(request, timeout=0.005))
                codes.append(gave_up.code)

        assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}

        async def settled_down() -> bool:
            status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
            entries = await _entries(s)
            undone = sum(e.kind == "undo" for e in entries)
            return status.open_reservations == 0 and undone == len(entries) // 2

        await wait_until(settled_down)
        basic = await _basic(s)
        assert (basic.available_tokens, basic.in_flight_tokens) == (1000, 0)
        entries = await _entries(s)
        assert sum(e.charged for e in entries) == 0
        kinds = [str(e.kind) for e in entries]
        # Grants were made, and every one was taken back.
        assert kinds.count("reserve") == kinds.count("undo") > 0
        assert set(kinds) == {"reserve", "undo"}
        totals = await s.admin.Report(pb.ReportRequest(budget="b"))
        assert sum(row.tokens_charged for row in totals.rows) == 0


async def test_usage_sums_past_64_bits_break_no_read_and_no_restart(
    serve: ServeFactory,
) -> None:
    big = 2**62
    config = _budget(1000)
    async with serve(**config) as s:
        holds = [await _reserve(s, 10) for _ in range(2)]
        for held in holds:
            await _settle(s, held.reservation_id, input_tokens=big)

        # Each figure is allowed (SPEC 12.9); their sums pass an int64.
        tenant = await s.api.GetTenant(pb.GetTenantRequest(tenant="t"))
        report = await s.admin.Report(pb.ReportRequest(budget="b"))

    assert tenant.day.charged_tokens == 2**63 - 1
    [row] = report.rows
    assert row.tokens_charged == 2**63 - 1
    # A restart sums the day's charges again from the ledger.
    async with serve(db_path=s.db_path, **config) as again:
        tenant = await again.api.GetTenant(pb.GetTenantRequest(tenant="t"))
        assert tenant.day.charged_tokens == 2**63 - 1


async def test_a_cost_the_ledger_cannot_record_is_refused_and_changes_nothing(
    serve: ServeFactory,
) -> None:
    price = {"model": "gpt-4o", "input": "2.50", "output": "10.00"}
    async with serve(**_budget(1000), prices=[price]) as s:
        held = await _reserve(s, 10, model="gpt-4o")
        before = await _entries(s)

        refused = await refusal(_settle(s, held.reservation_id, input_tokens=2**62))
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "usage" in refused.message
        assert await _entries(s) == before
        # The daemon stays writable and the reservation open.
        settled = await _settle(s, held.reservation_id, input_tokens=4)
        assert settled.charged_tokens == 4
        assert (await _reserve(s, 10)).granted_tokens == 10


async def test_an_extend_refusal_speaks_in_totals(serve: ServeFactory) -> None:
    async with serve(**_budget(1000)) as s:
        first = await _reserve(s, 500)
        await _reserve(s, 400)

        refused = await refusal(
            s.api.Extend(
                pb.ExtendRequest(
                    reservation_id=first.reservation_id, tenant="t", total_tokens=700
                )
            )
        )

    # Extend asks for a total: 700 asked, and 600 (500 held + 100 free) is
    # the most this reservation could hold now.
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.detail is not None
    assert refused.detail.requested_tokens == 700
    assert refused.detail.largest_grantable_tokens == 600
    assert "a hold of 700" in refused.message and "600" in refused.message


async def test_savings_the_ledger_cannot_record_are_refused_too(
    serve: ServeFactory,
) -> None:
    # Cached input is free here, so the call itself costs nothing; what it
    # saved against the input price is what would not fit.
    price = {"model": "m", "input": "2.50", "cached_input": "0", "output": "10.00"}
    async with serve(**_budget(1000), prices=[price]) as s:
        held = await _reserve(s, 10, model="m")

        refused = await refusal(
            _settle(s, held.reservation_id, cached_input_tokens=2**62)
        )
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        settled = await _settle(s, held.reservation_id, cached_input_tokens=8)
        assert settled.charged_tokens == 8
        assert (await _reserve(s, 10)).granted_tokens == 10
