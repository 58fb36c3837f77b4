"""Group-committed SQLite ledger and the reads that restarts and reports need."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Literal

import aiosqlite
import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from tokenpool._errors import (
    ConfigError,
    InvalidFieldError,
    LedgerError,
    LedgerUnavailableError,
)
from tokenpool.ledger._backup import backup_file, new_backup_file, remove_quietly
from tokenpool.ledger._commit import on_worker, write_group
from tokenpool.ledger._group import RESOLVED, Group
from tokenpool.ledger._lock import LedgerLock
from tokenpool.ledger._records import (
    CHARGE_SLOT_NS,
    ChargedSlot,
    Entry,
    KeyRow,
    LedgerBatch,
    ReservationRow,
    ReservationState,
    StoredOverride,
    StoredState,
)
from tokenpool.ledger._reports import (
    ReportQuery,
    ReportRow,
    entry_totals,
    replay_rows,
    usage_report,
)
from tokenpool.ledger._retention import RollUp, roll_up_chunk
from tokenpool.ledger._schema import (
    RESERVATION_COLUMNS,
    SCHEMA_VERSION,
    SELECT_ENTRIES,
    SELECT_KEYS,
    SELECT_OVERRIDES,
    SELECT_POOLS,
    SELECT_RESERVATIONS,
    entry_from_row,
    exact_sum,
    joined_sum,
    migrate,
    pool_from_row,
    reservation_from_row,
)

logger = logging.getLogger(__name__)

# SQLite's page cache per connection, in KiB (its default is 2 MiB). A big
# ledger's index pages are touched at random by tenant and reservation id;
# a cache this size keeps them in memory instead of re-read per commit.
_CACHE_KIB = 64 * 1024

# Where a reservation row holds its grant time.
_CREATED = RESERVATION_COLUMNS.index("created_wall_ns")

# A group that waited less than this before its write keeps the whole
# busy timeout: shortening it costs a statement, so only a real wait does.
_SHORTEN_AFTER_MS = 100

# SQLite `synchronous` per durability level. In WAL mode NORMAL loses nothing
# acknowledged when the process dies; FULL also survives a power loss.
_SYNCHRONOUS: Mapping[str, str] = {"normal": "NORMAL", "power": "FULL"}

_CLOSED_MESSAGE = (
    "The ledger is closed; the operation was not recorded, retry against a "
    "running daemon."
)


def _ledger_error(doing: str, exc: sqlite3.Error) -> LedgerError:
    """Translate a sqlite3 error: operational ones may pass, others will not."""
    if isinstance(exc, sqlite3.OperationalError):
        return LedgerUnavailableError(
            f"Ledger {doing} failed ({exc}); check that the database file is "
            "reachable and not locked by another process, then retry."
        )
    return LedgerError(
        f"Ledger {doing} failed ({exc}); check that the file is a tokenpool "
        "ledger and is not damaged."
    )


class Ledger:
    """Append-only SQLite ledger that commits queued batches in groups.

    Create one with `Ledger.open`, start `run` in the daemon's task group,
    and `aclose` it on shutdown. Writers call `submit` or `commit`; every
    batch queued while a commit is in progress goes into the next one, so
    under load many operations share one transaction and one fsync.
    """

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        path: str,
        lock: LedgerLock | None = None,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._file_lock = lock
        # Serialises write groups and reads on the one connection, so a read
        # never sees a group that is half written or later rolled back.
        self._lock = anyio.Lock()
        self._group = Group()
        self._wakeup = anyio.Event()
        self._closed = False
        self._close_done = anyio.Event()
        self._running = False
        self._commits = 0
        self._committed_batches = 0
        self._failed_commits = 0

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Literal["normal", "power"] = "normal",
        busy_timeout_ms: int = 5000,
    ) -> Ledger:
        """Open or create the ledger database and migrate it forward.

        Args:
            path: The SQLite file; it is created when missing.
            durability: "normal" survives the process being killed; "power"
                also survives power loss, at the cost of an fsync per commit.
            busy_timeout_ms: How long a write waits for another connection's
                lock before its group fails.

        Raises:
            ConfigError: `durability` or `busy_timeout_ms` is out of range.
            LedgerUnavailableError: The file cannot be opened or is locked.
            LedgerSchemaError: The file was written by a newer tokenpool.
            LedgerError: The file is not a usable ledger.
        """
        if durability not in _SYNCHRONOUS:
            raise ConfigError(
                f"Ledger durability {durability!r} is not known; "
                "use 'normal' or 'power'."
            )
        if busy_timeout_ms < 0:
            raise ConfigError(
                f"Ledger busy_timeout_ms {busy_timeout_ms!r} is negative; "
                "use 0 or more milliseconds."
            )
        where = os.fspath(path)

        lock = None if where == ":memory:" else LedgerLock(where)
        if lock is not None:
            try:
                await anyio.to_thread.run_sync(lock.acquire)
            except OSError as exc:
                raise LedgerUnavailableError(
                    f"Cannot lock ledger {where!r} ({exc}); check that its folder "
                    "exists and is writable."
                ) from exc
        try:
            return await cls._open_locked(where, durability, busy_timeout_ms, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    async def _open_locked(
        cls,
        where: str,
        durability: Literal["normal", "power"],
        busy_timeout_ms: int,
        lock: LedgerLock | None,
    ) -> Ledger:
        """Opens and migrates a ledger whose lock this process holds."""
        # Probe first: when aiosqlite's own connect fails, its worker thread
        # may report to an event loop that has closed by then
        # (https://github.com/omnilib/aiosqlite/issues/387).
        try:
            await anyio.to_thread.run_sync(_probe_open, where)
        except sqlite3.Error as exc:
            raise _ledger_error(f"open of {where!r}", exc) from exc

        conn = aiosqlite.connect(
            where, timeout=busy_timeout_ms / 1000, isolation_level=None
        )
        try:
            await conn
        except sqlite3.Error as exc:
            raise _ledger_error(f"open of {where!r}", exc) from exc

        try:
            found = await cls._prepare(conn, where, durability, busy_timeout_ms)
        except sqlite3.Error as exc:
            await _close_quietly(conn)
            raise _ledger_error(f"open of {where!r}", exc) from exc
        except BaseException:
            await _close_quietly(conn)
            raise

        logger.info(
            "ledger opened path=%s schema_version=%d found_version=%d durability=%s",
            where,
            SCHEMA_VERSION,
            found,
            durability,
            extra={
                "path": where,
                "schema_version": SCHEMA_VERSION,
                "durability": durability,
            },
        )
        return cls(conn, path=where, lock=lock, busy_timeout_ms=busy_timeout_ms)

    @staticmethod
    async def _prepare(
        conn: aiosqlite.Connection, where: str, durability: str, busy_timeout_ms: int
    ) -> int:
        """Set the pragmas, migrate, and return the version found."""
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        mode = str(rows[0][0]).lower()
        if mode != "wal" and where != ":memory:":
            logger.warning(
                "ledger journal mode is not WAL path=%s journal_mode=%s",
                where,
                mode,
                extra={"path": where, "journal_mode": mode},
            )

        # Pragmas take no parameters; both values come from checked inputs.
        await conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")

        return await migrate(conn, path=where)

    @property
    def path(self) -> str:
        """The database file this ledger writes."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether `aclose` has been called."""
        return self._closed

    @property
    def commits(self) -> int:
        """Transactions committed so far; for tests and metrics."""
        return self._commits

    @property
    def committed_batches(self) -> int:
        """Batches made durable so far; for tests and metrics."""
        return self._committed_batches

    @property
    def failed_commits(self) -> int:
        """Groups rolled back and refused so far; for tests and metrics."""
        return self._failed_commits

    def submit(self, batch: LedgerBatch) -> Awaitable[int]:
        """Queue a batch for the next group commit; await the result.

        The batch is encoded now, so later changes to it are not recorded.
        Awaiting the result returns once the batch is committed, with the
        number of batches that shared its transaction (0 for an empty one). A caller
        cancelled while waiting does not withdraw the batch: it may still
        be committed. Batches wait until `run` or `aclose` writes them.

        Raises:
            LedgerUnavailableError: The ledger is closed (raised here), or
                the group failed and was rolled back (raised on await).
            LedgerError: The batch holds a detail or label that is not
                JSON-serialisable (raised here; nothing was queued).
        """
        if self._closed:
            raise LedgerUnavailableError(_CLOSED_MESSAGE)
        if batch.is_empty():
            return RESOLVED

        group = self._group
        try:
            group.add(batch)
        except (TypeError, ValueError) as exc:
            raise LedgerError(
                f"Cannot record the batch ({exc}); entry details and "
                "reservation labels must be JSON-serialisable."
            ) from exc

        self._wakeup.set()
        return group.outcome

    async def commit(self, batch: LedgerBatch) -> None:
        """Queue a batch and wait until its group is committed."""
        await self.submit(batch)

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Write queued batches in groups until the ledger is closed.

        Start it with `task_group.start`; it reports ready at once. Each
        pass takes every batch queued so far and commits them in one
        transaction. A failed group is rolled back, its waiters get
        LedgerUnavailableError, and the loop goes on. It returns after
        `aclose`; cancelling it leaves queued batches for `aclose` to write.

        Raises:
            LedgerError: `run` is already running for this ledger.
        """
        if self._running:
            raise LedgerError(
                "The ledger writer is already running; start run() once per ledger."
            )
        self._running = True
        task_status.started()

        try:
            while not self._closed:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                await self._flush()
        finally:
            self._running = False

    async def _flush(self) -> None:
        """Commit the current group, shielded so waiters always get an answer."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await self._flush_locked()

    async def _flush_locked(self) -> None:
        """Swap in a fresh group and write the old one; hold `_lock`."""
        group = self._group
        if group.size == 0:
            return
        self._group = Group()

        conn = self._conn
        if conn is None:
            group.outcome.resolve(_CLOSED_MESSAGE)
            return

        # A group queued behind a commit that waited on a lock has spent part
        # of its time already: each write waits at most the timeout in all.
        waited_ms = (time.monotonic() - group.opened_at) * 1000
        left_ms = int(self._busy_timeout_ms - waited_ms)
        if left_ms <= 0:
            self._failed_commits += 1
            logger.warning(
                "ledger group failed size=%d error=timeout waited_ms=%d",
                group.size,
                waited_ms,
                extra={"size": group.size, "error": "timeout", "waited_ms": waited_ms},
            )
            group.outcome.resolve(
                f"Ledger commit waited {waited_ms:.0f} ms, past the ledger timeout "
                f"of {self._busy_timeout_ms} ms (database locked or slow); the "
                "operation was not recorded, retry shortly."
            )
            return

        started = time.perf_counter()
        try:
            await self._write(conn, group, left_ms)
        except Exception as exc:
            # Any failure, even one that is not sqlite's, must reach waiters.
            await self._rollback(conn)
            self._failed_commits += 1
            logger.warning(
                "ledger group failed size=%d error=%r",
                group.size,
                exc,
                extra={"size": group.size, "error": repr(exc)},
            )
            group.outcome.resolve(
                f"Ledger commit failed ({exc}); the operation was not "
                "recorded, retry later.",
                exc,
            )
            return

        elapsed_ms = (time.perf_counter() - started) * 1000
        self._commits += 1
        self._committed_batches += group.size
        logger.debug(
            "ledger group committed size=%d elapsed_ms=%.2f",
            group.size,
            elapsed_ms,
            extra={"size": group.size, "elapsed_ms": elapsed_ms},
        )
        group.outcome.resolve(size=group.size)

    async def _write(
        self, conn: aiosqlite.Connection, group: Group, left_ms: int
    ) -> None:
        """Write one group in one transaction, in one worker-thread hop.

        `left_ms` is what remains of the group's ledger timeout; the lock
        wait is cut to it when the group has already waited a while. Each
        aiosqlite await costs a thread hand-off and a loop wake-up (tens of
        microseconds), so the whole transaction runs as one call on the
        connection's worker thread: a failed one is rolled back there too.
        """
        shortened = left_ms < self._busy_timeout_ms - _SHORTEN_AFTER_MS
        timeout_ms = int(left_ms) if shortened else None
        await on_worker(conn, write_group, group, timeout_ms, self._busy_timeout_ms)

    @staticmethod
    async def _rollback(conn: aiosqlite.Connection) -> None:
        """Roll back an open transaction; the group has failed already."""
        if not conn.in_transaction:
            return

        try:
            await conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            # The next group's BEGIN fails and retries this rollback.
            logger.warning(
                "ledger rollback failed error=%r",
                exc,
                extra={"error": repr(exc)},
            )

    async def aclose(self) -> None:
        """Refuse new batches, write the queued ones, and close the file.

        Safe before `run` started and when called again; a second call
        waits for the first to finish.
        """
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        self._wakeup.set()

        try:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    await self._flush_locked()
                    conn, self._conn = self._conn, None
                    if conn is not None:
                        await _close_quietly(conn)
        finally:
            if self._file_lock is not None:
                self._file_lock.release()
            self._close_done.set()

        logger.info(
            "ledger closed path=%s commits=%d failed_commits=%d",
            self._path,
            self._commits,
            self._failed_commits,
            extra={"path": self._path, "commits": self._commits},
        )

    @contextlib.asynccontextmanager
    async def _reading(self, doing: str) -> AsyncIterator[aiosqlite.Connection]:
        """Lend the connection to a read, translating what goes wrong."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise LedgerUnavailableError(_CLOSED_MESSAGE)

            try:
                yield conn
            except sqlite3.Error as exc:
                raise _ledger_error(doing, exc) from exc
            except ValueError as exc:
                raise LedgerError(
                    f"Ledger {doing} found a value this tokenpool cannot read "
                    f"({exc}); upgrade tokenpool or check the file."
                ) from exc

    async def load_state(self, *, keep_ended_after_wall_ns: int) -> StoredState:
        """Read what a restart restores: pools and reservations worth keeping.

        Args:
            keep_ended_after_wall_ns: Ended reservations that ended at or
                after this wall time are returned too, so repeated requests
                get their original answers; open ones always are.
        """
        async with self._reading("load_state") as conn:
            pool_rows = await conn.execute_fetchall(SELECT_POOLS)
            # Two indexed reads (open ones by a partial index, recently ended
            # ones by end time), joined in grant order here: one query with
            # OR and ORDER BY walks every reservation ever stored.
            open_rows = await conn.execute_fetchall(
                f"{SELECT_RESERVATIONS} INDEXED BY reservations_open "
                "WHERE state = 'open'"
            )
            ended_rows = await conn.execute_fetchall(
                f"{SELECT_RESERVATIONS} INDEXED BY reservations_ended "
                "WHERE ended_wall_ns >= ? AND state != 'open'",
                (max(1, keep_ended_after_wall_ns),),
            )

        # Plain tuples: the connection has no row factory.
        rows: list[Any] = [*open_rows, *ended_rows]
        rows.sort(key=_grant_order)
        return StoredState(
            pools=tuple(pool_from_row(tuple(row)) for row in pool_rows),
            reservations=tuple(reservation_from_row(row) for row in rows),
        )

    async def charged_since(self, wall_ns: int) -> list[ChargedSlot]:
        """Charged tokens and cost of ended reservations granted since `wall_ns`.

        Summed per tenant, team and quarter hour of grant time, so that the
        caller can place them in calendar days of any timezone (every
        timezone's offset is a whole number of quarter hours).
        """
        async with self._reading("charged_since") as conn:
            rows = await conn.execute_fetchall(
                "SELECT tenant, team, created_wall_ns / :slot * :slot, "
                f"{exact_sum('charged')}, {exact_sum('cost_micros')} "
                # Ended after it was granted: the end-time index bounds the
                # read to the period, open reservations (ended 0) left out.
                "FROM reservations INDEXED BY reservations_ended "
                "WHERE ended_wall_ns >= :since AND created_wall_ns >= :since "
                "AND state != :open "
                "GROUP BY tenant, team, created_wall_ns / :slot",
                {
                    "slot": CHARGE_SLOT_NS,
                    "open": str(ReservationState.OPEN),
                    "since": wall_ns,
                },
            )
            return [
                ChargedSlot(
                    tenant,
                    team,
                    slot,
                    tokens=joined_sum(*halves[:2]),
                    micros=joined_sum(*halves[2:]),
                )
                for tenant, team, slot, *halves in rows
            ]

    async def get_reservation(self, reservation_id: str) -> ReservationRow | None:
        """Read one reservation by id, or None when it is unknown."""
        async with self._reading("get_reservation") as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"{SELECT_RESERVATIONS} WHERE reservation_id = ?",
                    (reservation_id,),
                )
            )

            return reservation_from_row(tuple(rows[0])) if rows else None

    async def find_by_idempotency_key(
        self, tenant: str, key: str
    ) -> ReservationRow | None:
        """Find the tenant's latest reservation made with this key, if any."""
        if not key:
            return None

        async with self._reading("find_by_idempotency_key") as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"{SELECT_RESERVATIONS} "
                    "WHERE tenant = ? AND idempotency_key = ? "
                    "ORDER BY created_wall_ns DESC LIMIT 1",
                    (tenant, key),
                )
            )

            return reservation_from_row(tuple(rows[0])) if rows else None

    async def totals(self, *, budget: str | None = None) -> list[dict[str, object]]:
        """Sum usage and refusals per budget and tenant, for reports.

        Each row has budget, tenant, reservations, tokens_reserved,
        tokens_charged, tokens_refunded, tokens_overrun and refusals.
        Entries without a tenant (capacity changes, rebalances) are left out.
        """
        async with self._reading("totals") as conn:
            return await entry_totals(conn, budget)

    async def entry_count(self) -> int:
        """Count the entries in the ledger."""
        async with self._reading("entry_count") as conn:
            rows = list(await conn.execute_fetchall("SELECT COUNT(*) FROM entries"))

        return int(rows[0][0])

    async def entries(
        self,
        *,
        after_id: int = 0,
        limit: int = 1000,
        kinds: Sequence[str] = (),
        since_wall_ns: int | None = None,
        until_wall_ns: int | None = None,
    ) -> list[Entry]:
        """Read entries in id order, `limit` at a time, after `after_id`.

        Args:
            after_id: Entries with a larger id only (0: from the first).
            limit: At most this many.
            kinds: Only these kinds (all when empty).
            since_wall_ns: Only entries at or after this wall time.
            until_wall_ns: Only entries before this wall time.

        Raises:
            InvalidFieldError: `limit` is below 1.
        """
        if limit < 1:
            raise InvalidFieldError("limit", f"{limit!r} is below 1; ask for 1 or more")

        where = ""
        params: list[object] = [after_id]
        if kinds:
            where += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params.extend(kinds)
        if since_wall_ns is not None:
            where += " AND at_wall_ns >= ?"
            params.append(since_wall_ns)
        if until_wall_ns is not None:
            where += " AND at_wall_ns < ?"
            params.append(until_wall_ns)
        sql = SELECT_ENTRIES.replace("WHERE id > ?", "WHERE id > ?" + where)
        async with self._reading("entries") as conn:
            rows = await conn.execute_fetchall(sql, (*params, limit))

            return [entry_from_row(tuple(row)) for row in rows]

    async def load_overrides(self) -> dict[str, StoredOverride]:
        """Every configuration field's last file value and run-time override."""
        async with self._reading("load_overrides") as conn:
            rows = await conn.execute_fetchall(SELECT_OVERRIDES)

        return {
            str(row[0]): StoredOverride(
                key=str(row[0]),
                file_value=row[1],
                value=row[2],
                has_override=bool(row[3]),
                actor=str(row[4]),
                at_wall_ns=int(row[5]),
            )
            for row in rows
        }

    async def load_keys(self) -> list[KeyRow]:
        """Every tenant API key stored at run time (digests only)."""
        async with self._reading("load_keys") as conn:
            rows = await conn.execute_fetchall(SELECT_KEYS)

        return [KeyRow(*row) for row in rows]

    async def usage_report(self, query: ReportQuery) -> list[ReportRow]:
        """Usage, cost, waits, savings and refusals per group (see `_reports`).

        Raises:
            InvalidFieldError: the query names an unknown dimension or period.
        """
        async with self._reading("usage_report") as conn:
            return await usage_report(conn, query)

    async def replay_rows(
        self, *, since_wall_ns: int, until_wall_ns: int, budget: str = ""
    ) -> list[tuple[ReservationRow, Mapping[str, Any], Mapping[str, Any]]]:
        """Reservations granted in a period, with their reserve and end details.

        Each item is the reservation's row, the detail of its reserve entry
        and the detail of the settle or release that ended it ({} if none),
        oldest grant first: what a replay of the ledger's own traffic needs.
        """
        async with self._reading("replay_rows") as conn:
            return await replay_rows(
                conn,
                since_wall_ns=since_wall_ns,
                until_wall_ns=until_wall_ns,
                budget=budget,
            )

    async def roll_up(self, *, before_wall_ns: int, now_wall_ns: int) -> RollUp:
        """Rolls entries older than `before_wall_ns` up into per-day summaries.

        SPEC 5's retention: each run of entries is summed per UTC day, kind,
        budget, tenant and pool into `entry_rollups` and removed, in one
        transaction per chunk, so commits go on between chunks. Totals and
        reports read the summaries with the entries and stay the same.

        Raises:
            LedgerError: the database is unreachable or refused the roll-up.
        """
        total = RollUp()
        while True:
            # Shielded: a chunk is short, and must end in COMMIT or ROLLBACK.
            with anyio.CancelScope(shield=True):
                async with self._reading("roll_up") as conn:
                    await conn.execute("BEGIN IMMEDIATE")
                    try:
                        step = await roll_up_chunk(conn, before_wall_ns, now_wall_ns)
                        await conn.execute("COMMIT")
                    finally:
                        await self._rollback(conn)
            total = RollUp(
                total.entries + step.entries,
                total.summaries + step.summaries,
                step.through_id,
            )
            if not step.entries:
                return total

    async def backup(self, target: str | os.PathLike[str]) -> int:
        """Copies the database to a new file with SQLite's online backup.

        A file ledger is read through a connection of its own, in a worker
        thread, in one step: in WAL mode the copy is one consistent snapshot
        and commits go on meanwhile. An in-memory ledger is copied through
        its own connection. The target must not exist yet; a copy that
        fails leaves no file behind.

        Returns:
            The size of the copy in bytes.

        Raises:
            InvalidFieldError: the target (field `path`) exists, is not a
                valid path, or its folder is missing or not writable.
            LedgerError: the copy itself failed.
        """
        where = os.fspath(target)
        if self._conn is None:
            raise LedgerUnavailableError(_CLOSED_MESSAGE)
        try:
            if self._path == ":memory:":
                await self._backup_memory(where)
            else:
                await anyio.to_thread.run_sync(backup_file, self._path, where)
            size = await anyio.to_thread.run_sync(os.path.getsize, where)
        except (OSError, ValueError, sqlite3.Error) as exc:
            raise LedgerError(
                f"Backup of ledger {self._path!r} to {where[:200]!r} failed ({exc}); "
                "name a new file in a folder the daemon can write."
            ) from exc
        logger.info(
            "ledger backed up path=%s target=%s bytes=%d", self._path, where, size
        )
        return size

    async def _backup_memory(self, where: str) -> None:
        """Copies an in-memory ledger through its own connection."""
        async with self._reading("backup") as conn:
            dest = await anyio.to_thread.run_sync(new_backup_file, where)
            try:
                await conn.backup(dest)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(dest.close)
                    await anyio.to_thread.run_sync(remove_quietly, where)
                raise
            await anyio.to_thread.run_sync(dest.close)


def _grant_order(row: Any) -> tuple[int, str]:
    """Rows by grant time, then id: the order a restart rebuilds them in."""
    return (row[_CREATED], row[0])


def _probe_open(where: str) -> None:
    """Open and close the file once, so path errors surface here."""
    sqlite3.connect(where).close()


async def _close_quietly(conn: aiosqlite.Connection) -> None:
    """Close a connection, shielded; a failure to close is only logged."""
    with anyio.CancelScope(shield=True):
        try:
            await conn.close()
        except sqlite3.Error as exc:
            logger.warning(
                "ledger close failed error=%r", exc, extra={"error": repr(exc)}
            )
