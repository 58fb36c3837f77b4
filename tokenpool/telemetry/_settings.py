"""Configuration of traces, metrics, the Prometheus endpoint and the operator hook.

Every key that is left unset falls back on the OpenTelemetry SDK's own
`OTEL_*` environment variables, then on the SDK's defaults; a key set in
the file wins over the environment (service.name aside: the SDK's
variables win, so a deployment can rename one image's daemon).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Largest TCP port number.
_MAX_PORT = 65_535

# Distinct tenants (and models, and values of each label) a metric keeps
# before folding the rest into "other": bounded series for Prometheus.
DEFAULT_MAX_TENANTS_PER_METRIC = 100

# Seconds telemetry may take to flush and stop once the daemon stopped.
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 2.0

# Seconds one operator-hook delivery may take (command or POST).
DEFAULT_HOOK_TIMEOUT_SECONDS = 5.0

# Hook events waiting for delivery; beyond this they are dropped and counted.
DEFAULT_HOOK_MAX_PENDING = 100

Exporter = Literal["none", "console", "otlp"]


def check_address(address: str) -> str:
    """Refuses what is not host:port with a port from 0 to 65535."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= _MAX_PORT:
        raise ValueError(
            f"{address!r} is not host:port with a port from 0 to {_MAX_PORT} "
            "(e.g. 127.0.0.1:9464, 0.0.0.0:9464)"
        )
    return address


class TelemetrySettings(BaseModel):
    """Traces and metrics: where they go and how much they may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_name: str | None = Field(None, min_length=1)
    """Resource service.name, unless OTEL_SERVICE_NAME or a service.name in
    OTEL_RESOURCE_ATTRIBUTES gives one (those win); neither: "tokenpool"."""
    traces_exporter: Exporter | None = None
    """none, console or otlp; unset: OTEL_TRACES_EXPORTER, else otlp when an
    OTLP endpoint variable is set, else none."""
    otlp_endpoint: str | None = Field(None, min_length=1)
    """OTLP gRPC endpoint of traces and metrics (e.g. http://jaeger:4317);
    unset: the OTEL_EXPORTER_OTLP_*ENDPOINT variables."""
    sample_ratio: float | None = Field(None, ge=0, le=1)
    """Share of new traces sampled (parent-based); unset: OTEL_TRACES_SAMPLER."""
    max_queue_size: int | None = Field(None, ge=1, le=1_000_000)
    """Spans waiting for export; beyond it they are dropped and counted.
    Unset: OTEL_BSP_MAX_QUEUE_SIZE, else 2048."""
    schedule_delay_ms: int | None = Field(None, ge=1, le=600_000)
    """Pause between span exports; unset: OTEL_BSP_SCHEDULE_DELAY, else 5000."""
    export_timeout_ms: int | None = Field(None, ge=1, le=600_000)
    """Longest one OTLP export may take, retries included; unset:
    OTEL_EXPORTER_OTLP_TIMEOUT, else 10 s."""
    metrics_exporter: Exporter | None = None
    """Push metrics: none, console or otlp; unset: OTEL_METRICS_EXPORTER,
    else none (the Prometheus endpoint is configured apart)."""
    metrics_export_interval_ms: int | None = Field(None, ge=100, le=3_600_000)
    """Pause between pushed metric exports; unset: OTEL_METRIC_EXPORT_INTERVAL."""
    metrics_address: str | None = None
    """host:port of the Prometheus scrape endpoint (/metrics); unset: none."""
    max_tenants_per_metric: int = Field(DEFAULT_MAX_TENANTS_PER_METRIC, ge=1)
    """Distinct tenants, models and label values per metric; the rest are
    counted under "other"."""
    metric_labels: tuple[str, ...] = ()
    """Request label keys copied onto the token and cost metrics (as label_<key>)."""
    shutdown_timeout_seconds: float = Field(
        DEFAULT_SHUTDOWN_TIMEOUT_SECONDS, ge=0, le=60
    )
    """Longest telemetry may take to flush and stop at shutdown."""

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, address: str | None) -> str | None:
        return None if address is None else check_address(address)


# Events the operator hook can be told about (the `event` key of each).
HOOK_EVENTS = ("autoscale", "budget_alert", "budget_changed")


class HookSettings(BaseModel):
    """The operator hook: a command or a URL told about events, such as alerts.

    Deliveries run in the background, one at a time, each within its
    timeout; a full queue drops new events. Failures are logged and counted,
    never retried and never in the way of an RPC.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: tuple[str, ...] = ()
    """Program and arguments run per event, with the event as JSON on stdin."""
    url: str | None = Field(None, pattern=r"^https?://")
    """http(s) URL the event is POSTed to as JSON."""
    events: tuple[str, ...] = ()
    """Event names delivered (budget_alert, budget_changed, autoscale); empty: all."""
    timeout_seconds: float = Field(DEFAULT_HOOK_TIMEOUT_SECONDS, gt=0, le=600)
    """Longest one delivery may take; the command is killed after it."""
    max_pending: int = Field(DEFAULT_HOOK_MAX_PENDING, ge=1, le=100_000)
    """Events waiting for delivery; beyond it new ones are dropped."""

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [event for event in events if event not in HOOK_EVENTS]
        if unknown:
            raise ValueError(
                f"unknown hook events {unknown}; use some of {list(HOOK_EVENTS)}, "
                "or leave events out for all of them"
            )
        return events

    @property
    def configured(self) -> bool:
        """Whether events go anywhere."""
        return bool(self.command) or self.url is not None
