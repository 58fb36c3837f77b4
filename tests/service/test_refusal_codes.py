"""Every refusal code of SPEC 11-12, each naming its field and changing nothing.

The table covers every RPC with the hostile values of issue 6: negative and
2^63-1 counts, usage sums past 64 bits, empty, 10 kB and control-character
names, unknown and foreign ids, reservations already ended, leases and waits
out of range, 10,000 labels; and every Admin RPC with bad names, unknown
ids, negative pages, bad modes and bad backup paths. Each case names the
field or the offending id in its message, compares the daemon's status,
listings, keys and ledger before and after, and checks that the daemon still
serves. The daemon runs with an admin token, which every call carries, so
that the key RPCs are reachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import anyio
import grpc
import pytest
from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal, wait_until
from tokenpool.core import key_digest, new_key

pytestmark = pytest.mark.anyio

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


def _reserve(**fields: Any) -> Call:
    def call(s: Served, _: Ids) -> Awaitable[Any]:
        request = {"budget": "b", "tenant": "t", **fields}
        return s.api.Reserve(pb.ReserveRequest(**request))

    return call


def _settle(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = {"reservation_id": getattr(ids, which), "tenant": "t", **fields}
        return s.api.Settle(pb.SettleRequest(**request))

    return call


def _release(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = {"reservation_id": getattr(ids, which), "tenant": "t", **fields}
        return s.api.Release(pb.ReleaseRequest(**request))

    return call


def _extend(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = {"reservation_id": getattr(ids, which), "tenant": "t", **fields}
        return s.api.Extend(pb.ExtendRequest(**request))

    return call


def _admin_release(which: str = "held", **fields: Any) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = pb.ReleaseReservationRequest(
            reservation_id=getattr(ids, which), **fields
        )
        return s.admin.ReleaseReservation(request)

    return call


def _key(method: str, which: str, **fields: Any) -> Call:
    """RotateKey or RevokeKey of one of the keys made before the case."""

    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        message = getattr(pb, f"{method}Request")
        return getattr(s.admin, method)(message(key_id=getattr(ids, which), **fields))

    return call


def _backup(path: Callable[[Ids], str]) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        return s.admin.BackupLedger(pb.BackupLedgerRequest(path=path(ids)))

    return call


def _as_tenant(method: str, message: type[Any]) -> Call:
    """An Admin call made with tenant t's API key instead of the admin token."""

    def call(s: Served, _: Ids) -> Awaitable[Any]:
        metadata = (("authorization", f"Bearer {TENANT_KEY}"),)
        return getattr(s.admin, method)(message(), metadata=metadata)

    return call


def _lease_in(s: Served, seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(s.clock.wall_ns() + int(seconds * 1e9))
    return stamp


def _extend_lease(seconds: float) -> Call:
    def call(s: Served, ids: Ids) -> Awaitable[Any]:
        request = pb.ExtendRequest(
            reservation_id=ids.held, tenant="t", lease_expires_at=_lease_in(s, seconds)
        )
        return s.api.Extend(request)

    return call


def _rpc(service: str, method: str, message: type[Any], **fields: Any) -> Call:
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


def _admin_names() -> list[Maker]:
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
            return _rpc("admin", method, message, **{field: value}, **rest)

        return (f"{method} {field}", make, field, True)

    return [maker(*row) for row in named]


def _bad_names() -> list[Case]:
    """Each name field of every RPC, with each never-valid name."""
    makers: list[Maker] = [
        ("Reserve tenant", lambda v: _reserve(tenant=v, tokens=1), "tenant", True),
        ("Reserve budget", lambda v: _reserve(budget=v, tokens=1), "budget", True),
        (
            "Reserve fallback",
            lambda v: _reserve(tokens=1, fallback_budgets=[v]),
            "fallback_budgets",
            True,
        ),
        ("Settle tenant", lambda v: _settle(tenant=v), "tenant", True),
        ("Release tenant", lambda v: _release(tenant=v), "tenant", True),
        ("Extend tenant", lambda v: _extend(tenant=v, total_tokens=50), "tenant", True),
        (
            "GetBudget budget",
            lambda v: _rpc("api", "GetBudget", pb.GetBudgetRequest, budget=v),
            "budget",
            True,
        ),
        (
            "GetTenant tenant",
            lambda v: _rpc("api", "GetTenant", pb.GetTenantRequest, tenant=v),
            "tenant",
            True,
        ),
        (
            "GetTeam team",
            lambda v: _rpc("api", "GetTeam", pb.GetTeamRequest, team=v),
            "team",
            True,
        ),
        (
            "Rebalance budget",
            lambda v: _rpc(
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
            lambda v: _rpc(
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
            lambda v: _rpc(
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
            lambda v: _rpc(
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
        *_admin_names(),
        # In listings and reports an empty name means "all".
        (
            "ListReservations budget",
            lambda v: _rpc(
                "admin", "ListReservations", pb.ListReservationsRequest, budget=v
            ),
            "budget",
            False,
        ),
        (
            "ListReservations tenant",
            lambda v: _rpc(
                "admin", "ListReservations", pb.ListReservationsRequest, tenant=v
            ),
            "tenant",
            False,
        ),
        (
            "Report budget",
            lambda v: _rpc("admin", "Report", pb.ReportRequest, budget=v),
            "budget",
            False,
        ),
        (
            "Estimates budget",
            lambda v: _rpc("admin", "Estimates", pb.EstimatesRequest, budget=v),
            "budget",
            False,
        ),
        (
            "Estimates tenant",
            lambda v: _rpc("admin", "Estimates", pb.EstimatesRequest, tenant=v),
            "tenant",
            False,
        ),
        (
            "ListKeys tenant",
            lambda v: _rpc("admin", "ListKeys", pb.ListKeysRequest, tenant=v),
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


def _bad_counts() -> list[Case]:
    """Every token count of every RPC, negative and at 2^63-1."""
    fields: list[tuple[str, Callable[..., Call], str]] = [
        ("Reserve", _reserve, "tokens"),
        ("Reserve", lambda **f: _reserve(tokens=1, **f), "input_tokens"),
        ("Reserve", lambda **f: _reserve(tokens=1, **f), "max_output_tokens"),
        ("Reserve", lambda **f: _reserve(tokens=1, **f), "input_chars"),
        ("Reserve", lambda **f: _reserve(tokens=1, **f), "max_wait_ms"),
        ("Reserve", lambda **f: _reserve(tokens=1, **f), "lease_ms"),
        ("Settle", _settle, "input_tokens"),
        ("Settle", _settle, "cached_input_tokens"),
        ("Settle", _settle, "cache_write_tokens"),
        ("Settle", _settle, "output_tokens"),
        ("Settle", _settle, "provider_remaining_tokens"),
        ("Settle", _settle, "provider_limit_tokens"),
        ("Release", _release, "billed_input_tokens"),
        ("Extend", _extend, "total_tokens"),
        (
            "SetCapacity",
            lambda **f: _rpc(
                "admin", "SetCapacity", pb.SetCapacityRequest, budget="b", **f
            ),
            "capacity_tokens",
        ),
        ("ReleaseReservation", _admin_release, "billed_input_tokens"),
    ]
    return [
        Case(f"{rpc} {field} = {value}", make(**{field: value}), INVALID, field, field)
        for rpc, make, field in fields
        for value in (-1, INT64_MAX)
    ]


CASES: list[Case] = [
    *_bad_names(),
    *_bad_counts(),
    Case(
        "nothing to size from",
        _reserve(),
        INVALID,
        "nothing to size",
        "tokens",
    ),
    Case(
        "Reserve sizes that add up past 64 bits",
        _reserve(input_tokens=HUGE, max_output_tokens=HUGE),
        INVALID,
        "input_tokens",
        "input_tokens",
    ),
    Case(
        "max wait above the maximum",
        _reserve(tokens=1, max_wait_ms=5001),
        INVALID,
        "max_wait_ms",
        "max_wait_ms",
    ),
    Case(
        "lease above the maximum",
        _reserve(tokens=1, lease_ms=3_600_001),
        INVALID,
        "lease_ms",
        "lease_ms",
    ),
    Case(
        "too many labels",
        _reserve(tokens=1, labels={str(i): "v" for i in range(65)}),
        INVALID,
        "labels",
        "labels",
    ),
    Case(
        "10,000 labels",
        _reserve(tokens=1, labels={f"k{i}": "v" for i in range(10_000)}),
        INVALID,
        "labels",
        "labels",
    ),
    Case(
        "a 10 kB label value",
        _reserve(tokens=1, labels={"k": "v" * 10_000}),
        INVALID,
        "labels",
        "labels",
    ),
    Case(
        "control characters in a label key",
        _reserve(tokens=1, labels={"a\nb": "v"}),
        INVALID,
        "labels",
        "labels",
    ),
    Case(
        "negative urgency",
        _reserve(tokens=1, urgency=-1),
        INVALID,
        "urgency",
        "urgency",
    ),
    Case(
        "output detail above 3",
        _reserve(tokens=1, output_detail=4),
        INVALID,
        "output_detail",
        "output_detail",
    ),
    Case(
        "negative context items",
        _reserve(tokens=1, context_items=-1),
        INVALID,
        "context_items",
        "context_items",
    ),
    Case(
        "control character in the model",
        _reserve(tokens=1, model="gpt\n4"),
        INVALID,
        "model",
        "model",
    ),
    Case(
        "a 10 kB idempotency key",
        _reserve(tokens=1, idempotency_key="k" * 10_000),
        INVALID,
        "idempotency_key",
        "idempotency_key",
    ),
    Case(
        "nine fallback budgets",
        _reserve(tokens=1, fallback_budgets=["b"] * 9),
        INVALID,
        "fallback_budgets",
        "fallback_budgets",
    ),
    Case(
        "unknown fallback budget",
        _reserve(tokens=1, fallback_budgets=["nowhere"]),
        grpc.StatusCode.NOT_FOUND,
        "nowhere",
        "'nowhere'",
    ),
    Case(
        "unknown budget",
        _reserve(budget="nope", tokens=1),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "unknown tenant refused",
        _reserve(budget="closed", tenant="stranger", tokens=1),
        grpc.StatusCode.PERMISSION_DENIED,
        "stranger",
        "'stranger'",
    ),
    Case(
        "larger than the budget",
        _reserve(tokens=10_001),
        grpc.StatusCode.OUT_OF_RANGE,
        "can never grant",
        "10001 tokens",
    ),
    Case(
        "not enough tokens now",
        _reserve(tokens=7100),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "cannot grant",
        "7100 tokens",
    ),
    Case(
        "usage that overflows",
        _settle(input_tokens=HUGE, output_tokens=HUGE),
        INVALID,
        "usage",
        "usage",
    ),
    Case(
        "four usage figures that pass 2^64 together",
        _settle(
            input_tokens=HUGE,
            cached_input_tokens=HUGE,
            cache_write_tokens=HUGE,
            output_tokens=HUGE,
        ),
        INVALID,
        "usage",
        "usage",
    ),
    Case(
        "usage above 2^62",
        _settle(input_tokens=HUGE + 1),
        INVALID,
        "input_tokens",
        "input_tokens",
    ),
    Case(
        "cache hit with usage",
        _settle(response_cache_hit=True, output_tokens=5),
        INVALID,
        "response_cache_hit",
        "response_cache_hit",
    ),
    Case(
        "control characters in a settle's model",
        _settle(model="gpt\x00\x1b[31m"),
        INVALID,
        "model",
        "model",
    ),
    Case(
        "someone else's reservation",
        _settle(tenant="intruder"),
        grpc.StatusCode.PERMISSION_DENIED,
        "not held by tenant 'intruder'",
        "{held}",
    ),
    Case(
        "release of someone else's reservation",
        _release(tenant="x"),
        grpc.StatusCode.PERMISSION_DENIED,
        "its own reservations",
        "{held}",
    ),
    Case(
        "extend of someone else's reservation",
        _extend(tenant="x", total_tokens=50),
        grpc.StatusCode.PERMISSION_DENIED,
        "its own reservations",
        "{held}",
    ),
    Case(
        "settle of an unknown reservation",
        lambda s, _: s.api.Settle(
            pb.SettleRequest(reservation_id="0" * 32, tenant="t")
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
        "reservation_id",
    ),
    Case(
        "release of an unknown reservation",
        lambda s, _: s.api.Release(
            pb.ReleaseRequest(reservation_id="f" * 32, tenant="t")
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
        "reservation_id",
    ),
    Case(
        "extend of an unknown reservation",
        lambda s, _: s.api.Extend(
            pb.ExtendRequest(reservation_id="e" * 32, tenant="t", total_tokens=5)
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
        "reservation_id",
    ),
    Case(
        "an empty reservation id",
        lambda s, _: s.api.Settle(pb.SettleRequest(reservation_id="", tenant="t")),
        INVALID,
        "reservation_id",
        "reservation_id",
    ),
    Case(
        "a 10 kB reservation id",
        lambda s, _: s.api.Release(
            pb.ReleaseRequest(reservation_id="r" * 10_000, tenant="t")
        ),
        INVALID,
        "reservation_id",
        "reservation_id",
    ),
    Case(
        "control characters in a reservation id",
        lambda s, _: s.api.Settle(
            pb.SettleRequest(reservation_id="a\x07b", tenant="t")
        ),
        INVALID,
        "reservation_id",
        "reservation_id",
    ),
    Case(
        "settle after release",
        _settle("released", output_tokens=5),
        grpc.StatusCode.FAILED_PRECONDITION,
        "released",
        "{released}",
    ),
    Case(
        "settle after expiry, usage within the hold",
        _settle("expired", output_tokens=30),
        grpc.StatusCode.FAILED_PRECONDITION,
        "expired",
        "{expired}",
    ),
    Case(
        "settle again with different figures",
        _settle("settled", output_tokens=6),
        grpc.StatusCode.FAILED_PRECONDITION,
        "different figures",
        "{settled}",
    ),
    Case(
        "release after settle",
        _release("settled"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "settled",
        "{settled}",
    ),
    Case(
        "extend after release",
        _extend("released", total_tokens=50),
        grpc.StatusCode.FAILED_PRECONDITION,
        "released",
        "{released}",
    ),
    Case(
        "extend beyond the budget",
        _extend(total_tokens=10_001),
        grpc.StatusCode.OUT_OF_RANGE,
        "can ever hold",
        "total_tokens",
    ),
    Case(
        "extend beyond available tokens",
        _extend(total_tokens=6600),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "cannot grant",
        "total_tokens",
    ),
    Case(
        "extend to an impossible time",
        _extend(lease_expires_at=timestamp_pb2.Timestamp(seconds=INT64_MAX)),
        INVALID,
        "lease_expires_at",
        "lease_expires_at",
    ),
    Case(
        "extend to a lease in the past",
        _extend_lease(-1),
        INVALID,
        "lease_expires_at",
        "lease_expires_at",
    ),
    Case(
        "extend to a lease above the maximum",
        _extend_lease(3601),
        INVALID,
        "lease_expires_at",
        "lease_expires_at",
    ),
    Case(
        "status of an unknown budget",
        _rpc("api", "GetBudget", pb.GetBudgetRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "status of an unknown team",
        _rpc("api", "GetTeam", pb.GetTeamRequest, team="nope"),
        grpc.StatusCode.NOT_FOUND,
        "team 'nope'",
        "'nope'",
    ),
    Case(
        "negative listing limit",
        _rpc("admin", "ListReservations", pb.ListReservationsRequest, limit=-1),
        INVALID,
        "limit",
        "limit",
    ),
    Case(
        "listing limit above the maximum",
        _rpc("admin", "ListReservations", pb.ListReservationsRequest, limit=2**31 - 1),
        INVALID,
        "limit",
        "limit",
    ),
    Case(
        "listing of an unknown budget",
        _rpc("admin", "ListReservations", pb.ListReservationsRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "report of an unknown budget",
        _rpc("admin", "Report", pb.ReportRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "estimates of an unknown budget",
        _rpc("admin", "Estimates", pb.EstimatesRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "a reload of a daemon started without a file",
        _rpc("admin", "ReloadConfig", pb.ReloadConfigRequest),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no file to reload",
        "--config",
    ),
    Case(
        "shares that do not sum to 100",
        _rpc(
            "admin", "Rebalance", pb.RebalanceRequest, budget="b", shares={"basic": 70}
        ),
        INVALID,
        "shares",
        "shares",
    ),
    Case(
        "a rebalance that names no pool",
        _rpc("admin", "Rebalance", pb.RebalanceRequest, budget="b"),
        INVALID,
        "names no pool",
        "shares",
    ),
    Case(
        "a negative share",
        _rpc(
            "admin", "Rebalance", pb.RebalanceRequest, budget="b", shares={"basic": -1}
        ),
        INVALID,
        "shares[basic]",
        "shares[basic]",
    ),
    Case(
        "a share of a pool that does not exist",
        _rpc("admin", "Rebalance", pb.RebalanceRequest, budget="b", shares={"gold": 0}),
        INVALID,
        "gold",
        "'gold'",
    ),
    Case(
        "a rebalance of an unknown budget",
        _rpc(
            "admin",
            "Rebalance",
            pb.RebalanceRequest,
            budget="nope",
            shares={"basic": 65},
        ),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "a capacity for an unknown budget",
        _rpc(
            "admin",
            "SetCapacity",
            pb.SetCapacityRequest,
            budget="nope",
            capacity_tokens=5,
        ),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "a pool state for an unknown budget",
        _rpc(
            "admin",
            "SetPoolState",
            pb.SetPoolStateRequest,
            budget="nope",
            pool="basic",
            state=pb.POOL_STATE_PAUSED,
        ),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
        "'nope'",
    ),
    Case(
        "a pool state for an unknown pool",
        _rpc(
            "admin",
            "SetPoolState",
            pb.SetPoolStateRequest,
            budget="b",
            pool="gold",
            state=pb.POOL_STATE_PAUSED,
        ),
        INVALID,
        "not a pool",
        "pool",
    ),
    Case(
        "a pool state left unspecified",
        _rpc(
            "admin",
            "SetPoolState",
            pb.SetPoolStateRequest,
            budget="b",
            pool="basic",
        ),
        INVALID,
        "POOL_STATE_UNSPECIFIED is not a pool state",
        "state",
    ),
    Case(
        "a pool state the proto does not know",
        _rpc(
            "admin",
            "SetPoolState",
            pb.SetPoolStateRequest,
            budget="b",
            pool="basic",
            state=9,
        ),
        INVALID,
        "not a pool state",
        "state",
    ),
]


def _folder(ids: Ids) -> str:
    return ids.db_path.rsplit("/", 1)[0]


# The Admin RPCs beyond the first release's: ids, pages, modes, paths, caps.
ADMIN_CASES: list[Case] = [
    Case(
        "a tenant in a team that does not exist",
        _rpc("admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", team="nope"),
        NOT_FOUND,
        "Unknown team",
        "'nope'",
    ),
    Case(
        "a negative tenant weight",
        _rpc("admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", weight=-1),
        INVALID,
        "weight",
        "weight",
    ),
    Case(
        "a tenant weight of 2^63-1",
        _rpc(
            "admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", weight=INT64_MAX
        ),
        INVALID,
        "weight",
        "weight",
    ),
    Case(
        "a tier that does not exist",
        _rpc("admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", tier="gold"),
        INVALID,
        "tier",
        "tier",
    ),
    Case(
        "a negative daily cap of a tenant",
        _rpc(
            "admin",
            "UpsertTenant",
            pb.UpsertTenantRequest,
            name="known",
            caps=pb.Caps(daily_tokens=-1),
        ),
        INVALID,
        "daily_tokens",
        "daily_tokens",
    ),
    Case(
        "a cost cap that is not a number",
        _rpc(
            "admin",
            "UpsertTenant",
            pb.UpsertTenantRequest,
            name="known",
            caps=pb.Caps(daily_cost_usd="lots"),
        ),
        INVALID,
        "daily_cost_usd",
        "daily_cost_usd",
    ),
    Case(
        "a tenant field that cannot be cleared",
        _rpc("admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", clear=["x"]),
        INVALID,
        "clear",
        "clear",
    ),
    Case(
        "a team in-flight cap of 2^63-1",
        _rpc(
            "admin",
            "UpsertTeam",
            pb.UpsertTeamRequest,
            name="crew",
            caps=pb.Caps(max_in_flight_tokens=INT64_MAX),
        ),
        INVALID,
        "max_in_flight_tokens",
        "max_in_flight_tokens",
    ),
    Case(
        "a pool percent of a team above 100",
        _rpc(
            "admin",
            "UpsertTeam",
            pb.UpsertTeamRequest,
            name="crew",
            caps=pb.Caps(max_pool_percent=101),
        ),
        INVALID,
        "max_pool_percent",
        "max_pool_percent",
    ),
    Case(
        "a team cleared of its team",
        _rpc("admin", "UpsertTeam", pb.UpsertTeamRequest, name="n", clear=["team"]),
        INVALID,
        "clear",
        "clear",
    ),
    Case(
        "removal of an unknown tenant",
        _rpc("admin", "RemoveTenant", pb.RemoveTenantRequest, name="nobody"),
        NOT_FOUND,
        "not configured",
        "'nobody'",
    ),
    Case(
        "removal of an unknown team",
        _rpc("admin", "RemoveTeam", pb.RemoveTeamRequest, name="nobody"),
        NOT_FOUND,
        "Unknown team",
        "'nobody'",
    ),
    Case(
        "removal of a team that has members",
        _rpc("admin", "RemoveTeam", pb.RemoveTeamRequest, name="crew"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "still has members",
        "'crew'",
    ),
    Case(
        "tenants listed with a tenant key",
        _as_tenant("ListTenants", pb.ListTenantsRequest),
        grpc.StatusCode.PERMISSION_DENIED,
        "admin call",
        "ListTenants",
    ),
    Case(
        "teams listed with a tenant key",
        _as_tenant("ListTeams", pb.ListTeamsRequest),
        grpc.StatusCode.PERMISSION_DENIED,
        "admin call",
        "ListTeams",
    ),
    Case(
        "an operator's release of an unknown reservation",
        _rpc(
            "admin",
            "ReleaseReservation",
            pb.ReleaseReservationRequest,
            reservation_id="0" * 32,
        ),
        NOT_FOUND,
        "Unknown",
        "reservation_id",
    ),
    Case(
        "an operator's release with an empty id",
        _rpc("admin", "ReleaseReservation", pb.ReleaseReservationRequest),
        INVALID,
        "must not be empty",
        "reservation_id",
    ),
    Case(
        "an operator's release with a 10 kB id",
        _rpc(
            "admin",
            "ReleaseReservation",
            pb.ReleaseReservationRequest,
            reservation_id="r" * 10_000,
        ),
        INVALID,
        "characters long",
        "reservation_id",
    ),
    Case(
        "an operator's release with control characters in the id",
        _rpc(
            "admin",
            "ReleaseReservation",
            pb.ReleaseReservationRequest,
            reservation_id="a\x1bb",
        ),
        INVALID,
        "control characters",
        "reservation_id",
    ),
    Case(
        "an operator's release of a settled reservation",
        _admin_release("settled"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "already settled",
        "{settled}",
    ),
    Case(
        "entries after a negative id",
        _rpc("admin", "ListEntries", pb.ListEntriesRequest, after_id=-1),
        INVALID,
        "negative",
        "after_id",
    ),
    Case(
        "entries after id -2^63",
        _rpc("admin", "ListEntries", pb.ListEntriesRequest, after_id=-(2**63)),
        INVALID,
        "negative",
        "after_id",
    ),
    Case(
        "a negative page of entries",
        _rpc("admin", "ListEntries", pb.ListEntriesRequest, limit=-1),
        INVALID,
        "outside",
        "limit",
    ),
    Case(
        "a page of entries above the maximum",
        _rpc("admin", "ListEntries", pb.ListEntriesRequest, limit=2**31 - 1),
        INVALID,
        "outside",
        "limit",
    ),
    Case(
        "entries of a kind that does not exist",
        _rpc("admin", "ListEntries", pb.ListEntriesRequest, kinds=["settle", "nope"]),
        INVALID,
        "'nope'",
        "kinds",
    ),
    Case(
        "entries since an impossible time",
        _rpc(
            "admin",
            "ListEntries",
            pb.ListEntriesRequest,
            since=timestamp_pb2.Timestamp(seconds=INT64_MAX),
        ),
        INVALID,
        "Timestamp",
        "since",
    ),
    Case(
        "a backup with no path",
        _backup(lambda _: ""),
        INVALID,
        "name the file",
        "path",
    ),
    Case(
        "a backup to a 10 kB path",
        _backup(lambda ids: f"{_folder(ids)}/{'x' * 10_000}.db"),
        INVALID,
        "characters long",
        "path",
    ),
    Case(
        "a backup to a file name too long for the system",
        _backup(lambda ids: f"{_folder(ids)}/{'x' * 300}.db"),
        INVALID,
        "File name too long",
        "path",
    ),
    Case(
        "a backup to a path with a NUL byte",
        _backup(lambda ids: f"{_folder(ids)}/copy\x00.db"),
        INVALID,
        "control characters",
        "path",
    ),
    Case(
        "a backup to a path with escape codes",
        _backup(lambda ids: f"{_folder(ids)}/copy\x1b[31m.db"),
        INVALID,
        "control characters",
        "path",
    ),
    Case(
        "a backup over the ledger itself",
        _backup(lambda ids: ids.db_path),
        INVALID,
        "exists already",
        "path",
    ),
    Case(
        "a backup into a folder that does not exist",
        _backup(lambda ids: f"{_folder(ids)}/missing/copy.db"),
        INVALID,
        "does not exist",
        "path",
    ),
    Case(
        "a backup under a file, not a folder",
        _backup(lambda ids: f"{ids.db_path}/copy.db"),
        INVALID,
        "does not exist",
        "path",
    ),
    Case(
        "the autoscaler of an unknown budget",
        _rpc("admin", "GetAutoscale", pb.GetAutoscaleRequest, budget="nope"),
        NOT_FOUND,
        "Unknown budget",
        "'nope'",
    ),
    Case(
        "an autoscaler switched on an unknown budget",
        _rpc(
            "admin", "SetAutoscale", pb.SetAutoscaleRequest, budget="nope", mode="act"
        ),
        NOT_FOUND,
        "Unknown budget",
        "'nope'",
    ),
    Case(
        "an autoscale mode that does not exist",
        _rpc("admin", "SetAutoscale", pb.SetAutoscaleRequest, budget="b", mode="turbo"),
        INVALID,
        "not one of off, act or recommend",
        "mode",
    ),
    Case(
        "an empty autoscale mode",
        _rpc("admin", "SetAutoscale", pb.SetAutoscaleRequest, budget="b"),
        INVALID,
        "not one of",
        "mode",
    ),
    Case(
        "a 10 kB autoscale mode",
        _rpc(
            "admin",
            "SetAutoscale",
            pb.SetAutoscaleRequest,
            budget="b",
            mode="a" * 10_000,
        ),
        INVALID,
        "not one of",
        "mode",
    ),
    Case(
        "a key label with control characters",
        _rpc("admin", "CreateKey", pb.CreateKeyRequest, tenant="t", label="a\x1bb"),
        INVALID,
        "control characters",
        "label",
    ),
    Case(
        "a 10 kB key label",
        _rpc("admin", "CreateKey", pb.CreateKeyRequest, tenant="t", label="l" * 10_000),
        INVALID,
        "characters long",
        "label",
    ),
    Case(
        "rotation of an unknown key",
        _rpc("admin", "RotateKey", pb.RotateKeyRequest, key_id="k-000000000000"),
        NOT_FOUND,
        "Unknown key_id",
        "'k-000000000000'",
    ),
    Case(
        "rotation of a revoked key",
        _key("RotateKey", "revoked_key"),
        NOT_FOUND,
        "Unknown key_id",
        "{revoked_key}",
    ),
    Case(
        "rotation with an empty key id",
        _rpc("admin", "RotateKey", pb.RotateKeyRequest),
        INVALID,
        "must not be empty",
        "key_id",
    ),
    Case(
        "rotation with a 10 kB key id",
        _rpc("admin", "RotateKey", pb.RotateKeyRequest, key_id="k" * 10_000),
        INVALID,
        "characters long",
        "key_id",
    ),
    Case(
        "rotation to a label with control characters",
        _key("RotateKey", "key", label="new\nline"),
        INVALID,
        "control characters",
        "label",
    ),
    Case(
        "revocation of an unknown key",
        _rpc("admin", "RevokeKey", pb.RevokeKeyRequest, key_id="file-nothing"),
        NOT_FOUND,
        "Unknown key_id",
        "'file-nothing'",
    ),
    Case(
        "revocation of a revoked key",
        _key("RevokeKey", "revoked_key"),
        NOT_FOUND,
        "Unknown key_id",
        "{revoked_key}",
    ),
    Case(
        "revocation with an empty key id",
        _rpc("admin", "RevokeKey", pb.RevokeKeyRequest),
        INVALID,
        "must not be empty",
        "key_id",
    ),
    Case(
        "revocation with control characters in the key id",
        _rpc("admin", "RevokeKey", pb.RevokeKeyRequest, key_id="k\x00"),
        INVALID,
        "control characters",
        "key_id",
    ),
]

CASES += ADMIN_CASES


async def _snapshot(s: Served) -> tuple[object, ...]:
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


class _AdminToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Sends the admin token with every call that names no credential itself."""

    async def intercept_unary_unary(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        metadata = list(details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(("authorization", f"Bearer {ADMIN_TOKEN}"))
        return await continuation(details._replace(metadata=metadata), request)


@asynccontextmanager
async def _as_admin(s: Served) -> AsyncIterator[Served]:
    """The same daemon, through a channel that carries the admin token."""
    async with grpc.aio.insecure_channel(
        s.address, interceptors=[_AdminToken()]
    ) as channel:
        yield replace(
            s,
            channel=channel,
            api=pb_grpc.TokenPoolStub(channel),
            admin=pb_grpc.AdminStub(channel),
        )


async def _reservations_of_every_state(s: Served) -> Ids:
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


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
async def test_bad_request_is_refused_and_changes_nothing(
    serve: ServeFactory, case: Case
) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        ids = await _reservations_of_every_state(s)
        before = await _snapshot(s)

        failed = await refusal(case.call(s, ids))

        assert failed.code == case.code, failed.message
        assert case.named in failed.message
        # Whatever the code, the message names the field or the offending id.
        field = case.field.format(**asdict(ids))
        assert field in failed.message, f"{field!r} not named: {failed.message}"
        if case.code == INVALID:
            assert failed.bad_fields and failed.bad_fields[0] in failed.message
        assert await _snapshot(s) == before
        # The daemon keeps serving.
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="v", tokens=1)
        )
        assert granted.granted_tokens == 1


async def test_resource_exhausted_carries_retry_details(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=6000))

        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=2000))
        )

        assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failed.reason == "POOL_EXHAUSTED"
        assert failed.detail is not None
        # 500 left in basic, half of burst's 1300 for one tenant, and the
        # quarter of priority's 2200 that priority lends by default.
        assert failed.detail.largest_grantable_tokens == 500 + 650 + 550
        assert failed.detail.pool == "basic"
        assert failed.retry_after_s is not None and failed.retry_after_s > 0


async def test_out_of_range_is_not_retryable(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=10_000))
        )

        assert failed.code == grpc.StatusCode.OUT_OF_RANGE
        assert failed.retry_after_s is None
        assert failed.detail is not None
        assert failed.detail.largest_grantable_tokens == 6500 + 650 + 550


async def test_full_queue_refuses_at_once(serve: ServeFactory) -> None:
    budgets = [{"name": "b", "capacity_tokens": 1000, "queue_limit": 0}]
    async with serve(budgets=budgets) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=700))

        failed = await refusal(
            s.api.Reserve(
                pb.ReserveRequest(budget="b", tenant="t", tokens=500, max_wait_ms=5000)
            )
        )

        assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failed.reason == "QUEUE_FULL"


async def test_draining_daemon_answers_unavailable(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        s.engine.begin_shutdown()

        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1))
        )

        assert failed.code == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in failed.message


async def test_invalid_argument_names_the_field_in_details(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=-1))
        )

        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failed.bad_fields == ["tokens"]


async def test_huge_usage_is_charged_but_debt_stops_at_a_window(
    serve: ServeFactory,
) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        held = await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1))
        huge = 2**62

        settled = await s.api.Settle(
            pb.SettleRequest(
                reservation_id=held.reservation_id, tenant="t", output_tokens=huge
            )
        )

        assert (settled.charged_tokens, settled.overrun_tokens) == (huge, huge - 1)
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        basic = {pool.name: pool for pool in status.pools}["basic"]
        # Basic (6,500) is drained and carries at most one window of debt.
        assert (basic.available_tokens, basic.debt_tokens) == (0, 6500)
        refused = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="u", tokens=1000))
        )
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.retry_after_s is not None and refused.retry_after_s <= 86_400
        # Two windows of refill repay the debt and refill the pool.
        s.clock.advance(120)
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="u", tokens=1000))


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/tokenpool.v1.TokenPool/Reserve", b"\x12\x02\xff\xfe"),  # bad UTF-8
        ("/tokenpool.v1.TokenPool/Settle", b"\x18\xff\xff\xff"),  # cut varint
        ("/tokenpool.v1.TokenPool/GetBudget", b"\x0a\x7f" + b"x" * 3),  # short
        ("/tokenpool.v1.Admin/ListTenants", b"\x08\xff"),  # cut varint
        ("/tokenpool.v1.Admin/ListTeams", b"\x0a\x05ab"),  # short
    ],
)
async def test_malformed_bytes_are_invalid_argument(
    serve: ServeFactory, path: str, data: bytes
) -> None:
    async with serve(**CONFIG) as served, _as_admin(served) as s:
        before = await _snapshot(s)
        call = s.channel.unary_unary(path)

        failed = await refusal(call(data))

        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a valid tokenpool.v1." in failed.message
        assert await _snapshot(s) == before
