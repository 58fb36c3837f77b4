"""The daemon, ids and request makers behind the hostile-input table.

A case is a request that must be refused: its call is made against a daemon
configured by CONFIG, whose tenant t holds reservations in every state
(`Ids`), through a channel that carries the admin token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import anyio
import grpc
from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.conftest import Served
from tests.service._helpers import wait_until
from tokenpool.core import key_digest, new_key

ADMIN_TOKEN = new_key()
TENANT_KEY = new_key()

CONFIG: dict[str, Any] = {
    "budgets": [
        {"name": "b", "capacity_tokens": 10_000, "max_wait_ms": 5000},
        {"name": "closed", "capacity_tokens": 1000, "unknown_tenants": "refuse"},
    ],
    "tenants": [{"name": "known", "team": "crew"}],
    "teams": [{"name": "crew"}],
    "auth": {
        "admin_token_sha256": key_digest(ADMIN_TOKEN),
        "tenant_keys": [{"tenant": "t", "sha256": key_digest(TENANT_KEY)}],
    },
}

# The largest int64, and sums of figures each allowed alone (2^62) that pass it.
INT64_MAX = 2**63 - 1
HUGE = 2**62

# Names that are never valid: empty, 10 kB, and with control characters.
BAD_NAMES = [("empty", ""), ("10 kB", "x" * 10_000), ("control", "a\x01b\x1b[31m")]


@dataclass(frozen=True)
class Ids:
    """Reservations of tenant t in each state and keys, made before every case."""

    held: str
    released: str
    settled: str
    expired: str
    key: str
    """A run-time key of tenant t, active."""
    revoked_key: str
    """A run-time key of tenant t, revoked."""
    db_path: str
    """The ledger file, which a backup may not overwrite."""


Call = Callable[[Served, Ids], Awaitable[Any]]


def reserve_call(**fields: Any) -> Call:
    def call(s: Served, _: Ids) -> Awaitable[Any]:
        request = {"budget": "b", "tenant": "t", **fields}
        return s.api.Reserve(pb.ReserveRequest(**request))

    return call


def settle_call(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = {"reservation_id": getattr(ids, which), "tenant": "t", **fields}
        return s.api.Settle(pb.SettleRequest(**request))

    return call


def release_call(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = {"reservation_id": getattr(ids, which), "tenant": "t", **fields}
        return s.api.Release(pb.ReleaseRequest(**request))

    return call


def extend_call(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = {"reservation_id": getattr(ids, which), "tenant": "t", **fields}
        return s.api.Extend(pb.ExtendRequest(**request))

    return call


def admin_release_call(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = pb.ReleaseReservationRequest(
            reservation_id=getattr(ids, which), **fields
        )
        return s.admin.ReleaseReservation(request)

    return call


def key_call(method: str, which: str, **fields: Any) -> Call:
    """RotateKey or RevokeKey of one of the keys made before the case."""

    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        message = getattr(pb, f"{method}Request")
        return getattr(s.admin, method)(message(key_id=getattr(ids, which), **fields))

    return call


def backup_call(path: Callable[[Ids], str]) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        return s.admin.BackupLedger(pb.BackupLedgerRequest(path=path(ids)))

    return call


def as_tenant_call(method: str, message: type[Any]) -> Call:
    """An Admin call made with tenant t's API key instead of the admin token."""

    def call(s: Served, _: Ids) -> Awaitable[Any]:
        metadata = (("authorization", f"Bearer {TENANT_KEY}"),)
        return getattr(s.admin, method)(message(), metadata=metadata)

    return call


def lease_in(s: Served, seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(s.clock.wall_ns() + int(seconds * 1e9))
    return stamp


def extend_lease_call(seconds: float) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = pb.ExtendRequest(
            reservation_id=ids.held, tenant="t", lease_expires_at=lease_in(s, seconds)
        )
        return s.api.Extend(request)

    return call


def rpc_call(service: str, method: str, message: type[Any], **fields: Any) -> Call:
    def call(s: Served, _: Ids) -> Awaitable[Any]:
        stub = s.api if service == "api" else s.admin
        return getattr(stub, method)(message(**fields))

    return call


class Case(NamedTuple):
    """A hostile request, its code, and what its message must say."""

    label: str
    call: Call
    code: grpc.StatusCode
    named: str
    """Words the message must hold."""
    field: str
    """The request field or offending id the message must name; `{held}` and
    the like stand for the ids of `Ids`."""


INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


Maker = tuple[str, Callable[[str], Call], str, bool]


def admin_names() -> list[Maker]:
    """The name fields of the Admin RPCs that add, remove and switch things."""
    named: list[tuple[str, type[Any], str, dict[str, Any]]] = [
        ("UpsertTenant", pb.UpsertTenantRequest, "name", {}),
        ("UpsertTeam", pb.UpsertTeamRequest, "name", {}),
        ("RemoveTenant", pb.RemoveTenantRequest, "name", {}),
        ("RemoveTeam", pb.RemoveTeamRequest, "name", {}),
        ("GetAutoscale", pb.GetAutoscaleRequest, "budget", {}),
        ("SetAutoscale", pb.SetAutoscaleRequest, "budget", {"mode": "act"}),
        ("CreateKey", pb.CreateKeyRequest, "tenant", {}),
    ]

    def maker(
        method: str, message: type[Any], field: str, rest: dict[str, Any]
    ) -> Maker:
        def make(value: str) -> Call:
            return rpc_call("admin", method, message, **{field: value}, **rest)

        return (f"{method} {field}", make, field, True)

    return [maker(*row) for row in named]


def bad_names() -> list[Case]:
    """Each name field of every RPC, with each never-valid name."""
    makers: list[Maker] = [
        ("Reserve tenant", lambda v: reserve_call(tenant=v, tokens=1), "tenant", True),
        ("Reserve budget", lambda v: reserve_call(budget=v, tokens=1), "budget", True),
        (
            "Reserve fallback",
            lambda v: reserve_call(tokens=1, fallback_budgets=[v]),
            "fallback_budgets",
            True,
        ),
        ("Settle tenant", lambda v: settle_call(tenant=v), "tenant", True),
        ("Release tenant", lambda v: release_call(tenant=v), "tenant", True),
        (
            "Extend tenant",
            lambda v: extend_call(tenant=v, total_tokens=50),
            "tenant",
            True,
        ),
        (
            "GetBudget budget",
            lambda v: rpc_call("api", "GetBudget", pb.GetBudgetRequest, budget=v),
            "budget",
            True,
        ),
        (
            "GetTenant tenant",
            lambda v: rpc_call("api", "GetTenant", pb.GetTenantRequest, tenant=v),
            "tenant",
            True,
        ),
        (
            "GetTeam team",
            lambda v: rpc_call("api", "GetTeam", pb.GetTeamRequest, team=v),
            "team",
            True,
        ),
        (
            "Rebalance budget",
            lambda v: rpc_call(
                "admin",
                "Rebalance",
                pb.RebalanceRequest,
                budget=v,
                shares={"basic": 65},
            ),
            "budget",
            True,
        ),
        (
            "SetCapacity budget",
            lambda v: rpc_call(
                "admin",
                "SetCapacity",
                pb.SetCapacityRequest,
                budget=v,
                capacity_tokens=100,
            ),
            "budget",
            True,
        ),
        (
            "SetPoolState budget",
            lambda v: rpc_call(
                "admin",
                "SetPoolState",
                pb.SetPoolStateRequest,
                budget=v,
                pool="basic",
                state=pb.POOL_STATE_PAUSED,
            ),
            "budget",
            True,
        ),
        (
            "SetPoolState pool",
            lambda v: rpc_call(
                "admin",
                "SetPoolState",
                pb.SetPoolStateRequest,
                budget="b",
                pool=v,
                state=pb.POOL_STATE_PAUSED,
            ),
            "pool",
            True,
        ),
        *admin_names(),
        # In listings and reports an empty name means "all".
        (
            "ListReservations budget",
            lambda v: rpc_call(
                "admin", "ListReservations", pb.ListReservationsRequest, budget=v
            ),
            "budget",
            False,
        ),
        (
            "ListReservations tenant",
            lambda v: rpc_call(
                "admin", "ListReservations", pb.ListReservationsRequest, tenant=v
            ),
            "tenant",
            False,
        ),
        (
            "Report budget",
            lambda v: rpc_call("admin", "Report", pb.ReportRequest, budget=v),
            "budget",
            False,
        ),
        (
            "Estimates budget",
            lambda v: rpc_call("admin", "Estimates", pb.EstimatesRequest, budget=v),
            "budget",
            False,
        ),
        (
            "Estimates tenant",
            lambda v: rpc_call("admin", "Estimates", pb.EstimatesRequest, tenant=v),
            "tenant",
            False,
        ),
        (
            "ListKeys tenant",
            lambda v: rpc_call("admin", "ListKeys", pb.ListKeysRequest, tenant=v),
            "tenant",
            False,
        ),
    ]
    return [
        Case(f"{label}: {kind}", make(value), INVALID, field, field)
        for label, make, field, empty_is_bad in makers
        for kind, value in BAD_NAMES
        if value or empty_is_bad
    ]


def bad_counts() -> list[Case]:
    """Every token count of every RPC, negative and at 2^63-1."""
    fields: list[tuple[str, Callable[..., Call], str]] = [
        ("Reserve", reserve_call, "tokens"),
        ("Reserve", lambda **f: reserve_call(tokens=1, **f), "input_tokens"),
        ("Reserve", lambda **f: reserve_call(tokens=1, **f), "max_output_tokens"),
        ("Reserve", lambda **f: reserve_call(tokens=1, **f), "input_chars"),
        ("Reserve", lambda **f: reserve_call(tokens=1, **f), "max_wait_ms"),
        ("Reserve", lambda **f: reserve_call(tokens=1, **f), "lease_ms"),
        ("Settle", settle_call, "input_tokens"),
        ("Settle", settle_call, "cached_input_tokens"),
        ("Settle", settle_call, "cache_write_tokens"),
        ("Settle", settle_call, "output_tokens"),
        ("Settle", settle_call, "provider_remaining_tokens"),
        ("Settle", settle_call, "provider_limit_tokens"),
        ("Release", release_call, "billed_input_tokens"),
        ("Extend", extend_call, "total_tokens"),
        (
            "SetCapacity",
            lambda **f: rpc_call(
                "admin", "SetCapacity", pb.SetCapacityRequest, budget="b", **f
            ),
            "capacity_tokens",
        ),
        ("ReleaseReservation", admin_release_call, "billed_input_tokens"),
    ]
    return [
        Case(f"{rpc} {field} = {value}", make(**{field: value}), INVALID, field, field)
        for rpc, make, field in fields
        for value in (-1, INT64_MAX)
    ]


async def snapshot(s: Served) -> tuple[object, ...]:
    """Everything a refusal must leave alone: status, holds, policies, keys,
    the ledger and the files beside it (a refused backup writes none)."""
    answers = [
        await s.api.ListBudgets(pb.ListBudgetsRequest()),
        await s.api.GetTenant(pb.GetTenantRequest(tenant="t")),
        await s.admin.ListReservations(pb.ListReservationsRequest()),
        await s.admin.ListTenants(pb.ListTenantsRequest()),
        await s.admin.ListTeams(pb.ListTeamsRequest()),
        await s.admin.ListKeys(pb.ListKeysRequest()),
        await s.admin.GetAutoscale(pb.GetAutoscaleRequest(budget="b")),
    ]
    entries = await s.ledger.entries(limit=10_000)
    files = sorted([path.name async for path in anyio.Path(s.db_path).parent.iterdir()])
    return (*[answer.SerializeToString() for answer in answers], entries, files)


class AdminToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Sends the admin token with every call that names no credential itself."""

    async def intercept_unary_unary(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        metadata = list(details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(("authorization", f"Bearer {ADMIN_TOKEN}"))
        return await continuation(details._replace(metadata=metadata), request)


@asynccontextmanager
async def as_admin(s: Served) -> AsyncIterator[Served]:
    """The same daemon, through a channel that carries the admin token."""
    async with grpc.aio.insecure_channel(
        s.address, interceptors=[AdminToken()]
    ) as channel:
        yield replace(
            s,
            channel=channel,
            api=pb_grpc.TokenPoolStub(channel),
            admin=pb_grpc.AdminStub(channel),
        )


async def reservations_of_every_state(s: Served) -> Ids:
    """One open, released, settled and expired reservation of tenant t."""
    released = await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=10))
    await s.api.Release(
        pb.ReleaseRequest(reservation_id=released.reservation_id, tenant="t")
    )
    settled = await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=20))
    await s.api.Settle(
        pb.SettleRequest(
            reservation_id=settled.reservation_id, tenant="t", output_tokens=5
        )
    )
    expired = await s.api.Reserve(
        pb.ReserveRequest(budget="b", tenant="t", tokens=30, lease_ms=1000)
    )
    s.clock.advance(2)

    async def swept() -> bool:
        found = await s.admin.ListReservations(pb.ListReservationsRequest())
        return expired.reservation_id not in {
            r.reservation_id for r in found.reservations
        }

    await wait_until(swept)
    held = await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=100))
    # With u's hold, t can reach 5200 in basic plus its 650 of burst.
    await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="u", tokens=1200))
    key = await s.admin.CreateKey(pb.CreateKeyRequest(tenant="t"))
    revoked = await s.admin.CreateKey(pb.CreateKeyRequest(tenant="t"))
    await s.admin.RevokeKey(pb.RevokeKeyRequest(key_id=revoked.info.key_id))
    return Ids(
        held.reservation_id,
        released.reservation_id,
        settled.reservation_id,
        expired.reservation_id,
        key.info.key_id,
        revoked.info.key_id,
        str(s.db_path),
    )
