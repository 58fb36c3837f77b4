"""A commit group's transaction, written on the connection's worker thread.

The synchronous side of the ledger's group commit: `Ledger` hands each
group to these helpers in one thread hop. Split out of `_ledger` to keep
that module to the ledger's lifecycle, queue and reads.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable

import aiosqlite

from tokenpool.ledger._group import Group
from tokenpool.ledger._schema import (
    ADD_REFUSALS,
    INSERT_ENTRY,
    UPSERT_KEY,
    UPSERT_POOL,
    UPSERT_RESERVATION,
)

logger = logging.getLogger(__name__)


async def on_worker(
    conn: aiosqlite.Connection, work: Callable[..., None], *args: object
) -> None:
    """Runs `work(raw_connection, *args)` on the connection's worker thread.

    aiosqlite has no public call for this; `_execute` is how its own
    methods queue work, and the version is pinned in constraints.txt.
    """
    raw: sqlite3.Connection = conn._conn
    await conn._execute(work, raw, *args)  # type: ignore[no-untyped-call]


def write_group(
    raw: sqlite3.Connection,
    group: Group,
    timeout_ms: int | None,
    busy_timeout_ms: int,
) -> None:
    """One group's transaction, on the worker thread; rolled back on failure."""
    if timeout_ms is not None:
        raw.execute(f"PRAGMA busy_timeout = {timeout_ms}")
    try:
        # IMMEDIATE takes the write lock up front, waiting up to busy_timeout.
        raw.execute("BEGIN IMMEDIATE")
        if group.entries:
            raw.executemany(INSERT_ENTRY, group.entries)
        if group.reservations:
            raw.executemany(UPSERT_RESERVATION, list(group.reservations.values()))
        if group.pools:
            raw.executemany(UPSERT_POOL, list(group.pools.values()))
        if group.refusals:
            raw.executemany(ADD_REFUSALS, group.refusal_values())
        for statement, params in group.settings:
            raw.execute(statement, params)
        if group.keys:
            raw.executemany(UPSERT_KEY, list(group.keys.values()))
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                # The next group's BEGIN fails and retries this rollback.
                raw.execute("ROLLBACK")
        raise
    finally:
        if timeout_ms is not None:
            _restore_busy_timeout(raw, busy_timeout_ms)


def _restore_busy_timeout(raw: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Puts the whole busy timeout back after a shortened write."""
    try:
        raw.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    except sqlite3.Error as exc:
        # The next shortened write sets it again; a full one keeps the
        # shorter wait, which errs on the side of answering sooner.
        logger.warning(
            "ledger busy timeout not restored error=%r",
            exc,
            extra={"error": repr(exc)},
        )
