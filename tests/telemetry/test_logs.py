"""Log lines: JSON with the event's fields, and the trace id inside a span."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from tokenpool_client import AsyncClient, RefusedError

from tests.conftest import ServeFactory
from tests.service._helpers import BUDGET_1000
from tokenpool._fields import log_event
from tokenpool.telemetry import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restored_logging")
def test_json_lines_carry_fields_and_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    log = logging.getLogger("tokenpool.test")

    with tracer.start_as_current_span("rpc") as span:
        log_event(
            log,
            logging.INFO,
            "reserve answered",
            {"budget": "b", "tokens_granted": 10, "lenders": ("burst:5",)},
        )
    line = json.loads(capsys.readouterr().err.strip())

    assert (
        line["message"] == "reserve answered budget=b tokens_granted=10 lenders=burst:5"
    )
    assert (line["level"], line["logger"]) == ("INFO", "tokenpool.test")
    assert (line["budget"], line["tokens_granted"], line["lenders"]) == (
        "b",
        10,
        ["burst:5"],
    )
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


@pytest.mark.usefixtures("restored_logging")
def test_text_lines_are_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")

    log_event(logging.getLogger("tokenpool.test"), logging.INFO, "x", {"a": 1})

    assert capsys.readouterr().err.strip().endswith("INFO tokenpool.test: x a=1")


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[tuple[int, str]]:
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.getMessage().startswith(event + " ")
    ]


@pytest.mark.anyio
async def test_refusals_and_overruns_log_one_info_line_per_interval(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tokenpool.engine")
    async with serve(**BUDGET_1000) as s, AsyncClient(s.address) as client:
        await client.reserve("b", "t", tokens=900, lease_ms=600_000)
        for _ in range(3):
            with pytest.raises(RefusedError):
                await client.reserve("b", "t", tokens=500)
        for _ in range(2):
            # 5 % beyond the hold: an overrun within the 10 % limit.
            granted = await client.reserve("b", "u", tokens=20)
            await client.settle(granted.reservation_id, "u", output_tokens=21)
        s.clock.advance(10)
        with pytest.raises(RefusedError):
            await client.reserve("b", "t", tokens=500)
        granted = await client.reserve("b", "u", tokens=20)
        await client.settle(granted.reservation_id, "u", output_tokens=21)

    refused = _lines(caplog, "reserve refused")
    assert [level for level, _ in refused] == [
        logging.INFO,
        logging.DEBUG,
        logging.DEBUG,
        logging.INFO,
    ]
    assert "reason=POOL_EXHAUSTED" in refused[0][1]
    assert refused[0][1].endswith(" quieted=0")
    assert refused[3][1].endswith(" quieted=2")

    overruns = _lines(caplog, "overrun")
    assert [level for level, _ in overruns] == [logging.INFO, logging.INFO]
    assert "tenant=u" in overruns[0][1] and "tokens_overrun=1" in overruns[0][1]
    assert overruns[0][1].endswith(" quieted=0")
    assert overruns[1][1].endswith(" quieted=1")
