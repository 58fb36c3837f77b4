"""Replay of recorded LLM traffic through a daemon, and its report."""

from __future__ import annotations

from tokenpool.replay._errors import ReplayError, TraceError
from tokenpool.replay._fairness import (
    DEFAULT_WINDOW_S,
    Demand,
    Fairness,
    backlog_by_second,
    backlogged_seconds,
    fairness,
    grants_by_second,
    jain_index,
    max_min_shares,
    pending_by_second,
)
from tokenpool.replay._plan import (
    DEFAULT_SEED,
    DEFAULT_SKEW,
    DEFAULT_TENANTS,
    TASKS_BY_RANK,
    Call,
    ReplayTenant,
    call_duration_ns,
    draw_tenants,
    parse_tenants,
    plan_calls,
    task_by_rank,
    with_tasks,
)
from tokenpool.replay._recorder import MemoryRecorder
from tokenpool.replay._report import (
    build_report,
    print_capacity,
    print_comparison,
    print_decisions,
    print_summary,
)
from tokenpool.replay._runner import ProgressHook, ReplaySetup, run_replay
from tokenpool.replay._simulation import Simulation, WatchedClock
from tokenpool.replay._tally import RowOutcome, RunFacts, Tally
from tokenpool.replay._trace import TraceRow, parse_timestamp, read_trace
from tokenpool.replay._whatif import WhatIfSetup, run_what_if

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SKEW",
    "DEFAULT_TENANTS",
    "DEFAULT_WINDOW_S",
    "TASKS_BY_RANK",
    "Call",
    "Demand",
    "Fairness",
    "MemoryRecorder",
    "ProgressHook",
    "ReplayError",
    "ReplaySetup",
    "ReplayTenant",
    "RowOutcome",
    "RunFacts",
    "Simulation",
    "Tally",
    "TraceError",
    "TraceRow",
    "WatchedClock",
    "WhatIfSetup",
    "backlog_by_second",
    "backlogged_seconds",
    "build_report",
    "call_duration_ns",
    "draw_tenants",
    "fairness",
    "grants_by_second",
    "jain_index",
    "max_min_shares",
    "parse_tenants",
    "parse_timestamp",
    "pending_by_second",
    "plan_calls",
    "print_capacity",
    "print_comparison",
    "print_decisions",
    "print_summary",
    "read_trace",
    "run_replay",
    "run_what_if",
    "task_by_rank",
    "with_tasks",
]
