"""Overruns (SPEC 4, 12.2, 12.3): usage past the hold, through gRPC.

Usage above a hold is charged to the own pool, what it lacks to burst's
free tokens, and the rest becomes debt on the own pool; usage more than the
budget's `overrun_limit_percent` above the hold is flagged as a violation in
the ledger entry's detail (`"violation": true`) and counted by the
`tokenpool_overrun_violations_total` metric. A settle after expiry charges
its usage beyond what expiry charged as an overrun, and is flagged the same
way. The daemon runs on the fixture's frozen ManualClock.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import pool_status, refusal, wait_until
from tests.telemetry._scrape import scrape
from tokenpool.ledger import Entry

pytestmark = pytest.mark.anyio

VIOLATIONS = "tokenpool_overrun_violations_total"

# Basic 500, burst 500, refilling a token a day: only what tests do moves
# the levels.
SPLIT = {"basic": 50, "priority": 0, "burst": 50}


def _config(**budget: Any) -> dict[str, Any]:
    return {
        "budgets": [
            {
                "name": "b",
                "capacity_tokens": 1000,
                "window_seconds": 86_400,
                "shares": SPLIT,
                **budget,
            }
        ],
        "telemetry": {"metrics_address": "127.0.0.1:0"},
    }


async def _reserve(s: Served, tokens: int, **fields: Any) -> pb.ReserveResponse:
    request = pb.ReserveRequest(budget="b", tenant="t", tokens=tokens, **fields)
    return await s.api.Reserve(request)


async def _settle(s: Served, rid: str, used: int) -> pb.SettleResponse:
    return await s.api.Settle(
        pb.SettleRequest(reservation_id=rid, tenant="t", output_tokens=used)
    )


async def _entry(s: Served, rid: str, kind: str) -> Entry:
    entries = await s.ledger.entries(limit=10_000)
    (found,) = [e for e in entries if e.reservation_id == rid and e.kind == kind]
    return found


async def _violations(s: Served) -> float:
    """Violations the metric counts for tenant t; 0 before the first one."""
    metrics = await scrape(s.metrics_address)
    if not any(sample.name == VIOLATIONS for sample in metrics.samples):
        return 0
    return metrics.value(VIOLATIONS, budget="b", tenant="t")


async def _levels(s: Served) -> dict[str, tuple[int, int]]:
    """(available, debt) per pool."""
    found = await pool_status(s.api)
    return {name: (p.available_tokens, p.debt_tokens) for name, p in found.items()}


async def test_overrun_charges_own_pool_then_burst_then_debt(
    serve: ServeFactory,
) -> None:
    async with serve(**_config()) as s:
        held = await _reserve(s, 400)
        assert [(d.pool, d.tokens) for d in held.sources] == [("basic", 400)]

        # 700 past the hold: basic's free 100, burst's free 500, 100 of debt.
        settled = await _settle(s, held.reservation_id, 1100)

        assert (settled.charged_tokens, settled.overrun_tokens) == (1100, 700)
        levels = await _levels(s)
        assert levels["basic"] == (0, 100)
        assert levels["burst"] == (0, 0)
        entry = await _entry(s, held.reservation_id, "settle")
        assert (entry.charged, entry.overrun) == (1100, 700)
        assert entry.detail.get("violation") is True
        assert await _violations(s) == 1
        # A pool in debt grants nothing.
        assert (await refusal(_reserve(s, 1))).code is (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )


@pytest.mark.parametrize(
    ("limit", "used", "flagged"),
    [
        (None, 110, False),  # the default 10 %: exactly at the limit
        (None, 111, True),
        (20, 240, False),
        (20, 241, True),
        (0, 100, False),  # no overrun at all
        (0, 101, True),
    ],
)
async def test_overrun_past_the_limit_is_flagged(
    serve: ServeFactory, limit: int | None, used: int, flagged: bool
) -> None:
    hold = 100 if limit != 20 else 200
    budget = {} if limit is None else {"overrun_limit_percent": limit}
    async with serve(**_config(**budget)) as s:
        held = await _reserve(s, hold)

        settled = await _settle(s, held.reservation_id, used)

        assert (settled.charged_tokens, settled.overrun_tokens) == (used, used - hold)
        # Within the own pool's free tokens: no burst, no debt.
        assert (await _levels(s))["basic"] == (500 - used, 0)
        entry = await _entry(s, held.reservation_id, "settle")
        assert entry.overrun == used - hold
        assert entry.detail.get("violation", False) is flagged
        assert await _violations(s) == (1 if flagged else 0)


async def test_incomplete_settle_is_flagged_on_what_it_measured(
    serve: ServeFactory,
) -> None:
    async with serve(**_config()) as s:
        held = await _reserve(s, 100)

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=held.reservation_id,
                tenant="t",
                output_tokens=150,
                incomplete=True,
            )
        )

        assert (settled.charged_tokens, settled.overrun_tokens) == (150, 50)
        entry = await _entry(s, held.reservation_id, "settle")
        assert entry.detail.get("violation") is True
        assert await _violations(s) == 1


async def _expire(s: Served, rid: str) -> None:
    s.clock.advance(2)

    async def expired() -> bool:
        entries = await s.ledger.entries(limit=10_000)
        return any(e.kind == "expire" and e.reservation_id == rid for e in entries)

    await wait_until(expired)


@pytest.mark.parametrize(
    ("used", "flagged"), [(105, False), (110, False), (111, True), (300, True)]
)
async def test_late_settle_overrun_is_charged_and_flagged(
    serve: ServeFactory, used: int, flagged: bool
) -> None:
    # SPEC 12.2: usage beyond what expiry charged is charged as an overrun
    # (section 4), so the overrun limit flags it as any settle's.
    async with serve(**_config()) as s:
        held = await _reserve(s, 100, lease_ms=1000)
        await _expire(s, held.reservation_id)
        assert (await _levels(s))["basic"] == (400, 0)

        late = await refusal(_settle(s, held.reservation_id, used))

        assert late.code is grpc.StatusCode.FAILED_PRECONDITION
        entry = await _entry(s, held.reservation_id, "overrun")
        assert (entry.charged, entry.overrun) == (used - 100, used - 100)
        assert entry.detail.get("late_settle") is True
        assert entry.detail.get("violation", False) is flagged
        assert (await _levels(s))["basic"] == (400 - (used - 100), 0)
        assert await _violations(s) == (1 if flagged else 0)

        # A repeat changes nothing and is not counted again.
        again = await refusal(_settle(s, held.reservation_id, used))

        assert again.code is grpc.StatusCode.FAILED_PRECONDITION
        assert await _violations(s) == (1 if flagged else 0)


async def test_late_settle_refunded_at_expiry_is_flagged_against_the_hold(
    serve: ServeFactory,
) -> None:
    # Expiry gave the hold back: all 105 used is charged late, but it is
    # only 5 % past the hold, within the limit.
    async with serve(**_config(refund_on_expiry=True)) as s:
        held = await _reserve(s, 100, lease_ms=1000)
        await _expire(s, held.reservation_id)

        await refusal(_settle(s, held.reservation_id, 105))

        entry = await _entry(s, held.reservation_id, "overrun")
        assert (entry.charged, entry.overrun) == (105, 105)
        assert "violation" not in entry.detail
        assert await _violations(s) == 0
