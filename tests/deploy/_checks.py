"""Helpers the deployment tests share: config validation and serve's options."""

from __future__ import annotations

import os
import subprocess
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenpool._errors import ConfigError
from tokenpool.cli import app
from tokenpool.daemon import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]

# Longest the daemon may take to close its ledger after the grace period
# (tokenpool.daemon's close timeout), on top of server.grace_seconds.
LEDGER_CLOSE_SECONDS = 10


def settings_problem(
    toml: str, tmp_path: Path, env: Mapping[str, str] | None = None
) -> tuple[Settings | None, str]:
    """Validate TOML text with the daemon's own loader.

    `env` holds the TOKENPOOL_* variables the daemon would see beside the
    file (others are not looked at). Returns the settings, or None and the
    loader's message.
    """
    path = tmp_path / "tokenpool.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("TOKENPOOL_")]:
            patch.delenv(name)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        try:
            return load_settings(path), ""
        except ConfigError as exc:
            return None, str(exc)


def toml_data(toml: str) -> dict[str, Any]:
    """The TOML as plain data, to read keys the settings do not keep verbatim."""
    return tomllib.loads(toml)


def serve_options() -> set[str]:
    """Every option `tokenpool serve` accepts, e.g. {"--config", "-c", ...}."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    serve = group.commands["serve"]
    return {
        opt for param in serve.params for opt in (*param.opts, *param.secondary_opts)
    }


def option_values(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split `--name value` / `--name=value` pairs; also return what is not one."""
    values: dict[str, str] = {}
    strays: list[str] = []
    words = iter(args)
    for word in words:
        if not word.startswith("-"):
            strays.append(word)
        elif "=" in word:
            name, _, value = word.partition("=")
            values[name] = value
        else:
            values[word] = next(words, "")
    return values, strays


def port_of(address: str) -> int:
    """The port of host:port."""
    return int(address.rsplit(":", 1)[1])


def host_of(address: str) -> str:
    """The host of host:port, without IPv6 brackets."""
    return address.rsplit(":", 1)[0].strip("[]")


def wait_serving(process: subprocess.Popen[bytes], address: str) -> None:
    """Wait until the daemon answers SERVING to grpc.health.v1, or fail."""
    deadline = time.monotonic() + 20
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"daemon exited with {process.returncode}"
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.05)
    raise TimeoutError(f"daemon at {address} did not start serving")
