"""Usage reports from the ledger: sums per tenant, budget, pool, label and period.

A report reads the reservations table (one row per reservation, with its
hold, what it used and was charged, its cost, its wait, what a cache saved
and what shadow mode would have refused) and the per-minute refusal counts.
Reservations count in the period they were granted in (SPEC 12.4); grants
undone because their caller left are not counted.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import anyio

from tokenpool._errors import InvalidFieldError, LedgerError
from tokenpool.ledger._records import EntryKind, ReservationRow
from tokenpool.ledger._schema import (
    RESERVATION_COLUMNS,
    TOTALS_KEYS,
    TOTALS_SQL,
    exact_sum,
    joined_sum,
    reservation_from_row,
)

# Dimensions a report may group by, and the column each reads.
_COLUMNS = {
    "budget": "budget",
    "tenant": "tenant",
    "team": "team",
    "pool": "pool",
    "model": "model",
    "task_type": "task_type",
}

# Periods a report may group by: the strftime format of each (UTC).
PERIODS = {"hour": "%Y-%m-%dT%H:00Z", "day": "%Y-%m-%d", "month": "%Y-%m"}

# Label keys a report may group by: plain names, so they fit a JSON path.
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Dimensions the refusal counts carry (they are per budget, tenant, minute).
_REFUSAL_DIMENSIONS = frozenset({"budget", "tenant", "period"})

# Figures of each group, in the order rows carry them: (name, SQL, whether
# it is a token or money sum, which could pass 64 bits and is summed in
# exact halves, `exact_sum`).
_FIGURE_SQL = (
    ("reservations", "COUNT(*)", False),
    ("tokens_reserved", "requested", True),
    ("tokens_used", "used", True),
    ("tokens_charged", "charged", True),
    ("tokens_refunded", "refunded", True),
    ("tokens_overrun", "overrun", True),
    ("cost_micros", "CASE WHEN state != 'open' THEN cost_micros ELSE 0 END", True),
    ("open", "SUM(state = 'open')", False),
    ("settled", "SUM(state = 'settled')", False),
    ("released", "SUM(state = 'released')", False),
    ("expired", "SUM(state = 'expired')", False),
    ("overruns", "SUM(overrun > 0)", False),
    ("waited", "SUM(waited_ms > 0)", False),
    ("wait_ms_total", "waited_ms", True),
    ("wait_ms_max", "MAX(waited_ms)", False),
    ("cache_hits", "SUM(response_cache_hit)", False),
    ("saved_tokens", "saved_tokens", True),
    ("saved_micros", "saved_micros", True),
    (
        "estimate_used",
        "CASE WHEN state = 'settled' AND response_cache_hit = 0 THEN used ELSE 0 END",
        True,
    ),
    (
        "estimate_held",
        "CASE WHEN state = 'settled' AND response_cache_hit = 0 THEN hold ELSE 0 END",
        True,
    ),
    ("estimate_settles", "SUM(state = 'settled' AND response_cache_hit = 0)", False),
    ("shadow_refusals", "SUM(shadow != '')", False),
)

FIGURES = tuple(name for name, _, _ in _FIGURE_SQL)

_SUMS = ", ".join(exact_sum(sql) if exact else sql for _, sql, exact in _FIGURE_SQL)


def _figures(values: Sequence[Any]) -> list[int]:
    """A row's figures from its selected values, exact halves joined."""
    figures = []
    at = 0
    for _, _, exact in _FIGURE_SQL:
        if exact:
            figures.append(joined_sum(values[at], values[at + 1]))
            at += 2
        else:
            figures.append(int(values[at] or 0))
            at += 1
    return figures


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What a report sums, how it groups, and which reservations it reads."""

    group_by: tuple[str, ...] = ("budget", "tenant")
    """Dimensions: budget, tenant, team, pool, model, task_type, label:<key>."""
    period: str = ""
    """hour, day or month (UTC) to group by time too; "" for none."""
    budget: str = ""
    tenant: str = ""
    since_wall_ns: int | None = None
    """Grants at or after this wall time only."""
    until_wall_ns: int | None = None
    """Grants before this wall time only."""


@dataclass(slots=True)
class ReportRow:
    """One group's keys and figures."""

    keys: dict[str, str]
    figures: dict[str, int] = field(default_factory=dict)
    refusals: int | None = 0
    """Refusals of the group; None when the grouping cannot tell them apart."""


def _dimension(name: str) -> tuple[str, str]:
    """The (key, SQL expression) of one group-by dimension.

    Raises:
        InvalidFieldError: the dimension is not one a report knows.
    """
    if name in _COLUMNS:
        return name, _COLUMNS[name]
    if name.startswith("label:"):
        key = name.removeprefix("label:")
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidFieldError(
                "group_by",
                f"label key {key[:64]!r} must be 1 to 64 letters, digits, '_', "
                "'.' or '-'",
            )
        return name, f"COALESCE(json_extract(labels, '$.\"{key}\"'), '')"
    known = ", ".join([*_COLUMNS, "label:<key>"])
    raise InvalidFieldError("group_by", f"{name[:64]!r} is not one of {known}")


def _period_sql(period: str, column: str) -> str:
    if period not in PERIODS:
        raise InvalidFieldError(
            "period", f"{period[:32]!r} is not one of hour, day, month or empty"
        )
    return f"strftime('{PERIODS[period]}', {column} / 1000000000, 'unixepoch')"


async def usage_report(
    conn: aiosqlite.Connection, query: ReportQuery
) -> list[ReportRow]:
    """Sums per group, ordered by the group's keys.

    Raises:
        InvalidFieldError: a dimension or period is not known, or repeated.
    """
    if len(set(query.group_by)) != len(query.group_by):
        raise InvalidFieldError("group_by", "names a dimension twice")
    dimensions = [_dimension(name) for name in query.group_by]
    if query.period:
        dimensions.append(("period", _period_sql(query.period, "created_wall_ns")))

    where, params = _filters(query, "created_wall_ns")
    select = ", ".join(expr for _, expr in dimensions)
    sql = (
        f"SELECT {select + ', ' if select else ''}{_SUMS} FROM reservations "
        f"WHERE state != 'undone'{where}"
    )
    if dimensions:
        positions = ", ".join(str(i + 1) for i in range(len(dimensions)))
        sql += f" GROUP BY {positions} ORDER BY {positions}"
    rows: dict[tuple[str, ...], ReportRow] = {}
    for row in await conn.execute_fetchall(sql, params):
        keys = tuple(
            "" if value is None else str(value) for value in row[: len(dimensions)]
        )
        figures = _figures(row[len(dimensions) :])
        if not dimensions and figures[0] == 0:
            figures = [0] * len(FIGURES)
        rows[keys] = ReportRow(
            dict(zip((name for name, _ in dimensions), keys, strict=True)),
            dict(zip(FIGURES, figures, strict=True)),
        )

    names = {name for name, _ in dimensions}
    if names <= _REFUSAL_DIMENSIONS:
        await _add_refusals(conn, query, dimensions, rows)
    else:
        for report_row in rows.values():
            report_row.refusals = None
    return [rows[key] for key in sorted(rows)]


def _filters(query: ReportQuery, time_column: str) -> tuple[str, dict[str, object]]:
    where = ""
    params: dict[str, object] = {}
    if query.budget:
        where += " AND budget = :budget"
        params["budget"] = query.budget
    if query.tenant:
        where += " AND tenant = :tenant"
        params["tenant"] = query.tenant
    if query.since_wall_ns is not None:
        where += f" AND {time_column} >= :since"
        params["since"] = query.since_wall_ns
    if query.until_wall_ns is not None:
        where += f" AND {time_column} < :until"
        params["until"] = query.until_wall_ns
    return where, params


async def _add_refusals(
    conn: aiosqlite.Connection,
    query: ReportQuery,
    dimensions: Sequence[tuple[str, str]],
    rows: dict[tuple[str, ...], ReportRow],
) -> None:
    """Adds each group's refusal count; groups with only refusals appear too."""
    minute_ns = "(minute * 60000000000)"
    expressions = []
    for name, _ in dimensions:
        if name == "period":
            expressions.append(_period_sql(query.period, minute_ns))
        else:
            expressions.append(name)
    where, params = _filters(query, minute_ns)
    select = ", ".join(expressions)
    sql = (
        f"SELECT {select + ', ' if select else ''}SUM(count) FROM refusals "
        f"WHERE 1{where}"
    )
    if expressions:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(expressions)))
    for row in await conn.execute_fetchall(sql, params):
        keys = tuple("" if value is None else str(value) for value in row[:-1])
        count = int(row[-1] or 0)
        if count == 0:
            continue
        found = rows.get(keys)
        if found is None:
            found = rows[keys] = ReportRow(
                dict(zip((name for name, _ in dimensions), keys, strict=True)),
                dict.fromkeys(FIGURES, 0),
            )
        found.refusals = count


async def replay_rows(
    conn: aiosqlite.Connection,
    *,
    since_wall_ns: int,
    until_wall_ns: int,
    budget: str = "",
) -> list[tuple[ReservationRow, Mapping[str, Any], Mapping[str, Any]]]:
    """Reservations granted in a period, with their reserve and end details.

    Each item is the reservation's row, the detail of its reserve entry and
    the detail of the settle or release that ended it ({} if none), oldest
    grant first: what a replay of the ledger's own traffic needs.
    """
    where = "WHERE created_wall_ns >= ? AND created_wall_ns < ? AND state != ?"
    params: list[object] = [since_wall_ns, until_wall_ns, "undone"]
    if budget:
        where += " AND budget = ?"
        params.append(budget)
    sql = (
        f"SELECT {', '.join(RESERVATION_COLUMNS)}, "
        "(SELECT detail FROM entries e WHERE e.reservation_id = "
        "reservations.reservation_id AND e.kind = 'reserve' LIMIT 1), "
        "(SELECT detail FROM entries e WHERE e.reservation_id = "
        "reservations.reservation_id AND e.kind IN ('settle', 'release') "
        f"LIMIT 1) FROM reservations {where} "
        "ORDER BY created_wall_ns, reservation_id"
    )
    width = len(RESERVATION_COLUMNS)
    found = []
    for row in await conn.execute_fetchall(sql, params):
        values = tuple(row)
        found.append(
            (
                reservation_from_row(values[:width]),
                json.loads(values[width] or "{}"),
                json.loads(values[width + 1] or "{}"),
            )
        )
    return found


async def read_replay_rows(
    path: str, *, since_wall_ns: int, until_wall_ns: int, budget: str = ""
) -> list[tuple[ReservationRow, Mapping[str, Any], Mapping[str, Any]]]:
    """`replay_rows` of a ledger file, read through a read-only connection.

    It takes no lock, so a daemon may be writing the file meanwhile (WAL
    readers see a consistent snapshot).

    Raises:
        LedgerError: the file cannot be read as a tokenpool ledger.
    """
    uri = (await anyio.Path(path).absolute()).as_uri() + "?mode=ro"
    try:
        async with aiosqlite.connect(uri, uri=True) as conn:
            return await replay_rows(
                conn,
                since_wall_ns=since_wall_ns,
                until_wall_ns=until_wall_ns,
                budget=budget,
            )
    except sqlite3.Error as exc:
        raise LedgerError(
            f"Cannot read ledger {path!r} ({exc}); name a tokenpool ledger file."
        ) from exc


async def entry_totals(
    conn: aiosqlite.Connection, budget: str | None
) -> list[dict[str, object]]:
    """Usage and refusals per budget and tenant from entries and roll-ups."""
    budget_filter = "" if budget is None else "AND budget = :budget"
    params = {"reserve": str(EntryKind.RESERVE), "budget": budget}
    rows = await conn.execute_fetchall(
        TOTALS_SQL.format(budget_filter=budget_filter), params
    )

    totals = []
    for budget_name, tenant, reservations, *halves, refusals in rows:
        # Token figures come as (high, low) half sums: see exact_sum.
        pairs = zip(halves[0::2], halves[1::2], strict=True)
        sums = [joined_sum(high, low) for high, low in pairs]
        values = (budget_name, tenant, reservations, *sums, refusals)
        totals.append(dict(zip(TOTALS_KEYS, values, strict=True)))
    return totals
