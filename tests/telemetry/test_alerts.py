"""Soft budget thresholds raise their event once per period: log, metric, hook."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from tokenpool_client import AsyncClient

from tests.conftest import ServeFactory
from tests.service._helpers import BUDGET_1000
from tests.telemetry._scrape import scrape

pytestmark = pytest.mark.anyio

# The hook command: appends the event it reads on stdin to a file.
_APPEND = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"


def _alerting(events: Path) -> dict[str, Any]:
    return {
        **BUDGET_1000,
        "tenants": [{"name": "t", "daily_tokens": 1000, "alert_percent": [90, 50]}],
        "hook": {"command": [sys.executable, "-c", _APPEND, str(events)]},
        "telemetry": {"metrics_address": "127.0.0.1:0"},
    }


async def _spend(client: AsyncClient, tokens: int) -> None:
    granted = await client.reserve("b", "t", tokens=tokens)
    await client.settle(granted.reservation_id, "t", output_tokens=tokens)


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_threshold_raises_its_event_once(
    serve: ServeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = tmp_path / "events.jsonl"
    caplog.set_level(logging.WARNING, logger="tokenpool.engine")
    async with serve(**_alerting(events)) as s:
        async with AsyncClient(s.address) as client:
            await _spend(client, 600)
            await _spend(client, 100)
            await _spend(client, 50)
            await _spend(client, 200)
        with anyio.fail_after(10):
            metrics = await scrape(s.metrics_address)
            while "tokenpool_hook_deliveries_total" not in metrics.text:
                await anyio.sleep(0.02)
                metrics = await scrape(s.metrics_address)

    raised = _events(events)
    assert [(e["event"], e["percent"]) for e in raised] == [
        ("budget_alert", 50),
        ("budget_alert", 90),
    ]
    assert raised[0]["subject"] == "t"
    assert raised[0]["subject_kind"] == "tenant"
    assert raised[0]["window"] == "day"
    assert raised[0]["measure"] == "tokens"
    assert (raised[0]["used"], raised[0]["limit"]) == (600, 1000)
    assert (raised[1]["used"], raised[1]["limit"]) == (950, 1000)

    lines = [r for r in caplog.records if r.getMessage().startswith("budget alert")]
    assert len(lines) == 2
    assert "percent=50" in lines[0].getMessage()
    assert metrics.value("tokenpool_budget_alerts_total", percent="50") == 1
    assert metrics.value("tokenpool_budget_alerts_total", percent="90") == 1
    assert metrics.value("tokenpool_hook_deliveries_total", outcome="ok") >= 1
    assert (
        metrics.value("tokenpool_calendar_used_tokens", subject="t", window="day")
        == 950
    )
    assert (
        metrics.value("tokenpool_calendar_limit_tokens", subject="t", window="day")
        == 1000
    )


async def test_restart_does_not_raise_again(
    serve: ServeFactory, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    async with serve(**_alerting(events)) as s, AsyncClient(s.address) as client:
        await _spend(client, 600)
    assert len(_events(events)) == 1

    async with serve(**_alerting(events)) as s, AsyncClient(s.address) as client:
        await _spend(client, 10)

    assert len(_events(events)) == 1
