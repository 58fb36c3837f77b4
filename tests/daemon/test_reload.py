"""Live reload: a new file in force without losing state; run-time changes stay."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.conftest import Served, ServeFactory, write_config
from tests.daemon._process import DaemonProcess, free_port
from tests.engine.test_autoscaling import interval
from tests.service._helpers import pool_status, refusal, wait_until

pytestmark = pytest.mark.anyio


def budget(capacity: int, **extra: object) -> str:
    lines = [
        "[[budgets]]",
        'name = "b"',
        f"capacity_tokens = {capacity}",
        *(f"{key} = {value}" for key, value in extra.items()),
        "[budgets.shares]",
        "basic = 100",
        "priority = 0",
        "burst = 0",
        "",
    ]
    return "\n".join(lines)


async def rewrite(s: Served, body: str) -> None:
    assert s.config_path is not None
    await anyio.to_thread.run_sync(write_config, s.config_path, s.db_path, body)


async def snapshot(s: Served) -> tuple[object, ...]:
    status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    listing = await s.admin.ListReservations(pb.ListReservationsRequest())
    tenants = await s.admin.ListTenants(pb.ListTenantsRequest())
    return (
        status.SerializeToString(deterministic=True),
        listing.SerializeToString(deterministic=True),
        tenants.SerializeToString(deterministic=True),
        await s.ledger.entry_count(),
    )


async def test_ten_identical_reloads_change_nothing(serve: ServeFactory) -> None:
    config = budget(1000) + '\n[[tenants]]\nname = "t"\ntier = "basic"\n'
    async with serve(config=config) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=300))
        s.clock.advance(1)
        before = await snapshot(s)

        answers = [
            await s.admin.ReloadConfig(pb.ReloadConfigRequest()) for _ in range(10)
        ]

        assert [(a.applied, a.message, list(a.changes)) for a in answers] == [
            (True, "no changes", [])
        ] * 10
        assert await snapshot(s) == before


async def test_capacity_halved_under_holds_shows_debt(serve: ServeFactory) -> None:
    async with serve(config=budget(1000)) as s:
        held = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=800)
        )
        await rewrite(s, budget(500))

        answer = await s.admin.ReloadConfig(pb.ReloadConfigRequest())

        assert list(answer.changes) == ["budget b: capacity_tokens 1000 -> 500"]
        basic = (await pool_status(s.api))["basic"]
        assert (basic.capacity_tokens, basic.available_tokens) == (500, 0)
        assert (basic.debt_tokens, basic.in_flight_tokens) == (300, 800)
        # The hold is still valid: it settles and its refund pays the debt.
        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=held.reservation_id, tenant="t", input_tokens=100
            )
        )
        assert (settled.charged_tokens, settled.refunded_tokens) == (100, 700)
        basic = (await pool_status(s.api))["basic"]
        assert (basic.debt_tokens, basic.available_tokens) == (0, 400)
        entries = await s.ledger.entries(kinds=["reload"])
        assert [e.detail["changes"] for e in entries] == [
            ["budget b: capacity_tokens 1000 -> 500"]
        ]
        assert entries[0].actor.startswith("open@")


async def test_invalid_file_is_refused_and_old_config_stays(
    serve: ServeFactory,
) -> None:
    async with serve(config=budget(1000)) as s:
        before = await snapshot(s)
        await rewrite(s, budget(-5))

        refused = await refusal(s.admin.ReloadConfig(pb.ReloadConfigRequest()))

        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "budgets.0.capacity_tokens" in refused.message
        assert await snapshot(s) == before
        await rewrite(s, budget(2000))
        answer = await s.admin.ReloadConfig(pb.ReloadConfigRequest())
        assert list(answer.changes) == ["budget b: capacity_tokens 1000 -> 2000"]


async def test_run_time_capacity_survives_reload_until_file_changes(
    serve: ServeFactory,
) -> None:
    async with serve(config=budget(1000, queue_limit=8)) as s:
        await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="b", capacity_tokens=700)
        )
        await rewrite(s, budget(1000, queue_limit=9))

        kept = await s.admin.ReloadConfig(pb.ReloadConfigRequest())
        capacity_kept = (await pool_status(s.api))["basic"].capacity_tokens
        await rewrite(s, budget(1200, queue_limit=9))
        replaced = await s.admin.ReloadConfig(pb.ReloadConfigRequest())

        assert list(kept.changes) == ["budget b: queue_limit 8 -> 9"]
        assert "run-time value kept: budget/b/capacity_tokens" in kept.message
        assert capacity_kept == 700
        assert list(replaced.changes) == [
            "budget b: capacity_tokens 700 -> 1200",
            # An unset minimum is the file's capacity, kept under the override.
            "budget b: min_capacity_tokens 1000 -> 1200",
        ]
        assert "replaced by the file: budget/b/capacity_tokens" in replaced.message
        assert (await pool_status(s.api))["basic"].capacity_tokens == 1200


async def test_run_time_changes_survive_a_restart(
    serve: ServeFactory, tmp_path: Path
) -> None:
    config = budget(1000) + '\n[[tenants]]\nname = "t"\ntier = "basic"\n'
    async with serve(config=config) as s:
        await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="b", capacity_tokens=600)
        )
        await s.admin.Rebalance(
            pb.RebalanceRequest(budget="b", shares={"basic": 90, "burst": 10})
        )
        await s.admin.UpsertTenant(
            pb.UpsertTenantRequest(name="vip", tier="priority", weight=3)
        )
        await s.admin.RemoveTenant(pb.RemoveTenantRequest(name="t"))

    async with serve(config=config) as s:
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        tenants = await s.admin.ListTenants(pb.ListTenantsRequest())

        assert status.capacity_tokens == 600
        assert [(p.name, p.share_percent) for p in status.pools] == [
            ("basic", 90),
            ("priority", 0),
            ("burst", 10),
        ]
        assert [(t.name, t.tier, t.weight, t.source) for t in tenants.tenants] == [
            ("vip", "priority", 3, "run-time")
        ]


async def test_reload_drops_a_budget_only_when_unused(serve: ServeFactory) -> None:
    two = budget(1000) + budget(1000).replace('name = "b"', 'name = "c"')
    async with serve(config=two) as s:
        held = await s.api.Reserve(pb.ReserveRequest(budget="c", tenant="t", tokens=10))
        await rewrite(s, budget(1000))

        refused = await refusal(s.admin.ReloadConfig(pb.ReloadConfigRequest()))
        await s.api.Release(
            pb.ReleaseRequest(reservation_id=held.reservation_id, tenant="t")
        )
        dropped = await s.admin.ReloadConfig(pb.ReloadConfigRequest())

        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "drops budget 'c'" in refused.message
        assert list(dropped.changes) == ["budget c removed"]
        budgets = await s.api.ListBudgets(pb.ListBudgetsRequest())
        assert [b.name for b in budgets.budgets] == ["b"]


def test_sighup_reloads_the_file(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "tokenpool.toml"
    body = budget(1000)
    config.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\n\n'
        f'[ledger]\npath = "{tmp_path / "ledger.db"}"\n\n{body}'
    )
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    try:
        config.write_text(config.read_text().replace("= 1000", "= 4000"))
        daemon.process.send_signal(signal.SIGHUP)
        with grpc.insecure_channel(daemon.address) as channel:
            api = pb_grpc.TokenPoolStub(channel)
            capacity = 0
            for _ in range(100):
                status = api.GetBudget(pb.GetBudgetRequest(budget="b"), timeout=5)
                capacity = status.capacity_tokens
                if capacity == 4000:
                    break
                time.sleep(0.05)
    finally:
        assert daemon.terminate() == 0
    assert capacity == 4000
    log = (tmp_path / "daemon.log").read_text()
    assert "reload applied" in log
    assert "signal=SIGHUP" in log


async def test_run_time_tenant_survives_reload(serve: ServeFactory) -> None:
    async with serve(config=budget(1000)) as s:
        await s.admin.UpsertTenant(pb.UpsertTenantRequest(name="vip", tier="priority"))

        await s.admin.ReloadConfig(pb.ReloadConfigRequest())

        async def listed() -> bool:
            tenants = await s.admin.ListTenants(pb.ListTenantsRequest())
            return [t.name for t in tenants.tenants] == ["vip"]

        await wait_until(listed)


async def test_run_time_capacity_survives_a_reload_of_the_same_bytes(
    serve: ServeFactory,
) -> None:
    async with serve(config=budget(1000)) as s:
        assert s.config_path is not None
        original = await anyio.Path(s.config_path).read_bytes()
        await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="b", capacity_tokens=700)
        )
        await anyio.Path(s.config_path).write_bytes(original)

        answers = [
            await s.admin.ReloadConfig(pb.ReloadConfigRequest()) for _ in range(2)
        ]

        assert [list(a.changes) for a in answers] == [[], []]
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert (status.capacity_tokens, status.pools[0].capacity_tokens) == (700, 700)
        entries = await s.ledger.entries(kinds=["capacity"])
        assert [e.detail["capacity_tokens"] for e in entries] == [700]


AUTOSCALED = budget(60_000, max_capacity_tokens=90_000) + (
    "[budgets.autoscale]\nenabled = true\ninterval_seconds = 10\n"
    "grow_after_intervals = 1\ncooldown_seconds = 0\nshift_percent = 0\n"
)


async def test_autoscaled_capacity_survives_a_reload(serve: ServeFactory) -> None:
    async with serve(config=AUTOSCALED) as s:
        grown = await interval(s, 95)

        same = await s.admin.ReloadConfig(pb.ReloadConfigRequest())
        kept = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        await rewrite(s, AUTOSCALED.replace("60000", "70000"))
        replaced = await s.admin.ReloadConfig(pb.ReloadConfigRequest())
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))

        assert grown == 66_000
        assert list(same.changes) == []
        assert (kept.capacity_tokens, kept.pools[0].capacity_tokens) == (
            66_000,
            66_000,
        )
        # The file's own capacity changed: the file wins (SPEC 8).
        assert "budget b: capacity_tokens 66000 -> 70000" in list(replaced.changes)
        assert status.capacity_tokens == 70_000


def test_sighup_with_an_invalid_file_keeps_the_old_config(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "tokenpool.toml"
    head = (
        f'[server]\naddress = "127.0.0.1:{port}"\n\n'
        f'[ledger]\npath = "{tmp_path / "ledger.db"}"\n\n'
    )
    config.write_text(head + budget(1000))
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, port, log)
    try:
        config.write_text(head + budget(-5))
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload refused" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with grpc.insecure_channel(daemon.address) as channel:
            api = pb_grpc.TokenPoolStub(channel)
            status = api.GetBudget(pb.GetBudgetRequest(budget="b"), timeout=5)
            granted = api.Reserve(
                pb.ReserveRequest(budget="b", tenant="t", tokens=900), timeout=5
            )
    finally:
        assert daemon.terminate() == 0

    assert status.capacity_tokens == 1000
    assert granted.granted_tokens == 900
    (refused,) = [line for line in log.read_text().splitlines() if "refused" in line]
    assert "configuration kept" in refused
    assert "budgets.0.capacity_tokens" in refused
    assert "reload applied" not in log.read_text()
