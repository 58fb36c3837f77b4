"""Retention: old entries rolled up into summaries, and the v4 migration."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tokenpool.ledger import (
    Entry,
    EntryKind,
    Ledger,
    LedgerBatch,
    ReportQuery,
    ReservationRow,
    ReservationState,
)
from tokenpool.ledger import _retention as retention
from tokenpool.ledger._schema import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

DAY = retention.DAY_NS
# Wall times: "now" is day 100; the retention period in these tests is 30 days.
NOW = 100 * DAY
CUTOFF = NOW - 30 * DAY


@contextlib.asynccontextmanager
async def _running(path: Path) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(path)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(ledger.run)
            yield ledger
            await ledger.aclose()
    finally:
        await ledger.aclose()


def _run_sql(path: Path, statement: str) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        return conn.execute(statement).fetchall()


async def _sql(path: Path, statement: str) -> list[Any]:
    return await anyio.to_thread.run_sync(_run_sql, path, statement)


def _history(day: int, tenant: str, rid: str) -> LedgerBatch:
    """A reservation granted and settled on `day`: two entries and its row."""
    at = day * DAY + 5_000
    big = 2**62
    return LedgerBatch(
        entries=[
            Entry(EntryKind.RESERVE, at, "b", tenant, rid, "basic", tokens=100),
            Entry(
                EntryKind.SETTLE,
                at + 1,
                "b",
                tenant,
                rid,
                "basic",
                charged=big if tenant == "huge" else 70,
                refunded=30,
                overrun=5,
            ),
        ],
        reservations=[
            ReservationRow(
                reservation_id=rid,
                budget="b",
                tenant=tenant,
                pool="basic",
                state=ReservationState.SETTLED,
                hold=100,
                sources=(("basic", 100),),
                requested=100,
                complexity_score=1,
                multiplier=1.0,
                created_wall_ns=at,
                lease_expires_wall_ns=at + DAY,
                ended_wall_ns=at + 1,
                charged=70,
                refunded=30,
                used=70,
            )
        ],
    )


async def _fill(ledger: Ledger) -> None:
    """Forty days of history for two tenants, one huge charge, one capacity."""
    await ledger.commit(_history(39, "huge", "rhuge"))
    await ledger.commit(
        LedgerBatch(entries=[Entry(EntryKind.CAPACITY, 39 * DAY, "b", tokens=9)])
    )
    for day in range(40, 100):
        await ledger.commit(_history(day, f"t{day % 2}", f"r{day}"))


async def test_roll_up_keeps_totals_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    query = ReportQuery(group_by=("tenant",), period="month")

    async with _running(path) as ledger:
        await _fill(ledger)
        totals, report = await ledger.totals(), await ledger.usage_report(query)
        count = await ledger.entry_count()
        done = await ledger.roll_up(before_wall_ns=CUTOFF, now_wall_ns=NOW)

        assert await ledger.totals() == totals
        assert await ledger.usage_report(query) == report
        assert await ledger.entry_count() == count - done.entries
    young = await _sql(path, "SELECT MIN(at_wall_ns) FROM entries")
    # 30 days of two tenants, the huge one and the capacity change, per day.
    assert done.entries == 2 * 30 + 2 + 1
    assert young == [(70 * DAY + 5_000,)]
    assert done.summaries == 2 * 30 + 2 + 1


async def test_roll_up_in_chunks_and_again_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "ROLL_UP_CHUNK", 7)
    path = tmp_path / "ledger.db"

    async with _running(path) as ledger:
        await _fill(ledger)
        totals = await ledger.totals()
        first = await ledger.roll_up(before_wall_ns=CUTOFF, now_wall_ns=NOW)
        again = await ledger.roll_up(before_wall_ns=CUTOFF, now_wall_ns=NOW)

        assert await ledger.totals() == totals
    assert (first.entries, again.entries, again.through_id) == (63, 0, 63)
    ranges = await _sql(path, "SELECT DISTINCT first_id, through_id FROM entry_rollups")
    assert len(ranges) == 9


async def test_roll_up_stops_at_an_entry_from_after_a_clock_jump(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"

    async with _running(path) as ledger:
        await ledger.commit(_history(40, "t0", "r40"))
        await ledger.commit(_history(95, "t0", "r95"))
        # The wall clock went back: older entries after a young one stay.
        await ledger.commit(_history(41, "t0", "r41"))
        done = await ledger.roll_up(before_wall_ns=CUTOFF, now_wall_ns=NOW)

    assert done.entries == 2
    assert await _sql(path, "SELECT COUNT(*) FROM entries") == [(4,)]


async def test_only_rolled_up_entries_may_be_deleted(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with _running(path) as ledger:
        await _fill(ledger)
        await ledger.roll_up(before_wall_ns=CUTOFF, now_wall_ns=NOW)

    with pytest.raises(
        sqlite3.IntegrityError, match="append-only; DELETE needs a roll-up"
    ):
        await _sql(path, "DELETE FROM entries")
    with pytest.raises(sqlite3.IntegrityError, match="append-only; UPDATE"):
        await _sql(path, "UPDATE entries SET tokens = 1")
    with pytest.raises(sqlite3.IntegrityError, match="roll-ups are append-only"):
        await _sql(path, "DELETE FROM entry_rollups")
    with pytest.raises(sqlite3.IntegrityError, match="roll-ups are append-only"):
        await _sql(path, "UPDATE entry_rollups SET entries = 0")


async def test_version_3_database_migrates_to_retention(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for step in MIGRATIONS[:3]:
            for statement in step.statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO entries (at_wall_ns, kind, budget, tenant, charged) "
            "VALUES (1, 'settle', 'b', 't', 7)"
        )
        conn.execute("PRAGMA user_version = 3")
        conn.commit()

    async with _running(path) as ledger:
        assert [row["tokens_charged"] for row in await ledger.totals()] == [7]
        done = await ledger.roll_up(before_wall_ns=CUTOFF, now_wall_ns=NOW)
        assert [row["tokens_charged"] for row in await ledger.totals()] == [7]

    assert SCHEMA_VERSION == 4
    assert await _sql(path, "PRAGMA user_version") == [(4,)]
    assert (done.entries, done.summaries) == (1, 1)
    assert await _sql(path, "SELECT COUNT(*) FROM entries") == [(0,)]


async def test_run_retention_rolls_up_at_start(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with _running(path) as ledger:
        await _fill(ledger)
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: retention.run_retention(
                    ledger,
                    retention_days=30,
                    wall_ns=lambda: NOW,
                    task_status=task_status,
                )
            )
            # Polled: the task reports nothing when a pass is done.
            for _ in range(500):
                if await ledger.entry_count() == 2 * 30:
                    break
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        assert await ledger.entry_count() == 2 * 30
