"""What a replay saw: per-row outcomes, the JSON report and its tables."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from tokenpool_client import Reservation
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.core import POOL_ORDER, TenantPolicy
from tokenpool.replay._plan import Call


@dataclass(slots=True)
class RowOutcome:
    """What became of one row's Reserve and Settle."""

    call: Call
    granted: bool = False
    reason: str = ""
    """Why the Reserve was refused: the daemon's reason, else the status."""
    waited_ms: int = 0
    """Daemon-reported wait of a grant, in the daemon's clock ms."""
    waited_then_refused: bool = False
    hold: int = 0
    pool: str = ""
    sources: tuple[tuple[str, int], ...] = ()
    used: int | None = None
    """Usage settled; None until a Settle succeeded."""
    settle_error: str = ""
    """The status of a failed Settle, e.g. FAILED_PRECONDITION."""


class Tally:
    """Collects outcomes and call latencies while a replay runs."""

    def __init__(self) -> None:
        self.outcomes: dict[int, RowOutcome] = {}
        self.latencies_ms: list[float] = []
        self.done = 0
        self.granted_count = 0
        self.refused_count = 0
        self.waited_count = 0

    def granted(self, call: Call, reservation: Reservation, latency_s: float) -> None:
        """Records a granted Reserve and its latency."""
        self.outcomes[call.index] = RowOutcome(
            call,
            granted=True,
            waited_ms=reservation.waited_ms,
            hold=reservation.granted_tokens,
            pool=reservation.pool,
            sources=tuple((draw.pool, draw.tokens) for draw in reservation.sources),
        )
        self.latencies_ms.append(latency_s * 1000)
        self.granted_count += 1
        self.waited_count += reservation.waited_ms > 0

    def refused(
        self, call: Call, reason: str, latency_s: float, *, after_wait: bool
    ) -> None:
        """Records a refused Reserve; the row is done."""
        self.outcomes[call.index] = RowOutcome(
            call, reason=reason, waited_then_refused=after_wait
        )
        self.latencies_ms.append(latency_s * 1000)
        self.refused_count += 1
        self.done += 1

    def settled(self, call: Call, latency_s: float, error: str = "") -> None:
        """Records a Settle (or its failure); the row is done."""
        outcome = self.outcomes[call.index]
        if error:
            outcome.settle_error = error
        else:
            outcome.used = call.used_tokens
        self.latencies_ms.append(latency_s * 1000)
        self.done += 1


@dataclass(frozen=True, slots=True)
class RunFacts:
    """How a replay ran, and the daemon's figures before and after it."""

    trace: str
    budget: str
    mode: str
    """One of simulated, paced or flood."""
    address: str
    """The daemon's address; "in-process" marks one replay started."""
    speed: float | None
    """Trace seconds per real second; None at --speed max."""
    seed: int
    skew: float
    tenants: Sequence[TenantPolicy]
    before: pb.BudgetStatus
    after: pb.BudgetStatus
    charged_before: int
    charged_after: int
    open_reservations_at_end: int
    real_seconds: float
    daemon_seconds: float
    """Time the daemon's clock moved during the run (trace time in-process)."""
    trace_seconds: float | None
    """Trace time the run covered; None when a flood ignores arrivals."""


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 by linear interpolation; zeros when empty."""
    ordered = sorted(values)
    result: dict[str, float] = {}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        if not ordered:
            result[name] = 0.0
            continue
        at = (len(ordered) - 1) * q
        low, high = math.floor(at), math.ceil(at)
        value = ordered[low] + (ordered[high] - ordered[low]) * (at - low)
        result[name] = round(value, 3)
    return result


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
            "requests": 0,
            "granted": 0,
            "refused": 0,
            "waited": 0,
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
        row["tokens_used"] += outcome.used or 0
    return table


def build_report(
    facts: RunFacts, tally: Tally, *, max_wait_ms: int, max_output_tokens: int
) -> dict[str, Any]:
    """The replay's report, with the keys SPEC's appendix fixes and extras.

    `wait_ms` covers granted rows only (the daemon's waited_ms, zeros
    included; refusals after a wait are counted in
    `refused_after_wait`). `rpc_latency_ms` covers every Reserve and
    Settle, less the time spent waiting for tokens, in real ms.
    """
    outcomes = [tally.outcomes[index] for index in sorted(tally.outcomes)]
    granted = [o for o in outcomes if o.granted]
    reasons = Counter(o.reason for o in outcomes if not o.granted)
    settle_errors = Counter(o.settle_error for o in granted if o.settle_error)
    waited = [o.waited_ms for o in granted if o.waited_ms > 0]

    return {
        "requests": len(outcomes),
        "granted": len(granted),
        "refused": len(outcomes) - len(granted),
        "waited": len(waited),
        "refused_after_wait": sum(o.waited_then_refused for o in outcomes),
        "tokens_reserved": sum(o.hold for o in granted),
        "tokens_used": sum(o.used or 0 for o in granted),
        "tokens_charged": facts.charged_after - facts.charged_before,
        "open_reservations_at_end": facts.open_reservations_at_end,
        "wait_ms": percentiles([o.waited_ms for o in granted]),
        "wait_ms_of_waiters": percentiles(waited),
        "rpc_latency_ms": percentiles(tally.latencies_ms),
        "throughput_rps": round(len(outcomes) / facts.real_seconds, 2)
        if facts.real_seconds > 0
        else 0.0,
        "pools": _pools(facts, outcomes),
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
    }


def _ms(figures: Mapping[str, float]) -> str:
    return " / ".join(f"{figures[name]:,.1f}" for name in ("p50", "p95", "p99"))


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
    rows = [
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

    tenants = Table(
        title="Tenants (drawn per row)", box=box.SIMPLE_HEAD, pad_edge=False
    )
    tenants.add_column("tenant")
    tenants.add_column("tier")
    for column in ("rows", "granted", "waited", "refused", "tokens used"):
        tenants.add_column(column, justify="right")
    for name, row in report["tenants"].items():
        weight = f" x{row['weight']}" if row["weight"] != 1 else ""
        tenants.add_row(
            escape(name),
            row["tier"] + weight,
            f"{row['requests']:,}",
            f"{row['granted']:,}",
            f"{row['waited']:,}",
            f"{row['refused']:,}",
            f"{row['tokens_used']:,}",
        )
    console.print(tenants)
