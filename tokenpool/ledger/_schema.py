"""SQLite schema of the ledger, its forward migrations, and its row mapping."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import aiosqlite

from tokenpool._errors import LedgerSchemaError
from tokenpool.ledger._records import (
    Entry,
    EntryKind,
    PoolRow,
    RefusalCount,
    ReservationRow,
    ReservationState,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step: the statements that lift the schema to `version`."""

    version: int
    summary: str
    statements: tuple[str, ...]


_V1_ENTRIES = (
    """
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_wall_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        budget TEXT NOT NULL,
        tenant TEXT NOT NULL DEFAULT '',
        reservation_id TEXT NOT NULL DEFAULT '',
        pool TEXT NOT NULL DEFAULT '',
        tokens INTEGER NOT NULL DEFAULT 0,
        charged INTEGER NOT NULL DEFAULT 0,
        refunded INTEGER NOT NULL DEFAULT 0,
        overrun INTEGER NOT NULL DEFAULT 0,
        actor TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
    )
    """,
    "CREATE INDEX entries_budget_tenant ON entries (budget, tenant)",
    "CREATE INDEX entries_reservation ON entries (reservation_id)",
    # The ledger's promise is that entries are never changed; enforce it in
    # the database so that no code path (or hand-run SQL) can break it.
    """
    CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
    BEGIN
        SELECT RAISE(ABORT, 'ledger entries are append-only; UPDATE is refused');
    END
    """,
    """
    CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
    BEGIN
        SELECT RAISE(ABORT, 'ledger entries are append-only; DELETE is refused');
    END
    """,
)

_V1_STATE = (
    """
    CREATE TABLE reservations (
        reservation_id TEXT PRIMARY KEY,
        budget TEXT NOT NULL,
        tenant TEXT NOT NULL,
        pool TEXT NOT NULL,
        state TEXT NOT NULL,
        hold INTEGER NOT NULL,
        sources TEXT NOT NULL DEFAULT '[]',
        requested INTEGER NOT NULL,
        complexity_score INTEGER NOT NULL,
        multiplier REAL NOT NULL,
        created_wall_ns INTEGER NOT NULL,
        lease_expires_wall_ns INTEGER NOT NULL,
        ended_wall_ns INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT NOT NULL DEFAULT '',
        request_fingerprint TEXT NOT NULL DEFAULT '',
        settle_fingerprint TEXT NOT NULL DEFAULT '',
        charged INTEGER NOT NULL DEFAULT 0,
        refunded INTEGER NOT NULL DEFAULT 0,
        overrun INTEGER NOT NULL DEFAULT 0,
        waited_ms INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX reservations_state ON reservations (state)",
    "CREATE INDEX reservations_ended ON reservations (ended_wall_ns)",
    """
    CREATE INDEX reservations_idempotency
    ON reservations (tenant, idempotency_key)
    """,
    """
    CREATE TABLE pools (
        budget TEXT NOT NULL,
        pool TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        level INTEGER NOT NULL,
        carry INTEGER NOT NULL,
        at_wall_ns INTEGER NOT NULL,
        PRIMARY KEY (budget, pool)
    )
    """,
    """
    CREATE TABLE refusals (
        budget TEXT NOT NULL,
        tenant TEXT NOT NULL,
        minute INTEGER NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (budget, tenant, minute, reason)
    )
    """,
    # Small settings the daemon keeps across restarts (for example a
    # calendar period's high-water mark), one text value per key.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Version 2: what scoring, learning and calendar budgets need to be rebuilt
# after a restart: the task type, the output allowance before and after the
# learned correction, what a settle reported, the team and the cost.
_V2RESERVATION_COLUMNS = (
    "ALTER TABLE reservations ADD COLUMN task_type TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE reservations ADD COLUMN output_allowance INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reservations ADD COLUMN output_factor TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE reservations ADD COLUMN used INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reservations ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reservations ADD COLUMN response_cache_hit INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reservations ADD COLUMN team TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE reservations ADD COLUMN cost_micros INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX reservations_created ON reservations (created_wall_ns)",
)

# Version 3: operations. Run-time changes of the configuration and the file
# values they were made against (SPEC 8), what caches saved and what shadow
# mode would have refused per reservation, and an index for reports by time.
_V3_OPERATIONS = (
    """
    CREATE TABLE overrides (
        key TEXT PRIMARY KEY,
        file_value TEXT,
        value TEXT,
        has_override INTEGER NOT NULL DEFAULT 0,
        actor TEXT NOT NULL DEFAULT '',
        at_wall_ns INTEGER NOT NULL DEFAULT 0
    )
    """,
    "ALTER TABLE reservations ADD COLUMN saved_tokens INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reservations ADD COLUMN saved_micros INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reservations ADD COLUMN shadow TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX entries_kind_time ON entries (kind, at_wall_ns)",
    """
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created_wall_ns INTEGER NOT NULL,
        revoked_wall_ns INTEGER NOT NULL DEFAULT 0,
        actor TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'run-time'
    )
    """,
)

# Version 4: retention (SPEC 5). Entries older than the retention period are
# rolled up into per-day summaries and removed. The summaries are as
# append-only as the entries, and an entry may be deleted only once a
# summary covers its id: that is the one removal the database allows.
_V4_RETENTION = (
    """
    CREATE TABLE entry_rollups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        first_id INTEGER NOT NULL,
        through_id INTEGER NOT NULL,
        day_wall_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        budget TEXT NOT NULL,
        tenant TEXT NOT NULL DEFAULT '',
        pool TEXT NOT NULL DEFAULT '',
        entries INTEGER NOT NULL,
        tokens_high INTEGER NOT NULL,
        tokens_low INTEGER NOT NULL,
        charged_high INTEGER NOT NULL,
        charged_low INTEGER NOT NULL,
        refunded_high INTEGER NOT NULL,
        refunded_low INTEGER NOT NULL,
        overrun_high INTEGER NOT NULL,
        overrun_low INTEGER NOT NULL,
        rolled_wall_ns INTEGER NOT NULL
    )
    """,
    "CREATE INDEX entry_rollups_through ON entry_rollups (through_id)",
    "CREATE INDEX entry_rollups_budget_tenant ON entry_rollups (budget, tenant)",
    """
    CREATE TRIGGER entry_rollups_no_update BEFORE UPDATE ON entry_rollups
    BEGIN
        SELECT RAISE(ABORT, 'ledger roll-ups are append-only; UPDATE is refused');
    END
    """,
    """
    CREATE TRIGGER entry_rollups_no_delete BEFORE DELETE ON entry_rollups
    BEGIN
        SELECT RAISE(ABORT, 'ledger roll-ups are append-only; DELETE is refused');
    END
    """,
    # A restart reads the open reservations; this keeps that read from
    # walking every reservation ever made.
    """
    CREATE INDEX reservations_open ON reservations (created_wall_ns)
    WHERE state = 'open'
    """,
    "DROP TRIGGER entries_no_delete",
    """
    CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
    WHEN OLD.id > (SELECT COALESCE(MAX(through_id), 0) FROM entry_rollups)
    BEGIN
        SELECT RAISE(ABORT, 'ledger entries are append-only; DELETE needs a roll-up');
    END
    """,
)

# Append a step to extend the schema; never edit a released one, because
# databases already at that version will not run it again.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        summary="entries, reservations, pools, refusals and meta",
        statements=_V1_ENTRIES + _V1_STATE,
    ),
    Migration(
        version=2,
        summary="task type, learned allowance, usage, team and cost per reservation",
        statements=_V2RESERVATION_COLUMNS,
    ),
    Migration(
        version=3,
        summary="configuration overrides, tenant API keys, cache savings and "
        "shadow refusals",
        statements=_V3_OPERATIONS,
    ),
    Migration(
        version=4,
        summary="retention: per-day roll-ups of old entries, which alone may "
        "be deleted; an index of open reservations",
        statements=_V4_RETENTION,
    ),
)

# The version this code writes, stored in SQLite's `PRAGMA user_version`.
SCHEMA_VERSION = MIGRATIONS[-1].version


async def migrate(conn: aiosqlite.Connection, *, path: str) -> int:
    """Bring the database up to SCHEMA_VERSION inside one write transaction.

    The version is read after the write lock is taken, so two processes
    opening a new file at once migrate it once. sqlite3 errors propagate;
    the caller closes the connection, which rolls the transaction back.

    Args:
        conn: An open connection in autocommit mode (isolation_level=None).
        path: The database path, for messages.

    Returns:
        The schema version found before migrating (0 for a new file).

    Raises:
        LedgerSchemaError: The database was written by a newer tokenpool.
    """
    await conn.execute("BEGIN IMMEDIATE")
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    found = int(rows[0][0])

    if found > SCHEMA_VERSION:
        raise LedgerSchemaError(
            f"Ledger {path!r} has schema version {found}, newer than version "
            f"{SCHEMA_VERSION} this tokenpool knows; upgrade tokenpool or open "
            "another ledger file."
        )

    for step in MIGRATIONS:
        if step.version <= found:
            continue
        for statement in step.statements:
            await conn.execute(statement)
        # PRAGMA takes no parameters; the version is an int from our table.
        await conn.execute(f"PRAGMA user_version = {int(step.version)}")
        logger.info(
            "ledger schema migrated path=%s version=%d summary=%s",
            path,
            step.version,
            step.summary,
            extra={"path": path, "version": step.version},
        )

    await conn.execute("COMMIT")
    return found


# How records map to rows. Column orders are fixed here; the value tuples
# and the row decoders follow them exactly.

# Parameters of one statement, or one row a SELECT returned.
Row = tuple[Any, ...]

_ENTRY_COLUMNS = (
    "at_wall_ns",
    "kind",
    "budget",
    "tenant",
    "reservation_id",
    "pool",
    "tokens",
    "charged",
    "refunded",
    "overrun",
    "actor",
    "detail",
)
RESERVATION_COLUMNS = (
    "reservation_id",
    "budget",
    "tenant",
    "pool",
    "state",
    "hold",
    "sources",
    "requested",
    "complexity_score",
    "multiplier",
    "created_wall_ns",
    "lease_expires_wall_ns",
    "ended_wall_ns",
    "idempotency_key",
    "request_fingerprint",
    "settle_fingerprint",
    "charged",
    "refunded",
    "overrun",
    "waited_ms",
    "model",
    "labels",
    "task_type",
    "output_allowance",
    "output_factor",
    "used",
    "incomplete",
    "response_cache_hit",
    "team",
    "cost_micros",
    "saved_tokens",
    "saved_micros",
    "shadow",
)
_POOL_COLUMNS = ("budget", "pool", "capacity", "level", "carry", "at_wall_ns")


def _insert_sql(table: str, columns: tuple[str, ...], on_conflict: str = "") -> str:
    """Build an INSERT of every column, with an optional conflict clause."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) {on_conflict}".strip()


def _update_all(columns: tuple[str, ...]) -> str:
    """Build an upsert tail that overwrites every column with the new row."""
    return ", ".join(f"{name} = excluded.{name}" for name in columns)


INSERT_ENTRY = _insert_sql("entries", _ENTRY_COLUMNS)
UPSERT_RESERVATION = _insert_sql(
    "reservations",
    RESERVATION_COLUMNS,
    "ON CONFLICT (reservation_id) DO UPDATE SET "
    + _update_all(RESERVATION_COLUMNS[1:]),
)
UPSERT_POOL = _insert_sql(
    "pools",
    _POOL_COLUMNS,
    "ON CONFLICT (budget, pool) DO UPDATE SET " + _update_all(_POOL_COLUMNS[2:]),
)
ADD_REFUSALS = _insert_sql(
    "refusals",
    ("budget", "tenant", "minute", "reason", "count"),
    "ON CONFLICT (budget, tenant, minute, reason) "
    "DO UPDATE SET count = count + excluded.count",
)

# A run-time value (or its removal); the file value stays as it was.
SET_OVERRIDE = """
INSERT INTO overrides (key, value, has_override, actor, at_wall_ns)
VALUES (:key, :value, :has_override, :actor, :at)
ON CONFLICT (key) DO UPDATE SET value = excluded.value,
    has_override = excluded.has_override, actor = excluded.actor,
    at_wall_ns = excluded.at_wall_ns
"""
# The value a file gave a field when it was applied, dropping the override
# when the file's new value replaced it.
SET_FILE_VALUE = """
INSERT INTO overrides (key, file_value, at_wall_ns) VALUES (:key, :value, :at)
ON CONFLICT (key) DO UPDATE SET file_value = excluded.file_value,
    value = CASE WHEN :drop THEN NULL ELSE value END,
    has_override = CASE WHEN :drop THEN 0 ELSE has_override END,
    at_wall_ns = excluded.at_wall_ns
"""
_KEY_COLUMNS = (
    "key_id",
    "tenant",
    "sha256",
    "label",
    "created_wall_ns",
    "revoked_wall_ns",
    "actor",
    "source",
)
UPSERT_KEY = _insert_sql(
    "api_keys",
    _KEY_COLUMNS,
    "ON CONFLICT (key_id) DO UPDATE SET " + _update_all(_KEY_COLUMNS[1:]),
)
SELECT_KEYS = (
    f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys "
    "ORDER BY tenant, created_wall_ns, key_id"
)

SELECT_OVERRIDES = (
    "SELECT key, file_value, value, has_override, actor, at_wall_ns FROM overrides "
    "ORDER BY key"
)

SELECT_ENTRIES = (
    f"SELECT id, {', '.join(_ENTRY_COLUMNS)} FROM entries "
    "WHERE id > ? ORDER BY id LIMIT ?"
)
SELECT_RESERVATIONS = f"SELECT {', '.join(RESERVATION_COLUMNS)} FROM reservations"
SELECT_POOLS = f"SELECT {', '.join(_POOL_COLUMNS)} FROM pools ORDER BY budget, pool"

# SQLite's SUM fails past 64 bits ("integer overflow"), and a ledger may hold
# usage figures up to 2^62 each (SPEC 12.9), so two of them could make every
# report and every restart fail. Sums are taken in two halves instead, the
# high bits and the low 32 bits of each value, each of which stays far below
# 2^63 for billions of rows, and joined exactly in Python (`joined_sum`).
_HALF_BITS = 32


def exact_sum(expression: str) -> str:
    """SQL for the two half sums of an integer expression; see `joined_sum`."""
    return (
        f"SUM(({expression}) >> {_HALF_BITS}), "
        f"SUM(({expression}) & {(1 << _HALF_BITS) - 1})"
    )


def joined_sum(high: int | None, low: int | None) -> int:
    """The exact sum from the two half sums `exact_sum` selects."""
    return ((high or 0) << _HALF_BITS) + (low or 0)


# Entries without a tenant (capacity changes, rebalances) are not usage. Each
# token figure comes as the two half sums of exact_sum; entries rolled up by
# retention count through their summaries, which keep the same half sums.
TOTALS_SQL = """
SELECT budget, tenant, SUM(reservations),
       SUM(reserved_high), SUM(reserved_low), SUM(charged_high), SUM(charged_low),
       SUM(refunded_high), SUM(refunded_low), SUM(overrun_high), SUM(overrun_low),
       SUM(refusals)
FROM (
    SELECT budget, tenant,
           SUM(kind = :reserve) AS reservations,
           SUM((CASE WHEN kind = :reserve THEN tokens ELSE 0 END) >> 32)
               AS reserved_high,
           SUM((CASE WHEN kind = :reserve THEN tokens ELSE 0 END) & 4294967295)
               AS reserved_low,
           SUM(charged >> 32) AS charged_high,
           SUM(charged & 4294967295) AS charged_low,
           SUM(refunded >> 32) AS refunded_high,
           SUM(refunded & 4294967295) AS refunded_low,
           SUM(overrun >> 32) AS overrun_high,
           SUM(overrun & 4294967295) AS overrun_low,
           0 AS refusals
    FROM entries WHERE tenant != '' {budget_filter}
    GROUP BY budget, tenant
    UNION ALL
    SELECT budget, tenant,
           SUM(CASE WHEN kind = :reserve THEN entries ELSE 0 END),
           SUM(CASE WHEN kind = :reserve THEN tokens_high ELSE 0 END),
           SUM(CASE WHEN kind = :reserve THEN tokens_low ELSE 0 END),
           SUM(charged_high), SUM(charged_low),
           SUM(refunded_high), SUM(refunded_low),
           SUM(overrun_high), SUM(overrun_low),
           0
    FROM entry_rollups WHERE tenant != '' {budget_filter}
    GROUP BY budget, tenant
    UNION ALL
    SELECT budget, tenant, 0, 0, 0, 0, 0, 0, 0, 0, 0, SUM(count)
    FROM refusals WHERE tenant != '' {budget_filter}
    GROUP BY budget, tenant
)
GROUP BY budget, tenant
ORDER BY budget, tenant
"""
TOTALS_KEYS = (
    "budget",
    "tenant",
    "reservations",
    "tokens_reserved",
    "tokens_charged",
    "tokens_refunded",
    "tokens_overrun",
    "refusals",
)


def _json_default(value: object) -> object:
    """Encode the few non-JSON types details may carry."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _to_json(value: object) -> str:
    """Encode a detail, label map or source list as compact, strict JSON."""
    return json.dumps(
        value, separators=(",", ":"), allow_nan=False, default=_json_default
    )


def entry_values(entry: Entry) -> Row:
    """Flatten an entry into its INSERT parameters."""
    return (
        entry.at_wall_ns,
        str(entry.kind),
        entry.budget,
        entry.tenant,
        entry.reservation_id,
        entry.pool,
        entry.tokens,
        entry.charged,
        entry.refunded,
        entry.overrun,
        entry.actor,
        _to_json(entry.detail) if entry.detail else "{}",
    )


def reservation_values(row: ReservationRow) -> Row:
    """Flatten a reservation into its upsert parameters."""
    return (
        row.reservation_id,
        row.budget,
        row.tenant,
        row.pool,
        str(row.state),
        row.hold,
        _to_json([[pool, tokens] for pool, tokens in row.sources]),
        row.requested,
        row.complexity_score,
        row.multiplier,
        row.created_wall_ns,
        row.lease_expires_wall_ns,
        row.ended_wall_ns,
        row.idempotency_key,
        row.request_fingerprint,
        row.settle_fingerprint,
        row.charged,
        row.refunded,
        row.overrun,
        row.waited_ms,
        row.model,
        _to_json(row.labels) if row.labels else "{}",
        row.task_type,
        row.output_allowance,
        row.output_factor,
        row.used,
        int(row.incomplete),
        int(row.response_cache_hit),
        row.team,
        row.cost_micros,
        row.saved_tokens,
        row.saved_micros,
        row.shadow,
    )


def entry_from_row(row: Row) -> Entry:
    """Rebuild an entry from `SELECT id, <entry columns>`."""
    return Entry(
        id=row[0],
        at_wall_ns=row[1],
        kind=EntryKind(row[2]),
        budget=row[3],
        tenant=row[4],
        reservation_id=row[5],
        pool=row[6],
        tokens=row[7],
        charged=row[8],
        refunded=row[9],
        overrun=row[10],
        actor=row[11],
        detail=json.loads(row[12]),
    )


def pool_values(pool: PoolRow) -> Row:
    """Flatten a pool level into its upsert parameters."""
    return (
        pool.budget,
        pool.pool,
        pool.capacity,
        pool.level,
        pool.carry,
        pool.at_wall_ns,
    )


def refusal_key(refusal: RefusalCount) -> tuple[str, str, int, str]:
    """The refusals table's primary key for one count."""
    return (refusal.budget, refusal.tenant, refusal.minute, refusal.reason)


def pool_from_row(row: Row) -> PoolRow:
    """Rebuild a pool level from `SELECT <pool columns>`."""
    return PoolRow(*row)


# Decoded label maps and source lists, shared by the rows that store the same
# JSON text (most reservations carry one of a few), up to this many distinct
# texts; past it the cache starts afresh, so hostile labels cannot grow it.
_SHARED_LIMIT = 4096
_shared_labels: dict[str, Mapping[str, str]] = {}
# States by their stored text: a dict lookup is cheaper than the enum's call.
_STATES = {state.value: state for state in ReservationState}
_shared_sources: dict[str, tuple[tuple[str, int], ...]] = {}


_shared_ints: dict[int, int] = {}
_shared_floats: dict[float, float] = {}


def _int(value: int) -> int:
    """One object per repeated token count (Python keeps only -5..256 so)."""
    shared = _shared_ints.get(value)
    if shared is None:
        if len(_shared_ints) >= _SHARED_LIMIT:
            _shared_ints.clear()
        shared = _shared_ints[value] = value
    return shared


def _float(value: float) -> float:
    shared = _shared_floats.get(value)
    if shared is None:
        if len(_shared_floats) >= _SHARED_LIMIT:
            _shared_floats.clear()
        shared = _shared_floats[value] = value
    return shared


def _labels_of(text: str) -> Mapping[str, str]:
    labels = _shared_labels.get(text)
    if labels is None:
        if len(_shared_labels) >= _SHARED_LIMIT:
            _shared_labels.clear()
        # Read-only: one map may back many reservations.
        labels = _shared_labels[text] = MappingProxyType(
            {sys.intern(k): sys.intern(v) for k, v in json.loads(text).items()}
        )
    return labels


def _sources_of(text: str) -> tuple[tuple[str, int], ...]:
    sources = _shared_sources.get(text)
    if sources is None:
        if len(_shared_sources) >= _SHARED_LIMIT:
            _shared_sources.clear()
        sources = _shared_sources[text] = tuple(
            (sys.intern(str(pool)), int(tokens)) for pool, tokens in json.loads(text)
        )
    return sources


def reservation_from_row(row: Row) -> ReservationRow:
    """Rebuild a reservation from `SELECT <reservation columns>`.

    Restarts read a million of these, so the row is taken apart by position,
    and the names, texts and counts many rows repeat (budget, tenant, pool,
    model, task type, team, labels, sources, hold, allowance, multiplier)
    are shared instead of copied per row.
    """
    intern = sys.intern
    return ReservationRow(
        row[0],
        intern(row[1]),
        intern(row[2]),
        intern(row[3]),
        _STATES[row[4]],
        _int(row[5]),
        _sources_of(row[6]),
        _int(row[7]),
        row[8],
        _float(row[9]),
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
        row[18],
        row[19],
        intern(row[20]),
        _labels_of(row[21]),
        intern(row[22]),
        _int(row[23]),
        intern(row[24]),
        row[25],
        bool(row[26]),
        bool(row[27]),
        intern(row[28]),
        row[29],
        row[30],
        row[31],
        intern(row[32]),
    )
