"""Spans of Reserve and Settle reach a real OTLP receiver as one trace."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Tracer
from tokenpool_client import AsyncClient, RefusedError
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import ServeFactory
from tests.service._helpers import BUDGET_1000, Pending, wait_until, waiting
from tests.telemetry._collector import Receiver, attributes, event_names, otlp_receiver

pytestmark = pytest.mark.anyio

RESERVE = "tokenpool.v1.TokenPool/Reserve"
SETTLE = "tokenpool.v1.TokenPool/Settle"
COMMIT = "tokenpool.ledger.commit"


@pytest.fixture
def caller() -> Iterator[Tracer]:
    """The calling service's own tracer, as its OpenTelemetry set-up gives it."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    yield provider.get_tracer("llm-service")
    provider.shutdown()


def _traced(receiver: Receiver) -> dict[str, object]:
    return {
        **BUDGET_1000,
        "telemetry": {
            "traces_exporter": "otlp",
            "otlp_endpoint": receiver.endpoint,
            "schedule_delay_ms": 20,
        },
    }


async def test_reserve_and_settle_join_the_callers_trace(
    serve: ServeFactory, caller: Tracer
) -> None:
    async with otlp_receiver() as receiver, serve(**_traced(receiver)) as s:
        async with AsyncClient(s.address) as client:
            with caller.start_as_current_span("llm-call") as llm_call:
                granted = await client.reserve("b", "t", tokens=100)
                await client.settle(
                    granted.reservation_id, "t", input_tokens=40, output_tokens=20
                )
        await receiver.wait_for(RESERVE, SETTLE, COMMIT)

    context = llm_call.get_span_context()
    [reserve] = receiver.named(RESERVE)
    [settle] = receiver.named(SETTLE)
    for span in (reserve, settle):
        assert int.from_bytes(span.trace_id, "big") == context.trace_id
        assert int.from_bytes(span.parent_span_id, "big") == context.span_id
        assert span.kind == span.SPAN_KIND_SERVER

    found = attributes(reserve)
    assert found["rpc.system.name"] == "grpc"
    assert found["rpc.method"] == RESERVE
    assert found["rpc.response.status_code"] == "OK"
    assert found["tokenpool.budget"] == "b"
    assert found["tokenpool.tenant"] == "t"
    assert found["tokenpool.pool"] == "basic"
    assert found["tokenpool.tokens_requested"] == 100
    assert found["tokenpool.tokens_granted"] == 100
    assert found["tokenpool.lenders"] == []
    assert found["tokenpool.score"] == granted.complexity_score
    assert found["tokenpool.multiplier"] == granted.multiplier
    assert found["tokenpool.waited_ms"] == 0
    assert found["tokenpool.outcome"] == "granted"
    assert found["tokenpool.reservation_id"] == granted.reservation_id
    assert "granted" in event_names(reserve)

    settled = attributes(settle)
    assert settled["tokenpool.outcome"] == "settled"
    assert settled["tokenpool.tokens_used"] == 60
    assert settled["tokenpool.tokens_charged"] == 60
    assert settled["tokenpool.tokens_refunded"] == 40
    assert settled["tokenpool.tokens_overrun"] == 0

    commits = receiver.named(COMMIT)
    parents = {int.from_bytes(span.parent_span_id, "big") for span in commits}
    assert {int.from_bytes(s.span_id, "big") for s in (reserve, settle)} <= parents
    for span in commits:
        assert span.trace_id == reserve.trace_id
        batch_size = attributes(span)["tokenpool.ledger.batch_size"]
        assert isinstance(batch_size, int)
        assert batch_size >= 1


async def test_refusal_queue_and_overrun_become_events(serve: ServeFactory) -> None:
    async with otlp_receiver() as receiver, serve(**_traced(receiver)) as s:
        async with AsyncClient(s.address) as client:
            held = await client.reserve("b", "a", tokens=900)
            with pytest.raises(RefusedError):
                await client.reserve("b", "a", tokens=500)

            # A waiter, granted when the first hold gives tokens back.
            async with anyio.create_task_group() as tasks:
                pending = Pending()
                request = pb.ReserveRequest(
                    budget="b", tenant="w", tokens=300, max_wait_ms=5000
                )
                tasks.start_soon(pending.send, s.api, request)
                await wait_until(lambda: _has_waiter(s.api))
                await client.settle(held.reservation_id, "a", output_tokens=500)
                answer = await pending.answered()
            # Its own settle reports more than it held.
            await client.settle(answer.reservation_id, "w", output_tokens=400)
        await wait_until(lambda: _count(receiver, SETTLE, 2))
        await wait_until(lambda: _count(receiver, RESERVE, 3))

    refused = _only(receiver, RESERVE, "tokenpool.outcome", "refused")
    found = attributes(refused)
    assert found["rpc.response.status_code"] == "RESOURCE_EXHAUSTED"
    assert found["tokenpool.reason"] == "POOL_EXHAUSTED"
    assert found["tokenpool.tokens_requested"] == 500
    assert "refused" in event_names(refused)

    waited = _only(receiver, RESERVE, "tokenpool.tenant", "w")
    assert event_names(waited)[:2] == ["queued", "granted"]

    overrun = _only(receiver, SETTLE, "tokenpool.tenant", "w")
    assert attributes(overrun)["tokenpool.tokens_overrun"] == 100
    assert "overrun" in event_names(overrun)


def _only(receiver: Receiver, name: str, key: str, value: object) -> Span:
    [span] = [s for s in receiver.named(name) if attributes(s).get(key) == value]
    return span


async def _has_waiter(api: object) -> bool:
    return await waiting(api) == 1  # type: ignore[arg-type]


async def _count(receiver: Receiver, name: str, count: int) -> bool:
    return len(receiver.named(name)) >= count


async def test_session_operations_join_the_callers_trace(
    serve: ServeFactory, caller: Tracer
) -> None:
    async with otlp_receiver() as receiver, serve(**_traced(receiver)) as s:
        async with AsyncClient(s.address, session=True) as client:
            await client.reserve("b", "t", tokens=900)
            with caller.start_as_current_span("llm-call") as llm_call:
                granted = await client.reserve("b", "t", tokens=50)
                await client.settle(granted.reservation_id, "t", output_tokens=20)
            with pytest.raises(RefusedError):
                await client.reserve("b", "t", tokens=500)
        await receiver.wait_for(RESERVE, SETTLE)
        await wait_until(lambda: _spans_named(receiver, RESERVE, 3))

    context = llm_call.get_span_context()
    reserves = receiver.named(RESERVE)
    [settle] = receiver.named(SETTLE)
    joined = [
        span
        for span in (*reserves, settle)
        if int.from_bytes(span.trace_id, "big") == context.trace_id
    ]
    assert len(joined) == 2
    assert all(
        int.from_bytes(span.parent_span_id, "big") == context.span_id for span in joined
    )
    codes = sorted(
        str(attributes(span)["rpc.response.status_code"]) for span in reserves
    )
    assert codes == ["OK", "OK", "RESOURCE_EXHAUSTED"]


async def _spans_named(receiver: Receiver, name: str, count: int) -> bool:
    return len(receiver.named(name)) >= count
