"""The ledger's database locked by another process: RPCs wait, or fail cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import pool_status, refusal, wait_until, write_lock_held

pytestmark = pytest.mark.anyio

BIG = {"budgets": [{"name": "b", "capacity_tokens": 1_000_000}]}


async def _entries(s: Served) -> list[tuple[str, str]]:
    return [(e.kind, e.reservation_id) for e in await s.ledger.entries(limit=10_000)]


async def test_lock_held_two_seconds_fails_none_of_100_pairs(
    serve: ServeFactory,
) -> None:
    async with serve(**BIG) as s:
        failures: list[grpc.StatusCode] = []
        settled: list[int] = []

        async def pair(i: int) -> None:
            tenant = f"t{i % 7}"
            try:
                held = await s.api.Reserve(
                    pb.ReserveRequest(budget="b", tenant=tenant, tokens=100),
                    timeout=10,
                )
                done = await s.api.Settle(
                    pb.SettleRequest(
                        reservation_id=held.reservation_id,
                        tenant=tenant,
                        output_tokens=60,
                    ),
                    timeout=10,
                )
                settled.append(done.charged_tokens)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code())

        started = time.monotonic()
        async with anyio.create_task_group() as tasks, write_lock_held(s.db_path):
            for i in range(100):
                tasks.start_soon(pair, i)
            await anyio.sleep(2)

        assert failures == []
        assert settled == [60] * 100
        # They waited for the lock, within their deadline, rather than failing.
        assert time.monotonic() - started >= 2
        kinds = [kind for kind, _ in await _entries(s)]
        assert (kinds.count("reserve"), kinds.count("settle")) == (100, 100)
        basic = (await pool_status(s.api))["basic"]
        assert basic.in_flight_tokens == 0
        assert basic.available_tokens == 650_000 - 100 * 60


async def test_lock_held_past_the_ledger_timeout_is_unavailable_then_recovers(
    serve: ServeFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "locked.db"
    ledger = {"path": str(db_path), "timeout_ms": 300}
    async with serve(db_path=db_path, ledger=ledger, **BIG) as s:
        before = await _entries(s)

        async with write_lock_held(s.db_path):
            started = time.monotonic()
            failed = await refusal(
                s.api.Reserve(
                    pb.ReserveRequest(budget="b", tenant="t", tokens=100), timeout=10
                )
            )
            waited_s = time.monotonic() - started
            # While the lock stays, new work keeps being refused at once, also
            # after state was rebuilt (rebuilt state is written back first).
            later = []
            for _ in range(3):
                await anyio.sleep(0.4)
                later.append(
                    await refusal(
                        s.api.Reserve(
                            pb.ReserveRequest(budget="b", tenant="t", tokens=100),
                            timeout=10,
                        )
                    )
                )

        assert failed.code == grpc.StatusCode.UNAVAILABLE
        assert "not recorded" in failed.message
        # The configured ledger timeout, sooner than the 10 s deadline.
        assert 0.3 <= waited_s < 5
        for again in later:
            assert again.code == grpc.StatusCode.UNAVAILABLE
            assert "refuses new work until it can record again" in again.message
        # Nothing was granted without an entry, and service resumes.
        assert await _entries(s) == before

        async def serving() -> bool:
            try:
                await s.api.Reserve(
                    pb.ReserveRequest(budget="b", tenant="t", tokens=100), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                return False
            return True

        await wait_until(serving, timeout_s=10)
        basic = (await pool_status(s.api))["basic"]
        assert (basic.in_flight_tokens, basic.available_tokens) == (100, 649_900)
        assert [kind for kind, _ in await _entries(s)] == ["reserve"]
