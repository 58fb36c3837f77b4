"""Checks of a ledger database against what clients were told, and the daemon.

The crash test and the soak both keep, on the client side, every operation
the daemon acknowledged. `audit` reads the database directly (sqlite3, read
only) and lists every way it disagrees with those acknowledgements, with
itself, or with the daemon's status: an empty list is a clean audit.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

# Entry kinds that end a reservation, and the state each leaves it in.
ENDINGS = {
    "settle": "settled",
    "release": "released",
    "expire": "expired",
    "undo": "undone",
}


@dataclass
class Acks:
    """What clients were told: every acknowledged change, by reservation."""

    reserved: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """reservation id -> (tenant, idempotency key, tokens granted)."""
    settled: dict[str, int] = field(default_factory=dict)
    """reservation id -> tokens charged, as Settle answered."""
    released: dict[str, int] = field(default_factory=dict)
    """reservation id -> tokens charged, as Release answered."""
    extended: dict[str, int] = field(default_factory=dict)
    """reservation id -> the hold the last Extend answered."""
    extend_sent: dict[str, int] = field(default_factory=dict)
    """reservation id -> the hold an Extend asked for, answered or not yet."""
    refused_keys: set[tuple[str, str]] = field(default_factory=set)
    """(tenant, key) of Reserves answered RESOURCE_EXHAUSTED, never granted."""

    def merge(self, other: Acks) -> None:
        """Adds another client's acknowledgements."""
        self.reserved.update(other.reserved)
        self.settled.update(other.settled)
        self.released.update(other.released)
        self.extended.update(other.extended)
        self.extend_sent.update(other.extend_sent)
        self.refused_keys |= other.refused_keys

    def count(self) -> int:
        """Operations acknowledged."""
        return (
            len(self.reserved)
            + len(self.settled)
            + len(self.released)
            + len(self.extended)
        )


@dataclass(frozen=True)
class Budget:
    """The one budget under test: a single pool (shares 100 / 0 / 0)."""

    name: str
    capacity: int
    window_seconds: int


@dataclass
class Report:
    """What one audit looked at, and what it found wrong."""

    entries: int = 0
    reservations: int = 0
    mismatches: list[str] = field(default_factory=list)


def _rows(db: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return list(db.execute(sql).fetchall())


def audit(
    db_path: Path,
    acks: Acks,
    budget: Budget,
    *,
    stub: pb_grpc.TokenPoolStub | None = None,
    admin: pb_grpc.AdminStub | None = None,
    final: bool = False,
    slack_tokens: int | None = 0,
) -> Report:
    """Compares the ledger with the acknowledgements and, given stubs, the daemon.

    The daemon must be quiet while it runs (no calls in flight), so that its
    status and the database describe the same moment.

    Args:
        db_path: The ledger database.
        acks: Everything clients were told so far.
        budget: The budget whose pool level is checked.
        stub: When given, the daemon's status must match the ledger.
        admin: When given, its open reservations must match the ledger's.
        final: Every client has finished: each key it got a grant for has
            exactly one reservation, each refused key none.
        slack_tokens: How far the pool level may be from the ledger's sum,
            for refill computed on two clocks (monotonic and wall); None
            when the pool may have filled up again, so no sum predicts it.
    """
    report = Report()
    uri = f"file:{db_path}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        entries = _rows(
            db,
            "SELECT id, kind, reservation_id, charged, tokens, at_wall_ns FROM entries",
        )
        reservations = {
            str(row[0]): row[1:]
            for row in _rows(
                db,
                "SELECT reservation_id, tenant, idempotency_key, state, hold, "
                "charged FROM reservations",
            )
        }
        pool_rows = _rows(
            db,
            f"SELECT capacity, level, carry, at_wall_ns FROM pools WHERE budget = "
            f"'{budget.name}' AND pool = 'basic'",
        )
    report.entries = len(entries)
    report.reservations = len(reservations)
    wrong = report.mismatches

    reserves = Counter(str(e[2]) for e in entries if e[1] == "reserve")
    endings: dict[str, list[str]] = {}
    for entry in entries:
        if entry[1] in ENDINGS:
            endings.setdefault(str(entry[2]), []).append(str(entry[1]))
    settle_charged = {str(e[2]): int(str(e[3])) for e in entries if e[1] == "settle"}

    # Every reservation: one reserve entry, at most one ending, state to match.
    for rid, (_, _, state, _, _) in reservations.items():
        if reserves[rid] != 1:
            wrong.append(f"reservation {rid} has {reserves[rid]} reserve entries")
        ended = endings.get(rid, [])
        if len(ended) > 1:
            wrong.append(f"reservation {rid} ended {len(ended)} times: {ended}")
        expected = ENDINGS[ended[0]] if ended else "open"
        if state != expected:
            wrong.append(f"reservation {rid} is {state}, its entries say {expected}")
    for rid in reserves.keys() - reservations.keys():
        wrong.append(f"reserve entry for {rid} has no reservation row")

    # Every acknowledged change is there, once, with the answer given.
    for rid, (tenant, key, granted) in acks.reserved.items():
        row = reservations.get(rid)
        if row is None:
            wrong.append(f"acknowledged Reserve {rid} ({tenant}, {key}) is missing")
            continue
        if (row[0], row[1]) != (tenant, key):
            wrong.append(f"reservation {rid} is {row[:2]}, acknowledged {tenant, key}")
        # An Extend sent but not answered yet may or may not have landed.
        holds = {acks.extended.get(rid, granted), acks.extend_sent.get(rid, granted)}
        if row[2] == "open" and row[3] not in holds:
            wrong.append(f"reservation {rid} holds {row[3]}, acknowledged {holds}")
    for kind, acked in (("settled", acks.settled), ("released", acks.released)):
        for rid, charged in acked.items():
            row = reservations.get(rid)
            if row is None or row[2] != kind:
                state = None if row is None else row[2]
                wrong.append(f"acknowledged {kind} {rid} is {state} in the ledger")
            elif row[4] != charged:
                wrong.append(f"{rid} charged {row[4]}, acknowledged {charged}")
            if kind == "settled" and settle_charged.get(rid) != charged:
                wrong.append(f"settle entry of {rid} charged {settle_charged.get(rid)}")

    # No idempotency key holds twice (undone grants never reached a caller).
    live = Counter(
        (str(row[0]), str(row[1]))
        for row in reservations.values()
        if row[1] and row[2] != "undone"
    )
    for (tenant, key), count in live.items():
        if count > 1:
            wrong.append(f"key {key!r} of {tenant} has {count} reservations")
    if final:
        for tenant, key, _ in acks.reserved.values():
            if key and live[tenant, key] != 1:
                wrong.append(f"acknowledged key {key!r} has {live[tenant, key]}")
        for tenant, key in acks.refused_keys:
            if live[tenant, key]:
                wrong.append(f"refused key {key!r} holds {live[tenant, key]}")

    open_rows = {rid: row for rid, row in reservations.items() if row[2] == "open"}
    held = sum(int(str(row[3])) for row in open_rows.values())
    charged = sum(int(str(row[4])) for row in reservations.values() if row[2] != "open")
    if slack_tokens is not None:
        _check_level(report, entries, pool_rows, budget, held + charged, slack_tokens)
    if stub is not None:
        _check_status(report, stub, budget, len(open_rows), held, pool_rows)
    if admin is not None:
        listed = admin.ListReservations(
            pb.ListReservationsRequest(budget=budget.name, limit=10_000), timeout=10
        )
        seen = {r.reservation_id for r in listed.reservations}
        if seen != set(open_rows):
            wrong.append(
                f"daemon lists {len(seen)} open reservations, the ledger "
                f"{len(open_rows)} ({len(seen ^ set(open_rows))} differ)"
            )
    return report


def _refill(budget: Budget, elapsed_ns: int) -> int:
    return budget.capacity * max(0, elapsed_ns) // (budget.window_seconds * 10**9)


def _check_level(
    report: Report,
    entries: Iterable[tuple[object, ...]],
    pool_rows: list[tuple[object, ...]],
    budget: Budget,
    out: int,
    slack: int,
) -> None:
    """The stored level is capacity, less what is out, plus refill since then.

    `out` is what open reservations hold plus what ended ones were charged.
    This holds exactly while the pool never fills up again after its first
    grant (the tests keep a ballast reservation open), up to `slack`.
    """
    if not pool_rows:
        return
    capacity, level, _, at_wall_ns = (int(str(v)) for v in pool_rows[0])
    firsts = [int(str(e[5])) for e in entries if e[1] == "reserve"]
    if not firsts:
        return
    refill = _refill(budget, at_wall_ns - min(firsts))
    expected = capacity - out + refill
    if abs(level - expected) > slack + 2:
        report.mismatches.append(
            f"stored level {level} is not capacity {capacity} - out {out} + refill "
            f"{refill} = {expected} (slack {slack})"
        )


def _check_status(
    report: Report,
    stub: pb_grpc.TokenPoolStub,
    budget: Budget,
    open_count: int,
    held: int,
    pool_rows: list[tuple[object, ...]],
) -> None:
    """The daemon reports the ledger's holds, and its level refilled since."""
    before = time.time_ns()
    status = stub.GetBudget(pb.GetBudgetRequest(budget=budget.name), timeout=10)
    after = time.time_ns()
    basic = status.pools[0]
    if (status.open_reservations, basic.in_flight_tokens) != (open_count, held):
        report.mismatches.append(
            f"daemon reports {status.open_reservations} open holding "
            f"{basic.in_flight_tokens}, the ledger {open_count} holding {held}"
        )
    if not pool_rows:
        return
    capacity, level, _, at_wall_ns = (int(str(v)) for v in pool_rows[0])
    low = min(capacity, level + _refill(budget, before - at_wall_ns)) - 1
    high = min(capacity, level + _refill(budget, after - at_wall_ns)) + 1
    if not max(0, low) <= basic.available_tokens <= max(0, high):
        report.mismatches.append(
            f"daemon has {basic.available_tokens} available; from the ledger's "
            f"level {level}, between {low} and {high}"
        )


def channel(address: str) -> grpc.Channel:
    """A channel that reconnects quickly when the daemon comes back."""
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),
        ],
    )
