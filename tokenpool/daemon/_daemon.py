"""The daemon: ledger, engine and gRPC server under one task group."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

import anyio
import anyio.to_thread
import grpc
from anyio.abc import TaskStatus
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import ConfigError
from tokenpool.daemon._config import Settings
from tokenpool.engine import Clock, Engine, SystemClock
from tokenpool.ledger import Ledger
from tokenpool.service import (
    AdminServicer,
    AuthInterceptor,
    TokenPoolServicer,
    add_service,
    method_rules,
)
from tokenpool.telemetry import Telemetry, TelemetryInterceptor

logger = logging.getLogger(__name__)

# Longest the ledger may take to flush and close once the server stopped.
_CLOSE_TIMEOUT_S = 10.0

_SERVICES = (
    pb.DESCRIPTOR.services_by_name["TokenPool"].full_name,
    pb.DESCRIPTOR.services_by_name["Admin"].full_name,
)


@dataclass(frozen=True, slots=True)
class Running:
    """What a started daemon tells whoever started it."""

    address: str
    """host:port actually bound (the real port when 0 was asked for)."""
    engine: Engine
    ledger: Ledger
    metrics_address: str | None = None
    """host:port of the Prometheus endpoint, when one is configured."""


class Daemon:
    """Serves the API until asked to stop, then drains and closes the ledger.

    `run` is meant for `task_group.start`: it reports a `Running` once the
    server accepts calls. `stop` (or SIGTERM/SIGINT under `serve_forever`)
    stops intake, lets in-flight calls finish within the grace period,
    and flushes the ledger.
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._stop = anyio.Event()

    def stop(self) -> None:
        """Asks a running daemon to drain and stop; safe to call repeatedly."""
        self._stop.set()

    async def run(
        self, *, task_status: TaskStatus[Running] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serves until `stop`; see the class docstring."""
        settings = self._settings
        # Certificate and token files are read before anything else starts.
        access, tls = await anyio.to_thread.run_sync(self._access)
        async with Telemetry(settings.telemetry, settings.hook) as telemetry:
            await self._run(telemetry, access, tls, task_status)

    async def _run(
        self,
        telemetry: Telemetry,
        access: list[grpc.aio.ServerInterceptor],
        tls: grpc.ServerCredentials | None,
        task_status: TaskStatus[Running],
    ) -> None:
        """Serves until `stop`, with telemetry already started."""
        settings = self._settings
        # Telemetry first, so that a call refused by access control is traced.
        interceptors = [
            *telemetry.interceptors(_SERVICES, settings.server.address),
            *access,
        ]
        # Bind first: a daemon that cannot listen must not touch the ledger.
        server, bound = self._bind(interceptors, tls)
        for interceptor in interceptors:
            if isinstance(interceptor, TelemetryInterceptor):
                interceptor.listening_on(bound)
        try:
            ledger = await Ledger.open(
                settings.ledger.path,
                durability=settings.ledger.durability,
                busy_timeout_ms=settings.ledger.timeout_ms,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await server.stop(None)
            raise
        try:
            async with anyio.create_task_group() as tasks:
                await tasks.start(ledger.run)
                engine = Engine(
                    budgets=settings.budgets,
                    tenants=settings.tenants,
                    limits=settings.limits,
                    clock=self._clock,
                    ledger=ledger,
                    teams=settings.teams,
                    prices=settings.prices,
                    calendar_timezone=settings.calendar_timezone,
                    observer=telemetry.observer,
                )
                await engine.restore()
                telemetry.watch(engine, settings.tenants, settings.teams)
                await tasks.start(engine.run_sweeper)
                running = Running(bound, engine, ledger, telemetry.metrics_address)
                await self._serve(server, running, task_status)
                await engine.flush_refusals()
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT_S):
                # Already stopped after a normal run; frees the port otherwise.
                await server.stop(None)
                await ledger.aclose()
            logger.info("daemon stopped ledger=%s", settings.ledger.path)

    def _access(
        self,
    ) -> tuple[list[grpc.aio.ServerInterceptor], grpc.ServerCredentials | None]:
        """The access-control interceptor and TLS credentials the settings ask for.

        Raises:
            ConfigError: a certificate or token file cannot be read.
        """
        settings = self._settings
        tls = settings.server.tls
        server_credentials = None if tls is None else tls._to_server_credentials()
        transport = "plaintext"
        if tls is not None:
            transport = "mtls" if tls.require_client_cert else "tls"
        if not settings.auth.configured:
            logger.info(
                "access control off: no credentials configured, loopback only "
                "transport=%s",
                transport,
            )
            return [], server_credentials

        credentials = settings.auth._to_credentials()
        if not credentials.has_admin:
            logger.warning("no admin token configured; admin calls are refused")
        logger.info(
            "access control on admin_token=%s tenant_keys=%d transport=%s",
            "yes" if credentials.has_admin else "no",
            credentials.tenant_key_count,
            transport,
        )
        services = pb.DESCRIPTOR.services_by_name
        rules = method_rules(services["TokenPool"], services["Admin"])
        teams = {t.name: t.team for t in settings.tenants if t.team is not None}
        return [AuthInterceptor(credentials, rules, teams)], server_credentials

    def _bind(
        self,
        interceptors: list[grpc.aio.ServerInterceptor],
        tls: grpc.ServerCredentials | None,
    ) -> tuple[grpc.aio.Server, str]:
        """A server bound to the configured address, and the address it got."""
        # Without this, a second daemon could bind the same port and take half
        # the connections with state of its own.
        server = grpc.aio.server(
            interceptors=interceptors, options=[("grpc.so_reuseport", 0)]
        )
        address = self._settings.server.address
        try:
            if tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, tls)
        except RuntimeError as exc:
            raise ConfigError(
                f"Cannot listen on server.address {address!r}: {exc}; pick a free "
                "port or another address."
            ) from exc
        return server, f"{address.rsplit(':', 1)[0]}:{port}"

    async def _serve(
        self,
        server: grpc.aio.Server,
        running: Running,
        task_status: TaskStatus[Running],
    ) -> None:
        engine, ledger = running.engine, running.ledger
        services = pb.DESCRIPTOR.services_by_name
        add_service(server, TokenPoolServicer(engine), services["TokenPool"])
        add_service(server, AdminServicer(engine, ledger), services["Admin"])
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        await server.start()
        for service in ("", *_SERVICES):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "listening address=%s ledger=%s metrics_address=%s",
            running.address,
            self._settings.ledger.path,
            running.metrics_address or "-",
        )
        task_status.started(running)

        try:
            await self._stop.wait()
        finally:
            with anyio.CancelScope(shield=True):
                grace = self._settings.server.grace_seconds
                logger.info("shutdown started grace_seconds=%s", grace)
                await health_servicer.enter_graceful_shutdown()
                engine.begin_shutdown()
                await server.stop(grace)

    async def serve_forever(self) -> None:
        """Runs until SIGTERM or SIGINT, then drains (the `serve` command)."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._watch_signals)
            await self.run()
            tasks.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                logger.info("signal received signal=%s", signal.Signals(signum).name)
                self.stop()
                return
