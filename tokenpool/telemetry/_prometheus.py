"""The Prometheus scrape endpoint: OpenTelemetry metrics served over HTTP."""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

import anyio
import anyio.to_thread
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, start_http_server

from tokenpool._errors import ConfigError

logger = logging.getLogger(__name__)


class PrometheusEndpoint:
    """A `/metrics` endpoint on its own thread, with a registry of its own.

    The registry is this endpoint's, not prometheus_client's global one, so
    that several daemons in one process (tests, replays) never mix series.
    """

    def __init__(self, address: str) -> None:
        self._address = address
        # auto_describe off: registering must not collect before the reader
        # belongs to a meter provider.
        self._registry = CollectorRegistry(auto_describe=False)
        self.reader = PrometheusMetricReader(
            registry=self._registry, scope_info_enabled=False
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> str:
        """Binds and starts serving; returns the host:port bound.

        Raises:
            ConfigError: the address cannot be bound.
        """
        host, _, port = self._address.rpartition(":")
        host = host.strip("[]")
        try:
            server, self._thread = await anyio.to_thread.run_sync(
                lambda: start_http_server(int(port), host, registry=self._registry)
            )
        except OSError as exc:
            raise ConfigError(
                f"Cannot serve metrics on telemetry.metrics_address "
                f"{self._address!r}: {exc}; pick a free port or another address."
            ) from exc

        self._server = server
        bound = f"{host}:{server.server_port}"
        logger.info(
            "metrics endpoint listening address=%s", bound, extra={"address": bound}
        )
        return bound

    async def aclose(self) -> None:
        """Stops serving and frees the port; safe to call twice or unstarted."""
        server, self._server = self._server, None
        if server is None:
            return

        def stop() -> None:
            server.shutdown()
            server.server_close()

        await anyio.to_thread.run_sync(stop, abandon_on_cancel=True)
