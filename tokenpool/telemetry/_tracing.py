"""Tracer set-up: spans exported through a bounded queue that counts what it drops."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread
from opentelemetry.context import Context
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer

from tokenpool._errors import ConfigError
from tokenpool.telemetry._settings import TelemetrySettings

logger = logging.getLogger(__name__)

# Spans the export queue holds when neither the file nor the SDK's variable
# says: the SDK's own default.
_DEFAULT_MAX_QUEUE_SIZE = 2048

# Name of the tracer the daemon's spans come from.
TRACER_NAME = "tokenpool"

# Why a span never reached the collector, as the spans-dropped metric says.
QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
AT_SHUTDOWN = "shutdown"

DropCounter = Callable[[int, str], None]


def trace_exporters(settings: TelemetrySettings) -> set[str]:
    """Where spans go: the file's choice, else OTEL_TRACES_EXPORTER, else a guess.

    With neither set, spans go to OTLP when an OTLP endpoint is configured
    (in the file or the SDK's variables), and nowhere otherwise: a daemon
    with nothing to send to sends nothing.

    Raises:
        ConfigError: OTEL_TRACES_EXPORTER names an exporter we do not have.
    """
    chosen: set[str]
    if settings.traces_exporter is not None:
        chosen = {settings.traces_exporter}
    elif os.environ.get(OTEL_TRACES_EXPORTER):
        chosen = {
            name.strip().lower()
            for name in os.environ[OTEL_TRACES_EXPORTER].split(",")
            if name.strip()
        }
    elif settings.otlp_endpoint or any(
        os.environ.get(name)
        for name in (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    ):
        chosen = {"otlp"}
    else:
        chosen = {"none"}

    unknown = chosen - {"none", "console", "otlp"}
    if unknown:
        raise ConfigError(
            f"{OTEL_TRACES_EXPORTER} names {sorted(unknown)!r}; tokenpool exports "
            "traces to none, console or otlp."
        )
    return chosen - {"none"}


class _CountingExporter(SpanExporter):
    """Passes spans on and counts those handed over and those that failed."""

    def __init__(self, inner: SpanExporter, on_dropped: DropCounter) -> None:
        self._inner = inner
        self._on_dropped = on_dropped
        # Written by the export thread only; read anywhere.
        self.handed = 0
        self.failed = 0
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.handed += len(spans)
        result = self._inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
            self._on_dropped(len(spans), EXPORT_FAILED)
        return result

    def shutdown(self) -> None:
        # Called twice when a hung export had to be cut short; once is enough.
        if not self._closed:
            self._closed = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class BoundedSpanProcessor(SpanProcessor):
    """The SDK's batch processor, with every lost span counted by reason.

    Its queue is bounded: when the exporter falls behind (a collector that
    is down or never answers), the oldest spans are dropped, never the
    caller slowed. A span counts as in the queue from its end until it is
    handed to the exporter, which is the batch processor's own bookkeeping.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int,
        schedule_delay_ms: int | None,
        on_dropped: DropCounter,
    ) -> None:
        self._exporter = _CountingExporter(exporter, on_dropped)
        self._inner = BatchSpanProcessor(
            self._exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_ms,
            max_export_batch_size=min(512, max_queue_size),
        )
        self._max_queue_size = max_queue_size
        self._on_dropped = on_dropped
        # Written on the event loop only.
        self._ended = 0
        self._dropped = 0

    @property
    def queued(self) -> int:
        """Spans ended but not yet handed to the exporter (about: no lock)."""
        return self._ended - self._dropped - self._exporter.handed

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        if self.queued >= self._max_queue_size:
            # The batch processor drops its oldest span to take this one.
            self._dropped += 1
            self._on_dropped(1, QUEUE_FULL)
        self._ended += 1
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()
        left = self.queued
        if left > 0:
            self._dropped += left
            self._on_dropped(left, AT_SHUTDOWN)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def stop_exporting(self) -> None:
        """Shuts the exporter down, cutting a hung export short (any thread)."""
        self._exporter.shutdown()


class Tracing:
    """The daemon's tracer provider, and its bounded shutdown."""

    def __init__(
        self, provider: TracerProvider, processors: list[BoundedSpanProcessor]
    ):
        self._provider = provider
        self._processors = processors
        self.tracer: Tracer = provider.get_tracer(TRACER_NAME)

    @classmethod
    def build(
        cls,
        settings: TelemetrySettings,
        resource: Resource,
        on_dropped: DropCounter,
    ) -> Tracing | None:
        """A provider exporting where the settings say; None when spans go nowhere.

        Raises:
            ConfigError: the exporter or a queue setting is not usable.
        """
        exporters = trace_exporters(settings)
        if not exporters:
            return None

        queue_size = settings.max_queue_size or _queue_size_from_env()
        sampler = None
        if settings.sample_ratio is not None:
            sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
        # Shutdown is ours to do, bounded: the SDK's exit hook could wait on
        # a collector that never answers.
        provider = TracerProvider(
            resource=resource, sampler=sampler, shutdown_on_exit=False
        )
        processors = []
        for name in sorted(exporters):
            exporter: SpanExporter
            if name == "otlp":
                timeout = settings.export_timeout_ms
                exporter = OTLPSpanExporter(
                    endpoint=settings.otlp_endpoint,
                    timeout=None if timeout is None else timeout / 1000,
                )
            else:
                exporter = ConsoleSpanExporter()
            processor = BoundedSpanProcessor(
                exporter,
                max_queue_size=queue_size,
                schedule_delay_ms=settings.schedule_delay_ms,
                on_dropped=on_dropped,
            )
            provider.add_span_processor(processor)
            processors.append(processor)
        logger.info(
            "tracing on exporters=%s max_queue_size=%d",
            ",".join(sorted(exporters)),
            queue_size,
            extra={"exporters": sorted(exporters), "max_queue_size": queue_size},
        )
        return cls(provider, processors)

    async def aclose(self, timeout_s: float) -> None:
        """Exports what is queued, within the time allowed, then stops.

        A collector that does not answer cannot hold the daemon up: after
        half the time the exporters are shut, which cuts a hung export
        short, and a thread still stuck after the rest is abandoned.
        """
        with anyio.move_on_after(timeout_s / 2):
            await anyio.to_thread.run_sync(
                self._provider.force_flush, abandon_on_cancel=True
            )
        for processor in self._processors:
            processor.stop_exporting()
        with anyio.move_on_after(timeout_s / 2):
            await anyio.to_thread.run_sync(
                self._provider.shutdown, abandon_on_cancel=True
            )


def _queue_size_from_env() -> int:
    raw = os.environ.get(OTEL_BSP_MAX_QUEUE_SIZE)
    if raw is None:
        return _DEFAULT_MAX_QUEUE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ConfigError(
            f"{OTEL_BSP_MAX_QUEUE_SIZE}={raw!r} is not a positive whole number "
            "of spans; unset it or set telemetry.max_queue_size."
        )
    return size
