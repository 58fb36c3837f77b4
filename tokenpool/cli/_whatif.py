"""`tokenpool replay --what-if`: the same calls against two configurations, offline.

Both runs go through the real engine in this process (`run_what_if`): no
daemon, no gRPC, no disk. The calls come from a trace file, drawn over
tenants exactly as a live replay draws them, or from a ledger's own
reservations over a period (`--from-ledger`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from tokenpool.core import TenantPolicy
from tokenpool.daemon import Settings
from tokenpool.replay import (
    Call,
    ReplayTenant,
    WhatIfSetup,
    build_report,
    plan_calls,
    read_trace,
    run_what_if,
)
from tokenpool.replay._ledger_source import LedgerCalls, ledger_calls


@dataclass(frozen=True, slots=True)
class Source:
    """Where the calls come from: a trace file, or a ledger over a period."""

    trace: Path | None
    ledger: Path | None
    since_wall_ns: int
    until_wall_ns: int
    rows: int | None
    """Only the first N calls, when set."""


@dataclass(frozen=True, slots=True)
class Options:
    """What every run of one invocation shares."""

    budget: str
    tenants: tuple[ReplayTenant, ...]
    skew: float
    seed: int
    max_output_tokens: int
    max_wait_ms: int
    max_lease_ms: int
    fairness_window_s: int


def _with_tenants(settings: Settings, tenants: Sequence[TenantPolicy]) -> Settings:
    """The run's settings, with the replay's tenants it does not name itself."""
    named = {tenant.name for tenant in settings.tenants}
    extra = [tenant for tenant in tenants if tenant.name not in named]
    return settings.model_copy(update={"tenants": [*settings.tenants, *extra]})


def _calls(
    source: Source, options: Options, settings: Settings, loop: dict[str, object]
) -> tuple[list[Call], tuple[ReplayTenant, ...], int, str]:
    """The calls, their tenants, where trace time starts, and the source's name."""
    if source.ledger is not None:
        ledger = str(source.ledger)

        async def read() -> LedgerCalls:
            return await ledger_calls(
                ledger,
                since_wall_ns=source.since_wall_ns,
                until_wall_ns=source.until_wall_ns,
                budget=options.budget,
                tenants=settings.tenants,
            )

        found = anyio.run(read, backend_options=loop)
        calls = found.calls[: source.rows] if source.rows else found.calls
        return calls, found.tenants, found.start_wall_ns, source.ledger.name
    assert source.trace is not None
    rows = read_trace(source.trace, limit=source.rows)
    calls = plan_calls(
        rows,
        options.tenants,
        skew=options.skew,
        seed=options.seed,
        max_lease_ms=options.max_lease_ms,
        run_id=uuid.uuid4().hex[:12],
    )
    return calls, options.tenants, rows[0].arrival_wall_ns, source.trace.name


def what_if(
    source: Source,
    options: Options,
    configs: Sequence[tuple[str, Settings]],
    loop: dict[str, object] | None = None,
) -> dict[str, Any]:
    """Runs the calls against each configuration; the first run's report, with all.

    Args:
        source: Where the calls come from.
        options: The replay's options.
        configs: (name, settings) of each run, "current" first.
        loop: anyio's backend options (uvloop when installed).
    """
    loop = loop or {}
    calls, tenants, start, name = _calls(source, options, configs[0][1], loop)
    runs = []
    for label, settings in configs:
        setup = WhatIfSetup(
            trace=name,
            calls=calls,
            budget=options.budget,
            tenants=tenants,
            max_output_tokens=options.max_output_tokens,
            max_wait_ms=options.max_wait_ms,
            start_wall_ns=start,
            seed=options.seed,
            skew=options.skew,
            settings=_with_tenants(settings, [t.policy for t in tenants]),
        )
        facts, tally = anyio.run(run_what_if, setup, backend_options=loop)
        report = build_report(
            facts,
            tally,
            max_wait_ms=options.max_wait_ms,
            max_output_tokens=options.max_output_tokens,
            fairness_window_s=options.fairness_window_s,
        )
        runs.append(
            {
                "config": label,
                "policy": report["queueing"],
                "learning": report["learning"],
                "report": report,
            }
        )
    return {**runs[0]["report"], "runs": runs}
