"""Scheduling figures of one replay run: use, fairness, waits and idle holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tokenpool.core import Tier
from tokenpool.replay._fairness import Demand, fairness
from tokenpool.replay._tally import RowOutcome, RunFacts, percentiles

_NS_PER_MS = 1_000_000


def _tiers(facts: RunFacts, outcomes: Sequence[RowOutcome]) -> dict[str, Tier]:
    """Each tenant's tier: the daemon's where the replay read it, else planned."""
    tiers = {outcome.call.tenant.name: outcome.call.tenant.tier for outcome in outcomes}
    tiers.update((tenant.name, tenant.tier) for tenant in facts.tenants)
    return tiers


def waited_ms(outcome: RowOutcome, max_wait_ms: int) -> int | None:
    """How long a row waited for tokens; None for one refused at once.

    A grant waited its reported waited_ms (0 when served at once); a refusal
    after a wait waited the whole max wait, as the daemon refuses a waiter
    only at its deadline.
    """
    if outcome.granted:
        return outcome.waited_ms
    if outcome.waited_then_refused:
        return max_wait_ms
    return None


def wait_ms_by_tier(
    outcomes: Sequence[RowOutcome], tiers: Mapping[str, Tier], max_wait_ms: int
) -> dict[str, Any]:
    """p50/p95/p99 of the waits of each tier's granted and refused-after-wait rows."""
    waits: dict[str, list[float]] = {tier.value: [] for tier in Tier}
    for outcome in outcomes:
        wait = waited_ms(outcome, max_wait_ms)
        if wait is not None:
            waits[tiers[outcome.call.tenant.name].value].append(wait)
    return {
        tier: {**percentiles(values), "rows": len(values)}
        for tier, values in waits.items()
    }


def basic_fairness(
    outcomes: Sequence[RowOutcome],
    tiers: Mapping[str, Tier],
    *,
    max_wait_ms: int,
    window_s: int,
) -> dict[str, Any]:
    """Jain's index over the backlogged basic tenants (see `_fairness`)."""
    demands = [
        Demand(
            tenant=outcome.call.tenant.name,
            arrival_ns=outcome.call.arrival_ns,
            waited_ns=(waited_ms(outcome, max_wait_ms) or 0) * _NS_PER_MS,
            granted_tokens=outcome.hold if outcome.granted else 0,
            requested_tokens=outcome.hold if outcome.granted else outcome.requested,
        )
        for outcome in outcomes
        if tiers[outcome.call.tenant.name] is Tier.BASIC
    ]
    return fairness(demands, window_s=window_s).as_dict()


def holds(outcomes: Sequence[RowOutcome], *, capacity_seconds: float) -> dict[str, Any]:
    """How much of the holds went unused, for how long, and how often too little.

    Args:
        outcomes: every row of the run.
        capacity_seconds: the budget's capacity times the run's trace
            seconds; 0 leaves idle_in_holds_share at 0.
    """
    settled = [o for o in outcomes if o.granted and o.used is not None]
    unused = [(o, max(0, o.hold - (o.used or 0))) for o in settled]
    idle_token_seconds = sum(tokens * o.call.duration_ns / 1e9 for o, tokens in unused)
    overruns = [(o.used or 0) - o.hold for o in settled if (o.used or 0) > o.hold]

    return {
        "settled": len(settled),
        "held_unused_tokens": sum(tokens for _, tokens in unused),
        "idle_in_holds_share": round(idle_token_seconds / capacity_seconds, 4)
        if capacity_seconds > 0
        else 0.0,
        "overrun_rate": round(len(overruns) / len(settled), 4) if settled else 0.0,
        "overrun_tokens": sum(overruns),
    }


def scheduling_figures(
    facts: RunFacts,
    outcomes: Sequence[RowOutcome],
    pools: Mapping[str, Any],
    *,
    tokens_charged: int,
    max_wait_ms: int,
    fairness_window_s: int,
) -> dict[str, Any]:
    """The figures that compare scheduling policies, as report keys.

    Fairness and idle_in_holds_share need the trace's clock, so they are
    None unless the replay drove its own daemon (mode "simulated").
    """
    tiers = _tiers(facts, outcomes)
    capacity = facts.after.capacity_tokens
    offered = capacity * facts.daemon_seconds / facts.after.window_seconds
    simulated = facts.mode == "simulated"
    figures = holds(outcomes, capacity_seconds=capacity * facts.daemon_seconds)
    if not simulated:
        figures["idle_in_holds_share"] = None

    return {
        "utilization": round(tokens_charged / offered, 4) if offered > 0 else 0.0,
        "fairness": basic_fairness(
            outcomes, tiers, max_wait_ms=max_wait_ms, window_s=fairness_window_s
        )
        if simulated
        else None,
        "wait_ms_by_tier": wait_ms_by_tier(outcomes, tiers, max_wait_ms),
        "borrowed_tokens": sum(pool["borrowed_tokens"] for pool in pools.values()),
        **figures,
    }
