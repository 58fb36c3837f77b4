"""`tokenpool health`: the image's health check, over grpc.health.v1."""

from __future__ import annotations

import sys

import anyio
import pytest

from tests.conftest import ServeFactory
from tests.daemon._process import free_port

pytestmark = pytest.mark.anyio


async def _health(address: str) -> int:
    done = await anyio.run_process(
        [sys.executable, "-m", "tokenpool", "health", "--address", address],
        check=False,
    )
    return done.returncode


async def test_health_passes_while_serving_and_fails_without_daemon(
    serve: ServeFactory,
) -> None:
    async with serve() as s:
        assert await _health(s.address) == 0

    assert await _health(f"127.0.0.1:{free_port()}") == 1
