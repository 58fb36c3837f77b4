"""Fixtures shared by the suite: a real daemon on a loopback port."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from blockbuster import blockbuster_ctx
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tokenpool.daemon import Daemon, Settings, load_settings
from tokenpool.engine import Engine, ManualClock
from tokenpool.ledger import Ledger

# Per-statement DEBUG lines of these libraries drown the daemon's own.
for _noisy in ("aiosqlite", "grpc._cython.cygrpc", "asyncio"):
    logging.getLogger(_noisy).setLevel(logging.INFO)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# OpenTelemetry variables that would turn telemetry on in every test daemon.
_OTEL_SWITCHES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


@pytest.fixture(autouse=True)
def _telemetry_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Telemetry stays off in tests that do not configure it themselves."""
    for name in _OTEL_SWITCHES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Served:
    """A daemon running in this process, and stubs that talk to it."""

    address: str
    clock: ManualClock
    engine: Engine
    ledger: Ledger
    daemon: Daemon
    channel: grpc.aio.Channel
    api: pb_grpc.TokenPoolStub
    admin: pb_grpc.AdminStub
    db_path: Path
    metrics_address: str = ""
    """host:port of the Prometheus endpoint, when the test configured one."""
    config_path: Path | None = None
    """The daemon's configuration file, when the test gave one (for reloads)."""


ServeFactory = Callable[..., AbstractAsyncContextManager[Served]]


def write_config(path: Path, db_path: Path, body: str) -> Path:
    """A configuration file for a test daemon: ephemeral port, given ledger."""
    path.write_text(
        '[server]\naddress = "127.0.0.1:0"\ngrace_seconds = 2\n\n'
        f'[ledger]\npath = "{db_path}"\n\n{body}',
        encoding="utf-8",
    )
    return path


def settings_for(db_path: Path, **overrides: Any) -> Settings:
    """Settings for a test daemon: ephemeral port, the given ledger file."""
    data: dict[str, Any] = {
        "server": {"address": "127.0.0.1:0", "grace_seconds": 2},
        "ledger": {"path": str(db_path)},
    }
    data.update(overrides)
    return Settings(**data)


@pytest.fixture
def serve(tmp_path: Path) -> ServeFactory:
    """Starts a daemon on a frozen manual clock; use as `async with serve(...)`.

    With `config` (TOML text for everything but [server] and [ledger]) the
    daemon reads a file, which a test may rewrite and reload.
    """

    @asynccontextmanager
    async def start(
        *,
        db_path: Path | None = None,
        clock: ManualClock | None = None,
        config: str | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Served]:
        path = db_path or tmp_path / "ledger.db"
        clock = clock or ManualClock()
        config_path = None
        if config is not None:
            config_path = write_config(tmp_path / "tokenpool.toml", path, config)
            settings = load_settings(config_path)
        else:
            settings = settings_for(path, **overrides)
        daemon = Daemon(settings, clock=clock, config_path=config_path)
        async with anyio.create_task_group() as tasks:
            running = await tasks.start(daemon.run)
            async with grpc.aio.insecure_channel(running.address) as channel:
                # Earlier tests' gRPC objects are freed now, not inside the guard:
                # their finalisers join threads, which the guard would flag.
                gc.collect()
                # A blocking call on the event loop during the test fails it.
                with blockbuster_ctx():
                    yield Served(
                        address=running.address,
                        clock=clock,
                        engine=running.engine,
                        ledger=running.ledger,
                        daemon=daemon,
                        channel=channel,
                        api=pb_grpc.TokenPoolStub(channel),
                        admin=pb_grpc.AdminStub(channel),
                        db_path=path,
                        metrics_address=running.metrics_address or "",
                        config_path=config_path,
                    )
            daemon.stop()

    return start
