"""A daemon in its own process, for tests that kill or signal it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: int, budgets: str) -> Path:
    """A TOML configuration listening on `port` with a ledger in tmp_path."""
    path = tmp_path / "tokenpool.toml"
    path.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\ngrace_seconds = 5\n\n'
        f'[ledger]\npath = "{tmp_path / "ledger.db"}"\n\n{budgets}',
        encoding="utf-8",
    )
    return path


class DaemonProcess:
    """`python -m tokenpool serve` as a child process."""

    def __init__(
        self,
        config: Path,
        port: int,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        health_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = f"127.0.0.1:{port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tokenpool",
                "serve",
                "--config",
                str(config),
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._wait_serving(health_credentials)

    def _wait_serving(
        self, credentials: grpc.ChannelCredentials | None, timeout_s: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        channel = (
            grpc.insecure_channel(self.address)
            if credentials is None
            else grpc.secure_channel(self.address, credentials)
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.process.returncode}")
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise TimeoutError(f"daemon at {self.address} did not start serving")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 15.0) -> int:
        """The exit status, once the process has ended."""
        code = self.process.wait(timeout_s)
        self._log.close()
        return code


# Takes SQLite's write lock on a file, says so, and keeps it until stdin ends.
LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


class WriteLock:
    """Another process holding a database's write lock until `release`."""

    def __init__(self, db_path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"locked"

    def release(self) -> None:
        """Lets go of the lock (safe to call twice)."""
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self.process.wait(10)
