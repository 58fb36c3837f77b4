"""Tests of the SQLite ledger against real database files."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import tokenpool.ledger
from tokenpool._errors import (
    ConfigError,
    LedgerError,
    LedgerInUseError,
    LedgerSchemaError,
    LedgerUnavailableError,
)
from tokenpool.ledger import (
    Entry,
    EntryKind,
    Ledger,
    LedgerBatch,
    PoolRow,
    RefusalCount,
    ReservationRow,
    ReservationState,
)
from tokenpool.ledger._schema import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _entry(kind: EntryKind = EntryKind.RESERVE, **fields: Any) -> Entry:
    values: dict[str, Any] = {
        "at_wall_ns": 1_000,
        "budget": "default",
        "tenant": "search",
        "pool": "basic",
    }
    values.update(fields)
    return Entry(kind=kind, **values)


def _reservation(reservation_id: str = "r1", **fields: Any) -> ReservationRow:
    values: dict[str, Any] = {
        "budget": "default",
        "tenant": "search",
        "pool": "basic",
        "state": ReservationState.OPEN,
        "hold": 100,
        "sources": (("basic", 60), ("burst", 40)),
        "requested": 100,
        "complexity_score": 3,
        "multiplier": 1.25,
        "created_wall_ns": 1_000,
        "lease_expires_wall_ns": 61_000,
    }
    values.update(fields)
    return ReservationRow(reservation_id=reservation_id, **values)


def _pool(level: int, pool: str = "basic", at_wall_ns: int = 1_000) -> PoolRow:
    return PoolRow(
        budget="default",
        pool=pool,
        capacity=1_000,
        level=level,
        carry=7,
        at_wall_ns=at_wall_ns,
    )


def _refusal(count: int, minute: int = 5) -> RefusalCount:
    return RefusalCount(
        budget="default", tenant="search", minute=minute, reason="basic", count=count
    )


@contextlib.asynccontextmanager
async def _running_ledger(path: Path, **options: Any) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(path, **options)
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


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_public_names_match_all() -> None:
    public = {name for name in dir(tokenpool.ledger) if not name.startswith("_")}

    assert sorted(tokenpool.ledger.__all__) == tokenpool.ledger.__all__
    assert set(tokenpool.ledger.__all__) == public - {"annotations"}


@pytest.mark.parametrize("durability", ["normal", "power"])
async def test_open_new_file_sets_wal_and_version(
    tmp_path: Path, durability: str
) -> None:
    path = tmp_path / "ledger.db"

    async with _running_ledger(path, durability=durability) as ledger:
        await ledger.commit(LedgerBatch(entries=[_entry()]))
        assert ledger.path == str(path)

    assert await _sql(path, "PRAGMA journal_mode") == [("wal",)]
    assert await _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_open_bad_options_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'fast' is not known"):
        bad: Any = "fast"
        await Ledger.open(tmp_path / "a.db", durability=bad)
    with pytest.raises(ConfigError, match="busy_timeout_ms -1 is negative"):
        await Ledger.open(tmp_path / "a.db", busy_timeout_ms=-1)


async def test_open_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(
        LedgerUnavailableError, match=r"Cannot lock ledger .* folder exists"
    ):
        await Ledger.open(tmp_path / "missing" / "ledger.db")


async def test_commit_round_trip_updates_rows(tmp_path: Path) -> None:
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.commit(
            LedgerBatch(
                entries=[_entry(tokens=100, detail={"labels": {"team": "a"}})],
                reservations=[_reservation(labels={"team": "a"})],
                pools=[_pool(900)],
                refusals=[_refusal(2)],
            )
        )
        await ledger.commit(
            LedgerBatch(
                entries=[_entry(EntryKind.SETTLE, charged=80, refunded=20)],
                reservations=[
                    _reservation(
                        state=ReservationState.SETTLED,
                        ended_wall_ns=2_000,
                        charged=80,
                        refunded=20,
                        settle_fingerprint="abc",
                    )
                ],
                pools=[_pool(920, at_wall_ns=2_000)],
                refusals=[_refusal(3)],
            )
        )

        stored = await ledger.get_reservation("r1")
        state = await ledger.load_state(keep_ended_after_wall_ns=0)
        entries = await ledger.entries()
        totals = await ledger.totals()

    assert stored == _reservation(
        state=ReservationState.SETTLED,
        ended_wall_ns=2_000,
        charged=80,
        refunded=20,
        settle_fingerprint="abc",
    )
    assert state.pools == (_pool(920, at_wall_ns=2_000),)
    assert [(e.id, e.kind) for e in entries] == [
        (1, EntryKind.RESERVE),
        (2, EntryKind.SETTLE),
    ]
    assert entries[0].detail == {"labels": {"team": "a"}}
    assert totals == [
        {
            "budget": "default",
            "tenant": "search",
            "reservations": 1,
            "tokens_reserved": 100,
            "tokens_charged": 80,
            "tokens_refunded": 20,
            "tokens_overrun": 0,
            "refusals": 5,
        }
    ]


async def test_one_group_keeps_last_pool_and_sums(tmp_path: Path) -> None:
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        before = ledger.commits
        waits = [
            ledger.submit(
                LedgerBatch(
                    entries=[_entry(reservation_id=f"r{i}")],
                    pools=[_pool(1_000 - i)],
                    refusals=[_refusal(1)],
                )
            )
            for i in range(10)
        ]
        for wait in waits:
            await wait

        state = await ledger.load_state(keep_ended_after_wall_ns=0)
        entries = await ledger.entries()
        totals = await ledger.totals()
        commits = ledger.commits - before

    assert commits == 1
    assert state.pools == (_pool(991),)
    assert [e.reservation_id for e in entries] == [f"r{i}" for i in range(10)]
    assert totals[0]["refusals"] == 10


async def test_concurrent_submits_share_commits(tmp_path: Path) -> None:
    async def reserve(ledger: Ledger, i: int) -> None:
        await ledger.commit(LedgerBatch(entries=[_entry(reservation_id=f"r{i}")]))

    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(reserve, ledger, i)

        count = await ledger.entry_count()
        commits = ledger.commits
        batches = ledger.committed_batches

    assert count == 200
    assert batches == 200
    assert 1 <= commits < 200


async def test_empty_batch_resolves_without_writer(tmp_path: Path) -> None:
    ledger = await Ledger.open(tmp_path / "ledger.db")
    try:
        with anyio.fail_after(5):
            await ledger.commit(LedgerBatch())
    finally:
        await ledger.aclose()

    assert ledger.commits == 0


async def test_aclose_flushes_queued_before_run(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path)
    pending = ledger.submit(LedgerBatch(entries=[_entry()]))

    await ledger.aclose()
    await pending

    assert await _sql(path, "SELECT COUNT(*) FROM entries") == [(1,)]


async def test_aclose_twice_then_refuses_work(tmp_path: Path) -> None:
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.aclose()
        await ledger.aclose()

    assert ledger.closed
    with pytest.raises(LedgerUnavailableError, match="ledger is closed"):
        ledger.submit(LedgerBatch(entries=[_entry()]))
    with pytest.raises(LedgerUnavailableError, match="ledger is closed"):
        await ledger.entry_count()


async def test_run_twice_raises_ledger_error(tmp_path: Path) -> None:
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        with pytest.raises(LedgerError, match="already running"):
            await ledger.run()


async def test_unserialisable_detail_fails_alone(tmp_path: Path) -> None:
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        good = ledger.submit(LedgerBatch(entries=[_entry()]))
        with pytest.raises(LedgerError, match="must be JSON-serialisable"):
            ledger.submit(LedgerBatch(entries=[_entry(detail={"x": object()})]))
        await good

        count = await ledger.entry_count()

    assert count == 1


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with _running_ledger(path) as ledger:
        await ledger.commit(
            LedgerBatch(
                entries=[_entry(tokens=100)],
                reservations=[_reservation()],
                pools=[_pool(900)],
            )
        )

    async with _running_ledger(path) as reopened:
        state = await reopened.load_state(keep_ended_after_wall_ns=0)
        count = await reopened.entry_count()

    assert state.reservations == (_reservation(),)
    assert state.pools == (_pool(900),)
    assert count == 1


_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys

    import anyio

    from tokenpool.ledger import Entry, EntryKind, Ledger, LedgerBatch


    async def main() -> None:
        ledger = await Ledger.open(sys.argv[1])
        async with anyio.create_task_group() as tg:
            await tg.start(ledger.run)
            entry = Entry(
                kind=EntryKind.RESERVE, at_wall_ns=1, budget="b", tenant="t",
                reservation_id="killed", tokens=42,
            )
            await ledger.commit(LedgerBatch(entries=[entry]))
            print("committed", flush=True)
            await anyio.sleep(3600)


    anyio.run(main)
    """
)


async def test_data_survives_sigkill_after_ack(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH", "")])
    )
    output = b""

    async with await anyio.open_process(
        [sys.executable, "-c", _WRITER_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    ) as process:
        assert process.stdout is not None
        try:
            with anyio.fail_after(60):
                while b"committed" not in output:
                    output += await process.stdout.receive()
        except anyio.EndOfStream:
            pytest.fail(f"writer exited early: {output.decode(errors='replace')}")
        finally:
            process.kill()
            await process.wait()

    assert process.returncode == -signal.SIGKILL
    async with _running_ledger(path) as reopened:
        entries = await reopened.entries()

    assert [(e.reservation_id, e.tokens) for e in entries] == [("killed", 42)]


async def test_update_or_delete_on_entries_raises(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with _running_ledger(path) as ledger:
        await ledger.commit(LedgerBatch(entries=[_entry(tokens=5)]))

    with pytest.raises(sqlite3.IntegrityError, match="append-only; UPDATE"):
        await _sql(path, "UPDATE entries SET tokens = 6")
    with pytest.raises(sqlite3.IntegrityError, match="append-only; DELETE"):
        await _sql(path, "DELETE FROM entries")
    assert await _sql(path, "SELECT tokens FROM entries") == [(5,)]


async def test_version_1_database_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO reservations (reservation_id, budget, tenant, pool, state,"
            " hold, requested, complexity_score, multiplier, created_wall_ns,"
            " lease_expires_wall_ns) VALUES ('r1', 'b', 't', 'basic', 'open', 10,"
            " 10, 0, 1.0, 1, 2)"
        )
        conn.execute("PRAGMA user_version = 1")
        conn.commit()

    async with _running_ledger(path) as ledger:
        row = await ledger.get_reservation("r1")

    assert row is not None
    assert (row.hold, row.task_type, row.output_allowance, row.used) == (10, "", 0, 0)
    assert await _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_newer_schema_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with _running_ledger(path):
        pass
    await _sql(path, "PRAGMA user_version = 99")

    with pytest.raises(LedgerSchemaError, match="schema version 99, newer than"):
        await Ledger.open(path)


async def test_locked_database_fails_group_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with _running_ledger(path, busy_timeout_ms=100) as ledger:
        blocker = await anyio.to_thread.run_sync(_hold_write_lock, path)
        try:
            with pytest.raises(
                LedgerUnavailableError, match=r"locked.*was not recorded"
            ):
                await ledger.commit(LedgerBatch(entries=[_entry(tokens=1)]))
        finally:
            await anyio.to_thread.run_sync(blocker.close)

        await ledger.commit(LedgerBatch(entries=[_entry(tokens=2)]))
        entries = await ledger.entries()
        failed = ledger.failed_commits

    assert failed == 1
    assert [e.tokens for e in entries] == [2]


async def test_load_state_keeps_open_and_recent(tmp_path: Path) -> None:
    rows = [
        _reservation("open"),
        _reservation(
            "old", state=ReservationState.SETTLED, ended_wall_ns=1_000, charged=100
        ),
        _reservation(
            "recent", state=ReservationState.EXPIRED, ended_wall_ns=5_000, charged=1
        ),
    ]
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.commit(LedgerBatch(reservations=rows, pools=[_pool(1)]))

        state = await ledger.load_state(keep_ended_after_wall_ns=5_000)

    assert {row.reservation_id for row in state.reservations} == {"open", "recent"}
    assert state.pools == (_pool(1),)


async def test_find_by_idempotency_key_latest(tmp_path: Path) -> None:
    rows = [
        _reservation("first", idempotency_key="k", created_wall_ns=1),
        _reservation("second", idempotency_key="k", created_wall_ns=2),
        _reservation("other", idempotency_key="k", tenant="chat"),
        _reservation("nokey"),
    ]
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.commit(LedgerBatch(reservations=rows))

        found = await ledger.find_by_idempotency_key("search", "k")
        missing = await ledger.find_by_idempotency_key("search", "nope")
        empty = await ledger.find_by_idempotency_key("search", "")
        unknown = await ledger.get_reservation("nope")

    assert found is not None
    assert found.reservation_id == "second"
    assert missing is None
    assert empty is None
    assert unknown is None


async def test_totals_group_by_budget_and_tenant(tmp_path: Path) -> None:
    batch = LedgerBatch(
        entries=[
            _entry(tokens=10),
            _entry(tokens=30, tenant="chat"),
            _entry(EntryKind.OVERRUN, tenant="chat", charged=5, overrun=5),
            _entry(tokens=7, budget="night"),
            _entry(EntryKind.CAPACITY, tenant="", tokens=500),
        ],
        refusals=[
            RefusalCount(budget="night", tenant="batch", minute=1, reason="x", count=4)
        ],
    )
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.commit(batch)

        everything = await ledger.totals()
        night = await ledger.totals(budget="night")

    assert [(r["budget"], r["tenant"]) for r in everything] == [
        ("default", "chat"),
        ("default", "search"),
        ("night", "batch"),
        ("night", "search"),
    ]
    assert everything[0]["tokens_reserved"] == 30
    assert everything[0]["tokens_overrun"] == 5
    assert [(r["tenant"], r["reservations"], r["refusals"]) for r in night] == [
        ("batch", 0, 4),
        ("search", 1, 0),
    ]


async def test_entries_pages_by_id(tmp_path: Path) -> None:
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.commit(LedgerBatch(entries=[_entry(tokens=i) for i in range(5)]))

        first = await ledger.entries(limit=2)
        rest = await ledger.entries(after_id=first[-1].id, limit=10)

    assert [e.tokens for e in first] == [0, 1]
    assert [e.tokens for e in rest] == [2, 3, 4]
    assert [e.id for e in first + rest] == [1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_second_open_of_a_ledger_is_refused_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = await Ledger.open(path)

    with pytest.raises(LedgerInUseError, match=r"in use by another tokenpool process"):
        await Ledger.open(path)

    await first.aclose()
    second = await Ledger.open(path)
    await second.aclose()


async def test_sums_past_64_bits_are_exact(tmp_path: Path) -> None:
    big = 2**62
    batch = LedgerBatch(
        entries=[
            _entry(EntryKind.SETTLE, charged=big, overrun=big),
            _entry(EntryKind.SETTLE, charged=big, overrun=big),
            _entry(EntryKind.SETTLE, charged=3),
        ],
        reservations=[
            _reservation(f"r{n}", state=ReservationState.SETTLED, charged=big)
            for n in range(3)
        ]
        + [_reservation("r3", state=ReservationState.SETTLED, charged=-5)],
    )
    async with _running_ledger(tmp_path / "ledger.db") as ledger:
        await ledger.commit(batch)

        [totals] = await ledger.totals()
        [slot] = await ledger.charged_since(0)

    # SQLite's own SUM would fail with "integer overflow" on both.
    assert totals["tokens_charged"] == 2 * big + 3
    assert totals["tokens_overrun"] == 2 * big
    assert slot.tokens == 3 * big - 5


async def test_a_write_queued_behind_a_locked_one_waits_the_timeout_in_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    timeout_s = 0.6
    async with _running_ledger(path, busy_timeout_ms=int(timeout_s * 1000)) as ledger:
        blocker = await anyio.to_thread.run_sync(_hold_write_lock, path)
        failed_after: list[float] = []

        async def write(tokens: int) -> None:
            started = anyio.current_time()
            with pytest.raises(LedgerUnavailableError):
                await ledger.commit(LedgerBatch(entries=[_entry(tokens=tokens)]))
            failed_after.append(anyio.current_time() - started)

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write, 1)
                # The first group is waiting on the lock: this one queues.
                await anyio.sleep(0.1)
                tasks.start_soon(write, 2)
        finally:
            await anyio.to_thread.run_sync(blocker.close)

    # Both gave up within their own timeout, not the second after two.
    assert len(failed_after) == 2
    assert max(failed_after) < timeout_s + 0.3
