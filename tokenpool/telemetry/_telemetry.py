"""One daemon's telemetry: traces, metrics, the scrape endpoint and the hook."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from contextlib import AsyncExitStack
from types import TracebackType

import anyio
import anyio.to_thread
import grpc
from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)

from tokenpool import __version__
from tokenpool._errors import ConfigError
from tokenpool.core import TeamPolicy, TenantPolicy
from tokenpool.engine import Engine, Observer
from tokenpool.telemetry._hook import OperatorHook
from tokenpool.telemetry._interceptor import TelemetryInterceptor
from tokenpool.telemetry._metrics import Metrics
from tokenpool.telemetry._observer import TelemetryObserver
from tokenpool.telemetry._prometheus import PrometheusEndpoint
from tokenpool.telemetry._readings import LiveReadings, Readings
from tokenpool.telemetry._settings import HookSettings, TelemetrySettings
from tokenpool.telemetry._tracing import Tracing

logger = logging.getLogger(__name__)

# The service name when neither the environment nor the file gives one.
DEFAULT_SERVICE_NAME = "tokenpool"

# Name of the meter the daemon's instruments belong to.
_METER_NAME = "tokenpool"


class Telemetry:
    """Traces, metrics, the Prometheus endpoint and the operator hook of a daemon.

    Built from the settings, with only what they turn on: with nothing
    configured, `observer` is None and `interceptors` is empty, and the
    daemon runs as if telemetry did not exist. Use it as an async context
    manager around the daemon's life: entering starts the scrape endpoint
    and the hook's delivery task; leaving flushes and stops everything
    within `shutdown_timeout_seconds`, whatever the collector does.
    """

    def __init__(self, settings: TelemetrySettings, hook: HookSettings) -> None:
        self._settings = settings
        self.service_name = _service_name(settings.service_name)
        resource = Resource.create(
            {SERVICE_NAME: self.service_name, SERVICE_VERSION: __version__}
        )

        self._endpoint = None
        readers: list[MetricReader] = []
        if settings.metrics_address is not None:
            self._endpoint = PrometheusEndpoint(settings.metrics_address)
            readers.append(self._endpoint.reader)
        readers += _push_readers(settings)
        self._meter_provider: MeterProvider | None = None
        self.metrics: Metrics | None = None
        if readers:
            self._meter_provider = MeterProvider(
                resource=resource, metric_readers=readers, shutdown_on_exit=False
            )
            self.metrics = Metrics(
                self._meter_provider.get_meter(_METER_NAME, __version__),
                self._readings,
                max_values=settings.max_tenants_per_metric,
                label_keys=settings.metric_labels,
            )

        self._tracing = Tracing.build(settings, resource, self._spans_dropped)
        self.hook: OperatorHook | None = None
        if hook.configured:
            self.hook = OperatorHook(
                hook, service=self.service_name, on_outcome=self._hook_outcome
            )
        self._live: LiveReadings | None = None
        self._stack = AsyncExitStack()
        tracer = None if self._tracing is None else self._tracing.tracer
        self.observer: Observer | None = None
        """What the engine reports to; None when nothing would listen."""
        if tracer is not None or self.metrics is not None or self.hook is not None:
            notify = None if self.hook is None else self.hook.notify
            self.observer = TelemetryObserver(tracer, self.metrics, notify)
        self.metrics_address: str | None = None
        """The scrape endpoint's host:port once started (its real port)."""

    def interceptors(
        self, services: Collection[str], address: str
    ) -> list[grpc.aio.ServerInterceptor]:
        """Server interceptors for the named services; none when nothing listens."""
        tracer = None if self._tracing is None else self._tracing.tracer
        if tracer is None and self.metrics is None:
            return []
        return [
            TelemetryInterceptor(
                services, tracer=tracer, metrics=self.metrics, server_address=address
            )
        ]

    def watch(
        self,
        engine: Engine,
        tenants: Sequence[TenantPolicy] = (),
        teams: Sequence[TeamPolicy] = (),
    ) -> None:
        """Lets the gauges read this engine (call on the event loop)."""
        if self.metrics is not None:
            self._live = LiveReadings(engine, tenants, teams)

    def _readings(self) -> Readings:
        live = self._live
        return Readings() if live is None else live()

    def _spans_dropped(self, count: int, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.spans_dropped(count, reason)

    def _hook_outcome(self, event: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.hook_delivery(event, outcome)

    async def __aenter__(self) -> Telemetry:
        try:
            if self._endpoint is not None:
                self.metrics_address = await self._endpoint.start()
            if self.hook is not None:
                await self._stack.enter_async_context(self.hook)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Flushes and stops, within the shutdown timeout; safe to call twice."""
        timeout = self._settings.shutdown_timeout_seconds
        try:
            # The hook delivers what is queued within its own timeout.
            await self._stack.aclose()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_exporting(timeout)

    async def _stop_exporting(self, timeout_s: float) -> None:
        """Stops traces and metrics side by side, both within one timeout."""
        tracing, self._tracing = self._tracing, None
        provider, self._meter_provider = self._meter_provider, None
        with anyio.move_on_after(timeout_s):
            async with anyio.create_task_group() as tasks:
                if tracing is not None:
                    tasks.start_soon(tracing.aclose, timeout_s)
                if provider is not None:
                    tasks.start_soon(_stop_meters, provider, timeout_s)
        if self._endpoint is not None:
            await self._endpoint.aclose()
        if tracing is not None or provider is not None:
            logger.info("telemetry stopped service=%s", self.service_name)


def _service_name(configured: str | None) -> str:
    """The resource's service.name, the SDK's variables first, then the file.

    OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES,
    as in the SDK, and both win over the file, unlike other keys: one image's
    configuration is renamed per deployment from the environment.
    """
    detected = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    if detected:
        return str(detected)
    return configured or DEFAULT_SERVICE_NAME


async def _stop_meters(provider: MeterProvider, timeout_s: float) -> None:
    """Shuts the meter provider down in a thread, abandoned if it hangs."""
    await anyio.to_thread.run_sync(
        lambda: provider.shutdown(timeout_millis=timeout_s * 1000),
        abandon_on_cancel=True,
    )


def _push_readers(settings: TelemetrySettings) -> list[MetricReader]:
    """Readers that push metrics (OTLP or console), as the settings ask.

    Raises:
        ConfigError: OTEL_METRICS_EXPORTER names an exporter we do not have.
    """
    chosen: set[str]
    if settings.metrics_exporter is not None:
        chosen = {settings.metrics_exporter}
    else:
        raw = os.environ.get(OTEL_METRICS_EXPORTER, "none")
        chosen = {name.strip().lower() for name in raw.split(",") if name.strip()}
        # Prometheus is served at telemetry.metrics_address instead.
        chosen.discard("prometheus")
    unknown = chosen - {"none", "console", "otlp"}
    if unknown:
        raise ConfigError(
            f"{OTEL_METRICS_EXPORTER} names {sorted(unknown)!r}; tokenpool pushes "
            "metrics to none, console or otlp (Prometheus: --metrics-address)."
        )

    readers: list[MetricReader] = []
    for name in sorted(chosen - {"none"}):
        exporter: MetricExporter
        if name == "otlp":
            timeout = settings.export_timeout_ms
            exporter = OTLPMetricExporter(
                endpoint=settings.otlp_endpoint,
                timeout=None if timeout is None else timeout / 1000,
            )
        else:
            exporter = ConsoleMetricExporter()
        readers.append(
            PeriodicExportingMetricReader(
                exporter, export_interval_millis=settings.metrics_export_interval_ms
            )
        )
    return readers
