"""Log set-up for the daemon's process: text or JSON lines on stderr.

Records logged inside a span carry its trace and span ids, so a log line
leads to its trace.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

# The text layout: time, level, logger, then the event and its key=value pairs.
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Keys of a JSON line, renamed from the LogRecord's attribute names.
_JSON_FORMAT = "{asctime}{levelname}{name}{message}"
_JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


class _TraceContext(logging.Filter):
    """Adds trace_id and span_id to records made while a span is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class _TextFormatter(logging.Formatter):
    """The text layout, with the trace id appended when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            line += f" trace_id={trace_id}"
        return line


def configure_logging(level: str, fmt: Literal["text", "json"]) -> None:
    """Sends every log to stderr; only the process's entry point calls this."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceContext())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(_JSON_FORMAT, style="{", rename_fields=_JSON_RENAMES)
        )
    else:
        handler.setFormatter(_TextFormatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
