"""The suite's blocking-call guard is really on while a test daemon runs."""

from __future__ import annotations

import time

import pytest
from blockbuster import BlockingError

from tests.conftest import ServeFactory

pytestmark = pytest.mark.anyio


async def test_blocking_call_on_the_loop_fails(serve: ServeFactory) -> None:
    async with serve():
        with pytest.raises(BlockingError):
            time.sleep(0.001)  # noqa: ASYNC251 - the point of the test
