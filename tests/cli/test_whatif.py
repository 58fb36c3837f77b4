"""`tokenpool replay --what-if` and `--from-ledger`: offline runs of the real engine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.cli.test_replay import (
    TINY_BUDGET,
    TRACE,
    assert_consistent,
    replay,
    replay_refused,
)

DEMO = TRACE.parent

# The what-if run and a live `--speed max` replay of the same rows and
# configuration may differ by at most this share of the rows in each count,
# and of the tokens in each token sum (in practice they are equal: both
# decide every call at its trace time on the same engine).
TOLERANCE = 0.01

AUTOSCALED = (
    TINY_BUDGET
    + """
max_capacity_tokens = 60000
[budgets.autoscale]
enabled = true
interval_seconds = 10
grow_after_intervals = 2
cooldown_seconds = 20
"""
)


# How much later a live replay may record an autoscaler decision than the
# what-if run, in seconds. Both decide at the same interval end; the live
# replay's clock steps from call to call (arrivals and settles), so its
# daemon records the decision at the first call after that end.
DECISION_LAG_S = 0.5

# Wait percentiles of the two runs may differ by this share of --max-wait-ms.
WAIT_TOLERANCE = 0.02

# The bundled hour's peak, 18:38 to 18:41 UTC (about 1,200 rows), against
# deploy/demo/autoscale.toml with its capacity cut from 650,000 to 350,000:
# the autoscaler grows it at every chance (each a cooldown after the last,
# so a decision recorded late would put the next one off), while requests
# wait, borrow from burst and are refused.
PEAK = ("2023-11-16 18:38", "2023-11-16 18:41")


def _at(decision: dict[str, Any]) -> float:
    return datetime.fromisoformat(decision["at"].replace("Z", "+00:00")).timestamp()


def _peak_rows(path: Path) -> Path:
    """The trace's rows of the PEAK minutes, as a trace file of their own."""
    lines = TRACE.read_text().splitlines()
    start, end = PEAK
    kept = [line for line in lines[1:] if start <= line[:16] < end]
    path.write_text("\n".join([lines[0], *kept]) + "\n")
    return path


def _close(live: float, offline: float, scale: float) -> bool:
    return abs(live - offline) <= TOLERANCE * scale


def assert_same_figures(live: dict[str, Any], offline: dict[str, Any]) -> None:
    rows = live["requests"]
    assert offline["requests"] == rows
    for key in ("granted", "refused", "waited", "refused_after_wait"):
        assert _close(live[key], offline[key], rows), key
    for key in ("tokens_reserved", "tokens_used", "tokens_charged"):
        assert _close(live[key], offline[key], live[key]), key
    for reason, count in live["refusal_reasons"].items():
        assert _close(count, offline["refusal_reasons"].get(reason, 0), rows), reason
    assert _close(live["utilization"], offline["utilization"], live["utilization"])


def test_what_if_matches_a_live_replay_of_the_same_rows(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_BUDGET)
    args = ("--rows", "300", "--config", str(config), "--max-wait-ms", "3000")

    live = replay(tmp_path, *args, "--speed", "max")
    offline = replay(tmp_path, *args, "--what-if", str(config))

    runs = offline["runs"]
    assert [run["config"] for run in runs] == ["current", "what-if"]
    assert live["waited"] > 0 and live["refused"] > 0
    for run in runs:
        assert_consistent(run["report"], 300)
        assert run["report"]["daemon"] == "what-if"
        assert_same_figures(live, run["report"])


def test_what_if_shows_what_another_config_changes(tmp_path: Path) -> None:
    current = tmp_path / "tiny.toml"
    current.write_text(TINY_BUDGET)
    bigger = tmp_path / "bigger.toml"
    bigger.write_text(TINY_BUDGET.replace("40000", "400000"))
    args = ("--rows", "300", "--config", str(current), "--max-wait-ms", "3000")

    report = replay(tmp_path, *args, "--what-if", str(bigger))

    small, large = (run["report"] for run in report["runs"])
    assert small["capacity_tokens"] == 40_000
    assert large["capacity_tokens"] == 400_000
    assert small["refused"] > 0 == large["refused"]
    assert report["granted"] == small["granted"]


def test_autoscaled_what_if_lists_its_decisions(tmp_path: Path) -> None:
    current = tmp_path / "tiny.toml"
    current.write_text(TINY_BUDGET)
    autoscaled = tmp_path / "autoscaled.toml"
    autoscaled.write_text(AUTOSCALED)
    args = ("--rows", "400", "--config", str(current), "--max-wait-ms", "3000")

    report = replay(tmp_path, *args, "--what-if", str(autoscaled))

    fixed, scaled = (run["report"] for run in report["runs"])
    assert fixed["autoscale"] == []
    decisions = scaled["autoscale"]
    assert decisions and decisions[0]["action"] == "grow"
    assert decisions[0]["capacity_from"] == 40_000
    assert all(d["capacity_to"] <= 60_000 for d in decisions)
    assert "sustained" in decisions[0]["reason"]
    assert scaled["refused"] < fixed["refused"]


def test_ledger_reservations_replay_against_a_config(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_BUDGET)
    ledger = tmp_path / "kept.db"
    args = ("--config", str(config), "--max-wait-ms", "3000")
    live = replay(
        tmp_path, "--rows", "300", *args, "--speed", "max", "--ledger", str(ledger)
    )

    again = replay(tmp_path, "--from-ledger", str(ledger), *args, trace=None)
    window = replay(
        tmp_path,
        "--from-ledger",
        str(ledger),
        *args,
        "--since",
        "2023-11-16 18:15:00",
        "--until",
        "2023-11-16 18:16:00",
        trace=None,
    )

    # Refusals are counted in the ledger, not described: only grants replay,
    # and with the refused calls gone almost all of them are granted again.
    assert again["requests"] == live["granted"]
    assert again["refused"] <= 0.05 * again["requests"]
    assert again["tokens_used"] >= 0.95 * live["tokens_used"]
    tiers = {name: t["tier"] for name, t in again["tenants"].items()}
    assert tiers["search-svc"] == "priority"
    assert again["trace"] == "kept.db"
    assert 0 < window["requests"] < again["requests"]


def test_what_if_refuses_a_daemon_address() -> None:
    done = replay_refused("--what-if", "pyproject.toml", "--address", "127.0.0.1:1")

    assert "offline" in done.stderr


def test_replay_own_daemon_runs_open_whatever_auth_says(tmp_path: Path) -> None:
    config = tmp_path / "closed.toml"
    digest = "0" * 64
    config.write_text(TINY_BUDGET + f'\n[auth]\nadmin_token_sha256 = "{digest}"\n')

    report = replay(tmp_path, "--rows", "50", "--config", str(config), "--speed", "max")

    assert report["requests"] == 50
    assert report["granted"] > 0


def test_autoscaled_what_if_decides_as_a_live_replay(tmp_path: Path) -> None:
    trace = _peak_rows(tmp_path / "peak.csv")
    config = tmp_path / "autoscale.toml"
    demo = (DEMO / "autoscale.toml").read_text()
    assert "\ncapacity_tokens = 650000\n" in demo
    config.write_text(demo.replace("= 650000\n", "= 350000\n"))
    args = ("--config", str(config))

    live = replay(tmp_path, *args, "--speed", "max", trace=trace)
    offline = replay(tmp_path, *args, "--what-if", str(config), trace=trace)

    report = offline["runs"][1]["report"]
    assert live["waited"] > 100 and live["refused"] > 0
    assert_same_figures(live, report)
    # The same decisions, each a little later in the live replay at most.
    decisions = live["autoscale"]
    assert [d["action"] for d in decisions].count("grow") >= 3
    same = ("action", "applied", "capacity_from", "capacity_to", "shares_to")
    assert [[d[k] for k in same] for d in decisions] == [
        [d[k] for k in same] for d in report["autoscale"]
    ]
    for at_live, at_offline in zip(decisions, report["autoscale"], strict=True):
        assert 0 <= _at(at_live) - _at(at_offline) <= DECISION_LAG_S
    assert report["capacity_tokens"] == live["capacity_tokens"] > 350_000
    # Waits, and what each pool lent and borrowed.
    max_wait = live["max_wait_ms"]
    for key in ("p50", "p95"):
        gap = abs(live["wait_ms"][key] - report["wait_ms"][key])
        assert gap <= WAIT_TOLERANCE * max_wait, key
    assert live["wait_ms"]["p95"] > 1000
    assert live["pools"]["burst"]["lent_tokens"] > 0
    for name, pool in live["pools"].items():
        for key in ("lent_tokens", "borrowed_tokens"):
            figure = report["pools"][name][key]
            assert _close(pool[key], figure, live["tokens_charged"]), (name, key)
