"""The `tokenpool replay` command: a recorded trace through the daemon."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from tokenpool_client import TokenPoolError as ClientError

from tokenpool._errors import TokenPoolError, UnknownBudgetError
from tokenpool.cli._app import ConfigOption, _fail, _loop_options, app
from tokenpool.cli._logging import configure_logging
from tokenpool.core import BudgetPolicy, TenantPolicy
from tokenpool.daemon import Settings, load_settings
from tokenpool.replay import (
    DEFAULT_SEED,
    DEFAULT_SKEW,
    DEFAULT_TENANTS,
    ProgressHook,
    ReplayError,
    ReplaySetup,
    Tally,
    build_report,
    parse_tenants,
    plan_calls,
    print_summary,
    read_trace,
    run_replay,
)

logger = logging.getLogger(__name__)

# The longest lease a daemon grants unless configured otherwise (SPEC 3);
# used for an external daemon whose budget the replay cannot read.
_DEFAULT_MAX_LEASE_MS = 3_600_000

# Slowest --speed: an hour of trace in about a thousand hours.
_MIN_SPEED = 0.001

# --speed as the default `make demo` uses: an hour of trace in a minute.
_DEFAULT_SPEED = "60"


def _speed(value: str) -> float | None:
    """None for "max"; otherwise a positive, finite trace-to-real ratio."""
    if value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        speed = math.nan
    if not (math.isfinite(speed) and speed >= _MIN_SPEED):
        raise typer.BadParameter(
            f"{value!r} is neither 'max' nor a number of at least {_MIN_SPEED}",
            param_hint="--speed",
        )
    return speed


def _tenants(spec: str | None, settings: Settings) -> tuple[TenantPolicy, ...]:
    if spec is None:
        return tuple(settings.tenants) or DEFAULT_TENANTS
    try:
        return parse_tenants(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tenants") from None


def _budget(settings: Settings, name: str | None) -> BudgetPolicy | None:
    """The named budget (the first when None), if the settings have it."""
    if name is None:
        return settings.budgets[0]
    return next((b for b in settings.budgets if b.name == name), None)


def _daemon_settings(
    settings: Settings, ledger: str, tenants: Sequence[TenantPolicy]
) -> Settings:
    """The in-process daemon's settings: free port, given ledger, our tenants."""
    by_name = {tenant.name: tenant for tenant in settings.tenants}
    by_name.update((tenant.name, tenant) for tenant in tenants)
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"address": "127.0.0.1:0"}),
            "ledger": settings.ledger.model_copy(update={"path": ledger}),
            "tenants": list(by_name.values()),
        }
    )


def _progress_hook(progress: Progress, total: int) -> ProgressHook:
    task = progress.add_task("replaying", total=total)

    def show(done: int, granted: int, refused: int, waited: int) -> None:
        progress.update(
            task,
            completed=done,
            description=f"granted {granted:,} waited {waited:,} refused {refused:,}",
        )
        progress.refresh()

    return show


@app.command()
def replay(
    trace: Annotated[
        Path, typer.Argument(help="CSV with TIMESTAMP, ContextTokens, GeneratedTokens.")
    ],
    config: ConfigOption = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            "-a",
            help="Replay against a running daemon at host:port instead of "
            "starting one in this process.",
        ),
    ] = None,
    speed: Annotated[
        str,
        typer.Option(
            help="Trace seconds per real second at most, or 'max' (as fast as "
            "the daemon, or --concurrency against --address, allows)."
        ),
    ] = _DEFAULT_SPEED,
    rows: Annotated[
        int | None, typer.Option(min=1, help="Replay only the first N rows.")
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(help="Budget to reserve from; the config's first by default."),
    ] = None,
    tenants: Annotated[
        str | None,
        typer.Option(
            help="Tenants to draw from, in rank order: 'name:tier[:weight],...' "
            "with tier basic or priority."
        ),
    ] = None,
    skew: Annotated[
        float,
        typer.Option(
            min=0.0, help="Zipf exponent s: rank r is drawn with weight 1/r^s."
        ),
    ] = DEFAULT_SKEW,
    seed: Annotated[int, typer.Option(help="Seed of the tenant draw.")] = DEFAULT_SEED,
    max_output: Annotated[
        int, typer.Option(min=1, help="max_output_tokens of every Reserve.")
    ] = 1024,
    max_wait_ms: Annotated[
        int, typer.Option(min=0, help="How long a Reserve may wait, in trace ms.")
    ] = 10_000,
    concurrency: Annotated[
        int,
        typer.Option(min=1, help="Calls in flight with --address and --speed max."),
    ] = 64,
    ledger: Annotated[
        Path | None,
        typer.Option(
            help="Ledger file of the in-process daemon; a temporary one by default.",
            dir_okay=False,
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the report as JSON to this file."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "WARNING",
) -> None:
    """Replay a recorded LLM trace through the daemon and report what happened.

    Each CSV row becomes one call. At the row's time the replay sends Reserve
    (input_tokens = ContextTokens, max_output_tokens = --max-output,
    max_wait_ms = --max-wait-ms, labels source=replay, a key per row); once
    the modelled call is over it sends Settle with the row's ContextTokens
    and GeneratedTokens. Refused rows are not retried.

    Call length, in trace time: 0.3 s + input/8000 s of prefill +
    output/40 s of decode. The lease is twice that plus 30 s (capped at the
    budget's longest lease).

    Tenants: each row's tenant is drawn, seeded by --seed, from --tenants,
    else the config file's tenants, else 8 built-in ones: chat-web,
    search-svc (priority, weight 2), support-bot, docs-summarizer,
    fraud-review (priority, weight 2), code-assist, batch-etl, analytics.
    The tenant at rank r (1-based, list order) is drawn with weight
    1/r^s, s = --skew (0 draws uniformly), so the first gets the most rows.
    A tenant's own weight is its share weight in the daemon, not a draw
    weight.

    Daemon: without --address, replay starts one in this process (--config
    or the embedded defaults, a free loopback port, a temporary ledger
    unless --ledger, the chosen tenants added) and drives its clock through
    the trace's time, event by event: every call reaches the daemon at its
    trace time, so capacities mean per trace minute what they say and the
    outcome is the same at any speed. --speed max goes as fast as the daemon
    takes calls in; --speed N no faster than N trace seconds per real
    second. With --address the daemon keeps its own clock and tenant tiers:
    rows go out at their trace times divided by N, or at --speed max as
    fast as --concurrency calls in flight allow, each settled at once.

    Report: tables on stdout and, with --json, a file with requests,
    granted, refused, waited, tokens_reserved, tokens_used, tokens_charged
    (from the ledger), open_reservations_at_end, wait_ms (the daemon's
    waited_ms of granted rows) and rpc_latency_ms (real ms per Reserve and
    Settle, less the wait for tokens), each as p50/p95/p99, throughput_rps,
    pools (utilization, lent_tokens, borrowed_tokens) and extras.
    """
    configure_logging(log_level, "text")
    speed_value = _speed(speed)
    if address is not None and ledger is not None:
        raise typer.BadParameter(
            "only the in-process daemon has a ledger to choose; drop --ledger "
            "or --address",
            param_hint="--ledger",
        )

    if json_path is not None and json_path.is_dir():
        raise typer.BadParameter(
            f"{str(json_path)!r} is a folder; name a file", param_hint="--json"
        )
    if json_path is not None and not json_path.parent.is_dir():
        raise typer.BadParameter(
            f"folder {str(json_path.parent)!r} does not exist", param_hint="--json"
        )

    try:
        settings = load_settings(config)
        chosen = _tenants(tenants, settings)
        policy = _budget(settings, budget)
        budget_name = budget or settings.budgets[0].name
        if policy is None and address is None:
            raise UnknownBudgetError(budget_name, [b.name for b in settings.budgets])
        if policy is not None and max_wait_ms > policy.max_wait_ms:
            raise typer.BadParameter(
                f"{max_wait_ms} is above the max_wait_ms of budget "
                f"{budget_name!r} ({policy.max_wait_ms})",
                param_hint="--max-wait-ms",
            )
        max_lease_ms = _DEFAULT_MAX_LEASE_MS
        if policy is not None:
            max_lease_ms = int(policy.max_lease_seconds * 1000)

        trace_rows = read_trace(trace, limit=rows)
        run_id = uuid.uuid4().hex[:12]
        calls = plan_calls(
            trace_rows,
            chosen,
            skew=skew,
            seed=seed,
            max_lease_ms=max_lease_ms,
            run_id=run_id,
        )
        setup = ReplaySetup(
            trace=trace.name,
            calls=calls,
            budget=budget_name,
            tenants=chosen,
            max_output_tokens=max_output,
            max_wait_ms=max_wait_ms,
            speed=speed_value,
            start_wall_ns=trace_rows[0].arrival_wall_ns,
            seed=seed,
            skew=skew,
            address=address,
            concurrency=concurrency,
        )
        report = _run(setup, settings, ledger)
    except (TokenPoolError, ClientError) as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise _fail(ReplayError("Interrupted; no report was written.")) from None

    # The file first: a reader of stdout that stops early must not cost it.
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(exc) from None
    print_summary(report, Console())


def _run(setup: ReplaySetup, settings: Settings, ledger: Path | None) -> dict[str, Any]:
    """Runs the replay (in a temporary ledger folder when needed); the report."""
    tally = Tally()
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        auto_refresh=False,
        disable=not console.is_terminal,
    )
    with tempfile.TemporaryDirectory(prefix="tokenpool-replay-") as folder:
        path = str(ledger) if ledger is not None else str(Path(folder) / "replay.db")
        if setup.address is None:
            setup = replace(
                setup, settings=_daemon_settings(settings, path, setup.tenants)
            )
        with progress:
            hook = _progress_hook(progress, len(setup.calls))
            facts = anyio.run(
                run_replay, setup, tally, hook, backend_options=_loop_options()
            )
    logger.info(
        "replay finished rows=%d real_s=%.1f mode=%s",
        len(setup.calls),
        facts.real_seconds,
        facts.mode,
    )
    return build_report(
        facts,
        tally,
        max_wait_ms=setup.max_wait_ms,
        max_output_tokens=setup.max_output_tokens,
    )
