"""Log lines: JSON with the event's fields, and the trace id inside a span."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

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
