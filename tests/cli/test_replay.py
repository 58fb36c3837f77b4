"""Tests of `tokenpool replay`, run as a real command on the bundled trace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenpool.core import TaskType, TenantPolicy
from tokenpool.replay import (
    DEFAULT_TENANTS,
    TASKS_BY_RANK,
    call_duration_ns,
    draw_tenants,
    parse_tenants,
    parse_timestamp,
    task_by_rank,
    with_tasks,
)

TRACE = Path(__file__).parents[2] / "deploy" / "demo" / "azure-llm-2023-conv.csv"

# Keys SPEC's appendix fixes for the JSON report.
REPORT_KEYS = {
    "requests",
    "granted",
    "refused",
    "waited",
    "tokens_reserved",
    "tokens_used",
    "tokens_charged",
    "open_reservations_at_end",
    "wait_ms",
    "rpc_latency_ms",
    "throughput_rps",
    "pools",
}

# Figures every run's report adds for comparing scheduling policies.
SCHEDULING_KEYS = {
    "utilization",
    "fairness",
    "wait_ms_by_tier",
    "borrowed_tokens",
    "held_unused_tokens",
    "idle_in_holds_share",
    "overrun_rate",
    "refused",
}

# A budget far too small for the trace's first minutes: it must queue,
# refuse and lend from burst.
TINY_BUDGET = """
[[budgets]]
name = "tiny"
capacity_tokens = 40000
queue_limit = 4
"""


def replay(tmp_path: Path, *args: str, trace: Path | None = TRACE) -> dict[str, Any]:
    """Runs `python -m tokenpool replay` on the trace; returns its JSON report."""
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    source = [] if trace is None else [str(trace)]
    command = [sys.executable, "-m", "tokenpool", "replay", *source, *args]
    done = subprocess.run(
        [*command, "--json", str(report)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "granted" in done.stdout
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def replay_refused(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs a replay the command line must refuse before it starts."""
    done = subprocess.run(
        [sys.executable, "-m", "tokenpool", "replay", str(TRACE), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return done


def assert_consistent(report: dict[str, Any], rows: int) -> None:
    """The invariants every replay against an idle daemon must keep."""
    assert set(report) >= REPORT_KEYS
    assert report["requests"] == rows == report["granted"] + report["refused"]
    assert report["tokens_charged"] == report["tokens_used"] > 0
    assert report["open_reservations_at_end"] == 0
    assert report["settle_errors"] == {}
    for figure in ("wait_ms", "rpc_latency_ms"):
        assert set(report[figure]) >= {"p50", "p95", "p99"}
    assert set(report["pools"]) == {"basic", "priority", "burst"}
    for pool in report["pools"].values():
        assert {"utilization", "lent_tokens", "borrowed_tokens"} <= set(pool)
    assert set(report) >= SCHEDULING_KEYS
    assert report["utilization"] > 0
    assert 0 <= report["overrun_rate"] <= 1
    assert report["held_unused_tokens"] >= 0
    for tier in ("basic", "priority"):
        assert set(report["wait_ms_by_tier"][tier]) == {"p50", "p95", "p99", "rows"}


def test_replay_max_speed_writes_full_report(tmp_path: Path) -> None:
    report = replay(tmp_path, "--rows", "500", "--speed", "max")

    assert_consistent(report, 500)
    assert report["mode"] == "simulated"
    assert (report["queueing"], report["learning"]) == ("fair", "off")
    assert [(run["policy"], run["learning"]) for run in report["runs"]] == [
        ("fair", "off")
    ]
    assert report["runs"][0]["report"]["granted"] == report["granted"]
    assert report["tenants"]["chat-web"]["task_type"] == "generation"
    assert report["throughput_rps"] > 0
    tenants = report["tenants"]
    assert sum(t["requests"] for t in tenants.values()) == 500
    first = DEFAULT_TENANTS[0].name
    assert tenants[first]["requests"] == max(t["requests"] for t in tenants.values())


def test_replay_tiny_budget_waits_refuses_and_lends(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_BUDGET)
    args = ("--rows", "300", "--config", str(config), "--max-wait-ms", "3000")

    report = replay(tmp_path, *args, "--speed", "max")

    assert_consistent(report, 300)
    assert report["budget"] == "tiny"
    assert report["waited"] > 0
    assert report["refused"] > 0
    assert report["refusal_reasons"].keys() <= {"POOL_EXHAUSTED", "QUEUE_FULL"}
    assert report["wait_ms"]["p99"] > 0
    pools = report["pools"]
    assert pools["burst"]["lent_tokens"] > 0
    borrowed = pools["basic"]["borrowed_tokens"] + pools["priority"]["borrowed_tokens"]
    assert borrowed == pools["burst"]["lent_tokens"]


def test_replay_both_policies_and_learning_run_each_combination(
    tmp_path: Path,
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_BUDGET)
    args = ("--rows", "200", "--config", str(config), "--max-wait-ms", "3000")

    report = replay(
        tmp_path, *args, "--speed", "max", "--policy", "both", "--learning", "both"
    )

    runs = report["runs"]
    assert [(run["policy"], run["learning"]) for run in runs] == [
        ("fifo", "off"),
        ("fifo", "on"),
        ("fair", "off"),
        ("fair", "on"),
    ]
    first = runs[0]["report"]
    assert {k: v for k, v in report.items() if k != "runs"} == first
    for run in runs:
        result = run["report"]
        assert (result["queueing"], result["learning"]) == (
            run["policy"],
            run["learning"],
        )
        assert_consistent(result, 200)
        assert result["waited"] > 0
        fairness = result["fairness"]
        assert fairness["window_s"] == 10
        assert fairness["seconds_counted"] > 0
        for index in ("jain_1s", "jain_window"):
            assert 0 < fairness[index] <= 1
        assert 0 < result["idle_in_holds_share"] < 1
    # Same trace, seed and tenants in every run.
    drawn = [
        {name: (t["requests"], t["task_type"]) for name, t in r["tenants"].items()}
        for r in (run["report"] for run in runs)
    ]
    assert all(tenants == drawn[0] for tenants in drawn)


def test_replay_policy_with_running_daemon_is_refused() -> None:
    done = replay_refused("--address", "127.0.0.1:1", "--policy", "fair")

    assert "in-process" in done.stderr


def test_replay_unknown_policy_is_refused() -> None:
    done = replay_refused("--policy", "lottery")

    assert "'lottery' is not one of fifo, fair or both" in done.stderr


def test_replay_driven_clock_same_outcome_at_any_speed(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_BUDGET)
    args = ("--rows", "200", "--config", str(config), "--max-wait-ms", "3000")

    fast = replay(tmp_path, *args, "--speed", "max")
    paced = replay(tmp_path, *args, "--speed", "5000")

    assert paced["speed"] == 5000.0
    for key in ("granted", "refused", "waited", "tokens_used", "refusal_reasons"):
        assert paced[key] == fast[key]
    assert paced["tenants"] == fast["tenants"]


def test_tenant_draw_is_seeded_and_skewed() -> None:
    drawn = draw_tenants(5000, DEFAULT_TENANTS, skew=1.1, seed=7)
    again = draw_tenants(5000, DEFAULT_TENANTS, skew=1.1, seed=7)
    other = draw_tenants(5000, DEFAULT_TENANTS, skew=1.1, seed=8)

    assert drawn == again
    assert drawn != other
    assert draw_tenants(100, DEFAULT_TENANTS, skew=1.1, seed=7) == drawn[:100]
    counts = Counter(tenant.name for tenant in drawn)
    by_rank = [counts[tenant.name] for tenant in DEFAULT_TENANTS]
    assert by_rank[0] == max(by_rank)
    assert by_rank[0] > 2 * by_rank[2] > 0
    assert by_rank[0] > 5 * by_rank[-1] > 0


def test_tenant_draw_without_skew_is_even() -> None:
    drawn = draw_tenants(8000, DEFAULT_TENANTS, skew=0, seed=7)

    counts = Counter(tenant.name for tenant in drawn)
    assert min(counts.values()) > 800


def test_parse_tenants_reads_tiers_weights_and_tasks() -> None:
    tenants = parse_tenants("web:basic, search:priority:3, tag:basic:1:Classification")

    assert [
        (t.name, t.policy.tier.value, t.policy.weight, t.task_type.value)
        for t in tenants
    ] == [
        ("web", "basic", 1, "generation"),
        ("search", "priority", 3, "summarization"),
        ("tag", "basic", 1, "classification"),
    ]


def test_task_by_rank_cycles_without_classification() -> None:
    tasks = [task_by_rank(rank) for rank in range(1, 14)]

    assert tasks[:6] == list(TASKS_BY_RANK)
    assert tasks[6:12] == list(TASKS_BY_RANK)
    assert tasks[12] is TaskType.GENERATION
    assert TaskType.CLASSIFICATION not in tasks
    assert [t.task_type for t in with_tasks([TenantPolicy(name="x")])] == [
        TaskType.GENERATION
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("web", "not name:tier"),
        ("web:basic:1:poetry", "task type 'poetry' is not one of"),
        ("web:basic:1:code:x", "not name:tier"),
        ("web:gold", "tier"),
        ("web:basic:0", "weight"),
        ("web:basic:x", "whole number"),
        ("web:basic,web:priority", "listed twice"),
    ],
)
def test_parse_tenants_bad_entry_is_refused(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_tenants(text)


def test_call_duration_models_prefill_and_decode() -> None:
    assert call_duration_ns(0, 0) == 300_000_000
    assert call_duration_ns(8000, 40) == 2_300_000_000


def test_parse_timestamp_keeps_seven_digits_as_utc() -> None:
    assert parse_timestamp("2023-11-16 18:15:46.6805900") == 1700158546680590000
    assert parse_timestamp("2023-11-16T18:15:46Z") == 1700158546000000000


def test_replay_missing_trace_exits_with_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tokenpool", "replay", str(tmp_path / "no.csv")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 1
    assert "TraceError" in done.stderr
    assert "no.csv" in done.stderr


def test_replay_malformed_row_names_its_line(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,many,109\n"
    )

    done = subprocess.run(
        [sys.executable, "-m", "tokenpool", "replay", str(trace)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 1
    assert "line 3" in done.stderr
    assert "'many'" in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_serving(address: str, daemon: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.communicate()[1]
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.1)
                continue
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
    raise AssertionError(f"the daemon at {address} did not start serving")


@pytest.fixture
def running_daemon(tmp_path: Path) -> Iterator[str]:
    """A `tokenpool serve` subprocess on a free port; yields its address."""
    address = f"127.0.0.1:{_free_port()}"
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[server]\naddress = "{address}"\ngrace_seconds = 1\n\n'
        f'[ledger]\npath = "{tmp_path / "serve.db"}"\n\n'
        '[[budgets]]\nname = "default"\ncapacity_tokens = 600000\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "tokenpool", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait_serving(address, daemon)
        yield address
    finally:
        daemon.terminate()
        daemon.communicate(timeout=20)


def test_replay_against_running_daemon(tmp_path: Path, running_daemon: str) -> None:
    flood = replay(
        tmp_path, "--address", running_daemon, "--rows", "300", "--speed", "max"
    )
    paced = replay(
        tmp_path, "--address", running_daemon, "--rows", "100", "--speed", "5000"
    )

    assert_consistent(flood, 300)
    assert flood["mode"] == "flood"
    assert flood["daemon"] == running_daemon
    assert flood["refused"] == 0
    assert_consistent(paced, 100)
    assert paced["mode"] == "paced"
    assert paced["duration_s"]["trace"] > 0
