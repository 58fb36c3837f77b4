"""Restore: state rebuilt from a real ledger file equals the state before."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from tokenpool.core import BudgetPolicy, InputLimits, TeamPolicy, TenantPolicy
from tokenpool.engine import Engine, ManualClock, ReserveCommand, SettleCommand
from tokenpool.ledger import Ledger

pytestmark = pytest.mark.anyio

BUDGET = BudgetPolicy(name="b", capacity_tokens=1_000_000)
TEAM = TeamPolicy(name="red", daily_tokens=10_000_000)
TENANTS = [
    TenantPolicy(name="t0", team="red"),
    TenantPolicy(name="t1", tier="priority", weight=3),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def _engine(path: Path, clock: ManualClock) -> AsyncIterator[Engine]:
    ledger = await Ledger.open(path)
    async with anyio.create_task_group() as tasks:
        await tasks.start(ledger.run)
        engine = Engine(
            budgets=[BUDGET],
            tenants=TENANTS,
            teams=[TEAM],
            limits=InputLimits(),
            clock=clock,
            ledger=ledger,
        )
        await engine.restore()
        await tasks.start(engine.run_sweeper)
        yield engine
        await ledger.aclose()
        tasks.cancel_scope.cancel()


def _picture(engine: Engine) -> object:
    """Everything a restart must keep: pools, open holds, per-tenant counts.

    Charged tokens per pool count since the daemon started, so they are not.
    """
    budget = engine.budget_status("b")
    return (
        replace(
            budget,
            pools=tuple(replace(pool, charged_tokens=0) for pool in budget.pools),
        ),
        sorted(r.reservation_id for r in engine.reservations(limit=1000)),
        [engine.tenant_status(f"t{n}") for n in range(6)],
        engine.team_status("red"),
    )


async def _traffic(engine: Engine) -> list[str]:
    """Reservations of six tenants; some settled, some released, some open."""
    ids = []
    for n in range(30):
        granted = await engine.reserve(
            ReserveCommand(
                budget="b",
                tenant=f"t{n % 6}",
                tokens=1_000 + n,
                idempotency_key=f"key-{n}" if n % 2 else "",
                labels={"endpoint": "chat"},
            )
        )
        ids.append(granted.reservation_id)
    for n in range(0, 30, 3):
        await engine.settle(
            SettleCommand(ids[n], tenant=f"t{n % 6}", output_tokens=700 + n)
        )
    for n in range(2, 30, 6):
        await engine.release(ids[n], f"t{n % 6}", billed=n)
    return ids


async def test_restart_keeps_open_holds_levels_and_counts(tmp_path: Path) -> None:
    clock = ManualClock(start_wall_ns=1_800_000_000 * 10**9)
    path = tmp_path / "ledger.db"
    async with _engine(path, clock) as engine:
        await _traffic(engine)
        before = _picture(engine)

    async with _engine(path, clock) as engine:
        after = _picture(engine)

    assert after == before


async def test_repeats_after_ended_left_memory_and_restart(tmp_path: Path) -> None:
    clock = ManualClock(start_wall_ns=1_800_000_000 * 10**9)
    path = tmp_path / "ledger.db"
    keyed = ReserveCommand(budget="b", tenant="t1", tokens=500, idempotency_key="k")
    async with _engine(path, clock) as engine:
        granted = await engine.reserve(keyed)
        settle = SettleCommand(granted.reservation_id, tenant="t1", output_tokens=9)
        settled = await engine.settle(settle)
        # Past the minute an ended reservation stays whole in memory.
        for _ in range(70):
            clock.advance(1)
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.05)
        level = engine.budget_status("b").pools[0].available_tokens

        assert (await engine.reserve(keyed)).reservation_id == granted.reservation_id
        assert (await engine.settle(settle)).charged == settled.charged
        assert engine.budget_status("b").pools[0].available_tokens == level

    async with _engine(path, clock) as engine:
        again = await engine.reserve(keyed)
        assert again.reservation_id == granted.reservation_id
        assert (await engine.settle(settle)).charged == settled.charged
        assert engine.budget_status("b").pools[0].available_tokens == level
