"""The daemon: ledger, engine and gRPC server under one task group."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import grpc
from anyio.abc import TaskStatus
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import (
    ConfigError,
    NoConfigFileError,
    ShuttingDownError,
    TokenPoolError,
)
from tokenpool.core import Credentials
from tokenpool.daemon._config import Settings, load_settings
from tokenpool.daemon._keys import KeyRing
from tokenpool.daemon._overrides import Applied, apply_overrides
from tokenpool.engine import Clock, Engine, SystemClock
from tokenpool.ledger import Entry, EntryKind, Ledger, LedgerBatch, run_retention
from tokenpool.service import (
    AdminServicer,
    AuthInterceptor,
    OpLayer,
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

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        config_path: Path | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._config_path = config_path
        self._stop = anyio.Event()
        self._engine: Engine | None = None
        self._ledger: Ledger | None = None
        self._credentials: Credentials | None = None
        self._keys: KeyRing | None = None
        self._reloading = anyio.Lock()
        self._op_layers: list[OpLayer] = []

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
        # Session operations pass through the same layers as unary calls.
        self._op_layers = [
            interceptor.op_layer
            for interceptor in interceptors
            if isinstance(interceptor, TelemetryInterceptor | AuthInterceptor)
        ]
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
                # Run-time changes stored in the ledger win over the file
                # until the file's own value changes (SPEC 8).
                applied = apply_overrides(
                    settings, await ledger.load_overrides(), self._clock.wall_ns()
                )
                config = applied.config
                engine = Engine(
                    budgets=config.budgets,
                    tenants=config.tenants,
                    limits=config.limits,
                    clock=self._clock,
                    ledger=ledger,
                    teams=config.teams,
                    prices=config.prices,
                    calendar_timezone=settings.calendar_timezone,
                    observer=telemetry.observer,
                    pool_states=config.pool_states,
                )
                await engine.restore()
                await _record_start(ledger, applied, self._clock.wall_ns())
                self._engine, self._ledger = engine, ledger
                if self._credentials is not None:
                    self._keys = KeyRing(
                        ledger,
                        self._credentials,
                        settings.auth.tenant_keys,
                        self._clock,
                        await ledger.load_keys(),
                    )
                telemetry.watch(engine, settings.tenants, settings.teams)
                await tasks.start(engine.run_sweeper)
                await tasks.start(engine.run_autoscaler)
                if settings.ledger.retention_days is not None:
                    await tasks.start(
                        partial(
                            run_retention,
                            ledger,
                            retention_days=settings.ledger.retention_days,
                            wall_ns=self._clock.wall_ns,
                        )
                    )
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
        self._credentials = credentials
        return [AuthInterceptor(credentials, rules, self._team_of)], server_credentials

    def _team_of(self, tenant: str) -> str | None:
        """A configured tenant's team as it is now (tenants change at run time)."""
        if self._engine is not None:
            found = next((t for t in self._engine.tenants() if t.name == tenant), None)
        else:
            found = next((t for t in self._settings.tenants if t.name == tenant), None)
        return None if found is None else found.team

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
        add_service(
            server,
            TokenPoolServicer(engine),
            services["TokenPool"],
            op_layers=self._op_layers,
        )
        admin = AdminServicer(engine, ledger, self.reload, self._keys)
        add_service(server, admin, services["Admin"])
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

    async def reload(self, *, actor: str = "") -> Reloaded:
        """Re-reads the configuration file and puts it in force (SPEC 8).

        Open reservations, pool levels and debts stay; changed capacities
        move levels as SetCapacity does; run-time changes stay in force
        unless the file's value for that field changed. An invalid file is
        refused and the running configuration stays. Sections that need a
        restart (server, ledger, telemetry, hook, calendar_timezone) are
        left as they run, and said so.

        Raises:
            NoConfigFileError: the daemon was started without a file.
            ConfigError: the file cannot be read or is invalid.
            ConflictError: the file drops a budget that is in use.
            ShuttingDownError: the daemon is not serving.
        """
        engine, ledger, path = self._engine, self._ledger, self._config_path
        if engine is None or ledger is None:
            raise ShuttingDownError()
        if path is None:
            raise NoConfigFileError()
        async with self._reloading:
            try:
                settings = await anyio.to_thread.run_sync(load_settings, path)
            except ConfigError as exc:
                logger.warning("reload refused, configuration kept error=%s", exc)
                raise
            notes = _restart_notes(self._settings, settings)
            applied = apply_overrides(
                settings, await ledger.load_overrides(), self._clock.wall_ns()
            )
            changes = await engine.reconfigure(
                applied.config,
                file_values=applied.file_values,
                notes=[*notes, *applied.notes],
                actor=actor,
            )
            if self._keys is not None:
                self._keys.reload(settings.auth.tenant_keys)
            # Sections that need a restart stay as they run; of [auth], only
            # the tenant keys are applied (the admin token needs a restart).
            running_auth = self._settings.auth
            self._settings = settings.model_copy(
                update={
                    **{name: getattr(self._settings, name) for name in _RESTART_ONLY},
                    "auth": running_auth.model_copy(
                        update={"tenant_keys": settings.auth.tenant_keys}
                    ),
                }
            )
        logger.info(
            "reload applied path=%s changes=%d actor=%s",
            path,
            len(changes),
            actor or "-",
        )
        return Reloaded(tuple(changes), (*notes, *applied.notes))

    async def serve_forever(self) -> None:
        """Runs until SIGTERM or SIGINT, then drains (the `serve` command).

        SIGHUP reloads the configuration file.
        """
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._watch_signals)
            await self.run()
            tasks.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        signals_watched = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with anyio.open_signal_receiver(*signals_watched) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                logger.info("signal received signal=%s", name)
                if signum == signal.SIGHUP:
                    await self._reload_quietly(f"signal:{name}")
                    continue
                self.stop()
                return

    async def _reload_quietly(self, actor: str) -> None:
        """A reload whose failure is logged, not raised (SIGHUP has no caller)."""
        try:
            await self.reload(actor=actor)
        except TokenPoolError as exc:
            logger.warning("reload failed error=%s", exc)


# Settings sections a reload cannot change while the daemon runs.
_RESTART_ONLY = ("server", "ledger", "telemetry", "hook", "calendar_timezone")


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload changed, and what it could not change without a restart."""

    changes: tuple[str, ...]
    notes: tuple[str, ...] = ()
    """Sections left for a restart, and run-time values kept or replaced."""


def _restart_notes(running: Settings, new: Settings) -> list[str]:
    """The sections that differ but only a restart would apply."""
    notes = [
        f"{name} changed; it takes effect at the next restart"
        for name in _RESTART_ONLY
        if getattr(running, name) != getattr(new, name)
    ]
    old_auth = running.auth.model_copy(update={"tenant_keys": []})
    new_auth = new.auth.model_copy(update={"tenant_keys": []})
    if old_auth != new_auth or running.auth.configured != new.auth.configured:
        notes.append("auth (admin token) changed; it takes effect at the next restart")
    return notes


async def _record_start(ledger: Ledger, applied: Applied, wall_ns: int) -> None:
    """Stores the file's values at start, and says which overrides it replaced."""
    if not applied.file_values:
        return
    batch = LedgerBatch(file_values=applied.file_values)
    dropped = [note for note in applied.notes if "replaced by the file" in note]
    if dropped:
        batch.entries.append(
            Entry(
                kind=EntryKind.RELOAD,
                at_wall_ns=wall_ns,
                budget="",
                actor="start",
                detail={"changes": [], "notes": applied.notes},
            )
        )
    await ledger.commit(batch)
