"""Every refusal code of SPEC 11-12, each naming its field and changing nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "budgets": [
        {"name": "b", "capacity_tokens": 10_000, "max_wait_ms": 5000},
        {"name": "closed", "capacity_tokens": 1000, "unknown_tenants": "refuse"},
    ],
    "tenants": [{"name": "known"}],
}

Call = Callable[[Served, str], Awaitable[Any]]


def _reserve(**fields: Any) -> Call:
    def call(s: Served, _: str) -> Awaitable[Any]:
        request = {"budget": "b", "tenant": "t", **fields}
        return s.api.Reserve(pb.ReserveRequest(**request))

    return call


def _settle(**fields: Any) -> Call:
    def call(s: Served, rid: str) -> Awaitable[Any]:
        request = {"reservation_id": rid, "tenant": "t", **fields}
        return s.api.Settle(pb.SettleRequest(**request))

    return call


CASES: list[tuple[str, Call, grpc.StatusCode, str]] = [
    (
        "negative tokens",
        _reserve(tokens=-5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tokens",
    ),
    (
        "nothing to size from",
        _reserve(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "nothing to size",
    ),
    (
        "empty tenant",
        _reserve(tenant="", tokens=1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant",
    ),
    (
        "control character in tenant",
        _reserve(tenant="a\x01b", tokens=1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant",
    ),
    (
        "10 kB tenant",
        _reserve(tenant="x" * 10_000, tokens=1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant",
    ),
    (
        "max wait above the maximum",
        _reserve(tokens=1, max_wait_ms=5001),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_wait_ms",
    ),
    (
        "negative lease",
        _reserve(tokens=1, lease_ms=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lease_ms",
    ),
    (
        "lease above the maximum",
        _reserve(tokens=1, lease_ms=3_600_001),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lease_ms",
    ),
    (
        "too many labels",
        _reserve(tokens=1, labels={str(i): "v" for i in range(65)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "labels",
    ),
    (
        "negative urgency",
        _reserve(tokens=1, urgency=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "urgency",
    ),
    (
        "output detail above 3",
        _reserve(tokens=1, output_detail=4),
        grpc.StatusCode.INVALID_ARGUMENT,
        "output_detail",
    ),
    (
        "control character in the model",
        _reserve(tokens=1, model="gpt\n4"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model",
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
        "nope",
    ),
    (
        "unknown tenant refused",
        _reserve(budget="closed", tenant="stranger", tokens=1),
        grpc.StatusCode.PERMISSION_DENIED,
        "stranger",
    ),
    (
        "larger than ever grantable",
        _reserve(tokens=2**63 - 1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tokens",
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
        "negative usage",
        _settle(output_tokens=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "output_tokens",
    ),
    (
        "usage that overflows",
        _settle(input_tokens=2**62, output_tokens=2**62),
        grpc.StatusCode.INVALID_ARGUMENT,
        "usage",
    ),
    (
        "usage above 2^62",
        _settle(input_tokens=2**62 + 1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input_tokens",
    ),
    (
        "cache hit with usage",
        _settle(response_cache_hit=True, output_tokens=5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "response_cache_hit",
    ),
    (
        "someone else's reservation",
        _settle(tenant="intruder"),
        grpc.StatusCode.PERMISSION_DENIED,
        "not held by tenant 'intruder'",
    ),
    (
        "unknown reservation",
        lambda s, _: s.api.Settle(
            pb.SettleRequest(reservation_id="0" * 32, tenant="t")
        ),
        grpc.StatusCode.NOT_FOUND,
        "reservation_id",
    ),
    (
        "release of someone else's reservation",
        lambda s, rid: s.api.Release(pb.ReleaseRequest(reservation_id=rid, tenant="x")),
        grpc.StatusCode.PERMISSION_DENIED,
        "its own reservations",
    ),
    (
        "extend beyond the budget",
        lambda s, rid: s.api.Extend(
            pb.ExtendRequest(reservation_id=rid, tenant="t", total_tokens=10_001)
        ),
        grpc.StatusCode.OUT_OF_RANGE,
        "can ever hold",
    ),
    (
        "extend beyond available tokens",
        lambda s, rid: s.api.Extend(
            pb.ExtendRequest(reservation_id=rid, tenant="t", total_tokens=6600)
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "cannot grant",
    ),
    (
        "extend to an impossible time",
        lambda s, rid: s.api.Extend(
            pb.ExtendRequest(
                reservation_id=rid,
                tenant="t",
                lease_expires_at=timestamp_pb2.Timestamp(seconds=2**63 - 1),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lease_expires_at",
    ),
    (
        "control characters in a settle's model",
        _settle(model="gpt\x00\x1b[31m"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model",
    ),
    (
        "control characters in a reservation id",
        lambda s, _: s.api.Settle(
            pb.SettleRequest(reservation_id="a\x07b", tenant="t")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "reservation_id",
    ),
    (
        "empty fallback budget",
        _reserve(tokens=1, fallback_budgets=[""]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "fallback_budgets",
    ),
    (
        "negative listing limit",
        lambda s, _: s.admin.ListReservations(pb.ListReservationsRequest(limit=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "limit",
    ),
    (
        "a reload of a daemon started without a file",
        lambda s, _: s.admin.ReloadConfig(pb.ReloadConfigRequest()),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no file to reload",
    ),
    (
        "a negative capacity",
        lambda s, _: s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="b", capacity_tokens=-5)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "capacity_tokens",
    ),
    (
        "shares that do not sum to 100",
        lambda s, _: s.admin.Rebalance(
            pb.RebalanceRequest(budget="b", shares={"basic": 70})
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "shares",
    ),
    (
        "a share of a pool that does not exist",
        lambda s, _: s.admin.Rebalance(
            pb.RebalanceRequest(budget="b", shares={"gold": 0})
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "gold",
    ),
    (
        "a rebalance of an unknown budget",
        lambda s, _: s.admin.Rebalance(
            pb.RebalanceRequest(budget="nope", shares={"basic": 65})
        ),
        grpc.StatusCode.NOT_FOUND,
        "nope",
    ),
    (
        "status of an unknown budget",
        lambda s, _: s.api.GetBudget(pb.GetBudgetRequest(budget="nope")),
        grpc.StatusCode.NOT_FOUND,
        "nope",
    ),
]


async def _snapshot(s: Served) -> tuple[object, ...]:
    status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    return (status.SerializeToString(), await s.ledger.entry_count())


@pytest.mark.parametrize(
    ("call", "code", "named"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_request_is_refused_and_changes_nothing(
    serve: ServeFactory, call: Call, code: grpc.StatusCode, named: str
) -> None:
    async with serve(**CONFIG) as s:
        held = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=100)
        )
        # With u's hold, t can reach 5200 in basic plus its 650 of burst.
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="u", tokens=1200))
        before = await _snapshot(s)

        failed = await refusal(call(s, held.reservation_id))

        assert failed.code == code
        assert named in failed.message
        assert await _snapshot(s) == before
        # The daemon keeps serving.
        assert (await s.api.ListBudgets(pb.ListBudgetsRequest())).budgets


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
