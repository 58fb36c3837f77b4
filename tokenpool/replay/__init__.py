"""Replay of recorded LLM traffic through a daemon, and its report."""

from __future__ import annotations

from tokenpool.replay._errors import ReplayError, TraceError
from tokenpool.replay._plan import (
    DEFAULT_SEED,
    DEFAULT_SKEW,
    DEFAULT_TENANTS,
    Call,
    call_duration_ns,
    draw_tenants,
    parse_tenants,
    plan_calls,
)
from tokenpool.replay._report import RunFacts, Tally, build_report, print_summary
from tokenpool.replay._runner import ProgressHook, ReplaySetup, run_replay
from tokenpool.replay._simulation import Simulation, WatchedClock
from tokenpool.replay._trace import TraceRow, parse_timestamp, read_trace

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SKEW",
    "DEFAULT_TENANTS",
    "Call",
    "ProgressHook",
    "ReplayError",
    "ReplaySetup",
    "RunFacts",
    "Simulation",
    "Tally",
    "TraceError",
    "TraceRow",
    "WatchedClock",
    "build_report",
    "call_duration_ns",
    "draw_tenants",
    "parse_tenants",
    "parse_timestamp",
    "plan_calls",
    "print_summary",
    "read_trace",
    "run_replay",
]
