"""`tokenpool health`: the image's health check, over grpc.health.v1."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests._certs import issue, make_authority
from tests.conftest import ServeFactory
from tests.daemon._process import free_port

pytestmark = pytest.mark.anyio


async def _health(address: str, *args: str, env: dict[str, str] | None = None) -> int:
    done = await anyio.run_process(
        [sys.executable, "-m", "tokenpool", "health", "--address", address, *args],
        check=False,
        env={**os.environ, **(env or {})},
    )
    return done.returncode


async def test_health_passes_while_serving_and_fails_without_daemon(
    serve: ServeFactory,
) -> None:
    async with serve() as s:
        assert await _health(s.address) == 0

    assert await _health(f"127.0.0.1:{free_port()}") == 1


async def test_health_over_tls_and_mutual_tls(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """The TLS options of every client command, or their variables, reach it."""
    ca = make_authority(tmp_path, "tokenpool")
    server = issue(ca, tmp_path, "server", server=True)
    client = issue(ca, tmp_path, "client", server=False)
    tls: dict[str, Any] = {
        "cert_file": str(server.cert_file),
        "key_file": str(server.key_file),
        "client_ca_file": str(ca.cert_file),
        "require_client_cert": True,
    }
    mutual = [
        *("--tls-ca", str(ca.cert_file)),
        *("--tls-cert", str(client.cert_file)),
        *("--tls-key", str(client.key_file)),
    ]
    from_environment = {
        "TOKENPOOL_TLS_CA": str(ca.cert_file),
        "TOKENPOOL_TLS_CERT": str(client.cert_file),
        "TOKENPOOL_TLS_KEY": str(client.key_file),
        "TOKENPOOL_TLS_SERVER_NAME": "localhost",
    }

    server_settings = {"address": "127.0.0.1:0", "grace_seconds": 1, "tls": tls}
    async with serve(server=server_settings) as s:
        assert await _health(s.address, *mutual) == 0
        assert await _health(s.address, env=from_environment) == 0
        # Plaintext, and TLS without the client certificate, are refused.
        assert await _health(s.address) == 1
        assert await _health(s.address, "--tls-ca", str(ca.cert_file)) == 1
