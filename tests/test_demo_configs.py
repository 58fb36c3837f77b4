"""The demo configurations are valid, and the autoscaling one autoscales."""

from __future__ import annotations

import itertools
import logging
import time
from datetime import datetime
from pathlib import Path

import pytest

from tokenpool.cli._app import _loop_options
from tokenpool.cli._whatif import Options, Source, what_if
from tokenpool.daemon import load_settings
from tokenpool.replay import DEFAULT_SEED, DEFAULT_SKEW, DEFAULT_WINDOW_S, with_tasks

DEMO = Path(__file__).resolve().parent.parent / "deploy" / "demo"


@pytest.mark.parametrize("name", sorted(p.name for p in DEMO.glob("*.toml")))
def test_demo_config_is_valid(name: str) -> None:
    assert load_settings(DEMO / name).budgets


def test_autoscale_demo_is_the_demo_with_the_autoscaler_on() -> None:
    demo = load_settings(DEMO / "demo.toml").budgets[0]
    scaled = load_settings(DEMO / "autoscale.toml").budgets[0]

    assert scaled.autoscale.enabled and not demo.autoscale.enabled
    assert scaled.peak_capacity == 900_000
    assert scaled.floor_capacity == demo.capacity_tokens == scaled.capacity_tokens
    differing = {
        name
        for name in type(demo).model_fields
        if getattr(demo, name) != getattr(scaled, name)
    }
    assert differing == {"autoscale", "max_capacity_tokens"}


# One what-if run of the whole hour: about 10 s of CPU, so about as long on
# an idle 2-core machine, but 40 to 80 s when a dozen processes share it. The
# test records both (the test's user properties what_if_seconds and
# what_if_cpu_seconds, and a log line) and is bounded by its own timeout.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_autoscale_demo_follows_the_peak_and_comes_back(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    # The suite captures DEBUG records: here that would be most of the time.
    # Each settle far above its hold is a warning; the report counts them.
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.ERROR, logger="tokenpool.engine._closing")
    settings = load_settings(DEMO / "autoscale.toml")
    policy = settings.budgets[0]
    source = Source(
        trace=DEMO / "azure-llm-2023-conv.csv",
        ledger=None,
        since_wall_ns=0,
        until_wall_ns=2**63 - 1,
        rows=None,
    )
    options = Options(
        budget=policy.name,
        tenants=with_tasks(settings.tenants),
        skew=DEFAULT_SKEW,
        seed=DEFAULT_SEED,
        max_output_tokens=1024,
        max_wait_ms=10_000,
        max_lease_ms=int(policy.max_lease_seconds * 1000),
        fairness_window_s=DEFAULT_WINDOW_S,
    )

    started, cpu = time.perf_counter(), time.process_time()
    report = what_if(source, options, [("what-if", settings)], _loop_options())
    took = {
        "what_if_seconds": round(time.perf_counter() - started, 1),
        "what_if_cpu_seconds": round(time.process_time() - cpu, 1),
    }
    request.node.user_properties.extend(took.items())
    logging.getLogger(__name__).warning("bundled hour what-if took %s", took)

    assert report["requests"] == 19_366 == report["granted"]
    changes = [
        (_minute(d["at"]), d["action"], d["capacity_from"], d["capacity_to"])
        for d in report["autoscale"]
        if d["action"] in ("grow", "shrink")
    ]
    assert all(d["applied"] for d in report["autoscale"])
    # Grows while the peak builds, 18:38 to 18:48 UTC, and only then.
    grows = [change for change in changes if change[1] == "grow"]
    assert len(grows) >= 2
    assert all("18:38" <= at < "18:48" for at, *_ in grows)
    assert max(to for *_, to in changes) > policy.capacity_tokens == 650_000
    # Back to the configured capacity by the end, and it stays there.
    assert changes[-1][3] == report["capacity_tokens"] == 650_000
    # No flapping: every grow before every shrink, and no change of
    # direction within the cooldown.
    actions = [action for _, action, *_ in changes]
    assert actions == sorted(actions)  # "grow" < "shrink"
    cooldown = policy.autoscale.cooldown_seconds
    times = [_seconds(d["at"]) for d in report["autoscale"] if d["capacity_to"]]
    assert all(b - a >= cooldown for a, b in itertools.pairwise(times))


def _seconds(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _minute(at: str) -> str:
    """HH:MM of an ISO time."""
    return at[11:16]
