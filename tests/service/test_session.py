"""The Session stream through a real daemon: tagged operations, one stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import BUDGET_1000, pools, wait_until, waiting
from tokenpool.core import key_digest, new_key

pytestmark = pytest.mark.anyio

SPLIT_10K = {"budgets": [{"name": "b", "capacity_tokens": 10_000}]}


class _Session:
    """A raw Session stream: send operations, collect results by tag."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.results: dict[int, pb.SessionResult] = {}
        self.messages = 0

    async def send(self, *ops: pb.SessionOp) -> None:
        await self.call.write(pb.SessionRequest(ops=ops))

    async def result(self, tag: int, timeout_s: float = 5) -> pb.SessionResult:
        with anyio.fail_after(timeout_s):
            while tag not in self.results:
                response = await self.call.read()
                assert response is not grpc.aio.EOF, "the stream ended"
                self.messages += 1
                for result in response.results:
                    self.results[result.tag] = result
        return self.results.pop(tag)


@asynccontextmanager
async def _session(
    s: Served, metadata: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[_Session]:
    call = s.api.Session(metadata=tuple(metadata))
    try:
        yield _Session(call)
    finally:
        call.cancel()


def _reserve(tag: int, tokens: int = 100, tenant: str = "t", **fields: Any) -> Any:
    request = pb.ReserveRequest(budget="b", tenant=tenant, tokens=tokens, **fields)
    return pb.SessionOp(tag=tag, reserve=request)


def _settle(tag: int, reservation_id: str, used: int, tenant: str = "t") -> Any:
    request = pb.SettleRequest(
        reservation_id=reservation_id, tenant=tenant, output_tokens=used
    )
    return pb.SessionOp(tag=tag, settle=request)


def _code(result: pb.SessionResult) -> grpc.StatusCode:
    assert result.WhichOneof("result") == "error", result
    return next(c for c in grpc.StatusCode if c.value[0] == result.error.code)


async def _entry_kinds(s: Served) -> list[str]:
    return [str(e.kind) for e in await s.ledger.entries(limit=10_000)]


async def test_session_batch_reserve_and_settle_answers_each(
    serve: ServeFactory,
) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        await session.send(*(_reserve(tag, tokens=100 * tag) for tag in (1, 2, 3)))
        granted = {tag: (await session.result(tag)).reserve for tag in (1, 2, 3)}
        assert [granted[tag].granted_tokens for tag in (1, 2, 3)] == [100, 200, 300]

        await session.send(
            *(_settle(10 + tag, granted[tag].reservation_id, 50) for tag in (1, 2, 3))
        )
        settled = [(await session.result(10 + tag)).settle for tag in (1, 2, 3)]

        assert [r.refunded_tokens for r in settled] == [50, 150, 250]
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].in_flight_tokens == 0
        # Results decided together share a message.
        assert session.messages < 6


async def test_session_errors_are_per_operation(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s, _session(s) as session:
        await session.send(
            _reserve(1, tokens=-5),
            _reserve(2, tokens=10_000),
            _settle(3, "no-such-id", 1),
            pb.SessionOp(tag=4),
            _reserve(5, tokens=100),
        )

        invalid = await session.result(1)
        too_large = await session.result(2)
        unknown = await session.result(3)
        empty = await session.result(4)
        ok = await session.result(5)

        assert _code(invalid) == grpc.StatusCode.INVALID_ARGUMENT
        assert "tokens" in invalid.error.message
        assert _code(too_large) == grpc.StatusCode.OUT_OF_RANGE
        assert _code(unknown) == grpc.StatusCode.NOT_FOUND
        assert _code(empty) == grpc.StatusCode.INVALID_ARGUMENT
        assert ok.reserve.granted_tokens == 100
        # The error is a google.rpc.Status, with the unary RPC's details.
        status = status_pb2.Status.FromString(too_large.error.SerializeToString())
        info = error_details_pb2.ErrorInfo()
        assert any(d.Unpack(info) for d in status.details)
        assert info.reason == "REQUEST_TOO_LARGE"


async def test_session_refusal_carries_retry_details(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s, _session(s) as session:
        await session.send(_reserve(1, tokens=1000), _reserve(2, tokens=10))

        assert (await session.result(1)).reserve.granted_tokens == 1000
        refused = await session.result(2)

        assert _code(refused) == grpc.StatusCode.RESOURCE_EXHAUSTED
        detail = pb.RefusalDetail()
        assert any(d.Unpack(detail) for d in refused.error.details)
        assert detail.reason == "POOL_EXHAUSTED"


async def test_session_repeated_key_returns_same_reservation(
    serve: ServeFactory,
) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        await session.send(_reserve(1, idempotency_key="k1"))
        first = (await session.result(1)).reserve
        await session.send(_reserve(2, idempotency_key="k1"))
        again = (await session.result(2)).reserve
        unary = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=100, idempotency_key="k1")
        )
        await session.send(_reserve(3, tokens=999, idempotency_key="k1"))
        conflict = await session.result(3)

        assert again.reservation_id == first.reservation_id
        assert unary.reservation_id == first.reservation_id
        assert _code(conflict) == grpc.StatusCode.FAILED_PRECONDITION
        assert (await _entry_kinds(s)).count("reserve") == 1


async def test_session_waiting_reserve_answered_out_of_order(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET_1000) as s, _session(s) as session:
        await session.send(_reserve(1, tokens=1000))
        held = (await session.result(1)).reserve
        await session.send(_reserve(2, tokens=500, max_wait_ms=60_000))
        await wait_until(lambda: _is_waiting(s, 1))

        await session.send(_settle(3, held.reservation_id, 100))
        settled = await session.result(3)
        waited = await session.result(2)

        assert settled.settle.refunded_tokens == 900
        assert waited.reserve.granted_tokens == 500


async def _is_waiting(s: Served, count: int) -> bool:
    return await waiting(s.api) == count


async def _in_flight(s: Served) -> int:
    status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    return pools(status)["basic"].in_flight_tokens


async def test_session_closed_stream_undoes_waiting_reserve(
    serve: ServeFactory,
) -> None:
    async with serve(**BUDGET_1000) as s:
        async with _session(s) as session:
            await session.send(_reserve(1, tokens=1000))
            held = (await session.result(1)).reserve
            await session.send(_reserve(2, tokens=500, max_wait_ms=60_000))
            await wait_until(lambda: _is_waiting(s, 1))
        await wait_until(lambda: _is_waiting(s, 0))

        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=held.reservation_id, tenant="t", output_tokens=10
            )
        )

        # The waiter left with the stream: nothing is held for it, ever.
        assert await _in_flight(s) == 0
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert status.open_reservations == 0
        assert (await _entry_kinds(s)).count("reserve") == 1


async def test_session_cancel_op_undoes_waiting_reserve(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s, _session(s) as session:
        await session.send(_reserve(1, tokens=1000))
        held = (await session.result(1)).reserve
        await session.send(_reserve(2, tokens=500, max_wait_ms=60_000))
        await wait_until(lambda: _is_waiting(s, 1))

        await session.send(pb.SessionOp(tag=3, cancel=2))
        cancelled = await session.result(2)
        await session.send(_settle(4, held.reservation_id, 10))
        await session.result(4)

        assert _code(cancelled) == grpc.StatusCode.CANCELLED
        assert await _is_waiting(s, 0)
        assert await _in_flight(s) == 0


async def test_session_timeout_refuses_waiting_reserve(serve: ServeFactory) -> None:
    async with serve(**BUDGET_1000) as s, _session(s) as session:
        await session.send(_reserve(1, tokens=1000))
        await session.result(1)
        op = _reserve(2, tokens=500, max_wait_ms=60_000)
        op.timeout_ms = 200
        await session.send(op)

        refused = await session.result(2)

        assert _code(refused) in {
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        }
        assert await _is_waiting(s, 0)
        assert await _in_flight(s) == 1000


async def test_session_half_close_finishes_running_ops(serve: ServeFactory) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        await session.send(*(_reserve(tag) for tag in range(1, 21)))
        await session.call.done_writing()

        answered = [await session.result(tag) for tag in range(1, 21)]

        assert all(r.reserve.granted_tokens == 100 for r in answered)
        assert await session.call.read() is grpc.aio.EOF


async def test_session_writes_same_ledger_entries_as_unary(
    serve: ServeFactory, tmp_path: Any
) -> None:
    async def through_unary(s: Served) -> None:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=300, model="m")
        )
        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id, tenant="t", output_tokens=120
            )
        )
        other = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=50)
        )
        await s.api.Release(
            pb.ReleaseRequest(reservation_id=other.reservation_id, tenant="t")
        )

    async def through_session(s: Served) -> None:
        async with _session(s) as session:
            await session.send(_reserve(1, tokens=300, model="m"))
            granted = (await session.result(1)).reserve
            await session.send(_settle(2, granted.reservation_id, 120))
            await session.result(2)
            await session.send(_reserve(3, tokens=50))
            other = (await session.result(3)).reserve
            release = pb.ReleaseRequest(reservation_id=other.reservation_id, tenant="t")
            await session.send(pb.SessionOp(tag=4, release=release))
            await session.result(4)

    shapes = []
    for name, run in (("unary", through_unary), ("session", through_session)):
        async with serve(db_path=tmp_path / f"{name}.db", **SPLIT_10K) as s:
            await run(s)
            shapes.append(
                [
                    (
                        e.kind,
                        (e.tenant, e.budget, e.pool, e.actor),
                        (e.tokens, e.charged, e.refunded, e.overrun),
                        sorted(e.detail),
                    )
                    for e in await s.ledger.entries(limit=100)
                    if e.kind not in {"start", "reload"}
                ]
            )

    assert shapes[0] == shapes[1]
    assert [kind for kind, *_ in shapes[0]] == [
        "reserve",
        "settle",
        "reserve",
        "release",
    ]


ADMIN = new_key()
KEY_A = new_key()
KEY_B = new_key()
CLOSED = {
    **SPLIT_10K,
    "auth": {
        "admin_token_sha256": key_digest(ADMIN),
        "tenant_keys": [
            {"tenant": "a", "sha256": key_digest(KEY_A)},
            {"tenant": "b", "sha256": key_digest(KEY_B)},
        ],
    },
}


def _bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


async def test_session_checks_each_operation_against_the_key(
    serve: ServeFactory,
) -> None:
    async with serve(**CLOSED) as s, _session(s, _bearer(KEY_A)) as session:
        await session.send(_reserve(1, tenant="a"), _reserve(2, tenant="b"))
        own = await session.result(1)
        foreign = await session.result(2)
        await session.send(_settle(3, own.reserve.reservation_id, 10, tenant="b"))
        foreign_settle = await session.result(3)

        assert own.reserve.granted_tokens == 100
        assert _code(foreign) == grpc.StatusCode.PERMISSION_DENIED
        assert _code(foreign_settle) == grpc.StatusCode.PERMISSION_DENIED


async def test_session_admin_token_may_act_as_any_tenant(
    serve: ServeFactory,
) -> None:
    async with serve(**CLOSED) as s, _session(s, _bearer(ADMIN)) as session:
        await session.send(_reserve(1, tenant="a"), _reserve(2, tenant="b"))

        assert (await session.result(1)).reserve.granted_tokens == 100
        assert (await session.result(2)).reserve.granted_tokens == 100


@pytest.mark.parametrize("key", [None, "not-a-key"])
async def test_session_without_known_key_is_unauthenticated(
    serve: ServeFactory, key: str | None
) -> None:
    metadata = [] if key is None else _bearer(key)
    async with serve(**CLOSED) as s, _session(s, metadata) as session:
        await session.send(_reserve(1, tenant="a"))

        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await session.result(1)

        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _open_reservations(s: Served) -> int:
    status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
    return status.open_reservations


async def test_session_half_close_answers_a_backlog_of_many_messages(
    serve: ServeFactory,
) -> None:
    # More results than one message carries are decided before the close.
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        await session.send(*(_reserve(tag, tokens=1) for tag in range(1, 1101)))
        await session.call.done_writing()

        answered = [await session.result(tag) for tag in range(1, 1101)]

        assert all(r.reserve.granted_tokens == 1 for r in answered)
        assert await session.call.read() is grpc.aio.EOF
        assert await session.call.code() == grpc.StatusCode.OK
        # Every grant held is one its caller was told about.
        assert await _open_reservations(s) == len(answered)


async def test_session_duplicate_tag_in_flight_is_refused(
    serve: ServeFactory,
) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        await session.send(_reserve(7, tokens=10), _reserve(7, tokens=20))

        first = await session.result(7)
        second = await session.result(7)

        answers = sorted(
            (first, second), key=lambda r: r.WhichOneof("result") == "reserve"
        )
        refused, granted = answers
        assert _code(refused) == grpc.StatusCode.INVALID_ARGUMENT
        assert "tag" in refused.error.message
        assert granted.reserve.granted_tokens == 10
        assert await _in_flight(s) == 10
        assert await _open_reservations(s) == 1


async def test_session_tag_may_be_reused_once_answered(serve: ServeFactory) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        await session.send(_reserve(7, tokens=10))
        await session.result(7)
        await session.send(_reserve(7, tokens=20))

        again = await session.result(7)

        assert again.reserve.granted_tokens == 20
        assert await _in_flight(s) == 30


async def test_session_negative_timeout_is_invalid(serve: ServeFactory) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        op = _reserve(1, tokens=10)
        op.timeout_ms = -5
        await session.send(op)

        refused = await session.result(1)

        assert _code(refused) == grpc.StatusCode.INVALID_ARGUMENT
        assert "timeout_ms" in refused.error.message
        assert await _open_reservations(s) == 0


async def test_session_largest_timeout_is_accepted(serve: ServeFactory) -> None:
    async with serve(**SPLIT_10K) as s, _session(s) as session:
        op = _reserve(1, tokens=10)
        op.timeout_ms = 2**63 - 1
        await session.send(op)

        assert (await session.result(1)).reserve.granted_tokens == 10
