"""Autoscaler commands: a budget's autoscaler status, mode and decisions.

The autoscaler's own view and switch, and its decisions read back from
the ledger; split out of `_admin` to keep one concept per module.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.cli._connection import (
    _TABLE_JSON,
    FormatOption,
    Target,
    _when,
    as_dict,
    connected,
    console,
    output_format,
    print_json,
)

autoscale_app = typer.Typer(
    help="A budget's autoscaler: status, mode, decisions.", no_args_is_help=True
)


def _autoscale_rows(found: pb.AutoscaleStatus) -> list[tuple[str, str]]:
    rows = [
        ("mode", found.mode if found.enabled else "off"),
        ("capacity", f"{found.capacity_tokens:,}"),
        ("bounds", f"{found.min_capacity_tokens:,} .. {found.max_capacity_tokens:,}"),
        ("interval", f"{found.interval_seconds} s ({found.readings:,} read)"),
        ("last utilisation", f"{found.utilization:.0%}"),
        ("last p95 wait", f"{found.wait_p95_ms:,} ms"),
        ("waiting / refused", f"{found.waiting:,} / {found.refusals:,}"),
    ]
    if found.restore_to_tokens:
        rows.append(("provider cut, back to", f"{found.restore_to_tokens:,}"))
    return rows


def _show_autoscale(found: pb.AutoscaleStatus, chosen: str) -> None:
    if chosen == "json":
        print_json(as_dict(found))
        return
    table = Table(
        title=f"autoscaler of budget {escape(found.budget)}", show_header=False
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in _autoscale_rows(found):
        table.add_row(name, value)
    console().print(table)


@autoscale_app.command("status")
@connected
def autoscale_status(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    output: FormatOption = "table",
) -> None:
    """The autoscaler's mode, bounds and last interval's reading."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        found = call("GetAutoscale", pb.GetAutoscaleRequest(budget=budget))
    _show_autoscale(found, chosen)


@autoscale_app.command("set")
@connected
def autoscale_set(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    mode: Annotated[str, typer.Argument(help="off, act or recommend.")],
    output: FormatOption = "table",
) -> None:
    """Turn a budget's autoscaler off, on (act), or to recommend-only."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        found = call("SetAutoscale", pb.SetAutoscaleRequest(budget=budget, mode=mode))
    _show_autoscale(found, chosen)


def _decisions(target: Target, budget: str | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    with target.admin() as call:
        while True:
            page = call(
                "ListEntries",
                pb.ListEntriesRequest(after_id=after, kinds=["autoscale"], limit=1000),
            )
            for entry in page.entries:
                if budget and entry.budget != budget:
                    continue
                found.append(
                    {
                        "at": _when(entry.at),
                        "budget": entry.budget,
                        "actor": entry.actor,
                    }
                    | json.loads(entry.detail_json)
                )
            after = page.last_id
            if not page.more:
                return found


@autoscale_app.command("history")
@connected
def autoscale_history(
    target: Target,
    budget: Annotated[str | None, typer.Option(help="Only this budget's.")] = None,
    output: FormatOption = "table",
) -> None:
    """Every autoscaler decision in the ledger: when, what, capacity, and why."""
    chosen = output_format(output, _TABLE_JSON)
    found = _decisions(target, budget)
    if chosen == "json":
        print_json(found)
        return
    table = Table(title=f"autoscaler decisions ({len(found)})")
    for column in ("time", "budget", "action", "capacity", "reason"):
        table.add_column(column)
    for decision in found:
        capacity = "-"
        if "capacity_to" in decision:
            capacity = f"{decision['capacity_from']:,} -> {decision['capacity_to']:,}"
        if decision.get("action") == "shift" and "shares_to" in decision:
            shares = decision["shares_to"]
            capacity = "shares " + "/".join(
                str(shares[pool]) for pool in ("basic", "priority", "burst")
            )
        action = str(decision.get("action", ""))
        if decision.get("applied") is False:
            action += " (recommended)"
        reason = decision.get("reason") or f"mode {decision.get('mode', '')}"
        table.add_row(
            decision["at"],
            escape(decision["budget"]),
            action,
            capacity,
            escape(str(reason)),
        )
    console().print(table)
