"""A replay run's JSON report, and the tables that print it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tokenpool.core import POOL_ORDER
from tokenpool.replay._fairness import DEFAULT_WINDOW_S
from tokenpool.replay._figures import scheduling_figures
from tokenpool.replay._tally import RowOutcome, RunFacts, Tally, percentiles


def _pools(facts: RunFacts, outcomes: Sequence[RowOutcome]) -> dict[str, Any]:
    lent: Counter[str] = Counter()
    borrowed: Counter[str] = Counter()
    for outcome in outcomes:
        for pool, tokens in outcome.sources:
            if outcome.granted and pool != outcome.pool:
                lent[pool] += tokens
                borrowed[outcome.pool] += tokens

    before = {pool.name: pool for pool in facts.before.pools}
    pools: dict[str, Any] = {}
    for pool in facts.after.pools:
        charged = pool.charged_tokens - before[pool.name].charged_tokens
        offered = (
            pool.capacity_tokens * facts.daemon_seconds / facts.after.window_seconds
        )
        pools[pool.name] = {
            "capacity_tokens": pool.capacity_tokens,
            "charged_tokens": charged,
            "utilization": round(charged / offered, 4) if offered > 0 else 0.0,
            "lent_tokens": lent[pool.name],
            "borrowed_tokens": borrowed[pool.name],
        }
    return pools


def _tenants(facts: RunFacts, outcomes: Sequence[RowOutcome]) -> dict[str, Any]:
    table: dict[str, Any] = {
        tenant.name: {
            "tier": tenant.tier.value,
            "weight": tenant.weight,
            "task_type": facts.task_types[tenant.name].value,
            "requests": 0,
            "granted": 0,
            "refused": 0,
            "waited": 0,
            "tokens_reserved": 0,
            "tokens_used": 0,
        }
        for tenant in facts.tenants
    }
    for outcome in outcomes:
        row = table[outcome.call.tenant.name]
        row["requests"] += 1
        row["granted"] += outcome.granted
        row["refused"] += not outcome.granted
        row["waited"] += outcome.waited_ms > 0
        row["tokens_reserved"] += outcome.hold
        row["tokens_used"] += outcome.used or 0
    return table


def _learning(value: bool | None) -> str | None:
    return None if value is None else ("on" if value else "off")


def build_report(
    facts: RunFacts,
    tally: Tally,
    *,
    max_wait_ms: int,
    max_output_tokens: int,
    fairness_window_s: int = DEFAULT_WINDOW_S,
) -> dict[str, Any]:
    """The replay's report, with the keys SPEC's appendix fixes and extras.

    `wait_ms` covers granted rows only (the daemon's waited_ms, zeros
    included; refusals after a wait are counted in
    `refused_after_wait`). `rpc_latency_ms` covers every Reserve and
    Settle, less the time spent waiting for tokens, in real ms. The
    scheduling figures (utilization, fairness, wait_ms_by_tier, holds) are
    defined in docs/replay.md.
    """
    outcomes = [tally.outcomes[index] for index in sorted(tally.outcomes)]
    granted = [o for o in outcomes if o.granted]
    reasons = Counter(o.reason for o in outcomes if not o.granted)
    settle_errors = Counter(o.settle_error for o in granted if o.settle_error)
    waited = [o.waited_ms for o in granted if o.waited_ms > 0]
    pools = _pools(facts, outcomes)
    charged = facts.charged_after - facts.charged_before
    scores = Counter(o.complexity_score for o in granted)

    return {
        "requests": len(outcomes),
        "granted": len(granted),
        "refused": len(outcomes) - len(granted),
        "waited": len(waited),
        "refused_after_wait": sum(o.waited_then_refused for o in outcomes),
        "tokens_reserved": sum(o.hold for o in granted),
        "tokens_used": sum(o.used or 0 for o in granted),
        "tokens_charged": charged,
        "open_reservations_at_end": facts.open_reservations_at_end,
        "wait_ms": percentiles([o.waited_ms for o in granted]),
        "wait_ms_of_waiters": percentiles(waited),
        "rpc_latency_ms": percentiles(tally.latencies_ms),
        "throughput_rps": round(len(outcomes) / facts.real_seconds, 2)
        if facts.real_seconds > 0
        else 0.0,
        "pools": pools,
        **scheduling_figures(
            facts,
            outcomes,
            pools,
            tokens_charged=charged,
            max_wait_ms=max_wait_ms,
            fairness_window_s=fairness_window_s,
        ),
        "complexity_scores": {str(k): scores[k] for k in sorted(scores)},
        "refusal_reasons": dict(sorted(reasons.items())),
        "settle_errors": dict(sorted(settle_errors.items())),
        "duration_s": {
            "real": round(facts.real_seconds, 3),
            "trace": None
            if facts.trace_seconds is None
            else round(facts.trace_seconds, 3),
            "daemon_clock": round(facts.daemon_seconds, 3),
        },
        "speed": "max" if facts.speed is None else facts.speed,
        "mode": facts.mode,
        "queueing": facts.queueing,
        "learning": _learning(facts.learning),
        "daemon": facts.address,
        "budget": facts.budget,
        "capacity_tokens": facts.after.capacity_tokens,
        "window_seconds": facts.after.window_seconds,
        "trace": facts.trace,
        "seed": facts.seed,
        "skew": facts.skew,
        "max_wait_ms": max_wait_ms,
        "max_output_tokens": max_output_tokens,
        "tenants": _tenants(facts, outcomes),
        "autoscale": [_decision(d) for d in facts.decisions],
        "capacity_over_time": _capacity_over_time(facts),
    }


# Trace time between two points of `capacity_over_time`.
_TIMELINE_STEP_NS = 5 * 60 * 1_000_000_000


def _capacity_over_time(facts: RunFacts) -> list[dict[str, Any]]:
    """The budget's capacity every five trace minutes, when the autoscaler ran.

    Empty when no decision changed the capacity, or the run's start is not
    known (a replay against a running daemon).
    """
    changes = [
        (int(d["at_wall_ns"]), int(d["capacity_to"]))  # type: ignore[call-overload]
        for d in facts.decisions
        if d.get("applied") and d.get("capacity_to") is not None
    ]
    if not changes or not facts.start_wall_ns:
        return []
    end = facts.start_wall_ns + int(facts.daemon_seconds * 1e9)
    capacity = changes[0][1]
    first = next(
        (d for d in facts.decisions if d.get("capacity_from") is not None), None
    )
    if first is not None:
        capacity = int(first["capacity_from"])  # type: ignore[call-overload]
    points = []
    at = facts.start_wall_ns
    pending = list(changes)
    while at <= end:
        while pending and pending[0][0] <= at:
            capacity = pending.pop(0)[1]
        stamp = datetime.fromtimestamp(at / 1e9, UTC).isoformat()
        points.append({"at": stamp.replace("+00:00", "Z"), "capacity_tokens": capacity})
        at += _TIMELINE_STEP_NS
    return points


def print_capacity(
    points: Sequence[Mapping[str, Any]], console: Console, title: str
) -> None:
    """Prints the capacity over time as a bar per point."""
    if not points:
        return
    top = max(point["capacity_tokens"] for point in points) or 1
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("time (UTC)")
    table.add_column("capacity", justify="right")
    table.add_column("")
    for point in points:
        width = round(40 * point["capacity_tokens"] / top)
        capacity = f"{point['capacity_tokens']:,}"
        table.add_row(point["at"][11:16], capacity, "█" * width)
    console.print(table)


def _decision(decision: Mapping[str, Any]) -> dict[str, Any]:
    """One autoscaler entry as the report lists it."""
    at = datetime.fromtimestamp(int(decision["at_wall_ns"]) / 1e9, UTC)
    return {
        "at": at.isoformat().replace("+00:00", "Z"),
        "action": decision.get("action", ""),
        "applied": decision.get("applied", False),
        "capacity_from": decision.get("capacity_from"),
        "capacity_to": decision.get("capacity_to"),
        "shares_to": decision.get("shares_to"),
        "reason": decision.get("reason", ""),
    }


def print_decisions(
    decisions: Sequence[Mapping[str, Any]], console: Console, title: str
) -> None:
    """Prints the autoscaler's decisions: when, what, capacity after, and why."""
    if not decisions:
        return
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("time (UTC)")
    table.add_column("action")
    table.add_column("capacity", justify="right")
    table.add_column("reason")
    for decision in decisions:
        applied = "" if decision.get("applied", True) else " (recommended)"
        capacity = (
            f"{decision['capacity_from']:,} -> {decision['capacity_to']:,}"
            if decision.get("capacity_from") is not None
            else "-"
        )
        if decision["action"] == "shift" and decision.get("shares_to"):
            shares = decision["shares_to"]
            capacity = "/".join(str(shares[p]) for p in ("basic", "priority", "burst"))
        table.add_row(
            decision["at"][11:19],
            decision["action"] + applied,
            capacity,
            escape(str(decision.get("reason", ""))),
        )
    console.print(table)


def _ms(figures: Mapping[str, float]) -> str:
    return " / ".join(f"{figures[name]:,.1f}" for name in ("p50", "p95", "p99"))


def _share(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _index(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _scheduling_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The figures that compare scheduling policies, as table rows."""
    fairness = report["fairness"]
    waits = report["wait_ms_by_tier"]
    rows = [
        ("utilisation (whole budget)", _share(report["utilization"])),
    ]
    if fairness is not None:
        rows += [
            (
                f"Jain basic, 1 s / {fairness['window_s']} s window",
                f"{_index(fairness['jain_1s'])} / {_index(fairness['jain_window'])}",
            ),
            ("seconds with 2+ basic backlogged", f"{fairness['seconds_counted']:,}"),
            (
                "Jain basic, relative to max-min shares",
                _index(fairness.get("jain_maxmin")),
            ),
            (
                f"Jain basic, backlogged all {fairness['window_s']} s",
                f"{_index(fairness.get('jain_backlogged'))} over "
                f"{fairness.get('seconds_backlogged', 0):,} s",
            ),
        ]
    rows += [
        ("priority wait ms p50 / p95 / p99", _ms(waits["priority"])),
        ("basic wait ms p50 / p95 / p99", _ms(waits["basic"])),
        ("borrowed tokens", f"{report['borrowed_tokens']:,}"),
        ("held unused tokens", f"{report['held_unused_tokens']:,}"),
        ("idle in holds (share of capacity)", _share(report["idle_in_holds_share"])),
        ("overrun rate (of settles)", _share(report["overrun_rate"])),
    ]
    return rows


def print_comparison(runs: Sequence[Mapping[str, Any]], console: Console) -> None:
    """Prints one table with a column per run, figures side by side.

    Args:
        runs: The `runs` entries of a report: policy, learning and report.
        console: Where to print.
    """
    first = runs[0]["report"]
    table = Table(
        title=f"Replay of {escape(first['trace'])}: budget "
        f"{escape(repr(first['budget']))}, "
        f"{first['capacity_tokens']:,} tokens / {first['window_seconds']} s, "
        f"{first['requests']:,} rows, seed {first['seed']}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
    )
    # Each column exactly as wide as its widest entry: no figure is cut.
    columns = [_comparison_rows(run["report"]) for run in runs]
    configs = "config" in runs[0]
    heading = "configuration\nqueueing, learning" if configs else "queueing\nlearning"
    table.add_column(
        heading,
        width=max(max(len(name) for name, _ in columns[0]), len(heading) // 2 + 1),
    )
    for run, column in zip(runs, columns, strict=True):
        header = f"{run['policy']}\n{run['learning']}"
        if configs:
            header = f"{run['config']}\n{run['policy']}, {run['learning']}"
        table.add_column(
            header,
            justify="right",
            width=max(
                *(len(value) for _, value in column), *map(len, header.split("\n"))
            ),
        )

    for at, (name, _) in enumerate(columns[0]):
        table.add_row(name, *(column[at][1] for column in columns))
    console.print(table)


def _comparison_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Short rows, one figure each, so that four runs fit 80 columns."""
    fairness = report["fairness"] or {}
    window = fairness.get("window_s", "-")
    waits = report["wait_ms_by_tier"]
    rows = [
        ("granted", f"{report['granted']:,}"),
        ("waited, then granted", f"{report['waited']:,}"),
        ("refused", f"{report['refused']:,}"),
        ("  of which after a wait", f"{report['refused_after_wait']:,}"),
        ("tokens reserved", f"{report['tokens_reserved']:,}"),
        ("tokens charged (ledger)", f"{report['tokens_charged']:,}"),
        ("utilisation (budget)", _share(report["utilization"], 2)),
        ("Jain basic, 1 s", _index(fairness.get("jain_1s"))),
        ("  ceiling of any order", _index(fairness.get("jain_1s_ceiling"))),
        (f"Jain basic, {window} s window", _index(fairness.get("jain_window"))),
        ("  seconds counted", f"{fairness.get('seconds_counted', 0):,}"),
        ("Jain basic, max-min relative", _index(fairness.get("jain_maxmin"))),
        (f"Jain basic, backlogged {window} s", _index(fairness.get("jain_backlogged"))),
        ("  seconds counted", f"{fairness.get('seconds_backlogged', 0):,}"),
    ]
    for tier in ("priority", "basic"):
        for name in ("p50", "p95", "p99"):
            rows.append((f"{tier} wait ms {name}", f"{waits[tier][name]:,.0f}"))
    rows += [
        ("borrowed tokens", f"{report['borrowed_tokens']:,}"),
        ("held unused tokens", f"{report['held_unused_tokens']:,}"),
        ("idle in holds", _share(report["idle_in_holds_share"])),
        ("overrun rate", _share(report["overrun_rate"])),
        ("capacity at end", f"{report['capacity_tokens']:,}"),
        ("autoscaler decisions", f"{len(report.get('autoscale', ())):,}"),
        ("real seconds", f"{report['duration_s']['real']:,.1f}"),
    ]
    return rows


def print_summary(report: Mapping[str, Any], console: Console) -> None:
    """Prints the report as three tables: requests, pools and tenants."""
    speed = report["speed"]
    duration = report["duration_s"]
    trace_s = duration["trace"]
    where = report["daemon"]
    if where == "in-process":
        where = "in-process daemon"
    summary = Table(
        title=f"Replay of {escape(report['trace'])}: budget "
        f"{escape(repr(report['budget']))}, "
        f"{report['capacity_tokens']:,} tokens / {report['window_seconds']} s, "
        f"speed {speed} ({report['mode']}, {where})",
        show_header=False,
        box=box.SIMPLE,
    )
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    reasons = ", ".join(f"{k} {v:,}" for k, v in report["refusal_reasons"].items())
    rows = []
    if report["queueing"] is not None:
        rows.append(
            ("queueing, learning", f"{report['queueing']}, {report['learning']}")
        )
    rows += [
        ("requests", f"{report['requests']:,}"),
        ("granted", f"{report['granted']:,}"),
        ("waited (then granted)", f"{report['waited']:,}"),
        ("refused", f"{report['refused']:,}" + (f" ({reasons})" if reasons else "")),
        ("refused after a wait", f"{report['refused_after_wait']:,}"),
        ("tokens reserved", f"{report['tokens_reserved']:,}"),
        ("tokens used (settled)", f"{report['tokens_used']:,}"),
        ("tokens charged (ledger)", f"{report['tokens_charged']:,}"),
        ("open reservations at end", f"{report['open_reservations_at_end']:,}"),
        ("wait ms p50 / p95 / p99 (granted)", _ms(report["wait_ms"])),
        ("wait ms p50 / p95 / p99 (waiters)", _ms(report["wait_ms_of_waiters"])),
        *_scheduling_rows(report),
        ("RPC latency ms p50 / p95 / p99", _ms(report["rpc_latency_ms"])),
        ("throughput (rows / real s)", f"{report['throughput_rps']:,.1f}"),
        (
            "duration real / trace s",
            f"{duration['real']:,.1f} / "
            + ("-" if trace_s is None else f"{trace_s:,.1f}"),
        ),
    ]
    if report["settle_errors"]:
        errors = ", ".join(f"{k} {v:,}" for k, v in report["settle_errors"].items())
        rows.append(("settle errors", errors))
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)

    pools = Table(title="Pools over the run", box=box.SIMPLE_HEAD)
    for column in ("pool", "capacity", "charged", "utilisation", "lent", "borrowed"):
        pools.add_column(column, justify="left" if column == "pool" else "right")
    for name in (pool.value for pool in POOL_ORDER):
        pool = report["pools"].get(name)
        if pool is not None:
            pools.add_row(
                name,
                f"{pool['capacity_tokens']:,}",
                f"{pool['charged_tokens']:,}",
                f"{pool['utilization']:.1%}",
                f"{pool['lent_tokens']:,}",
                f"{pool['borrowed_tokens']:,}",
            )
    console.print(pools)

    # Narrow padding and no granted column (rows less refused): 80 columns.
    tenants = Table(
        title="Tenants (drawn per row)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    tenants.add_column("tenant")
    tenants.add_column("tier")
    tenants.add_column("task")
    for column in ("rows", "waited", "refused", "tokens used"):
        tenants.add_column(column, justify="right")
    for name, row in report["tenants"].items():
        weight = f" x{row['weight']}" if row["weight"] != 1 else ""
        tenants.add_row(
            escape(name),
            row["tier"] + weight,
            row["task_type"],
            f"{row['requests']:,}",
            f"{row['waited']:,}",
            f"{row['refused']:,}",
            f"{row['tokens_used']:,}",
        )
    console.print(tenants)
    print_decisions(report.get("autoscale", ()), console, "Autoscaler decisions")
    print_capacity(report.get("capacity_over_time", ()), console, "Capacity over time")
