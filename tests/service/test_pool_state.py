"""Pausing, draining and resuming a pool (SPEC 8) through the real daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import Pending, drawn, pool_status, refusal, wait_until
from tokenpool.core import key_digest, new_key
from tokenpool.engine import ManualClock

pytestmark = pytest.mark.anyio

# 10,000 tokens a minute: basic 6500, priority 2200, burst 1300; no burst
# for single tenants, so a priority tenant's extra tokens come from loans.
BUDGET: dict[str, Any] = {
    "budgets": [{"name": "b", "capacity_tokens": 10_000, "burst_tenant_percent": 0}],
    "tenants": [{"name": "vip", "tier": "priority"}],
}

CONFIG = """
[[budgets]]
name = "b"
capacity_tokens = 10000

[[tenants]]
name = "vip"
tier = "priority"
"""


def _ask(tenant: str, tokens: int, max_wait_ms: int = 0) -> pb.ReserveRequest:
    return pb.ReserveRequest(
        budget="b", tenant=tenant, tokens=tokens, max_wait_ms=max_wait_ms
    )


async def _set(s: Served, pool: str, state: pb.PoolState) -> pb.BudgetStatus:
    request = pb.SetPoolStateRequest(budget="b", pool=pool, state=state)
    return await s.admin.SetPoolState(request)


async def _states(s: Served) -> dict[str, int]:
    return {name: pool.state for name, pool in (await pool_status(s.api)).items()}


async def _entries(s: Served) -> list[pb.LedgerEntry]:
    listed = await s.admin.ListEntries(pb.ListEntriesRequest(kinds=["pool_state"]))
    return list(listed.entries)


async def test_pause_stops_grants_and_loans_open_ones_settle(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET) as s:
        held = await s.api.Reserve(_ask("bt", 1000))
        await s.api.Reserve(_ask("vip", 2200))

        paused = await _set(s, "basic", pb.POOL_STATE_PAUSED)

        basic = {pool.name: pool for pool in paused.pools}["basic"]
        assert basic.state == pb.POOL_STATE_PAUSED
        assert basic.open_reservations == 1
        own = await refusal(s.api.Reserve(_ask("bt", 10)))
        assert own.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert own.reason == "POOL_PAUSED"
        assert "Pool 'basic' of budget 'b' was paused by an operator" in own.message
        assert own.retry_after_s == 60
        loan = await refusal(s.api.Reserve(_ask("vip", 100)))
        assert loan.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert loan.reason == "POOL_EXHAUSTED"
        assert loan.detail is not None
        assert loan.detail.largest_grantable_tokens == 0

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=held.reservation_id, tenant="bt", output_tokens=400
            )
        )
        assert (settled.charged_tokens, settled.refunded_tokens) == (400, 600)
        after = (await pool_status(s.api))["basic"]
        assert after.available_tokens == 6500 - 400
        assert after.open_reservations == 0

        await _set(s, "basic", pb.POOL_STATE_ACTIVE)
        assert drawn(await s.api.Reserve(_ask("vip", 100))) == [("basic", 100)]
        assert drawn(await s.api.Reserve(_ask("bt", 10))) == [("basic", 10)]


async def test_paused_burst_gives_no_burst(serve: ServeFactory) -> None:
    lending = {"priority": {"never_lend": True}}
    budget = {"budgets": [{"name": "b", "capacity_tokens": 10_000, "lending": lending}]}
    async with serve(**budget) as s:
        await _set(s, "burst", pb.POOL_STATE_PAUSED)

        refused = await refusal(s.api.Reserve(_ask("bt", 6600)))
        assert refused.reason == "POOL_EXHAUSTED"
        assert refused.detail is not None
        assert refused.detail.largest_grantable_tokens == 6500

        await _set(s, "burst", pb.POOL_STATE_ACTIVE)
        granted = await s.api.Reserve(_ask("bt", 6600))
        assert drawn(granted) == [("basic", 6500), ("burst", 100)]


async def test_waiters_wait_while_paused_and_go_on_resume(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET) as s, anyio.create_task_group() as tasks:
        await _set(s, "basic", pb.POOL_STATE_PAUSED)
        served, timed_out = Pending(), Pending()
        tasks.start_soon(served.send, s.api, _ask("bt", 100, max_wait_ms=30_000))
        tasks.start_soon(timed_out.send, s.api, _ask("bt2", 100, max_wait_ms=5_000))

        async def both_wait() -> bool:
            return (await pool_status(s.api))["basic"].waiting == 2

        await wait_until(both_wait)
        s.clock.advance(10)
        with anyio.fail_after(5):
            await timed_out.ended.wait()
        assert timed_out.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert not served.ended.is_set()

        await _set(s, "basic", pb.POOL_STATE_ACTIVE)

        answer = await served.answered()
        assert drawn(answer) == [("basic", 100)]
        assert answer.waited_ms == 10_000


async def test_drain_refuses_waiters_at_once_and_changes_nothing_else(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET) as s, anyio.create_task_group() as tasks:
        held = await s.api.Reserve(_ask("bt", 1000))
        await _set(s, "basic", pb.POOL_STATE_PAUSED)
        waiter = Pending()
        tasks.start_soon(waiter.send, s.api, _ask("bt", 100, max_wait_ms=30_000))

        async def queued() -> bool:
            return (await pool_status(s.api))["basic"].waiting == 1

        await wait_until(queued)
        before = await pool_status(s.api)

        drained = await _set(s, "basic", pb.POOL_STATE_DRAINING)

        with anyio.fail_after(5):
            await waiter.ended.wait()
        assert waiter.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        basic = {pool.name: pool for pool in drained.pools}["basic"]
        assert basic.state == pb.POOL_STATE_DRAINING
        assert (basic.waiting, basic.open_reservations) == (0, 1)
        for name, pool in (await pool_status(s.api)).items():
            assert pool.available_tokens == before[name].available_tokens
            assert pool.in_flight_tokens == before[name].in_flight_tokens
        new = await refusal(s.api.Reserve(_ask("bt", 10, max_wait_ms=30_000)))
        assert new.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert new.reason == "POOL_DRAINING"
        assert "'basic'" in new.message
        assert "drained by an operator" in new.message
        # The other pools grant as before.
        assert drawn(await s.api.Reserve(_ask("vip", 100))) == [("priority", 100)]

        await s.api.Release(
            pb.ReleaseRequest(reservation_id=held.reservation_id, tenant="bt")
        )
        assert (await pool_status(s.api))["basic"].open_reservations == 0
        [paused, draining] = await _entries(s)
        assert (paused.pool, paused.actor.startswith("open@")) == ("basic", True)
        detail = json.loads(draining.detail_json)
        assert detail["state"] == "draining"
        assert detail["previous_state"] == "paused"
        assert detail["waiters_refused"] == 1


async def test_pool_state_survives_reload_and_restart(
    serve: ServeFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "kept.db"
    clock = ManualClock()
    async with serve(config=CONFIG, db_path=db_path, clock=clock) as s:
        await _set(s, "priority", pb.POOL_STATE_PAUSED)
        await _set(s, "burst", pb.POOL_STATE_DRAINING)

        reloaded = await s.admin.ReloadConfig(pb.ReloadConfigRequest())

        assert "budget/b/pool_states" in reloaded.message
        assert (await _states(s))["priority"] == pb.POOL_STATE_PAUSED

    async with serve(config=CONFIG, db_path=db_path, clock=clock) as s:
        assert await _states(s) == {
            "basic": pb.POOL_STATE_ACTIVE,
            "priority": pb.POOL_STATE_PAUSED,
            "burst": pb.POOL_STATE_DRAINING,
        }
        refused = await refusal(s.api.Reserve(_ask("vip", 10)))
        assert refused.reason == "POOL_PAUSED"
        await _set(s, "priority", pb.POOL_STATE_ACTIVE)

    async with serve(config=CONFIG, db_path=db_path, clock=clock) as s:
        assert (await _states(s))["priority"] == pb.POOL_STATE_ACTIVE
        assert drawn(await s.api.Reserve(_ask("vip", 10))) == [("priority", 10)]


async def test_setting_the_same_state_writes_nothing(serve: ServeFactory) -> None:
    async with serve(**BUDGET) as s:
        before = await s.ledger.entry_count()

        status = await _set(s, "basic", pb.POOL_STATE_ACTIVE)

        assert {pool.state for pool in status.pools} == {pb.POOL_STATE_ACTIVE}
        assert await s.ledger.entry_count() == before


async def test_set_pool_state_needs_the_admin_token(serve: ServeFactory) -> None:
    admin, key = new_key(), new_key()
    auth = {
        "admin_token_sha256": key_digest(admin),
        "tenant_keys": [{"tenant": "bt", "sha256": key_digest(key)}],
    }
    async with serve(**BUDGET, auth=auth) as s:
        request = pb.SetPoolStateRequest(
            budget="b", pool="basic", state=pb.POOL_STATE_PAUSED
        )

        denied = await refusal(
            s.admin.SetPoolState(
                request, metadata=(("authorization", f"Bearer {key}"),)
            )
        )

        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        assert "SetPoolState is an admin call" in denied.message
        as_admin = (("authorization", f"Bearer {admin}"),)
        status = await s.api.GetBudget(
            pb.GetBudgetRequest(budget="b"), metadata=as_admin
        )
        assert {pool.state for pool in status.pools} == {pb.POOL_STATE_ACTIVE}
        await s.admin.SetPoolState(request, metadata=as_admin)
        [entry] = (
            await s.admin.ListEntries(
                pb.ListEntriesRequest(kinds=["pool_state"]), metadata=as_admin
            )
        ).entries
        assert entry.actor.startswith("admin@")
