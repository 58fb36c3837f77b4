"""Every refusal code of SPEC 11-12, each naming its field and changing nothing.

The table covers every RPC with the hostile values of issue 6: negative and
2^63-1 counts, usage sums past 64 bits, empty, 10 kB and control-character
names, unknown and foreign ids, reservations already ended, leases and waits
out of range, 10,000 labels. Each case compares the daemon's status and the
ledger before and after, and checks that the daemon still serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal, wait_until

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "budgets": [
        {"name": "b", "capacity_tokens": 10_000, "max_wait_ms": 5000},
        {"name": "closed", "capacity_tokens": 1000, "unknown_tenants": "refuse"},
    ],
    "tenants": [{"name": "known", "team": "crew"}],
    "teams": [{"name": "crew"}],
}

# The largest int64, and sums of figures each allowed alone (2^62) that pass it.
INT64_MAX = 2**63 - 1
HUGE = 2**62

# Names that are never valid: empty, 10 kB, and with control characters.
BAD_NAMES = [("empty", ""), ("10 kB", "x" * 10_000), ("control", "a\x01b\x1b[31m")]


@dataclass(frozen=True)
class Ids:
    """Reservations of tenant t in each state, made before every case."""

    held: str
    released: str
    settled: str
    expired: str


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


Case = tuple[str, Call, grpc.StatusCode, str]
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _bad_names() -> list[Case]:
    """Each name field of every RPC, with each never-valid name."""
    makers: list[tuple[str, Callable[[str], Call], str, bool]] = [
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
    ]
    return [
        (f"{label}: {kind}", make(value), INVALID, field)
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
    ]
    return [
        (f"{rpc} {field} = {value}", make(**{field: value}), INVALID, field)
        for rpc, make, field in fields
        for value in (-1, INT64_MAX)
    ]


CASES: list[Case] = [
    *_bad_names(),
    *_bad_counts(),
    (
        "nothing to size from",
        _reserve(),
        INVALID,
        "nothing to size",
    ),
    (
        "Reserve sizes that add up past 64 bits",
        _reserve(input_tokens=HUGE, max_output_tokens=HUGE),
        INVALID,
        "input_tokens",
    ),
    (
        "max wait above the maximum",
        _reserve(tokens=1, max_wait_ms=5001),
        INVALID,
        "max_wait_ms",
    ),
    (
        "lease above the maximum",
        _reserve(tokens=1, lease_ms=3_600_001),
        INVALID,
        "lease_ms",
    ),
    (
        "too many labels",
        _reserve(tokens=1, labels={str(i): "v" for i in range(65)}),
        INVALID,
        "labels",
    ),
    (
        "10,000 labels",
        _reserve(tokens=1, labels={f"k{i}": "v" for i in range(10_000)}),
        INVALID,
        "labels",
    ),
    (
        "a 10 kB label value",
        _reserve(tokens=1, labels={"k": "v" * 10_000}),
        INVALID,
        "labels",
    ),
    (
        "control characters in a label key",
        _reserve(tokens=1, labels={"a\nb": "v"}),
        INVALID,
        "labels",
    ),
    (
        "negative urgency",
        _reserve(tokens=1, urgency=-1),
        INVALID,
        "urgency",
    ),
    (
        "output detail above 3",
        _reserve(tokens=1, output_detail=4),
        INVALID,
        "output_detail",
    ),
    (
        "negative context items",
        _reserve(tokens=1, context_items=-1),
        INVALID,
        "context_items",
    ),
    (
        "control character in the model",
        _reserve(tokens=1, model="gpt\n4"),
        INVALID,
        "model",
    ),
    (
        "a 10 kB idempotency key",
        _reserve(tokens=1, idempotency_key="k" * 10_000),
        INVALID,
        "idempotency_key",
    ),
    (
        "nine fallback budgets",
        _reserve(tokens=1, fallback_budgets=["b"] * 9),
        INVALID,
        "fallback_budgets",
    ),
    (
        "unknown fallback budget",
        _reserve(tokens=1, fallback_budgets=["nowhere"]),
        grpc.StatusCode.NOT_FOUND,
        "nowhere",
    ),
    (
        "unknown budget",
        _reserve(budget="nope", tokens=1),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
    ),
    (
        "unknown tenant refused",
        _reserve(budget="closed", tenant="stranger", tokens=1),
        grpc.StatusCode.PERMISSION_DENIED,
        "stranger",
    ),
    (
        "larger than the budget",
        _reserve(tokens=10_001),
        grpc.StatusCode.OUT_OF_RANGE,
        "can never grant",
    ),
    (
        "not enough tokens now",
        _reserve(tokens=7100),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "cannot grant",
    ),
    (
        "usage that overflows",
        _settle(input_tokens=HUGE, output_tokens=HUGE),
        INVALID,
        "usage",
    ),
    (
        "four usage figures that pass 2^64 together",
        _settle(
            input_tokens=HUGE,
            cached_input_tokens=HUGE,
            cache_write_tokens=HUGE,
            output_tokens=HUGE,
        ),
        INVALID,
        "usage",
    ),
    (
        "usage above 2^62",
        _settle(input_tokens=HUGE + 1),
        INVALID,
        "input_tokens",
    ),
    (
        "cache hit with usage",
        _settle(response_cache_hit=True, output_tokens=5),
        INVALID,
        "response_cache_hit",
    ),
    (
        "control characters in a settle's model",
        _settle(model="gpt\x00\x1b[31m"),
        INVALID,
        "model",
    ),
    (
        "someone else's reservation",
        _settle(tenant="intruder"),
        grpc.StatusCode.PERMISSION_DENIED,
        "not held by tenant 'intruder'",
    ),
    (
        "release of someone else's reservation",
        _release(tenant="x"),
        grpc.StatusCode.PERMISSION_DENIED,
        "its own reservations",
    ),
    (
        "extend of someone else's reservation",
        _extend(tenant="x", total_tokens=50),
        grpc.StatusCode.PERMISSION_DENIED,
        "its own reservations",
    ),
    (
        "settle of an unknown reservation",
        lambda s, _: s.api.Settle(
            pb.SettleRequest(reservation_id="0" * 32, tenant="t")
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
    ),
    (
        "release of an unknown reservation",
        lambda s, _: s.api.Release(
            pb.ReleaseRequest(reservation_id="f" * 32, tenant="t")
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
    ),
    (
        "extend of an unknown reservation",
        lambda s, _: s.api.Extend(
            pb.ExtendRequest(reservation_id="e" * 32, tenant="t", total_tokens=5)
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
    ),
    (
        "an empty reservation id",
        lambda s, _: s.api.Settle(pb.SettleRequest(reservation_id="", tenant="t")),
        INVALID,
        "reservation_id",
    ),
    (
        "a 10 kB reservation id",
        lambda s, _: s.api.Release(
            pb.ReleaseRequest(reservation_id="r" * 10_000, tenant="t")
        ),
        INVALID,
        "reservation_id",
    ),
    (
        "control characters in a reservation id",
        lambda s, _: s.api.Settle(
            pb.SettleRequest(reservation_id="a\x07b", tenant="t")
        ),
        INVALID,
        "reservation_id",
    ),
    (
        "settle after release",
        _settle("released", output_tokens=5),
        grpc.StatusCode.FAILED_PRECONDITION,
        "released",
    ),
    (
        "settle after expiry, usage within the hold",
        _settle("expired", output_tokens=30),
        grpc.StatusCode.FAILED_PRECONDITION,
        "expired",
    ),
    (
        "settle again with different figures",
        _settle("settled", output_tokens=6),
        grpc.StatusCode.FAILED_PRECONDITION,
        "different figures",
    ),
    (
        "release after settle",
        _release("settled"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "settled",
    ),
    (
        "extend after release",
        _extend("released", total_tokens=50),
        grpc.StatusCode.FAILED_PRECONDITION,
        "released",
    ),
    (
        "extend beyond the budget",
        _extend(total_tokens=10_001),
        grpc.StatusCode.OUT_OF_RANGE,
        "can ever hold",
    ),
    (
        "extend beyond available tokens",
        _extend(total_tokens=6600),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "cannot grant",
    ),
    (
        "extend to an impossible time",
        _extend(lease_expires_at=timestamp_pb2.Timestamp(seconds=INT64_MAX)),
        INVALID,
        "lease_expires_at",
    ),
    (
        "extend to a lease in the past",
        _extend_lease(-1),
        INVALID,
        "lease_expires_at",
    ),
    (
        "extend to a lease above the maximum",
        _extend_lease(3601),
        INVALID,
        "lease_expires_at",
    ),
    (
        "status of an unknown budget",
        _rpc("api", "GetBudget", pb.GetBudgetRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
    ),
    (
        "status of an unknown team",
        _rpc("api", "GetTeam", pb.GetTeamRequest, team="nope"),
        grpc.StatusCode.NOT_FOUND,
        "team 'nope'",
    ),
    (
        "negative listing limit",
        _rpc("admin", "ListReservations", pb.ListReservationsRequest, limit=-1),
        INVALID,
        "limit",
    ),
    (
        "listing limit above the maximum",
        _rpc("admin", "ListReservations", pb.ListReservationsRequest, limit=2**31 - 1),
        INVALID,
        "limit",
    ),
    (
        "listing of an unknown budget",
        _rpc("admin", "ListReservations", pb.ListReservationsRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
    ),
    (
        "report of an unknown budget",
        _rpc("admin", "Report", pb.ReportRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
    ),
    (
        "estimates of an unknown budget",
        _rpc("admin", "Estimates", pb.EstimatesRequest, budget="nope"),
        grpc.StatusCode.NOT_FOUND,
        "budget 'nope'",
    ),
    (
        "a reload of a daemon started without a file",
        _rpc("admin", "ReloadConfig", pb.ReloadConfigRequest),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no file to reload",
    ),
    (
        "an upsert of a tenant with no name",
        _rpc("admin", "UpsertTenant", pb.UpsertTenantRequest),
        INVALID,
        "name",
    ),
    (
        "shares that do not sum to 100",
        _rpc(
            "admin", "Rebalance", pb.RebalanceRequest, budget="b", shares={"basic": 70}
        ),
        INVALID,
        "shares",
    ),
    (
        "a rebalance that names no pool",
        _rpc("admin", "Rebalance", pb.RebalanceRequest, budget="b"),
        INVALID,
        "names no pool",
    ),
    (
        "a negative share",
        _rpc(
            "admin", "Rebalance", pb.RebalanceRequest, budget="b", shares={"basic": -1}
        ),
        INVALID,
        "shares[basic]",
    ),
    (
        "a share of a pool that does not exist",
        _rpc("admin", "Rebalance", pb.RebalanceRequest, budget="b", shares={"gold": 0}),
        INVALID,
        "gold",
    ),
    (
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
    ),
    (
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
    ),
]


async def _snapshot(s: Served) -> tuple[object, ...]:
    """Everything a refusal must leave alone: status, holds and the ledger."""
    budgets = await s.api.ListBudgets(pb.ListBudgetsRequest())
    tenant = await s.api.GetTenant(pb.GetTenantRequest(tenant="t"))
    listed = await s.admin.ListReservations(pb.ListReservationsRequest())
    entries = await s.ledger.entries(limit=10_000)
    return (
        budgets.SerializeToString(),
        tenant.SerializeToString(),
        listed.SerializeToString(),
        entries,
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
    return Ids(
        held.reservation_id,
        released.reservation_id,
        settled.reservation_id,
        expired.reservation_id,
    )


@pytest.mark.parametrize(
    ("call", "code", "named"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_request_is_refused_and_changes_nothing(
    serve: ServeFactory, call: Call, code: grpc.StatusCode, named: str
) -> None:
    async with serve(**CONFIG) as s:
        ids = await _reservations_of_every_state(s)
        before = await _snapshot(s)

        failed = await refusal(call(s, ids))

        assert failed.code == code, failed.message
        assert named in failed.message
        if code == INVALID:
            assert failed.bad_fields and failed.bad_fields[0] in failed.message
        assert await _snapshot(s) == before
        # The daemon keeps serving.
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="v", tokens=1)
        )
        assert granted.granted_tokens == 1


async def test_resource_exhausted_carries_retry_details(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
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
    async with serve(**CONFIG) as s:
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
    async with serve(**CONFIG) as s:
        s.engine.begin_shutdown()

        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1))
        )

        assert failed.code == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in failed.message


async def test_invalid_argument_names_the_field_in_details(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=-1))
        )

        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failed.bad_fields == ["tokens"]


async def test_huge_usage_is_charged_but_debt_stops_at_a_window(
    serve: ServeFactory,
) -> None:
    async with serve(**CONFIG) as s:
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
    ],
)
async def test_malformed_bytes_are_invalid_argument(
    serve: ServeFactory, path: str, data: bytes
) -> None:
    async with serve(**CONFIG) as s:
        before = await _snapshot(s)
        call = s.channel.unary_unary(path)

        failed = await refusal(call(data))

        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a valid tokenpool.v1." in failed.message
        assert await _snapshot(s) == before
