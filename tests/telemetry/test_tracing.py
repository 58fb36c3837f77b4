"""The span queue is bounded and every span it loses is counted."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tokenpool._errors import ConfigError
from tokenpool.telemetry import BoundedSpanProcessor, TelemetrySettings
from tokenpool.telemetry._tracing import trace_exporters


class _StuckExporter(SpanExporter):
    """Blocks every export until released, like a collector that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_full_queue_drops_and_counts_every_lost_span() -> None:
    dropped: Counter[str] = Counter()
    exporter = _StuckExporter()
    processor = BoundedSpanProcessor(
        exporter,
        max_queue_size=5,
        schedule_delay_ms=10_000,
        on_dropped=lambda count, reason: dropped.update({reason: count}),
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")

    for _ in range(50):
        tracer.start_span("rpc").end()
    assert processor.queued <= 5
    assert dropped["queue_full"] >= 40

    exporter.release.set()
    provider.shutdown()

    assert exporter.exported + sum(dropped.values()) == 50


def test_exporter_choice_follows_file_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    assert trace_exporters(TelemetrySettings()) == set()

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert trace_exporters(TelemetrySettings()) == {"otlp"}

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert trace_exporters(TelemetrySettings()) == {"console", "otlp"}
    assert trace_exporters(TelemetrySettings(traces_exporter="none")) == set()

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="zipkin"):
        trace_exporters(TelemetrySettings())
