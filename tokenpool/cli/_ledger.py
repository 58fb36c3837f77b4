"""Ledger commands over gRPC: usage reports, streaming export, online backup."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.markup import escape
from rich.table import Table
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.cli._app import _fail, _stderr, app
from tokenpool.cli._connection import (
    Target,
    as_dict,
    connected,
    console,
    output_format,
    print_json,
)
from tokenpool.replay import parse_timestamp

ledger_app = typer.Typer(help="Export or back up the ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

# Entries fetched per page by `ledger export`: memory stays flat at any size.
_PAGE = 5000

# Columns of `ledger export --format csv`, in order.
_ENTRY_COLUMNS = (
    "id", "at", "kind", "budget", "tenant", "reservation_id", "pool", "tokens",
    "charged", "refunded", "overrun", "actor", "detail",
)  # fmt: skip

# Report columns: (heading, how a row gives it), for the table and CSV.
_FIGURES = (
    ("reservations", "reservations"),
    ("tokens_reserved", "tokens_reserved"),
    ("tokens_used", "tokens_used"),
    ("tokens_charged", "tokens_charged"),
    ("cost_usd", "cost_micros"),
    ("refusals", "refusals"),
    ("waited", "waited"),
    ("wait_ms_avg", "wait_ms_total"),
    ("wait_ms_max", "wait_ms_max"),
    ("overruns", "overruns"),
    ("overrun_tokens", "tokens_overrun"),
    ("cache_hits", "cache_hits"),
    ("saved_tokens", "saved_tokens"),
    ("saved_usd", "saved_micros"),
    ("estimate_ratio", "estimate_used"),
    ("shadow_refusals", "shadow_refusals"),
)


# The figures a report table shows, and their headings.
_TABLE_FIGURES = {
    "reservations": "grants",
    "tokens_used": "used",
    "tokens_charged": "charged",
    "cost_usd": "cost $",
    "refusals": "refused",
    "waited": "waited",
    "wait_ms_avg": "wait ms",
    "overruns": "overruns",
    "saved_tokens": "cache saved",
    "saved_usd": "saved $",
    "estimate_ratio": "used/held",
    "shadow_refusals": "shadow",
}

# Figures the table leaves out while every row has them at zero.
_SOMETIMES = frozenset({"cost_usd", "saved_tokens", "saved_usd", "shadow_refusals"})


def _timestamp(value: str | None, hint: str) -> Timestamp | None:
    if value is None:
        return None
    try:
        wall_ns = parse_timestamp(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    stamp = Timestamp()
    stamp.FromNanoseconds(wall_ns)
    return stamp


def _figures(row: pb.ReportRow) -> dict[str, Any]:
    """A report row's figures, with averages and money in readable units."""
    figures: dict[str, Any] = {}
    for name, field in _FIGURES:
        value = getattr(row, field)
        if name == "wait_ms_avg":
            value = round(row.wait_ms_total / row.waited, 1) if row.waited else 0
        elif name.endswith("_usd"):
            value = round(value / 1_000_000, 6)
        elif name == "estimate_ratio":
            held = row.estimate_held
            value = round(row.estimate_used / held, 3) if held else None
        elif name == "refusals" and not row.refusals_known:
            value = None
        figures[name] = value
    return figures


@app.command()
@connected
def report(
    target: Target,
    by: Annotated[
        str,
        typer.Option(
            help="Group by, comma-separated: budget, tenant, team, pool, model, "
            "task_type, label:<key>; empty for one total row."
        ),
    ] = "budget,tenant",
    period: Annotated[
        str, typer.Option(help="Also group by hour, day or month (UTC); '' for none.")
    ] = "",
    since: Annotated[
        str | None, typer.Option(help="Grants at or after this UTC time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Grants before this UTC time.")
    ] = None,
    budget: Annotated[str | None, typer.Option(help="Only this budget.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help="table, csv or json.")
    ] = "table",
) -> None:
    """Usage, cost, refusals, waits, overruns, cache savings and estimate accuracy.

    Summed from the ledger's reservations, per group of the dimensions in
    --by, per UTC period with --period. A reservation counts in the period
    it was granted in. Refusals are counted per budget, tenant and minute,
    so they show only when grouping by those (and period).
    """
    chosen = output_format(output, ("table", "csv", "json"))
    group_by = [part.strip() for part in by.split(",") if part.strip()]
    request = pb.ReportRequest(
        # A total is asked for per budget, then summed here.
        group_by=group_by or ["budget"],
        period=period,
        budget=budget or "",
        tenant=tenant or "",
    )
    for name, value in (("since", since), ("until", until)):
        stamp = _timestamp(value, f"--{name}")
        if stamp is not None:
            getattr(request, name).CopyFrom(stamp)
    with target.admin() as call:
        found = list(call("Report", request).rows)
    keys = [*group_by, *(["period"] if period else [])]
    if not group_by:
        found = _summed(found, period)
    rows = [
        ({key: row.keys.get(key, "") for key in keys}, _figures(row)) for row in found
    ]
    _print_report(rows, keys, chosen)


def _summed(rows: Sequence[pb.ReportRow], period: str) -> list[pb.ReportRow]:
    """Rows of every budget added up, one per period (or one in all)."""
    totals: dict[str, pb.ReportRow] = {}
    for row in rows:
        key = row.keys.get("period", "") if period else ""
        total = totals.setdefault(key, pb.ReportRow(refusals_known=True))
        if period:
            total.keys["period"] = key
        for field in pb.ReportRow.DESCRIPTOR.fields:
            if field.type == field.TYPE_INT64:
                setattr(
                    total,
                    field.name,
                    getattr(total, field.name) + getattr(row, field.name),
                )
        total.wait_ms_max = max(total.wait_ms_max, row.wait_ms_max)
        total.refusals_known = total.refusals_known and row.refusals_known
    return [totals[key] for key in sorted(totals)]


def _print_report(
    rows: Sequence[tuple[Mapping[str, str], Mapping[str, Any]]],
    keys: Sequence[str],
    chosen: str,
) -> None:
    if chosen == "json":
        print_json([{"keys": dict(k), **dict(f)} for k, f in rows])
        return
    headings = [*keys, *(name for name, _ in _FIGURES)]
    if chosen == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headings)
        for group, figures in rows:
            writer.writerow(
                [
                    *(group[k] for k in keys),
                    *("" if v is None else v for v in figures.values()),
                ]
            )
        return
    table = Table(
        title=f"usage report ({len(rows)} row{'' if len(rows) == 1 else 's'})"
    )
    for key in keys:
        table.add_column(key)
    # The table keeps to the figures that fit 140 columns, and shows the
    # rarer ones only when some row has them; CSV and JSON carry them all.
    shown = [
        name
        for name in _TABLE_FIGURES
        if name not in _SOMETIMES or any(figures[name] for _, figures in rows)
    ]
    for name in shown:
        table.add_column(_TABLE_FIGURES[name], justify="right")
    for group, figures in rows:
        table.add_row(
            *(escape(group[k]) or "-" for k in keys),
            *(_cell(name, figures[name]) for name in shown),
        )
    console().print(table)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_usd"):
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.3f}" if name == "estimate_ratio" else f"{value:,.1f}"
    return f"{value:,}"


@contextmanager
def _destination(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        stream = path.open("x", encoding="utf-8", newline="")
    except FileExistsError:
        raise _fail(
            FileExistsError(f"{str(path)!r} exists already; name a new file")
        ) from None
    except OSError as exc:
        # A missing folder, no permission: say so in one line, not a traceback.
        raise _fail(
            type(exc)(
                f"Cannot create {str(path)!r}: {exc.strerror or exc}; name a new "
                "file in a folder that exists and is writable"
            )
        ) from None
    with stream:
        yield stream


def _iso(stamp: Timestamp) -> str:
    at = datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, UTC)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


@ledger_app.command("export")
@connected
def ledger_export(
    target: Target,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="New file to write; stdout by default."),
    ] = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help="jsonl (one entry a line) or csv.")
    ] = "jsonl",
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only entries of this kind (repeatable)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Entries at or after this UTC time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Entries before this UTC time.")
    ] = None,
) -> None:
    """Stream the ledger's entries, page by page, at any size (CSV or JSON lines)."""
    chosen = output_format(output, ("jsonl", "csv"))
    request = pb.ListEntriesRequest(limit=_PAGE, kinds=kind or [])
    for name, value in (("since", since), ("until", until)):
        stamp = _timestamp(value, f"--{name}")
        if stamp is not None:
            getattr(request, name).CopyFrom(stamp)
    written = 0
    with target.admin() as call, _destination(output_file) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        if chosen == "csv":
            writer.writerow(_ENTRY_COLUMNS)
        while True:
            page = call("ListEntries", request)
            for entry in page.entries:
                row = as_dict(entry)
                row["at"] = _iso(entry.at)
                row["detail"] = json.loads(row.pop("detail_json") or "{}")
                if chosen == "csv":
                    row["detail"] = json.dumps(row["detail"], separators=(",", ":"))
                    writer.writerow([row.get(name, "") for name in _ENTRY_COLUMNS])
                else:
                    stream.write(json.dumps(row, separators=(",", ":")) + "\n")
                written += 1
            if not page.more:
                break
            request.after_id = page.last_id
    if output_file is not None:
        _stderr.print(f"{written:,} entries written to {output_file}")


@ledger_app.command("backup")
@connected
def ledger_backup(
    target: Target,
    path: Annotated[
        str,
        typer.Argument(
            help="New file on the daemon's machine (relative to its working folder)."
        ),
    ],
    output: Annotated[
        str, typer.Option("--format", "-f", help="table or json.")
    ] = "table",
) -> None:
    """Copy the ledger to a new file with SQLite's online backup, while serving."""
    chosen = output_format(output, ("table", "json"))
    with target.admin() as call:
        done = call("BackupLedger", pb.BackupLedgerRequest(path=path))
    if chosen == "json":
        print_json(as_dict(done))
        return
    typer.echo(f"ledger backed up to {done.path} ({done.bytes:,} bytes)")
