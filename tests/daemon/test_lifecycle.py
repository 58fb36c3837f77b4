"""Start-up, health, reflection, graceful shutdown and the CLI's basics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

import tokenpool
from tests.conftest import Served, ServeFactory
from tests.daemon._process import DaemonProcess, free_port, write_config
from tests.service._helpers import wait_until, waiting


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenpool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_version_is_printed() -> None:
    result = _cli("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"tokenpool {tokenpool.__version__}"


def test_bad_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[budgets]]\nname = "b"\ncapacity_tokens = -5\n'
        "[budgets.shares]\nbasic = 50\npriority = 20\nburst = 20\n",
        encoding="utf-8",
    )

    result = _cli("serve", "--config", str(config))

    assert result.returncode == 1
    assert "ConfigError" in result.stderr
    assert "budgets.0.capacity_tokens" in result.stderr
    assert "budgets.0.shares" in result.stderr
    assert "sum to 100" in result.stderr


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text('[server]\nadress = "127.0.0.1:1"\n', encoding="utf-8")

    result = _cli("serve", "--config", str(config))

    assert result.returncode == 1
    assert "server.adress" in result.stderr


@pytest.mark.anyio
async def test_health_and_reflection_are_served(serve: ServeFactory) -> None:
    async with serve() as s:
        health = health_pb2_grpc.HealthStub(s.channel)
        for service in ("", "tokenpool.v1.TokenPool", "tokenpool.v1.Admin"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(s.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        listed: list[str] = []
        async for answer in reflection.ServerReflectionInfo(iter([request])):
            listed = [svc.name for svc in answer.list_services_response.service]
        assert {"tokenpool.v1.TokenPool", "tokenpool.v1.Admin"} <= set(listed)


@pytest.mark.anyio
async def test_embedded_defaults_serve_budget_default(serve: ServeFactory) -> None:
    async with serve() as s:
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="default"))

        assert status.capacity_tokens == 600_000
        assert [p.share_percent for p in status.pools] == [65, 22, 13]


def test_defaults_listen_on_50051_with_ledger_in_working_dir(tmp_path: Path) -> None:
    from tokenpool.daemon import load_settings

    settings = load_settings(None)

    assert settings.server.address == "127.0.0.1:50051"
    assert settings.ledger.path == "tokenpool.db"
    assert [b.name for b in settings.budgets] == ["default"]


def test_sigterm_drains_and_closes_the_ledger(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, "")
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, port, log)
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.TokenPoolStub(channel)
        granted = stub.Reserve(
            pb.ReserveRequest(budget="default", tenant="t", tokens=5)
        )

    assert daemon.terminate() == 0
    text = log.read_text()
    assert "shutdown started" in text
    assert "ledger closed" in text
    # The WAL was checkpointed and the file closed cleanly: a plain reader sees
    # the reservation.
    import sqlite3

    with sqlite3.connect(tmp_path / "ledger.db") as db:
        rows = db.execute(
            "SELECT state FROM reservations WHERE reservation_id = ?",
            (granted.reservation_id,),
        ).fetchall()
    assert rows == [("open",)]


async def _anyone_waiting(s: Served) -> bool:
    return await waiting(s.api) > 0


@pytest.mark.anyio
async def test_in_flight_waiter_is_answered_when_daemon_stops(
    serve: ServeFactory,
) -> None:
    budgets = [{"name": "b", "capacity_tokens": 100}]
    async with serve(budgets=budgets) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=65))
        codes: list[grpc.StatusCode] = []

        async def wait() -> None:
            try:
                await s.api.Reserve(
                    pb.ReserveRequest(
                        budget="b", tenant="t", tokens=60, max_wait_ms=60_000
                    )
                )
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await wait_until(lambda: _anyone_waiting(s))
            s.daemon.stop()

        assert codes == [grpc.StatusCode.UNAVAILABLE]


def test_second_daemon_on_same_ledger_or_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, "")
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    try:
        (tmp_path / "b").mkdir()
        same_ledger = tmp_path / "b" / "same-ledger.toml"
        # The same file through a symlink is the same ledger.
        (tmp_path / "b" / "alias.db").symlink_to(tmp_path / "ledger.db")
        same_ledger.write_text(
            config.read_text()
            .replace(f":{port}", f":{free_port()}")
            .replace(str(tmp_path / "ledger.db"), str(tmp_path / "b" / "alias.db")),
            encoding="utf-8",
        )
        (tmp_path / "c").mkdir()
        same_port = write_config(tmp_path / "c", port, "")

        ledger_taken = _cli("serve", "--config", str(same_ledger))
        port_taken = _cli("serve", "--config", str(same_port))

        assert ledger_taken.returncode == 1
        assert "LedgerInUseError" in ledger_taken.stderr
        assert "in use by another tokenpool process" in ledger_taken.stderr
        assert port_taken.returncode == 1
        assert "Cannot listen on server.address" in port_taken.stderr
        assert not (tmp_path / "c" / "ledger.db").exists()
    finally:
        assert daemon.terminate() == 0
