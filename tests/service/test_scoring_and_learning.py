"""Complexity-scored holds and learning from settlements, over the wire."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory

pytestmark = pytest.mark.anyio


def _budget(**extra: object) -> dict[str, object]:
    return {"budgets": [{"name": "b", "capacity_tokens": 1_000_000, **extra}]}


async def test_hold_is_input_plus_scored_allowance(serve: ServeFactory) -> None:
    async with serve(**_budget()) as s:
        simple = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=100, task_type="classification"
            )
        )
        complex_ = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b",
                tenant="t",
                input_tokens=8192,
                task_type="code",
                output_detail=3,
                structured_output=True,
                context_items=8,
                max_output_tokens=1500,
            )
        )
        entries = [e for e in await s.ledger.entries() if e.kind == "reserve"]
        row = await s.ledger.get_reservation(complex_.reservation_id)

    # Classification scores low (x1.0): 16 tokens of typical output.
    assert (simple.complexity_score, simple.multiplier) == (1, 1.0)
    assert simple.granted_tokens == 100 + 16
    # Every factor at its top scores 10 (x2.0): 1024 x 2, capped at 1500.
    assert (complex_.complexity_score, complex_.multiplier) == (10, 2.0)
    assert complex_.granted_tokens == 8192 + 1500
    assert entries[1].detail["complexity_score"] == 10
    assert entries[1].detail["multiplier"] == 2.0
    assert row is not None
    assert (row.complexity_score, row.task_type, row.output_allowance) == (
        10,
        "code",
        1500,
    )


async def test_unknown_task_type_is_scored_as_other_and_counted(
    serve: ServeFactory,
) -> None:
    async with serve(**_budget()) as s:
        poem = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", input_tokens=10, task_type="poem")
        )
        other = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=10, task_type="other"
            )
        )
        estimates = await s.admin.Estimates(pb.EstimatesRequest())

    assert poem.granted_tokens == other.granted_tokens == 10 + 512
    assert dict(estimates.unknown_task_types) == {"b": 1}


async def _settle_small(s: Served, count: int, *, output: int) -> None:
    for _ in range(count):
        granted = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=100, task_type="generation"
            )
        )
        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id,
                tenant="t",
                input_tokens=100,
                output_tokens=output,
            )
        )


async def test_estimates_report_what_holds_left_unused(serve: ServeFactory) -> None:
    async with serve(**_budget()) as s:
        await _settle_small(s, 4, output=24)
        estimates = await s.admin.Estimates(pb.EstimatesRequest(budget="b"))
        unchanged = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=100, task_type="generation"
            )
        )

    [row] = estimates.rows
    assert (row.tenant, row.task_type, row.samples) == ("t", "generation", 4)
    # Generation scores 4 (x1.5): each hold was 100 + 1536 and used 124.
    assert row.unused_tokens == 4 * (1636 - 124)
    assert row.overrun_rate == 0
    assert row.used_to_held_p50 == pytest.approx(124 / 1636)
    # Learning is off by default: the allowance stays as scored.
    assert row.output_factor == 0
    assert unchanged.granted_tokens == 1636


async def test_learning_lowers_the_allowance_and_survives_restart(
    serve: ServeFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "learn.db"
    config = _budget(learning={"enabled": True, "min_samples": 5, "window": 10})
    async with serve(db_path=db_path, **config) as s:
        await _settle_small(s, 4, output=100)
        before = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=100, task_type="generation"
            )
        )
        await s.api.Release(
            pb.ReleaseRequest(reservation_id=before.reservation_id, tenant="t")
        )
        await _settle_small(s, 1, output=100)
        after = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=100, task_type="generation"
            )
        )
        other_tenant = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="u", input_tokens=100, task_type="generation"
            )
        )

    async with serve(db_path=db_path, **config) as s:
        restarted = await s.api.Reserve(
            pb.ReserveRequest(
                budget="b", tenant="t", input_tokens=100, task_type="generation"
            )
        )
        row = await s.ledger.get_reservation(restarted.reservation_id)

    # Four settles are too few; the fifth turns the correction on: 100 of
    # of 1536 used, so the allowance falls to 100 and a margin.
    assert before.granted_tokens == 100 + 1536
    assert 100 + 100 < after.granted_tokens < 100 + 150
    assert other_tenant.granted_tokens == 100 + 1536
    assert restarted.granted_tokens == after.granted_tokens
    assert row is not None and row.output_allowance == 1536
    assert row.output_factor != ""
