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

from dataclasses import asdict

import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import ServeFactory
from tests.service._helpers import refusal
from tests.service._hostile import (
    CONFIG,
    INVALID,
    Case,
    as_admin,
    reservations_of_every_state,
    snapshot,
)
from tests.service._hostile_admin_cases import ADMIN_CASES
from tests.service._hostile_cases import API_CASES

pytestmark = pytest.mark.anyio

CASES: list[Case] = [*API_CASES, *ADMIN_CASES]


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
async def test_bad_request_is_refused_and_changes_nothing(
    serve: ServeFactory, case: Case
) -> None:
    async with serve(**CONFIG) as served, as_admin(served) as s:
        ids = await reservations_of_every_state(s)
        before = await snapshot(s)

        failed = await refusal(case.call(s, ids))

        assert failed.code == case.code, failed.message
        assert case.named in failed.message
        # Whatever the code, the message names the field or the offending id.
        field = case.field.format(**asdict(ids))
        assert field in failed.message, f"{field!r} not named: {failed.message}"
        if case.code == INVALID:
            assert failed.bad_fields and failed.bad_fields[0] in failed.message
        assert await snapshot(s) == before
        # The daemon keeps serving.
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="v", tokens=1)
        )
        assert granted.granted_tokens == 1


async def test_resource_exhausted_carries_retry_details(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as served, as_admin(served) as s:
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
    async with serve(**CONFIG) as served, as_admin(served) as s:
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
    async with serve(**CONFIG) as served, as_admin(served) as s:
        s.engine.begin_shutdown()

        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1))
        )

        assert failed.code == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in failed.message


async def test_invalid_argument_names_the_field_in_details(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as served, as_admin(served) as s:
        failed = await refusal(
            s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=-1))
        )

        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failed.bad_fields == ["tokens"]


async def test_huge_usage_is_charged_but_debt_stops_at_a_window(
    serve: ServeFactory,
) -> None:
    async with serve(**CONFIG) as served, as_admin(served) as s:
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
    async with serve(**CONFIG) as served, as_admin(served) as s:
        before = await snapshot(s)
        call = s.channel.unary_unary(path)

        failed = await refusal(call(data))

        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a valid tokenpool.v1." in failed.message
        assert await snapshot(s) == before
