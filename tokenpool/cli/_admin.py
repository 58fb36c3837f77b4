"""Admin commands over gRPC: status, capacity, shares, pools, tenants, keys, reload."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import InvalidFieldError
from tokenpool.cli._app import _fail, _stderr, app
from tokenpool.cli._connection import (
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

tenants_app = typer.Typer(
    help="List, add, change and remove tenants.", no_args_is_help=True
)
teams_app = typer.Typer(
    help="List, add, change and remove teams.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Tenant API keys: create (shown once), rotate, revoke, list.",
    no_args_is_help=True,
)
reservations_app = typer.Typer(help="Open reservations.", no_args_is_help=True)
autoscale_app = typer.Typer(
    help="A budget's autoscaler: status, mode, decisions.", no_args_is_help=True
)
pools_app = typer.Typer(
    help="Pause, drain or resume one pool of a budget.", no_args_is_help=True
)
app.add_typer(tenants_app, name="tenants")
app.add_typer(teams_app, name="teams")
app.add_typer(keys_app, name="keys")
app.add_typer(reservations_app, name="reservations")
app.add_typer(autoscale_app, name="autoscale")
app.add_typer(pools_app, name="pools")

_TABLE_JSON = ("table", "json")

_POOL_COLUMNS = (
    "pool", "state", "share %", "capacity", "available", "in flight", "debt",
    "waiting", "lent", "borrowed", "utilisation", "open",
)  # fmt: skip


def _when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    at = datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


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


@app.command()
@connected
def reload(target: Target, output: FormatOption = "table") -> None:
    """Re-read the daemon's configuration file and apply it without losing state."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        done = call("ReloadConfig", pb.ReloadConfigRequest())
    if chosen == "json":
        print_json(as_dict(done))
        return
    changes = list(done.changes)
    # The message holds the changes, then notes such as sections that only
    # a restart applies; "no changes" alone when there is neither.
    notes = [
        line
        for line in done.message.splitlines()
        if line not in changes and line != "no changes"
    ]
    typer.echo("reloaded: " + ("changes:" if changes else "no changes"))
    for line in changes:
        typer.echo(f"  {line}")
    if notes:
        typer.echo("notes:")
    for line in notes:
        typer.echo(f"  {line}")


@app.command()
@connected
def health(
    target: Target,
    timeout_s: Annotated[
        float,
        typer.Option(
            "--timeout", help="Seconds to wait for the answer.", min=0.001, max=3600
        ),
    ] = 3.0,
) -> None:
    """Exit 0 when the daemon answers SERVING to a gRPC health check.

    Health checks need no credential; with TLS on the daemon give the TLS options
    (or their TOKENPOOL_TLS* variables), as for any other command.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with target.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            _stderr.print(f"[red]not serving:[/red] {exc.code().name}", soft_wrap=True)
            raise typer.Exit(code=1) from None
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    typer.echo("SERVING" if serving else "NOT_SERVING")
    raise typer.Exit(code=0 if serving else 1)


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


# Tenants and teams.

_CAP_OPTIONS = (
    "max_pool_percent",
    "max_in_flight_tokens",
    "daily_tokens",
    "monthly_tokens",
    "daily_cost_usd",
    "monthly_cost_usd",
)


def _caps_text(caps: pb.Caps) -> str:
    parts = [
        f"{name}={getattr(caps, name)}" for name in _CAP_OPTIONS if caps.HasField(name)
    ]
    if caps.alert_percent:
        parts.append("alerts=" + ",".join(str(p) for p in caps.alert_percent))
    return " ".join(parts) or "-"


def _caps(
    max_pool_percent: int | None,
    max_in_flight_tokens: int | None,
    daily_tokens: int | None,
    monthly_tokens: int | None,
    daily_cost_usd: str | None,
    monthly_cost_usd: str | None,
    alert_percent: list[int] | None,
) -> pb.Caps:
    caps = pb.Caps(alert_percent=alert_percent or [])
    values = {
        "max_pool_percent": max_pool_percent,
        "max_in_flight_tokens": max_in_flight_tokens,
        "daily_tokens": daily_tokens,
        "monthly_tokens": monthly_tokens,
        "daily_cost_usd": daily_cost_usd,
        "monthly_cost_usd": monthly_cost_usd,
    }
    for name, value in values.items():
        if value is not None:
            setattr(caps, name, value)
    return caps


MaxPool = Annotated[
    int | None, typer.Option(help="Largest share of one pool it may hold, percent.")
]
MaxInFlight = Annotated[
    int | None, typer.Option(help="Largest tokens it may hold at once, per budget.")
]
DailyTokens = Annotated[int | None, typer.Option(help="Tokens per calendar day.")]
MonthlyTokens = Annotated[int | None, typer.Option(help="Tokens per calendar month.")]
DailyCost = Annotated[str | None, typer.Option(help="Dollars per day, e.g. 12.50.")]
MonthlyCost = Annotated[str | None, typer.Option(help="Dollars per month.")]
Alerts = Annotated[
    list[int] | None,
    typer.Option("--alert-percent", help="Soft threshold in percent (repeatable)."),
]
Clear = Annotated[
    list[str] | None,
    typer.Option("--clear", help="Reset a field to no cap (repeatable), e.g. team."),
]


@tenants_app.command("list")
@connected
def tenants_list(target: Target, output: FormatOption = "table") -> None:
    """Every configured tenant: tier, weight, team, caps, and where it comes from."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        found = call("ListTenants", pb.ListTenantsRequest())
    if chosen == "json":
        print_json([as_dict(t) for t in found.tenants])
        return
    table = Table(title="tenants")
    for column in ("tenant", "tier", "weight", "team", "caps", "source"):
        table.add_column(column, justify="right" if column == "weight" else "left")
    for tenant in found.tenants:
        table.add_row(
            escape(tenant.name),
            tenant.tier,
            str(tenant.weight),
            escape(tenant.team) or "-",
            _caps_text(tenant.caps),
            tenant.source,
        )
    console().print(table)


@tenants_app.command("set")
@connected
def tenants_set(
    target: Target,
    name: Annotated[str, typer.Argument(help="The tenant.")],
    tier: Annotated[str | None, typer.Option(help="basic or priority.")] = None,
    weight: Annotated[int | None, typer.Option(min=1, help="Share weight.")] = None,
    team: Annotated[
        str | None, typer.Option(help="Team whose caps also apply.")
    ] = None,
    max_pool_percent: MaxPool = None,
    max_in_flight_tokens: MaxInFlight = None,
    daily_tokens: DailyTokens = None,
    monthly_tokens: MonthlyTokens = None,
    daily_cost_usd: DailyCost = None,
    monthly_cost_usd: MonthlyCost = None,
    alert_percent: Alerts = None,
    clear: Clear = None,
    output: FormatOption = "table",
) -> None:
    """Add a tenant or change it; options left out keep their current values."""
    chosen = output_format(output, _TABLE_JSON)
    request = pb.UpsertTenantRequest(
        name=name,
        tier=tier or "",
        weight=weight or 0,
        caps=_caps(
            max_pool_percent,
            max_in_flight_tokens,
            daily_tokens,
            monthly_tokens,
            daily_cost_usd,
            monthly_cost_usd,
            alert_percent,
        ),
        clear=clear or [],
    )
    if team is not None:
        request.team = team
    with target.admin() as call:
        found = call("UpsertTenant", request)
    if chosen == "json":
        print_json(as_dict(found))
        return
    typer.echo(
        f"tenant {found.name}: tier {found.tier}, weight {found.weight}, "
        f"team {found.team or '-'}"
    )


@tenants_app.command("remove")
@connected
def tenants_remove(
    target: Target,
    name: Annotated[str, typer.Argument(help="The tenant.")],
    output: FormatOption = "table",
) -> None:
    """Remove a configured tenant; its open reservations stay."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        done = call("RemoveTenant", pb.RemoveTenantRequest(name=name))
    _show_removed(name, done, chosen)


def _show_removed(name: str, done: pb.RemoveResponse, chosen: str) -> None:
    if chosen == "json":
        print_json({"name": name, **as_dict(done)})
        return
    typer.echo(done.message)


@teams_app.command("list")
@connected
def teams_list(target: Target, output: FormatOption = "table") -> None:
    """Every configured team: caps, members, and where it comes from."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        found = call("ListTeams", pb.ListTeamsRequest())
    if chosen == "json":
        print_json([as_dict(t) for t in found.teams])
        return
    table = Table(title="teams")
    for column in ("team", "members", "caps", "source"):
        table.add_column(column)
    for team in found.teams:
        table.add_row(
            escape(team.name),
            escape(", ".join(team.members)) or "-",
            _caps_text(team.caps),
            team.source,
        )
    console().print(table)


@teams_app.command("set")
@connected
def teams_set(
    target: Target,
    name: Annotated[str, typer.Argument(help="The team.")],
    max_pool_percent: MaxPool = None,
    max_in_flight_tokens: MaxInFlight = None,
    daily_tokens: DailyTokens = None,
    monthly_tokens: MonthlyTokens = None,
    daily_cost_usd: DailyCost = None,
    monthly_cost_usd: MonthlyCost = None,
    alert_percent: Alerts = None,
    clear: Clear = None,
    output: FormatOption = "table",
) -> None:
    """Add a team or change its caps; caps left out keep their current values."""
    chosen = output_format(output, _TABLE_JSON)
    request = pb.UpsertTeamRequest(
        name=name,
        caps=_caps(
            max_pool_percent,
            max_in_flight_tokens,
            daily_tokens,
            monthly_tokens,
            daily_cost_usd,
            monthly_cost_usd,
            alert_percent,
        ),
        clear=clear or [],
    )
    with target.admin() as call:
        found = call("UpsertTeam", request)
    if chosen == "json":
        print_json(as_dict(found))
        return
    typer.echo(f"team {found.name}: {_caps_text(found.caps)}")


@teams_app.command("remove")
@connected
def teams_remove(
    target: Target,
    name: Annotated[str, typer.Argument(help="The team.")],
    output: FormatOption = "table",
) -> None:
    """Remove a team that no configured tenant names."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        done = call("RemoveTeam", pb.RemoveTeamRequest(name=name))
    _show_removed(name, done, chosen)


# Keys.


def _keys_table(keys: Sequence[pb.KeyInfo], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "key id",
        "tenant",
        "label",
        "fingerprint",
        "source",
        "created",
        "state",
    ):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.key_id,
            escape(key.tenant),
            escape(key.label) or "-",
            key.fingerprint,
            key.source,
            _when(key.created_at),
            "active" if key.active else f"revoked {_when(key.revoked_at)}",
        )
    return table


def _show_created(created: pb.CreatedKey, chosen: str) -> None:
    if chosen == "json":
        print_json(as_dict(created))
        return
    # The key on stdout alone, so that `> file` keeps exactly the key.
    typer.echo(created.key)
    _stderr.print(
        f"key {created.info.key_id} for tenant {escape(created.info.tenant)} "
        f"(fingerprint {created.info.fingerprint}); it is shown this once and "
        "stored only hashed: keep it now.",
        soft_wrap=True,
    )
    if created.HasField("replaced"):
        state = "active" if created.replaced.active else "revoked"
        _stderr.print(f"replaced key {created.replaced.key_id}: {state}")


@keys_app.command("list")
@connected
def keys_list(
    target: Target,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    output: FormatOption = "table",
) -> None:
    """Every tenant key, from the file and made at run time (never the keys)."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        found = call("ListKeys", pb.ListKeysRequest(tenant=tenant or ""))
    if chosen == "json":
        print_json([as_dict(k) for k in found.keys])
        return
    console().print(_keys_table(found.keys, "tenant keys"))


@keys_app.command("create")
@connected
def keys_create(
    target: Target,
    tenant: Annotated[str, typer.Argument(help="The tenant the key identifies.")],
    label: Annotated[str, typer.Option(help="Which key this is, e.g. 2026-06.")] = "",
    output: FormatOption = "table",
) -> None:
    """Create a tenant API key; it is printed once and never again."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        created = call("CreateKey", pb.CreateKeyRequest(tenant=tenant, label=label))
    _show_created(created, chosen)


@keys_app.command("rotate")
@connected
def keys_rotate(
    target: Target,
    key_id: Annotated[str, typer.Argument(help="The key to replace.")],
    keep_old: Annotated[
        bool,
        typer.Option("--keep-old", help="Leave the old key valid until revoked."),
    ] = False,
    label: Annotated[str, typer.Option(help="Label of the new key.")] = "",
    output: FormatOption = "table",
) -> None:
    """Replace a key with a new one (printed once); the old one is revoked."""
    chosen = output_format(output, _TABLE_JSON)
    request = pb.RotateKeyRequest(key_id=key_id, keep_old=keep_old, label=label)
    with target.admin() as call:
        created = call("RotateKey", request)
    _show_created(created, chosen)


@keys_app.command("revoke")
@connected
def keys_revoke(
    target: Target,
    key_id: Annotated[str, typer.Argument(help="The key to revoke.")],
    output: FormatOption = "table",
) -> None:
    """Revoke a key at once; calls made with it are refused from now on."""
    chosen = output_format(output, _TABLE_JSON)
    with target.admin() as call:
        found = call("RevokeKey", pb.RevokeKeyRequest(key_id=key_id))
    if chosen == "json":
        print_json(as_dict(found))
        return
    typer.echo(f"key {found.key_id} of tenant {found.tenant} revoked")


# Reservations.


@reservations_app.command("list")
@connected
def reservations_list(
    target: Target,
    budget: Annotated[str | None, typer.Option(help="Only this budget's.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most.")] = 100,
    output: FormatOption = "table",
) -> None:
    """Open reservations, newest first."""
    chosen = output_format(output, _TABLE_JSON)
    request = pb.ListReservationsRequest(
        budget=budget or "", tenant=tenant or "", limit=limit
    )
    with target.admin() as call:
        found = call("ListReservations", request)
    if chosen == "json":
        print_json([as_dict(r) for r in found.reservations])
        return
    table = Table(title=f"open reservations ({len(found.reservations)})")
    for column in (
        "reservation",
        "budget",
        "tenant",
        "pool",
        "tokens",
        "sources",
        "lease ends",
    ):
        table.add_column(column, justify="right" if column == "tokens" else "left")
    for row in found.reservations:
        table.add_row(
            row.reservation_id,
            escape(row.budget),
            escape(row.tenant),
            row.pool,
            f"{row.granted_tokens:,}",
            " ".join(f"{s.pool}:{s.tokens:,}" for s in row.sources),
            _when(row.lease_expires_at),
        )
    console().print(table)


@reservations_app.command("release")
@connected
def reservations_release(
    target: Target,
    reservation_id: Annotated[str, typer.Argument(help="The reservation.")],
    billed: Annotated[
        int, typer.Option(min=0, help="Input tokens the provider already billed.")
    ] = 0,
    output: FormatOption = "table",
) -> None:
    """Release any tenant's reservation: its tokens go back (billed input charged)."""
    chosen = output_format(output, _TABLE_JSON)
    request = pb.ReleaseReservationRequest(
        reservation_id=reservation_id, billed_input_tokens=billed
    )
    with target.admin() as call:
        done = call("ReleaseReservation", request)
    if chosen == "json":
        print_json(as_dict(done))
        return
    typer.echo(
        f"released {reservation_id}: {done.refunded_tokens:,} tokens back, "
        f"{done.charged_tokens:,} charged"
    )


# The autoscaler.


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
