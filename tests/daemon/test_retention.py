"""Retention on a real daemon: old entries rolled up, reports and state kept."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import anyio
import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._process import DaemonProcess, free_port, write_config
from tokenpool.ledger import (
    Entry,
    EntryKind,
    Ledger,
    LedgerBatch,
    ReservationRow,
    ReservationState,
)

BUDGET = """
[[budgets]]
name = "b"
capacity_tokens = 60000
"""

DAY_NS = 86_400 * 10**9

# History written before the daemon first starts: 40 days ago, per tenant.
OLD_TENANTS = ("t0", "t1", "t2")


def _old_history(path: Path) -> None:
    """Reserve and settle entries, with their rows, from 40 days ago."""
    at = time.time_ns() - 40 * DAY_NS

    async def write() -> None:
        ledger = await Ledger.open(path)
        async with anyio.create_task_group() as tasks:
            await tasks.start(ledger.run)
            for n, tenant in enumerate(OLD_TENANTS):
                rid = f"old-{n}"
                await ledger.commit(
                    LedgerBatch(
                        entries=[
                            Entry(EntryKind.RESERVE, at, "b", tenant, rid, tokens=900),
                            Entry(
                                EntryKind.SETTLE,
                                at + 1,
                                "b",
                                tenant,
                                rid,
                                charged=600 + n,
                                refunded=300 - n,
                            ),
                        ],
                        reservations=[
                            ReservationRow(
                                reservation_id=rid,
                                budget="b",
                                tenant=tenant,
                                pool="basic",
                                state=ReservationState.SETTLED,
                                hold=900,
                                sources=(("basic", 900),),
                                requested=900,
                                complexity_score=1,
                                multiplier=1.0,
                                created_wall_ns=at,
                                lease_expires_wall_ns=at + DAY_NS,
                                ended_wall_ns=at + 1,
                                charged=600 + n,
                                refunded=300 - n,
                                used=600 + n,
                            )
                        ],
                    )
                )
            await ledger.aclose()

    anyio.run(write)


def _count(path: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _reports(channel: grpc.Channel) -> tuple[object, ...]:
    api, admin = pb_grpc.TokenPoolStub(channel), pb_grpc.AdminStub(channel)
    totals = admin.Report(pb.ReportRequest())
    grouped = admin.Report(pb.ReportRequest(group_by=["tenant"], period="month"))
    basic = {p.name: p for p in api.GetBudget(pb.GetBudgetRequest(budget="b")).pools}
    return (
        sorted(str(row) for row in totals.rows),
        sorted(str(row) for row in grouped.rows),
        basic["basic"].in_flight_tokens,
    )


def test_retention_rolls_up_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, BUDGET)
    ledger, log = tmp_path / "ledger.db", tmp_path / "daemon.log"
    _old_history(ledger)

    daemon = DaemonProcess(config, port, log)
    with grpc.insecure_channel(daemon.address) as channel:
        api = pb_grpc.TokenPoolStub(channel)
        held = api.Reserve(pb.ReserveRequest(budget="b", tenant="t0", tokens=500))
        done = api.Reserve(pb.ReserveRequest(budget="b", tenant="t1", tokens=400))
        api.Settle(
            pb.SettleRequest(
                reservation_id=done.reservation_id, tenant="t1", output_tokens=300
            )
        )
        before = _reports(channel)
    assert daemon.terminate() == 0
    assert _count(ledger, "SELECT COUNT(*) FROM entries") == 2 * 3 + 3

    env = {"TOKENPOOL_LEDGER__RETENTION_DAYS": "30"}
    for _ in range(2):
        daemon = DaemonProcess(config, port, log, env=env)
        try:
            # The first pass runs as the daemon starts; it reports nothing.
            deadline = time.monotonic() + 10
            while _count(ledger, "SELECT COUNT(*) FROM entries") > 3:
                assert time.monotonic() < deadline, "entries were not rolled up"
                time.sleep(0.05)
            with grpc.insecure_channel(daemon.address) as channel:
                assert _reports(channel) == before
        finally:
            assert daemon.terminate() == 0

    # The old entries became one summary per tenant and kind; new ones stay.
    assert _count(ledger, "SELECT COUNT(*) FROM entry_rollups") == 2 * 3
    assert _count(ledger, "SELECT SUM(entries) FROM entry_rollups") == 2 * 3
    assert held.reservation_id
