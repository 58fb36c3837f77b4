"""Access control through the real server: bearer keys, tenants, the admin token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenpool_client import AsyncClient, PermissionDeniedError, UnauthenticatedError
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal
from tokenpool.core import key_digest, new_key

pytestmark = pytest.mark.anyio

ADMIN = new_key()
KEY_A = new_key()
KEY_A_NEXT = new_key()
KEY_B = new_key()

CONFIG: dict[str, Any] = {
    "budgets": [{"name": "b", "capacity_tokens": 10_000}],
    "tenants": [{"name": "a", "team": "red"}, {"name": "b", "team": "blue"}],
    "teams": [{"name": "red"}, {"name": "blue"}],
    "auth": {
        "admin_token_sha256": key_digest(ADMIN),
        "tenant_keys": [
            {"tenant": "a", "sha256": key_digest(KEY_A), "label": "2026-05"},
            {"tenant": "a", "sha256": key_digest(KEY_A_NEXT), "label": "2026-06"},
            {"tenant": "b", "sha256": key_digest(KEY_B)},
        ],
    },
}

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def _as(key: str | None) -> tuple[tuple[str, str], ...]:
    return () if key is None else (("authorization", f"Bearer {key}"),)


async def _reserve(s: Served, key: str | None, tenant: str, tokens: int = 100) -> Any:
    request = pb.ReserveRequest(budget="b", tenant=tenant, tokens=tokens)
    return await s.api.Reserve(request, metadata=_as(key))


Metadata = tuple[tuple[str, str], ...]
Call = Callable[[Served, Metadata, str], Awaitable[Any]]

# Every RPC, called with a credential and a reservation id of tenant a.
CALLS: dict[str, Call] = {
    "Reserve": lambda s, md, rid: s.api.Reserve(
        pb.ReserveRequest(budget="b", tenant="a", tokens=100), metadata=md
    ),
    "Settle": lambda s, md, rid: s.api.Settle(
        pb.SettleRequest(reservation_id=rid, tenant="a", output_tokens=1),
        metadata=md,
    ),
    "Release": lambda s, md, rid: s.api.Release(
        pb.ReleaseRequest(reservation_id=rid, tenant="a"), metadata=md
    ),
    "Extend": lambda s, md, rid: s.api.Extend(
        pb.ExtendRequest(reservation_id=rid, tenant="a", total_tokens=150),
        metadata=md,
    ),
    "GetBudget": lambda s, md, rid: s.api.GetBudget(
        pb.GetBudgetRequest(budget="b"), metadata=md
    ),
    "ListBudgets": lambda s, md, rid: s.api.ListBudgets(
        pb.ListBudgetsRequest(), metadata=md
    ),
    "GetTenant": lambda s, md, rid: s.api.GetTenant(
        pb.GetTenantRequest(tenant="a"), metadata=md
    ),
    "GetTeam": lambda s, md, rid: s.api.GetTeam(
        pb.GetTeamRequest(team="red"), metadata=md
    ),
}
ADMIN_CALLS: dict[str, Call] = {
    "Rebalance": lambda s, md, rid: s.admin.Rebalance(
        pb.RebalanceRequest(budget="b", shares={"basic": 65}), metadata=md
    ),
    "SetCapacity": lambda s, md, rid: s.admin.SetCapacity(
        pb.SetCapacityRequest(budget="b", capacity_tokens=10_000), metadata=md
    ),
    "ListReservations": lambda s, md, rid: s.admin.ListReservations(
        pb.ListReservationsRequest(), metadata=md
    ),
    "Report": lambda s, md, rid: s.admin.Report(pb.ReportRequest(), metadata=md),
    "Estimates": lambda s, md, rid: s.admin.Estimates(
        pb.EstimatesRequest(), metadata=md
    ),
    "UpsertTenant": lambda s, md, rid: s.admin.UpsertTenant(
        pb.UpsertTenantRequest(name="newcomer"), metadata=md
    ),
    "ReloadConfig": lambda s, md, rid: s.admin.ReloadConfig(
        pb.ReloadConfigRequest(), metadata=md
    ),
    "SetPoolState": lambda s, md, rid: s.admin.SetPoolState(
        pb.SetPoolStateRequest(budget="b", pool="burst", state=pb.POOL_STATE_PAUSED),
        metadata=md,
    ),
}


async def _ledger_size(s: Served) -> int:
    return await s.ledger.entry_count()


ALL_CALLS = {**CALLS, **ADMIN_CALLS}

# Admin calls of the operations release, checked together on one daemon.
OPERATIONS_CALLS: dict[str, Call] = {
    "ListTenants": lambda s, md, rid: s.admin.ListTenants(
        pb.ListTenantsRequest(), metadata=md
    ),
    "RemoveTenant": lambda s, md, rid: s.admin.RemoveTenant(
        pb.RemoveTenantRequest(name="b"), metadata=md
    ),
    "UpsertTeam": lambda s, md, rid: s.admin.UpsertTeam(
        pb.UpsertTeamRequest(name="green"), metadata=md
    ),
    "RemoveTeam": lambda s, md, rid: s.admin.RemoveTeam(
        pb.RemoveTeamRequest(name="green"), metadata=md
    ),
    "ListTeams": lambda s, md, rid: s.admin.ListTeams(
        pb.ListTeamsRequest(), metadata=md
    ),
    "ReleaseReservation": lambda s, md, rid: s.admin.ReleaseReservation(
        pb.ReleaseReservationRequest(reservation_id=rid), metadata=md
    ),
    "ListEntries": lambda s, md, rid: s.admin.ListEntries(
        pb.ListEntriesRequest(), metadata=md
    ),
    "BackupLedger": lambda s, md, rid: s.admin.BackupLedger(
        pb.BackupLedgerRequest(path=str(s.db_path.with_name(f"copy-{rid}.db"))),
        metadata=md,
    ),
    "GetAutoscale": lambda s, md, rid: s.admin.GetAutoscale(
        pb.GetAutoscaleRequest(budget="b"), metadata=md
    ),
    "SetAutoscale": lambda s, md, rid: s.admin.SetAutoscale(
        pb.SetAutoscaleRequest(budget="b", mode="recommend"), metadata=md
    ),
    "CreateKey": lambda s, md, rid: s.admin.CreateKey(
        pb.CreateKeyRequest(tenant="c"), metadata=md
    ),
    "RotateKey": lambda s, md, rid: s.admin.RotateKey(
        pb.RotateKeyRequest(key_id=f"file-{key_digest(KEY_B)[:12]}"), metadata=md
    ),
    "RevokeKey": lambda s, md, rid: s.admin.RevokeKey(
        pb.RevokeKeyRequest(key_id=f"file-{key_digest(KEY_A_NEXT)[:12]}"),
        metadata=md,
    ),
    "ListKeys": lambda s, md, rid: s.admin.ListKeys(pb.ListKeysRequest(), metadata=md),
}

# Calls that pass access control but not the daemon's own check: their code.
_PAST_ACCESS = {"ReloadConfig": grpc.StatusCode.FAILED_PRECONDITION}


@pytest.mark.parametrize("rpc", sorted(ALL_CALLS))
@pytest.mark.parametrize(
    "metadata",
    [(), _as("tpk_guessed"), (("authorization", f"Basic {KEY_A}"),), _as("")],
    ids=["none", "unknown key", "not bearer", "empty"],
)
async def test_every_rpc_needs_known_credentials(
    serve: ServeFactory, rpc: str, metadata: Metadata
) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, KEY_A, "a")
        before = await _ledger_size(s)

        failed = await refusal(ALL_CALLS[rpc](s, metadata, held.reservation_id))

        assert failed.code == UNAUTHENTICATED
        assert "bearer" in failed.message.lower()
        assert KEY_A not in failed.message
        assert await _ledger_size(s) == before


@pytest.mark.parametrize("rpc", sorted(ADMIN_CALLS))
async def test_admin_calls_refuse_tenant_keys(serve: ServeFactory, rpc: str) -> None:
    async with serve(**CONFIG) as s:
        before = await _ledger_size(s)

        failed = await refusal(ADMIN_CALLS[rpc](s, _as(KEY_A), ""))

        assert failed.code == DENIED
        assert f"{rpc} is an admin call" in failed.message
        assert await _ledger_size(s) == before


@pytest.mark.parametrize("rpc", sorted(ALL_CALLS))
async def test_the_admin_token_is_accepted_on_every_rpc(
    serve: ServeFactory, rpc: str
) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, ADMIN, "a")
        call = ALL_CALLS[rpc](s, _as(ADMIN), held.reservation_id)

        if rpc in _PAST_ACCESS:
            assert (await refusal(call)).code == _PAST_ACCESS[rpc]
        else:
            await call


async def test_operations_admin_calls_need_the_admin_token(
    serve: ServeFactory,
) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, KEY_A, "a")
        for rpc, call in OPERATIONS_CALLS.items():
            before = await _ledger_size(s)
            for metadata in ((), _as("tpk_guessed"), _as(KEY_A)):
                failed = await refusal(call(s, metadata, held.reservation_id))
                expected = DENIED if metadata == _as(KEY_A) else UNAUTHENTICATED
                assert failed.code == expected, (rpc, metadata)
            assert await _ledger_size(s) == before, rpc

        # In this order, with the admin token, every one of them goes through.
        for call in OPERATIONS_CALLS.values():
            await call(s, _as(ADMIN), held.reservation_id)
        # Every change names the admin token as who made it.
        actors = {entry.actor for entry in await s.ledger.entries(limit=10_000)}
        assert {actor.split("@")[0] for actor in actors if actor} == {"admin"}


@pytest.mark.parametrize("rpc", sorted(CALLS))
async def test_a_tenant_key_calls_as_its_own_tenant(
    serve: ServeFactory, rpc: str
) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, KEY_A, "a")

        await CALLS[rpc](s, _as(KEY_A), held.reservation_id)
        # The tenant's next key works alongside, for rotation.
        await CALLS["GetTenant"](s, _as(KEY_A_NEXT), held.reservation_id)


@pytest.mark.parametrize("rpc", ["Reserve", "Settle", "Release", "Extend", "GetTenant"])
async def test_a_tenant_key_may_not_act_as_another_tenant(
    serve: ServeFactory, rpc: str
) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, KEY_A, "a")
        before = (
            await _ledger_size(s),
            await s.api.GetBudget(pb.GetBudgetRequest(budget="b"), metadata=_as(ADMIN)),
        )

        failed = await refusal(CALLS[rpc](s, _as(KEY_B), held.reservation_id))

        assert failed.code == DENIED
        assert "belongs to tenant 'b'" in failed.message
        assert "names tenant 'a'" in failed.message
        after = (
            await _ledger_size(s),
            await s.api.GetBudget(pb.GetBudgetRequest(budget="b"), metadata=_as(ADMIN)),
        )
        assert after == before


async def test_a_tenant_touches_only_its_own_reservations(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, KEY_A, "a")

        # As itself, on a's reservation: the engine's ownership check.
        failed = await refusal(
            s.api.Settle(
                pb.SettleRequest(reservation_id=held.reservation_id, tenant="b"),
                metadata=_as(KEY_B),
            )
        )

        assert failed.code == DENIED
        assert "not held by tenant 'b'" in failed.message


# Calls of tenant b, as itself, on a reservation of tenant a.
FOREIGN: dict[str, Call] = {
    "Settle": lambda s, md, rid: s.api.Settle(
        pb.SettleRequest(reservation_id=rid, tenant="b", output_tokens=1),
        metadata=md,
    ),
    "Release": lambda s, md, rid: s.api.Release(
        pb.ReleaseRequest(reservation_id=rid, tenant="b", billed_input_tokens=5),
        metadata=md,
    ),
    "Extend": lambda s, md, rid: s.api.Extend(
        pb.ExtendRequest(reservation_id=rid, tenant="b", total_tokens=500),
        metadata=md,
    ),
}


async def _state(s: Served) -> tuple[object, ...]:
    """Status, open holds and the whole ledger, as the admin reads them."""
    admin = _as(ADMIN)
    budget = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"), metadata=admin)
    held = await s.admin.ListReservations(pb.ListReservationsRequest(), metadata=admin)
    return budget, held, await s.ledger.entries(limit=10_000)


@pytest.mark.parametrize("rpc", sorted(FOREIGN))
async def test_another_tenants_reservation_is_denied_and_untouched(
    serve: ServeFactory, rpc: str
) -> None:
    async with serve(**CONFIG) as s:
        held = await _reserve(s, KEY_A, "a")
        before = await _state(s)

        failed = await refusal(FOREIGN[rpc](s, _as(KEY_B), held.reservation_id))

        assert failed.code == DENIED
        assert f"{held.reservation_id!r} is not held by tenant 'b'" in failed.message
        assert await _state(s) == before
        # The owner still can, once: the refusal left the hold as it was.
        released = await s.api.Release(
            pb.ReleaseRequest(reservation_id=held.reservation_id, tenant="a"),
            metadata=_as(KEY_A),
        )
        assert released.refunded_tokens == 100


async def test_a_tenant_reads_only_its_own_team(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        own = await s.api.GetTeam(pb.GetTeamRequest(team="red"), metadata=_as(KEY_A))
        failed = await refusal(
            s.api.GetTeam(pb.GetTeamRequest(team="blue"), metadata=_as(KEY_A))
        )

        assert own.members == ["a"]
        assert failed.code == DENIED
        assert "own team" in failed.message


async def test_health_needs_no_credentials(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        health = health_pb2_grpc.HealthStub(s.channel)
        answer = await health.Check(health_pb2.HealthCheckRequest())

        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_open_mode_without_credentials_on_loopback(serve: ServeFactory) -> None:
    async with serve(budgets=CONFIG["budgets"]) as s:
        await _reserve(s, None, "anyone")
        listed = await s.admin.ListReservations(pb.ListReservationsRequest())

        assert [r.tenant for r in listed.reservations] == ["anyone"]


async def test_client_stub_sends_its_token(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        async with AsyncClient(s.address, token=KEY_A) as client:
            granted = await client.reserve("b", "a", tokens=100)
            with pytest.raises(PermissionDeniedError, match="act only as itself"):
                await client.reserve("b", "b", tokens=100)
        async with AsyncClient(s.address) as anonymous:
            with pytest.raises(UnauthenticatedError, match="requires credentials"):
                await anonymous.get_budget("b")

        assert granted.granted_tokens == 100
