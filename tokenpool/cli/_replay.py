"""The `tokenpool replay` command: a recorded trace through the daemon."""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
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

from tokenpool._errors import TokenPoolError
from tokenpool.cli._app import ConfigOption, LogLevel, _fail, _loop_options, _token, app
from tokenpool.cli._whatif import Options as _WhatIfOptions
from tokenpool.cli._whatif import Source as _Source
from tokenpool.cli._whatif import what_if as offline_runs
from tokenpool.core import BudgetPolicy, TenantPolicy
from tokenpool.daemon import Settings, load_settings
from tokenpool.replay import (
    DEFAULT_SEED,
    DEFAULT_SKEW,
    DEFAULT_TENANTS,
    DEFAULT_WINDOW_S,
    ProgressHook,
    ReplayError,
    ReplaySetup,
    ReplayTenant,
    Tally,
    TraceRow,
    build_report,
    parse_tenants,
    parse_timestamp,
    plan_calls,
    print_capacity,
    print_comparison,
    print_decisions,
    print_summary,
    read_trace,
    run_replay,
    with_tasks,
)

logger = logging.getLogger(__name__)

# The longest lease a daemon grants unless configured otherwise (SPEC 3);
# used for an external daemon whose budget the replay cannot read.
_DEFAULT_MAX_LEASE_MS = 3_600_000

# Slowest --speed: an hour of trace in about a thousand hours.
_MIN_SPEED = 0.001

# --speed as the default `make demo` uses: an hour of trace in a minute.
_DEFAULT_SPEED = "60"

# What "both" stands for in --policy and --learning, in the order run.
_POLICIES = ("fifo", "fair")
_LEARNING = ("off", "on")

# Columns of the printed tables when stdout is not a terminal.
_PIPED_WIDTH = 120

# The daemon logs each settle far above its hold at WARNING. A replay
# counts them in its report (overrun_rate, overrun_tokens), so at the
# default log level it keeps them off the console.
_OVERRUN_LOGGER = "tokenpool.engine._closing"
_OVERRUN_MESSAGE = "overrun beyond limit"


@dataclass(frozen=True, slots=True)
class _Variant:
    """One run's overrides of the replayed budget; None keeps the config's."""

    queueing: str | None = None
    learning: bool | None = None

    def suffix(self) -> str:
        """Names the run's ledger file apart from the others'."""
        learning = {None: "", True: "-learning-on", False: "-learning-off"}
        return (
            f"{'-' + self.queueing if self.queueing else ''}{learning[self.learning]}"
        )


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


def _choices(value: str | None, allowed: tuple[str, str], hint: str) -> list[str]:
    """The values a --policy or --learning option asks for; [] when not given."""
    if value is None:
        return []
    value = value.strip().lower()
    if value == "both":
        return list(allowed)
    if value not in allowed:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(allowed)} or both", param_hint=hint
        )
    return [value]


def _variants(policy: str | None, learning: str | None) -> list[_Variant]:
    """Every combination asked for, policies outermost, in the order run."""
    queueings: list[str | None] = [*_choices(policy, _POLICIES, "--policy")]
    learnings: list[bool | None] = [
        value == "on" for value in _choices(learning, _LEARNING, "--learning")
    ]
    return [
        _Variant(queueing, learns)
        for queueing in queueings or [None]
        for learns in learnings or [None]
    ]


def _tenants(spec: str | None, settings: Settings) -> tuple[ReplayTenant, ...]:
    if spec is None:
        return with_tasks(settings.tenants) or DEFAULT_TENANTS
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
    settings: Settings,
    ledger: str,
    tenants: Sequence[TenantPolicy],
    *,
    budget: str,
    variant: _Variant,
) -> Settings:
    """The in-process daemon's settings: free port, given ledger, our tenants.

    The replayed budget takes the variant's queueing and learning switch.
    """
    by_name = {tenant.name: tenant for tenant in settings.tenants}
    by_name.update((tenant.name, tenant) for tenant in tenants)
    budgets = [
        _overridden(policy, variant) if policy.name == budget else policy
        for policy in settings.budgets
    ]
    return settings.model_copy(
        update={
            # A private daemon on loopback, for this replay alone: open.
            "auth": type(settings.auth)(),
            "server": settings.server.model_copy(
                update={"address": "127.0.0.1:0", "tls": None}
            ),
            "ledger": settings.ledger.model_copy(update={"path": ledger}),
            "tenants": list(by_name.values()),
            "budgets": budgets,
        }
    )


def _overridden(policy: BudgetPolicy, variant: _Variant) -> BudgetPolicy:
    update: dict[str, Any] = {}
    if variant.queueing is not None:
        update["queueing"] = variant.queueing
    if variant.learning is not None:
        update["learning"] = policy.learning.model_copy(
            update={"enabled": variant.learning}
        )
    # Validated again, as a file with these values would be.
    return BudgetPolicy.model_validate({**policy.model_dump(), **update})


def _progress_hook(progress: Progress, total: int, label: str) -> ProgressHook:
    task = progress.add_task(label or "replaying", total=total)

    def show(done: int, granted: int, refused: int, waited: int) -> None:
        progress.update(
            task,
            completed=done,
            description=f"{label}granted {granted:,} waited {waited:,} "
            f"refused {refused:,}",
        )
        progress.refresh()

    return show


@app.command()
def replay(
    trace: Annotated[
        Path | None,
        typer.Argument(
            help="CSV with TIMESTAMP, ContextTokens, GeneratedTokens (or use "
            "--from-ledger)."
        ),
    ] = None,
    config: ConfigOption = None,
    what_if: Annotated[
        Path | None,
        typer.Option(
            "--what-if",
            help="Also replay against this configuration, offline, and print it "
            "beside --config (the current one).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    from_ledger: Annotated[
        Path | None,
        typer.Option(
            "--from-ledger",
            help="Replay a ledger's own reservations (granted in --since to "
            "--until) instead of a trace; offline, like --what-if.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="With --from-ledger: grants at or after this UTC time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="With --from-ledger: grants before this UTC time."),
    ] = None,
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
    session: Annotated[
        bool,
        typer.Option(
            help="Send Reserve, Settle and Release over one Session stream "
            "instead of one unary call each (fastest at --speed max).",
        ),
    ] = False,
    ledger: Annotated[
        Path | None,
        typer.Option(
            help="Ledger file of the in-process daemon; a temporary one by default.",
            dir_okay=False,
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Queueing of the in-process daemon's budget: fifo, fair or both "
            "(one run each); the config's by default."
        ),
    ] = None,
    learning: Annotated[
        str | None,
        typer.Option(
            help="The in-process daemon's allowance correction: off, on or both "
            "(one run each); the config's by default."
        ),
    ] = None,
    fairness_window: Annotated[
        int,
        typer.Option(
            min=1, help="Trailing window of the windowed Jain index, trace seconds."
        ),
    ] = DEFAULT_WINDOW_S,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the report as JSON to this file."),
    ] = None,
    log_level: LogLevel = "WARNING",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="With --address: file holding the daemon's admin token (or set "
            "TOKENPOOL_TOKEN).",
            envvar="TOKENPOOL_TOKEN_FILE",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Replay a recorded LLM trace through the daemon and report what happened.

    Each CSV row becomes one call. At the row's time the replay sends Reserve
    (input_tokens = ContextTokens, task_type = the tenant's, max_output_tokens
    = --max-output, max_wait_ms = --max-wait-ms, labels source=replay, a key
    per row), so the daemon's scoring sizes the hold; once the modelled call
    is over it sends Settle with the row's ContextTokens and
    GeneratedTokens. Refused rows are not retried.

    Call length, in trace time: 0.3 s + input/8000 s of prefill +
    output/40 s of decode. The lease is twice that plus 30 s (capped at the
    budget's longest lease).

    Tenants: each row's tenant is drawn, seeded by --seed, from --tenants
    ('name:tier[:weight[:task]]'), else the config file's tenants, else 8
    built-in ones: chat-web (generation), search-svc (priority, weight 2,
    extraction), support-bot (generation), docs-summarizer (summarization),
    fraud-review (priority, weight 2, analysis), code-assist (code),
    batch-etl (extraction), analytics (analysis). The tenant at rank r
    (1-based, list order) is drawn with weight 1/r^s, s = --skew (0 draws
    uniformly), so the first gets the most rows. A tenant without a task
    type gets one by rank: generation, summarization, analysis, extraction,
    code, other, then again from generation. A tenant's own weight is its
    share weight in the daemon, not a draw weight.

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

    Runs: --policy and --learning set the replayed budget's queueing and
    learning.enabled in the in-process daemon; 'both' runs each value, and
    together they run every combination (fifo before fair, off before on),
    one after the other, with the same trace, seed and tenants and a fresh
    daemon and ledger each.

    Report: tables on stdout (one side-by-side table for several runs) and,
    with --json, a file with requests, granted, refused, waited,
    tokens_reserved, tokens_used, tokens_charged (from the ledger),
    open_reservations_at_end, wait_ms (the daemon's waited_ms of granted
    rows) and rpc_latency_ms (real ms per Reserve and Settle, less the wait
    for tokens), each as p50/p95/p99, throughput_rps, pools (utilization,
    lent_tokens, borrowed_tokens), the scheduling figures (utilization,
    fairness, wait_ms_by_tier, borrowed_tokens, held_unused_tokens,
    idle_in_holds_share, overrun_rate) and extras, all of the first run;
    and runs: per run its policy, learning and full report.
    """
    from tokenpool.telemetry import configure_logging

    configure_logging(log_level, "text")
    speed_value = _speed(speed)
    variants = _variants(policy, learning)
    offline = what_if is not None or from_ledger is not None
    if (trace is None) == (from_ledger is None):
        raise typer.BadParameter(
            "give a TRACE file or --from-ledger DB, one of the two",
            param_hint="TRACE",
        )
    if offline and (address is not None or ledger is not None):
        raise typer.BadParameter(
            "--what-if and --from-ledger replay offline, with no daemon; drop "
            "--address and --ledger",
            param_hint="--what-if",
        )
    if offline and variants != [_Variant()]:
        raise typer.BadParameter(
            "--what-if compares configurations; put queueing and learning in "
            "the files instead of --policy and --learning",
            param_hint="--what-if",
        )
    if (since is not None or until is not None) and from_ledger is None:
        raise typer.BadParameter(
            "--since and --until choose a period of --from-ledger",
            param_hint="--since",
        )
    if address is not None and ledger is not None:
        raise typer.BadParameter(
            "only the in-process daemon has a ledger to choose; drop --ledger "
            "or --address",
            param_hint="--ledger",
        )
    if address is not None and variants != [_Variant()]:
        raise typer.BadParameter(
            "only the in-process daemon's policy can be chosen; drop --policy "
            "and --learning, or --address",
            param_hint="--policy" if policy is not None else "--learning",
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
        budget_policy = _budget(settings, budget)
        budget_name = budget or settings.budgets[0].name
        if budget_policy is None and address is None:
            known = ", ".join(repr(b.name) for b in settings.budgets)
            raise typer.BadParameter(
                f"{budget_name!r} is not a budget of the configuration ({known})",
                param_hint="--budget",
            )
        if budget_policy is not None and max_wait_ms > budget_policy.max_wait_ms:
            raise typer.BadParameter(
                f"{max_wait_ms} is above the max_wait_ms of budget "
                f"{budget_name!r} ({budget_policy.max_wait_ms})",
                param_hint="--max-wait-ms",
            )
        max_lease_ms = _DEFAULT_MAX_LEASE_MS
        if budget_policy is not None:
            max_lease_ms = int(budget_policy.max_lease_seconds * 1000)

        if offline:
            report = _offline(
                trace=trace,
                ledger=from_ledger,
                period=(since, until),
                rows=rows,
                current=settings,
                what_if=None if what_if is None else load_settings(what_if),
                options=_WhatIfOptions(
                    budget=budget_name,
                    tenants=chosen,
                    skew=skew,
                    seed=seed,
                    max_output_tokens=max_output,
                    max_wait_ms=max_wait_ms,
                    max_lease_ms=max_lease_ms,
                    fairness_window_s=fairness_window,
                ),
            )
            _write_and_print(report, json_path)
            return
        assert trace is not None
        trace_rows = read_trace(trace, limit=rows)
        setup = ReplaySetup(
            trace=trace.name,
            calls=(),
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
            session=session,
            token=_token(token_file) if address is not None else None,
        )
        plan = _Plan(setup, trace_rows, max_lease_ms, fairness_window)
        report = _run_all(plan, variants, settings, ledger)
    except (TokenPoolError, ClientError) as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise _fail(ReplayError("Interrupted; no report was written.")) from None

    _write_and_print(report, json_path)


def _write_and_print(report: dict[str, Any], json_path: Path | None) -> None:
    """Writes the JSON report if asked, then prints the tables."""
    # The file first: a reader of stdout that stops early must not cost it.
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(exc) from None
    # Piped output is not cut to 80 columns: every figure stays whole.
    console = Console(width=None if sys.stdout.isatty() else _PIPED_WIDTH)
    runs = report["runs"]
    if len(runs) == 1:
        print_summary(report, console)
        return
    print_comparison(runs, console)
    for run in runs:
        label = run.get("config") or f"{run['policy']}, {run['learning']}"
        print_decisions(
            run["report"].get("autoscale", ()),
            console,
            f"Autoscaler decisions ({label})",
        )
        print_capacity(
            run["report"].get("capacity_over_time", ()),
            console,
            f"Capacity over time ({label})",
        )


def _when(value: str | None, default: int, hint: str) -> int:
    if value is None:
        return default
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _offline(
    *,
    trace: Path | None,
    ledger: Path | None,
    period: tuple[str | None, str | None],
    rows: int | None,
    current: Settings,
    what_if: Settings | None,
    options: _WhatIfOptions,
) -> dict[str, Any]:
    """A what-if replay (two runs), or one offline run of a ledger's traffic."""
    source = _Source(
        trace=trace,
        ledger=ledger,
        since_wall_ns=_when(period[0], 0, "--since"),
        until_wall_ns=_when(period[1], 2**63 - 1, "--until"),
        rows=rows,
    )
    configs = [("current", current)]
    if what_if is not None:
        configs.append(("what-if", what_if))
    with _overruns_counted():
        return offline_runs(source, options, configs, _loop_options())


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every run of one invocation shares."""

    setup: ReplaySetup
    """The setup, without calls (each run plans its own keys)."""
    rows: Sequence[TraceRow]
    max_lease_ms: int
    fairness_window_s: int


def _run_all(
    plan: _Plan, variants: Sequence[_Variant], settings: Settings, ledger: Path | None
) -> dict[str, Any]:
    """Runs each variant in turn; the first run's report, with all in `runs`."""
    reports = []
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
    with (
        progress,
        _overruns_counted(),
        tempfile.TemporaryDirectory(prefix="tokenpool-replay-") as folder,
    ):
        for variant in variants:
            path = Path(folder) / f"replay{variant.suffix()}.db"
            if ledger is not None:
                path = ledger
                if len(variants) > 1:
                    path = ledger.with_name(
                        ledger.stem + variant.suffix() + ledger.suffix
                    )
            setup = _setup(plan, variant, settings, str(path))
            label = "" if len(variants) == 1 else f"{variant.suffix()[1:]}: "
            reports.append(_run(setup, plan.fairness_window_s, progress, label))

    runs = [
        {"policy": r["queueing"], "learning": r["learning"], "report": r}
        for r in reports
    ]
    return {**reports[0], "runs": runs}


def _setup(
    plan: _Plan, variant: _Variant, settings: Settings, ledger: str
) -> ReplaySetup:
    """One run's setup: its own idempotency keys, and its daemon's settings."""
    calls = plan_calls(
        plan.rows,
        plan.setup.tenants,
        skew=plan.setup.skew,
        seed=plan.setup.seed,
        max_lease_ms=plan.max_lease_ms,
        run_id=uuid.uuid4().hex[:12],
    )
    setup = replace(plan.setup, calls=calls)
    if setup.address is None:
        policies = [tenant.policy for tenant in setup.tenants]
        daemon = _daemon_settings(
            settings, ledger, policies, budget=setup.budget, variant=variant
        )
        setup = replace(setup, settings=daemon)
    return setup


class _OverrunFilter(logging.Filter):
    """Drops the daemon's per-settle overrun warnings; the report counts them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING
            and str(record.msg).startswith(_OVERRUN_MESSAGE)
        )


@contextmanager
def _overruns_counted() -> Iterator[None]:
    """Keeps overrun warnings off the console unless INFO or DEBUG is asked for."""
    target = logging.getLogger(_OVERRUN_LOGGER)
    if target.getEffectiveLevel() < logging.WARNING:
        yield
        return
    dropped = _OverrunFilter()
    target.addFilter(dropped)
    try:
        yield
    finally:
        target.removeFilter(dropped)


def _run(
    setup: ReplaySetup, fairness_window_s: int, progress: Progress, label: str
) -> dict[str, Any]:
    """Runs one replay; its report."""
    tally = Tally()
    hook = _progress_hook(progress, len(setup.calls), label)
    facts = anyio.run(run_replay, setup, tally, hook, backend_options=_loop_options())
    logger.info(
        "replay finished rows=%d real_s=%.1f mode=%s queueing=%s learning=%s",
        len(setup.calls),
        facts.real_seconds,
        facts.mode,
        facts.queueing,
        facts.learning,
    )
    return build_report(
        facts,
        tally,
        max_wait_ms=setup.max_wait_ms,
        max_output_tokens=setup.max_output_tokens,
        fairness_window_s=fairness_window_s,
    )
