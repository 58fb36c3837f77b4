"""The SDK's standard OTEL_* variables configure a real daemon's traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from tokenpool_client import AsyncClient, Client

from tests.conftest import ServeFactory
from tests.daemon._process import DaemonProcess, free_port, write_config
from tests.service._helpers import BUDGET_1000
from tests.telemetry._collector import Receiver, attributes, otlp_receiver

pytestmark = pytest.mark.anyio

RESERVE = "tokenpool.v1.TokenPool/Reserve"

# The daemon process's budget, in its TOML file.
_BUDGET = '[[budgets]]\nname = "b"\ncapacity_tokens = 1000\n'

# Variables that name the service or choose the sampler, cleared per test.
_VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def caller() -> Iterator[Tracer]:
    """The calling service's own tracer: samples every trace it starts."""
    provider = TracerProvider(shutdown_on_exit=False)
    yield provider.get_tracer("llm-service")
    provider.shutdown()


def _traced(receiver: Receiver, **telemetry: Any) -> dict[str, Any]:
    """Spans over OTLP to the receiver; the exporter left to the variables."""
    return {
        **BUDGET_1000,
        "telemetry": {
            "otlp_endpoint": receiver.endpoint,
            "schedule_delay_ms": 20,
            **telemetry,
        },
    }


@pytest.mark.parametrize(
    ("environment", "configured", "expected"),
    [
        ({}, None, "tokenpool"),
        ({}, "from-file", "from-file"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "team=ml,service.name=from-attributes"},
            "from-file",
            "from-attributes",
        ),
        (
            {
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
                "OTEL_SERVICE_NAME": "from-variable",
            },
            "from-file",
            "from-variable",
        ),
    ],
    ids=["default", "file", "resource-attributes", "service-name-variable"],
)
async def test_service_name_prefers_the_environment(
    serve: ServeFactory,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    configured: str | None,
    expected: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    named = {} if configured is None else {"service_name": configured}

    async with otlp_receiver() as receiver, serve(**_traced(receiver, **named)) as s:
        async with AsyncClient(s.address) as client:
            await client.reserve("b", "t", tokens=10)
        await receiver.wait_for(RESERVE)

    assert receiver.services == {expected}


async def _reserve_twice(address: str, caller: Tracer) -> None:
    """One Reserve that starts its trace, one inside the caller's sampled span."""
    async with AsyncClient(address) as client:
        await client.reserve("b", "root", tokens=10)
        with caller.start_as_current_span("llm-call"):
            await client.reserve("b", "child", tokens=10)


@pytest.mark.parametrize(
    ("sampler", "argument", "sampled"),
    [
        ("always_on", None, {"root", "child"}),
        ("always_off", None, set()),
        ("traceidratio", "1", {"root", "child"}),
        ("traceidratio", "0", set()),
        # A sampled caller's trace is continued whatever the ratio.
        ("parentbased_traceidratio", "0", {"child"}),
        ("parentbased_always_off", None, {"child"}),
    ],
)
async def test_sampler_variables_choose_what_is_exported(
    serve: ServeFactory,
    monkeypatch: pytest.MonkeyPatch,
    caller: Tracer,
    sampler: str,
    argument: str | None,
    sampled: set[str],
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if argument is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", argument)

    async with otlp_receiver() as receiver:
        async with serve(**_traced(receiver)) as s:
            await _reserve_twice(s.address, caller)
        # The daemon has stopped: whatever it sampled was flushed by now.
        spans = receiver.spans

    reserves = [span for span in spans if span.name == RESERVE]
    assert {attributes(span)["tokenpool.tenant"] for span in reserves} == sampled
    assert len(reserves) == len(sampled)
    if not sampled:
        assert spans == []


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The pretty-printed JSON objects in a log that also holds text lines."""
    found: list[dict[str, Any]] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if line == "{":
            block = [line]
        elif block is not None:
            block.append(line)
            if line == "}":
                found.append(json.loads("\n".join(block)))
                block = None
    return found


@pytest.mark.slow
def test_console_exporter_prints_spans_to_stdout(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, _BUDGET)
    log = tmp_path / "daemon.log"
    environment = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "console-smoke",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    daemon = DaemonProcess(config, port, log, env=environment)
    try:
        with Client(daemon.address, timeout_s=5) as client:
            granted = client.reserve("b", "t", tokens=10)
            client.settle(granted.reservation_id, "t", output_tokens=5)
        code = daemon.terminate(10)
    finally:
        if daemon.process.poll() is None:
            daemon.kill()

    text = log.read_text()
    assert code == 0, text
    spans = {span["name"]: span for span in _json_objects(text)}
    assert {RESERVE, "tokenpool.v1.TokenPool/Settle"} <= set(spans), text
    reserve = spans[RESERVE]
    assert reserve["kind"] == "SpanKind.SERVER"
    assert reserve["attributes"]["tokenpool.reservation_id"] == granted.reservation_id
    assert reserve["resource"]["attributes"]["service.name"] == "console-smoke"
