"""Tenant commands: tenants, teams and their API keys.

Who may call the daemon and within which caps; split out of `_admin` to
keep one concept per module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.cli._app import _stderr
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
