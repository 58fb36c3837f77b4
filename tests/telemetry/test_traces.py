"""Spans of Reserve and Settle reach a real OTLP receiver as one trace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Tracer
from tokenpool_client import AsyncClient, Client, RefusedError
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import ServeFactory
from tests.service._helpers import BUDGET_1000, Pending, wait_until, waiting
from tests.telemetry._collector import Receiver, attributes, event_names, otlp_receiver
from tests.telemetry._scrape import scrape

pytestmark = pytest.mark.anyio

RESERVE = "tokenpool.v1.TokenPool/Reserve"
SETTLE = "tokenpool.v1.TokenPool/Settle"
COMMIT = "tokenpool.ledger.commit"
EXPIRE = "tokenpool.expire"
AUTOSCALE = "tokenpool.autoscale"


@pytest.fixture
def caller() -> Iterator[Tracer]:
    """The calling service's own tracer, as its OpenTelemetry set-up gives it."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    yield provider.get_tracer("llm-service")
    provider.shutdown()


def _traced(receiver: Receiver, **telemetry: Any) -> dict[str, Any]:
    return {
        **BUDGET_1000,
        "telemetry": {
            "traces_exporter": "otlp",
            "otlp_endpoint": receiver.endpoint,
            "schedule_delay_ms": 20,
            **telemetry,
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
    assert settled["tokenpool.score"] == granted.complexity_score
    assert settled["tokenpool.multiplier"] == granted.multiplier

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


def _span_id(span: Span) -> int:
    return int.from_bytes(span.span_id, "big")


def _parent_id(span: Span) -> int:
    return int.from_bytes(span.parent_span_id, "big")


async def test_sync_client_joins_the_callers_trace(
    serve: ServeFactory, caller: Tracer
) -> None:
    def call(address: str) -> tuple[int, int]:
        with Client(address) as client, caller.start_as_current_span("llm") as llm:
            granted = client.reserve("b", "t", tokens=100)
            client.settle(granted.reservation_id, "t", output_tokens=50)
        context = llm.get_span_context()
        return context.trace_id, context.span_id

    async with otlp_receiver() as receiver, serve(**_traced(receiver)) as s:
        trace_id, span_id = await anyio.to_thread.run_sync(call, s.address)
        await receiver.wait_for(RESERVE, SETTLE)

    for name in (RESERVE, SETTLE):
        [span] = receiver.named(name)
        assert int.from_bytes(span.trace_id, "big") == trace_id
        assert _parent_id(span) == span_id
    assert attributes(receiver.named(SETTLE)[0])["tokenpool.tokens_used"] == 50


async def test_admin_changes_are_children_of_the_admin_span(
    serve: ServeFactory,
) -> None:
    async with otlp_receiver() as receiver, serve(**_traced(receiver)) as s:
        await s.admin.SetCapacity(
            pb.SetCapacityRequest(budget="b", capacity_tokens=2000)
        )
        await s.admin.Rebalance(
            pb.RebalanceRequest(budget="b", shares={"basic": 80, "burst": 20})
        )
        await receiver.wait_for(
            "tokenpool.budget.capacity", "tokenpool.budget.rebalance"
        )

    [set_capacity] = receiver.named("tokenpool.v1.Admin/SetCapacity")
    [capacity] = receiver.named("tokenpool.budget.capacity")
    assert set_capacity.kind == Span.SPAN_KIND_SERVER
    assert capacity.trace_id == set_capacity.trace_id
    assert _parent_id(capacity) == _span_id(set_capacity)
    found = attributes(capacity)
    assert found["tokenpool.budget"] == "b"
    assert found["tokenpool.change"] == "capacity"
    assert found["tokenpool.capacity_tokens"] == 2000
    assert found["tokenpool.capacity_basic"] == 2000

    [rebalance_rpc] = receiver.named("tokenpool.v1.Admin/Rebalance")
    [rebalance] = receiver.named("tokenpool.budget.rebalance")
    assert _parent_id(rebalance) == _span_id(rebalance_rpc)
    found = attributes(rebalance)
    assert found["tokenpool.change"] == "rebalance"
    assert found["tokenpool.capacity_basic"] == 1600
    assert found["tokenpool.capacity_burst"] == 400


async def test_expired_lease_has_a_span_with_an_expired_event(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenpool")
    async with otlp_receiver() as receiver, serve(**_traced(receiver)) as s:
        async with AsyncClient(s.address) as client:
            granted = await client.reserve("b", "t", tokens=400, lease_ms=10_000)
        await receiver.wait_for(RESERVE)
        s.clock.advance(9.9)
        await anyio.sleep(0.1)
        early = receiver.named(EXPIRE)
        s.clock.advance(0.2)
        await receiver.wait_for(EXPIRE)

    assert early == []
    [expire] = receiver.named(EXPIRE)
    [reserve] = receiver.named(RESERVE)
    # The sweeper's work belongs to no request: a trace of its own.
    assert expire.trace_id != reserve.trace_id
    assert expire.parent_span_id == b""
    found = attributes(expire)
    assert found["tokenpool.outcome"] == "expired"
    assert found["tokenpool.reservation_id"] == granted.reservation_id
    assert found["tokenpool.tokens_charged"] == 400
    assert found["tokenpool.tokens_refunded"] == 0
    [event] = [e for e in expire.events if e.name == "expired"]
    assert {a.key: a.value.int_value for a in event.attributes}[
        "tokenpool.tokens_charged"
    ] == 400

    [line] = [r for r in caplog.records if r.getMessage().startswith("reservation exp")]
    assert line.levelno == logging.INFO
    assert f"reservation_id={granted.reservation_id}" in line.getMessage()


_AUTOSCALED = {
    "budgets": [
        {
            "name": "b",
            "capacity_tokens": 60_000,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
            "autoscale": {"enabled": True, "interval_seconds": 10},
        }
    ]
}


async def test_provider_cut_is_a_span_a_log_line_and_a_metric(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenpool")
    async with otlp_receiver() as receiver:
        config = {**_traced(receiver, metrics_address="127.0.0.1:0"), **_AUTOSCALED}
        async with serve(**config) as s:
            async with AsyncClient(s.address) as client:
                granted = await client.reserve("b", "t", tokens=1000)
                await client.settle(
                    granted.reservation_id,
                    "t",
                    input_tokens=1000,
                    provider_rate_limited=True,
                )
            await receiver.wait_for(SETTLE, AUTOSCALE)
            metrics = await scrape(s.metrics_address)

    [settle] = receiver.named(SETTLE)
    [autoscale] = receiver.named(AUTOSCALE)
    # A provider cut comes from a settle: that settle's span is its parent.
    assert _parent_id(autoscale) == _span_id(settle)
    assert autoscale.trace_id == settle.trace_id
    found = attributes(autoscale)
    assert found["tokenpool.budget"] == "b"
    assert found["tokenpool.action"] == "provider_cut"
    assert "rate-limited" in str(found["tokenpool.reason"])
    assert (found["tokenpool.capacity_from"], found["tokenpool.capacity_to"]) == (
        60_000,
        48_000,
    )
    assert (found["tokenpool.mode"], found["tokenpool.applied"]) == ("act", True)
    assert event_names(autoscale) == ["provider_cut"]

    [line] = [r for r in caplog.records if r.getMessage().startswith("autoscale dec")]
    assert line.levelno == logging.INFO
    assert "action=provider_cut" in line.getMessage()
    assert "capacity_to=48000" in line.getMessage()
    assert (
        metrics.value(
            "tokenpool_autoscale_decisions_total",
            budget="b",
            action="provider_cut",
            applied="true",
        )
        == 1
    )


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
