"""Telemetry at the daemon's edges: traces, metrics, logs and the operator hook.

Nothing here is imported by the core or the engine: the engine reports its
decisions to an `Observer`, and `TelemetryObserver` turns them into span
attributes and events, metrics and hook events.
"""

from __future__ import annotations

from tokenpool.telemetry._cardinality import OTHER, BoundedValues
from tokenpool.telemetry._hook import OperatorHook
from tokenpool.telemetry._interceptor import TelemetryInterceptor
from tokenpool.telemetry._logs import configure_logging
from tokenpool.telemetry._metrics import METRICS, Metrics, MetricSpec
from tokenpool.telemetry._observer import PREFIX, TelemetryObserver
from tokenpool.telemetry._prometheus import PrometheusEndpoint
from tokenpool.telemetry._readings import LiveReadings, Readings, Spend
from tokenpool.telemetry._settings import HookSettings, TelemetrySettings
from tokenpool.telemetry._telemetry import DEFAULT_SERVICE_NAME, Telemetry
from tokenpool.telemetry._tracing import BoundedSpanProcessor, Tracing

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "METRICS",
    "OTHER",
    "PREFIX",
    "BoundedSpanProcessor",
    "BoundedValues",
    "HookSettings",
    "LiveReadings",
    "MetricSpec",
    "Metrics",
    "OperatorHook",
    "PrometheusEndpoint",
    "Readings",
    "Spend",
    "Telemetry",
    "TelemetryInterceptor",
    "TelemetryObserver",
    "TelemetrySettings",
    "Tracing",
    "configure_logging",
]
