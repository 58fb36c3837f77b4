"""Budget commands: status, capacity, rebalance and pool states.

Everything that shows or changes a budget's capacity and its pools, with
the budget table they share; split out of `_admin` to keep one concept
per module.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import InvalidFieldError
from tokenpool.cli._app import _fail, app
from tokenpool.cli._connection import (
    _TABLE_JSON,
    FormatOption,
    Target,
    as_dict,
    connected,
    console,
    enum_name,
    output_format,
    print_json,
)
from tokenpool.core import MAX_TOKENS

pools_app = typer.Typer(
    help="Pause, drain or resume one pool of a budget.", no_args_is_help=True
)

_POOL_COLUMNS = (
    "pool", "state", "share %", "capacity", "available", "in flight", "debt",
    "waiting", "lent", "borrowed", "utilisation", "open",
)  # fmt: skip


def _budget_table(budget: pb.BudgetStatus) -> Table:
    table = Table(
        title=f"budget {escape(budget.name)}: {budget.capacity_tokens:,} tokens per "
        f"{budget.window_seconds} s, {budget.open_reservations} open"
    )
    for column in _POOL_COLUMNS:
        table.add_column(column, justify="left" if column == "pool" else "right")
    for pool in budget.pools:
        table.add_row(
            pool.name,
            enum_name(pb.PoolState.DESCRIPTOR, pool.state),
            str(pool.share_percent),
            f"{pool.capacity_tokens:,}",
            f"{pool.available_tokens:,}",
            f"{pool.in_flight_tokens:,}",
            f"{pool.debt_tokens:,}",
            str(pool.waiting),
            f"{pool.lent_tokens:,}",
            f"{pool.borrowed_tokens:,}",
            f"{pool.utilization:.0%}",
            str(pool.open_reservations),
        )
    return table


def _budgets(target: Target, budget: str | None) -> list[pb.BudgetStatus]:
    with target.api() as call:
        if budget:
            return [call("GetBudget", pb.GetBudgetRequest(budget=budget))]
        return list(call("ListBudgets", pb.ListBudgetsRequest()).budgets)


@app.command()
@connected
def status(
    target: Target,
    budget: Annotated[
        str | None, typer.Option(help="Only this budget; all when omitted.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until interrupted.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    output: FormatOption = "table",
) -> None:
    """Show budgets and pools: capacity, available, in flight, debt, waiting, loans.

    With --watch the view is redrawn in place on a terminal, and printed
    again and again when piped; with --format json as well, each snapshot
    is one line of JSON: {"at": UTC time, "budgets": [...]}.
    """
    chosen = output_format(output, _TABLE_JSON)
    if chosen == "json" and watch:
        _watch_json(target, budget, interval)
        return
    if chosen == "json":
        print_json([as_dict(b) for b in _budgets(target, budget)])
        return
    screen = console()
    if not watch:
        for found in _budgets(target, budget):
            screen.print(_budget_table(found))
        return

    def view() -> Group:
        stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
        tables = [_budget_table(found) for found in _budgets(target, budget)]
        return Group(f"{target.address} at {stamp} (Ctrl-C stops)", *tables)

    try:
        if not screen.is_terminal:
            # Piped (to a log, say): one snapshot after another.
            while True:
                screen.print(view())
                screen.file.flush()
                time.sleep(interval)
        with Live(view(), console=screen, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        return


def _watch_json(target: Target, budget: str | None, interval: float) -> None:
    """Prints a JSON line per snapshot, every `interval` seconds, until Ctrl-C."""
    try:
        while True:
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            snapshot = {
                "at": at.replace("+00:00", "Z"),
                "budgets": [as_dict(b) for b in _budgets(target, budget)],
            }
            typer.echo(json.dumps(snapshot, separators=(",", ":")))
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return


# Lets a negative number through as an argument, so the daemon's range check
# answers it instead of "No such option: -5".
_NEGATIVE_ARGUMENTS = {"ignore_unknown_options": True}


@app.command(context_settings=_NEGATIVE_ARGUMENTS)
@connected
def capacity(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    tokens: Annotated[
        int, typer.Argument(help=f"Capacity per window, in tokens (0 to {MAX_TOKENS}).")
    ],
    output: FormatOption = "table",
) -> None:
    """Set a budget's capacity; pool levels move by the change (debt if short)."""
    chosen = output_format(output, _TABLE_JSON)
    try:
        request = pb.SetCapacityRequest(budget=budget, capacity_tokens=tokens)
    except ValueError:
        # Past 64 bits: no request can carry it, so the daemon never sees it.
        reason = f"{tokens} is outside 0 to {MAX_TOKENS}; give a count in that range"
        raise _fail(InvalidFieldError("capacity_tokens", reason)) from None
    with target.admin() as call:
        found = call("SetCapacity", request)
    _show_budget(found, chosen)


def _show_budget(found: pb.BudgetStatus, chosen: str) -> None:
    if chosen == "json":
        print_json(as_dict(found))
    else:
        console().print(_budget_table(found))


def _shares(values: Sequence[str]) -> dict[str, int]:
    shares: dict[str, int] = {}
    for value in values:
        pool, _, percent = value.partition("=")
        if not pool or not percent.strip().isdigit():
            raise typer.BadParameter(
                f"{value!r} is not pool=percent, e.g. basic=60", param_hint="SHARES"
            )
        shares[pool.strip()] = int(percent)
    return shares


@app.command()
@connected
def rebalance(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    shares: Annotated[
        list[str],
        typer.Argument(
            help="pool=percent, e.g. basic=60 burst=18; others keep theirs."
        ),
    ],
    output: FormatOption = "table",
) -> None:
    """Change how a budget's capacity splits into pools (the result sums to 100)."""
    chosen = output_format(output, _TABLE_JSON)
    request = pb.RebalanceRequest(budget=budget, shares=_shares(shares))
    with target.admin() as call:
        found = call("Rebalance", request)
    _show_budget(found, chosen)


# Pool states.

_PoolArgument = Annotated[str, typer.Argument(help="basic, priority or burst.")]


def _set_pool_state(
    target: Target,
    budget: str,
    pool: str,
    state: pb.PoolState,
    output: str,
) -> None:
    chosen = output_format(output, _TABLE_JSON)
    request = pb.SetPoolStateRequest(budget=budget, pool=pool, state=state)
    with target.admin() as call:
        found = call("SetPoolState", request)
    _show_budget(found, chosen)


@pools_app.command("pause")
@connected
def pools_pause(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    pool: _PoolArgument,
    output: FormatOption = "table",
) -> None:
    """Pause a pool: it grants and lends nothing new; its requests wait.

    Open reservations stay open: they settle, release and expire as usual.
    """
    _set_pool_state(target, budget, pool, pb.POOL_STATE_PAUSED, output)


@pools_app.command("drain")
@connected
def pools_drain(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    pool: _PoolArgument,
    output: FormatOption = "table",
) -> None:
    """Drain a pool: paused, and its waiting and new requests refused at once.

    `status` shows how many open reservations the pool still has to finish.
    """
    _set_pool_state(target, budget, pool, pb.POOL_STATE_DRAINING, output)


@pools_app.command("resume")
@connected
def pools_resume(
    target: Target,
    budget: Annotated[str, typer.Argument(help="The budget.")],
    pool: _PoolArgument,
    output: FormatOption = "table",
) -> None:
    """Resume a paused or draining pool: it grants and serves its queue again."""
    _set_pool_state(target, budget, pool, pb.POOL_STATE_ACTIVE, output)
