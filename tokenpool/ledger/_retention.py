"""Retention: old entries rolled up into per-day summaries, then removed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import aiosqlite
import anyio
from anyio.abc import TaskStatus

from tokenpool._errors import LedgerError
from tokenpool.ledger._schema import exact_sum

if TYPE_CHECKING:
    from tokenpool.ledger._ledger import Ledger

logger = logging.getLogger(__name__)

# Nanoseconds in a UTC day: summaries are kept per day of the entries' time.
DAY_NS = 86_400 * 1_000_000_000

# Entries rolled up per transaction: small enough that commits queued meanwhile
# wait well under the ledger timeout, large enough to catch up fast.
ROLL_UP_CHUNK = 20_000

# How often retention looks for entries that have grown old: hourly, so a
# day's entries leave within an hour of passing the period.
RETENTION_INTERVAL_SECONDS = 3600.0

_SUMS = ", ".join(
    exact_sum(column) for column in ("tokens", "charged", "refunded", "overrun")
)

# One summary row per UTC day, kind, budget, tenant and pool of the range.
_INSERT_SUMMARIES = f"""
INSERT INTO entry_rollups (
    first_id, through_id, day_wall_ns, kind, budget, tenant, pool, entries,
    tokens_high, tokens_low, charged_high, charged_low,
    refunded_high, refunded_low, overrun_high, overrun_low, rolled_wall_ns
)
SELECT :first, :through, at_wall_ns / {DAY_NS} * {DAY_NS}, kind, budget, tenant,
       pool, COUNT(*), {_SUMS}, :now
FROM entries WHERE id >= :first AND id <= :through
GROUP BY at_wall_ns / {DAY_NS}, kind, budget, tenant, pool
"""

_DELETE_ROLLED = "DELETE FROM entries WHERE id >= :first AND id <= :through"


@dataclass(frozen=True, slots=True)
class RollUp:
    """What one roll-up pass did: entries removed, summary rows written."""

    entries: int = 0
    summaries: int = 0
    through_id: int = 0
    """The last entry id any summary covers (0: none yet)."""


async def roll_up_chunk(
    conn: aiosqlite.Connection, before_wall_ns: int, now_wall_ns: int
) -> RollUp:
    """Rolls up the next run of old entries, in the caller's transaction.

    The run starts after the last entry already rolled up and stops before
    the first entry at or after `before_wall_ns` (entries are rolled up in
    id order, so a clock that went back never leaves a hole), or after
    ROLL_UP_CHUNK ids. Returns an empty RollUp when nothing is old enough.
    """
    rows = list(
        await conn.execute_fetchall(
            "SELECT COALESCE(MAX(through_id), 0) FROM entry_rollups"
        )
    )
    done = int(rows[0][0])
    rows = list(
        await conn.execute_fetchall("SELECT MIN(id) FROM entries WHERE id > ?", (done,))
    )
    if rows[0][0] is None:
        return RollUp(through_id=done)
    first = int(rows[0][0])

    # The first entry of the chunk that is still young ends the run.
    last = first + ROLL_UP_CHUNK - 1
    rows = list(
        await conn.execute_fetchall(
            "SELECT MIN(id), (SELECT MAX(id) FROM entries) FROM entries "
            "WHERE id >= ? AND id <= ? AND at_wall_ns >= ?",
            (first, last, before_wall_ns),
        )
    )
    young, newest = rows[0]
    through = min(last, int(newest)) if young is None else int(young) - 1
    if through < first:
        return RollUp(through_id=done)

    span = {"first": first, "through": through, "now": now_wall_ns}
    cursor = await conn.execute(_INSERT_SUMMARIES, span)
    summaries = cursor.rowcount
    cursor = await conn.execute(_DELETE_ROLLED, span)
    return RollUp(entries=cursor.rowcount, summaries=summaries, through_id=through)


async def run_retention(
    ledger: Ledger,
    *,
    retention_days: int,
    wall_ns: Callable[[], int],
    interval_seconds: float = RETENTION_INTERVAL_SECONDS,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Rolls up entries older than `retention_days`, at start and then periodically.

    A pass that fails (the database locked for long, say) is logged and
    tried again at the next interval: retention is housekeeping, and
    nothing acknowledged depends on it.
    """
    task_status.started()
    period_ns = retention_days * DAY_NS
    while True:
        now = wall_ns()
        try:
            done = await ledger.roll_up(before_wall_ns=now - period_ns, now_wall_ns=now)
        except LedgerError as exc:
            logger.warning("ledger roll-up failed, will retry error=%s", exc)
        else:
            if done.entries:
                logger.info(
                    "ledger entries rolled up entries=%d summaries=%d through_id=%d",
                    done.entries,
                    done.summaries,
                    done.through_id,
                )
        await anyio.sleep(interval_seconds)
