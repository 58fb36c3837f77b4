"""Callers cancelled during a Reserve leave nothing held, against a real daemon."""

from __future__ import annotations

import random

import anyio
import pytest
from tokenpool_client import AsyncClient

from tests.conftest import ServeFactory
from tests.service._helpers import wait_until

pytestmark = pytest.mark.anyio

BIG = {"budgets": [{"name": "b", "capacity_tokens": 1_000_000}]}

# Callers per round, and rounds. Against this in-process daemon (one event
# loop for both ends) the race did not show before the fix either: the test
# guards the fix, it does not prove it. The leak was seen against a daemon
# in its own process.
_CALLERS = 300
_ROUNDS = 4


async def _cancelled_reserve(client: AsyncClient, delay_s: float) -> None:
    granted = None
    with anyio.move_on_after(delay_s):
        granted = await client.reserve("b", "racer", tokens=10)
    # A Reserve answered before its cancellation is the caller's to end.
    if granted is not None:
        await client.release(granted.reservation_id, "racer")


async def _none_open(client: AsyncClient) -> bool:
    status = await client.get_tenant("racer")
    return status.open_reservations == 0


@pytest.mark.parametrize("session", [False, True])
async def test_cancelled_reserves_leave_nothing_held(
    serve: ServeFactory, session: bool
) -> None:
    async with serve(**BIG) as s:
        for _ in range(_ROUNDS):
            client = AsyncClient(s.address, session=session)
            async with client, anyio.create_task_group() as tasks:
                for _ in range(_CALLERS):
                    delay_s = random.uniform(0, 0.005)
                    tasks.start_soon(_cancelled_reserve, client, delay_s)
            # Closing the client waited for its background releases; a short
            # settle lets the daemon finish ending what it was told to end.
            async with AsyncClient(s.address) as reader:
                await wait_until(lambda: _none_open(reader), timeout_s=10)
