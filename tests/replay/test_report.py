"""The scheduling figures of replay's report, on constructed outcomes."""

from __future__ import annotations

from typing import Any

import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.core import TaskType, TenantPolicy, Tier
from tokenpool.replay import Call, RowOutcome, RunFacts, Tally, build_report

S = 1_000_000_000
A = TenantPolicy(name="a")
B = TenantPolicy(name="b")
P = TenantPolicy(name="p", tier=Tier.PRIORITY, weight=2)


def _call(index: int, tenant: TenantPolicy, arrival_s: float, duration_s: int) -> Call:
    return Call(
        index=index,
        tenant=tenant,
        task_type=TaskType.GENERATION,
        arrival_ns=int(arrival_s * S),
        input_tokens=50,
        output_tokens=10,
        duration_ns=duration_s * S,
        lease_ms=60_000,
        idempotency_key=f"k{index}",
    )


def _status(charged: int) -> pb.BudgetStatus:
    return pb.BudgetStatus(
        name="b",
        capacity_tokens=600,
        window_seconds=60,
        pools=[
            pb.PoolStatus(name="basic", capacity_tokens=390, charged_tokens=charged),
            pb.PoolStatus(name="priority", capacity_tokens=132),
            pb.PoolStatus(name="burst", capacity_tokens=78),
        ],
    )


def _report(mode: str = "simulated") -> dict[str, Any]:
    tally = Tally()
    outcomes = [
        # a: granted at once at 1.5 s; 40 of its 100 tokens unused for 2 s.
        RowOutcome(_call(0, A, 1.5, 2), granted=True, hold=100, used=60),
        # b: waited 3 s, then used 120 of 100 (an overrun of 20).
        RowOutcome(_call(1, B, 0, 1), granted=True, waited_ms=3000, hold=100, used=120),
        # p: waited 1 s; 100 of 200 unused for 4 s; 50 borrowed from burst.
        RowOutcome(
            _call(2, P, 0, 4),
            granted=True,
            waited_ms=1000,
            hold=200,
            used=100,
            pool="priority",
            sources=(("priority", 150), ("burst", 50)),
        ),
        # a: waited the full 10 s, then refused.
        RowOutcome(
            _call(3, A, 0, 1), reason="POOL_EXHAUSTED", waited_then_refused=True
        ),
        # b: refused at once, a full queue: no wait counted.
        RowOutcome(_call(4, B, 0, 1), reason="QUEUE_FULL"),
    ]
    tally.outcomes = {o.call.index: o for o in outcomes}
    facts = RunFacts(
        trace="t.csv",
        budget="b",
        mode=mode,
        address="in-process",
        speed=None,
        seed=7,
        skew=1.1,
        tenants=[A, B, P],
        task_types=dict.fromkeys("abp", TaskType.GENERATION),
        before=_status(0),
        after=_status(600),
        charged_before=0,
        charged_after=600,
        open_reservations_at_end=0,
        real_seconds=1.0,
        daemon_seconds=120.0,
        trace_seconds=120.0,
        queueing="fair",
        learning=True,
    )
    return build_report(
        facts, tally, max_wait_ms=10_000, max_output_tokens=1024, fairness_window_s=10
    )


def test_report_utilization_is_charged_over_offered() -> None:
    # 600 charged of 600 per 60 s over 120 s.
    assert _report()["utilization"] == 0.5


def test_report_holds_count_unused_idle_and_overruns() -> None:
    report = _report()

    assert report["settled"] == 3
    assert report["held_unused_tokens"] == 40 + 100
    # (40 x 2 s + 100 x 4 s) / (600 tokens x 120 s)
    assert report["idle_in_holds_share"] == round(480 / 72_000, 4)
    assert report["overrun_rate"] == round(1 / 3, 4)
    assert report["overrun_tokens"] == 20
    assert report["borrowed_tokens"] == 50


def test_report_waits_by_tier_include_refusals_after_wait() -> None:
    waits = _report()["wait_ms_by_tier"]

    assert waits["basic"]["rows"] == 3
    assert waits["basic"]["p50"] == 3000
    assert waits["basic"]["p99"] == pytest.approx(10_000 - 0.02 * 7000)
    assert waits["priority"] == {"p50": 1000, "p95": 1000, "p99": 1000, "rows": 1}


def test_report_fairness_over_backlogged_basic_tenants() -> None:
    fairness = _report()["fairness"]

    # a waits through seconds 0-9, b through 0-2: seconds 0-2 count. Only
    # second 1 has a grant (a's 100), so both indexes are 1/2 where defined.
    assert fairness == {
        "jain_1s": 0.5,
        "jain_1s_ceiling": 0.5,
        "jain_window": 0.5,
        "jain_maxmin": 0.5,
        "jain_backlogged": None,
        "seconds_backlogged": 0,
        "window_s": 10,
        "seconds_counted": 3,
        "seconds_undefined_1s": 2,
        "seconds_undefined_window": 1,
    }


def test_report_names_policy_and_learning() -> None:
    report = _report()

    assert (report["queueing"], report["learning"]) == ("fair", "on")
    assert report["tenants"]["p"]["task_type"] == "generation"


def test_report_without_trace_clock_leaves_time_figures_out() -> None:
    report = _report(mode="flood")

    assert report["fairness"] is None
    assert report["idle_in_holds_share"] is None
    assert report["held_unused_tokens"] == 140
