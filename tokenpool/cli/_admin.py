"""Admin commands over gRPC: reload, health and reservations; groups register.

The command groups live in modules of their own (`_budgets`, `_tenants`,
`_autoscale`); importing them here registers their commands, and the
`add_typer` calls below keep the order `tokenpool --help` lists them in.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.cli._app import _stderr, app
from tokenpool.cli._autoscale import autoscale_app
from tokenpool.cli._budgets import pools_app
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
from tokenpool.cli._tenants import keys_app, teams_app, tenants_app

reservations_app = typer.Typer(help="Open reservations.", no_args_is_help=True)

# In the order `tokenpool --help` has always listed them.
app.add_typer(tenants_app, name="tenants")
app.add_typer(teams_app, name="teams")
app.add_typer(keys_app, name="keys")
app.add_typer(reservations_app, name="reservations")
app.add_typer(autoscale_app, name="autoscale")
app.add_typer(pools_app, name="pools")


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
