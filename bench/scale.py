"""Benchmark: many tenants and open reservations, restart, and ledger growth.

Issue 7, point 4. One invocation prints every figure:

- restart: a ledger of `--entries` entries (default 10,000,000) with
  `--open` open reservations (default 1,000,000) over `--tenants` tenants
  (default 100,000), generated synthetically but through the real schema
  (the daemon's own migrations, tables and triggers), then opened and
  restored by the engine in a fresh process, timed until the first Reserve
  on the restored state is answered and committed;
- memory per open reservation: Python heap traced by tracemalloc across the
  restore (what the engine keeps, not the transient rows), and the RSS
  delta, each divided by the open reservations;
- pair cost: Reserve+Settle pairs on the restored engine (100,000 tenants,
  1,000,000 open) and on a fresh engine with 10 tenants, in the same
  process, in interleaved rounds, each over a real ledger file;
- ledger growth: bytes per Reserve+Settle pair, per entry and per
  reservation row, measured on a file after a checkpoint.

The generated ledger is kept (`--ledger`, default under the system's temp
folder) and reused when its shape matches. Not part of the test suite.

    .venv/bin/python bench/scale.py [--tenants 100000] [--open 1000000]
        [--entries 10000000] [--pairs 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

from tokenpool.core import BudgetPolicy, InputLimits
from tokenpool.engine import Engine, ReserveCommand, SettleCommand, SystemClock
from tokenpool.ledger import Ledger
from tokenpool.ledger._schema import INSERT_ENTRY, UPSERT_RESERVATION, Row

NS_PER_S = 1_000_000_000
DAY_NS = 86_400 * NS_PER_S

# Every open reservation holds this much; the budget is sized to hold them all.
HOLD = 1_000

# Ended reservations younger than the idempotency window (loaded at restart),
# as a share of the open ones.
RECENT_ENDED_SHARE = 0.1

# Concurrent callers making pairs, so that group commit shares transactions.
CONCURRENCY = 16

# Rows per executemany while generating.
CHUNK = 50_000

# Pair-cost targets of issue 7 (ratio), restart time (seconds), memory (bytes).
TARGET_RATIO = 1.2
TARGET_RESTART_S = 15.0
TARGET_BYTES = 1024


def budget_policy() -> BudgetPolicy:
    """One budget big enough that every synthetic hold fits at once."""
    return BudgetPolicy(
        name="b",
        capacity_tokens=10**13,
        lease_seconds=3600,
        max_lease_seconds=86_400,
    )


def _reservation(
    rid: str, tenant: str, state: str, created: int, lease: int, ended: int, key: str
) -> tuple[object, ...]:
    """One reservations row, in RESERVATION_COLUMNS order."""
    settled = state == "settled"
    return (
        rid,
        "b",
        tenant,
        "basic",
        state,
        HOLD,
        f'[["basic",{HOLD}]]',
        HOLD,
        3,
        1.5,
        created,
        lease,
        ended,
        key,
        uuid.uuid4().hex[:24] if key else "",
        "",
        700 if settled else 0,
        300 if settled else 0,
        0,
        0,
        "gpt-4o",
        '{"endpoint":"chat"}',
        "generation",
        500,
        "",
        700 if settled else 0,
        0,
        0,
        "",
        0,
        0,
        0,
        "",
    )


def _entry(kind: str, at: int, tenant: str, rid: str, **amounts: int) -> Row:
    """One entries row, in INSERT_ENTRY's order."""
    detail = '{"sources":[["basic",1000]],"model":"gpt-4o","task_type":"generation"}'
    return (
        at,
        kind,
        "b",
        tenant,
        rid,
        "basic",
        amounts.get("tokens", 0),
        amounts.get("charged", 0),
        amounts.get("refunded", 0),
        0,
        "",
        detail if kind == "reserve" else '{"usage":{"output_tokens":700}}',
    )


def _rows(args: argparse.Namespace, now: int) -> Iterator[tuple[str, list[Row]]]:
    """Chunks of (statement, rows): history, recent ended, then open ones."""
    recent = int(args.open * RECENT_ENDED_SHARE)
    history_pairs = max(0, (args.entries - args.open - 2 * recent) // 2)
    sequence = 0

    def ended(count: int, start: int, step: int) -> Iterator[tuple[str, list[Row]]]:
        nonlocal sequence
        entries: list[Row] = []
        rows: list[Row] = []
        for n in range(count):
            sequence += 1
            rid, tenant = uuid.uuid4().hex, f"tenant-{sequence % args.tenants}"
            at = start + n * step
            entries.append(_entry("reserve", at, tenant, rid, tokens=HOLD))
            entries.append(_entry("settle", at + 1, tenant, rid, charged=700))
            rows.append(
                _reservation(
                    rid, tenant, "settled", at, at + DAY_NS, at + 1, f"k{sequence}"
                )
            )
            if len(entries) >= CHUNK:
                yield INSERT_ENTRY, entries
                yield UPSERT_RESERVATION, rows
                entries, rows = [], []
        yield INSERT_ENTRY, entries
        yield UPSERT_RESERVATION, rows

    # History: 40 to 100 days ago (older than the calendar look-back).
    start = now - 100 * DAY_NS
    yield from ended(history_pairs, start, max(1, 60 * DAY_NS // max(1, history_pairs)))
    # Recent: within the idempotency window, remembered at restart.
    yield from ended(recent, now - DAY_NS // 2, max(1, DAY_NS // 4 // max(1, recent)))

    entries: list[Row] = []
    rows: list[Row] = []
    for n in range(args.open):
        sequence += 1
        rid, tenant = uuid.uuid4().hex, f"tenant-{n % args.tenants}"
        at = now - 600 * NS_PER_S + n
        entries.append(_entry("reserve", at, tenant, rid, tokens=HOLD))
        rows.append(
            _reservation(rid, tenant, "open", at, now + DAY_NS, 0, f"k{sequence}")
        )
        if len(entries) >= CHUNK:
            yield INSERT_ENTRY, entries
            yield UPSERT_RESERVATION, rows
            entries, rows = [], []
    yield INSERT_ENTRY, entries
    yield UPSERT_RESERVATION, rows


def generate(args: argparse.Namespace, path: Path) -> None:
    """Writes the synthetic ledger through the real schema (migrated by Ledger)."""
    shape = path.with_suffix(".shape")
    wanted = json.dumps([args.tenants, args.open, args.entries])
    if path.exists() and shape.exists() and shape.read_text() == wanted:
        print(f"reusing ledger {path}")
        return
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), shape):
        stale.unlink(missing_ok=True)

    async def create() -> None:
        ledger = await Ledger.open(path)
        await ledger.aclose()

    anyio.run(create)
    started = time.perf_counter()
    now = time.time_ns()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for statement, rows in _rows(args, now):
            if rows:
                conn.executemany(statement, rows)
        # Pool levels as a running daemon stores them: every hold taken out.
        policy = budget_policy()
        capacity = policy.capacity_tokens * 65 // 100
        level = capacity - args.open * HOLD
        conn.execute(
            "INSERT INTO pools VALUES ('b', 'basic', ?, ?, 0, ?)",
            (capacity, level, now),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shape.write_text(wanted)
    mib, took = path.stat().st_size / 2**20, time.perf_counter() - started
    print(
        f"generated ledger {path}: {args.entries:,} entries, {args.open:,} open, "
        f"{mib:,.0f} MiB in {took:.0f} s"
    )


def rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@contextlib.asynccontextmanager
async def running(path: Path | str) -> AsyncIterator[tuple[Engine, Ledger]]:
    """An engine restored from a ledger, with the ledger writer running."""
    ledger = await Ledger.open(path)
    async with anyio.create_task_group() as tasks:
        await tasks.start(ledger.run)
        engine = Engine(
            budgets=[budget_policy()],
            tenants=[],
            limits=InputLimits(),
            clock=SystemClock(),
            ledger=ledger,
        )
        await engine.restore()
        yield engine, ledger
        await ledger.aclose()
        tasks.cancel_scope.cancel()


async def pair(engine: Engine, tenant: str) -> None:
    """One Reserve and its Settle, each answered after its commit."""
    granted = await engine.reserve(
        ReserveCommand(
            budget="b",
            tenant=tenant,
            tokens=HOLD,
            model="gpt-4o",
            labels={"endpoint": "chat"},
        )
    )
    await engine.settle(
        SettleCommand(
            reservation_id=granted.reservation_id, tenant=tenant, output_tokens=700
        )
    )


async def pairs_time(
    engine: Engine, tenants: int, count: int, offset: int
) -> tuple[float, float]:
    """Wall and CPU seconds per pair, `CONCURRENCY` callers over the tenants.

    CPU time is the process's (event loop and SQLite's worker thread): on a
    shared machine it is steadier than wall time, and it is what a linear
    scan would show up in.
    """
    names = [f"tenant-{(offset + n * 7919) % tenants}" for n in range(count)]

    async def caller(first: int) -> None:
        for name in names[first::CONCURRENCY]:
            await pair(engine, name)

    wall, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tasks:
        for first in range(CONCURRENCY):
            tasks.start_soon(caller, first)
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def file_bytes(path: Path) -> int:
    """Bytes the ledger takes once its write-ahead log is checkpointed."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def child_restart(path: str, trace: bool) -> dict[str, float]:
    """Runs in a fresh process: restore once, measuring time or memory."""
    result: dict[str, float] = {}

    async def main() -> None:
        gc.collect()
        if trace:
            tracemalloc.start()
        rss0, traced0 = rss_bytes(), tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        async with running(path) as (engine, _):
            await pair(engine, "tenant-1")
            result["restart_s"] = time.perf_counter() - started
            gc.collect()
            result["rss_bytes"] = rss_bytes() - rss0
            result["traced_bytes"] = tracemalloc.get_traced_memory()[0] - traced0
            view = engine.budget_status("b")
            result["open"] = view.open_reservations
            if trace:
                top = tracemalloc.take_snapshot().statistics("lineno")[:12]
                print("\n".join(f"  {line}" for line in top), file=sys.stderr)

    anyio.run(main)
    return result


async def compare_pairs(
    args: argparse.Namespace, big: Path, small: Path
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Interleaved rounds of pairs on the big and the small engine."""
    big_times: list[tuple[float, float]] = []
    small_times: list[tuple[float, float]] = []
    async with running(big) as (big_engine, _), running(small) as (small_engine, _):
        # Warm both up (first-use allocations, SQLite caches).
        await pairs_time(big_engine, args.tenants, 320, 1)
        await pairs_time(small_engine, 10, 320, 1)
        for round_ in range(args.rounds):
            big_times.append(
                await pairs_time(big_engine, args.tenants, args.pairs, round_)
            )
            small_times.append(await pairs_time(small_engine, 10, args.pairs, round_))
    return big_times, small_times


async def growth(path: Path, count: int) -> dict[str, float]:
    """Ledger bytes per pair, per entry and per reservation row."""
    async with running(path) as (engine, _):
        await pairs_time(engine, 10, 50, 0)
    before = file_bytes(path)
    async with running(path) as (engine, ledger):
        entries0 = await ledger.entry_count()
        await pairs_time(engine, 10, count, 0)
        entries = await ledger.entry_count() - entries0
    after = file_bytes(path)
    return {
        "pairs": count,
        "entries": entries,
        "bytes_per_pair": (after - before) / count,
        "bytes_per_entry_incl_row": (after - before) / entries,
    }


def main() -> None:
    """Generates the ledger if needed, then measures and prints every figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--pairs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ledger", type=Path, default=Path(tempfile.gettempdir()) / "scale-ledger.db"
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="write the ledger and stop"
    )
    parser.add_argument("--child", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child_restart(str(args.ledger), args.child == "memory")))
        return

    generate(args, args.ledger)
    if args.generate_only:
        return
    size = file_bytes(args.ledger)
    print(f"ledger file: {size / 2**20:,.0f} MiB, {size / args.entries:.0f} B/entry")

    def child(kind: str) -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--ledger", str(args.ledger)],
            check=True,
            capture_output=True,
            text=True,
        )
        if kind == "memory":
            print(out.stderr, end="")
        found: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return found

    timed = [child("time") for _ in range(2)]
    restart = min(run["restart_s"] for run in timed)
    memory = child("memory")
    per_open = memory["traced_bytes"] / memory["open"]
    rss_per_open = min(run["rss_bytes"] for run in timed) / memory["open"]
    runs = ", ".join(f"{run['restart_s']:.2f}" for run in timed)
    print(
        f"restart to serving: {restart:.2f} s (runs: {runs}; target "
        f"< {TARGET_RESTART_S:.0f} s) with {int(memory['open']):,} open"
    )
    print(
        f"memory per open reservation: {per_open:,.0f} B traced heap, "
        f"{rss_per_open:,.0f} B RSS delta (target <= {TARGET_BYTES} B)"
    )

    with tempfile.TemporaryDirectory() as scratch:
        small = Path(scratch) / "small.db"
        big_times, small_times = asyncio.run(compare_pairs(args, args.ledger, small))
        for label, index in (("CPU", 1), ("wall", 0)):
            big_us = statistics.median(t[index] for t in big_times) * 1e6
            small_us = statistics.median(t[index] for t in small_times) * 1e6
            print(
                f"pair {label} time: {big_us:.0f} us with {args.tenants:,} tenants "
                f"and {args.open:,} open, {small_us:.0f} us with 10 tenants; ratio "
                f"{big_us / small_us:.2f} (target <= {TARGET_RATIO}); rounds "
                f"{[round(t[index] * 1e6) for t in big_times]} vs "
                f"{[round(t[index] * 1e6) for t in small_times]}"
            )
        grown = asyncio.run(growth(Path(scratch) / "growth.db", args.pairs))
        print(
            f"ledger growth: {grown['bytes_per_pair']:.0f} B per Reserve+Settle pair "
            f"({grown['entries']:.0f} entries and {grown['pairs']:.0f} reservation "
            f"rows; {grown['bytes_per_entry_incl_row']:.0f} B per entry with its "
            "share of the row)"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
