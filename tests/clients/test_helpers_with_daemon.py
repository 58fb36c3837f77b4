"""The SDK helpers end to end: real SDKs, a fake provider, a real daemon."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anthropic
import anyio.to_thread
import grpc
import openai
import pytest
from tokenpool_client import AsyncClient, Client, Reservation, metered

from tests.conftest import Served, ServeFactory
from tokenpool.ledger import Entry

from . import _providers as p

if TYPE_CHECKING:
    from .conftest import FakeDaemon

pytestmark = pytest.mark.anyio

BUDGET = {
    "budgets": [
        {
            "name": "b",
            "capacity_tokens": 100_000,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
        }
    ]
}

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]


async def _entries(s: Served) -> dict[str, list[Entry]]:
    found: dict[str, list[Entry]] = {}
    for entry in await s.ledger.entries():
        found.setdefault(str(entry.kind.value), []).append(entry)
    return found


async def test_metered_openai_chat_settles_cached_split(serve: ServeFactory) -> None:
    fake = p.FakeProvider()
    fake.json(p.CHAT_COMPLETION)

    async with serve(**BUDGET) as s:

        def call() -> str | None:
            with Client(s.address) as pool:
                chat = metered(
                    pool,
                    fake.openai_client().chat.completions.create,
                    budget="b",
                    tenant="svc",
                )
                answer = chat(model="gpt-4o-mini", messages=MESSAGES, max_tokens=300)
                return answer.choices[0].message.content

        assert await anyio.to_thread.run_sync(call) == "Paris."
        entries = await _entries(s)

    [reserve] = entries["reserve"]
    [settle] = entries["settle"]
    # 30 characters of text (8 tokens) and one message (4), plus max_tokens.
    assert reserve.tokens == 8 + 4 + 300
    assert settle.detail["input_tokens"] == 1300 - 1024
    assert settle.detail["cached_input_tokens"] == 1024
    assert settle.detail["output_tokens"] == 40
    assert settle.detail["incomplete"] is False
    assert settle.detail["model"] == "gpt-4o-mini-2024-07-18"
    assert "stream" not in fake.requests[0]


async def test_metered_async_openai_stream_asks_for_usage(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.CHAT_CHUNKS, done=True))

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        chat: Any = metered(  # the SDK overloads create on stream=
            pool,
            fake.async_openai_client().chat.completions.create,
            budget="b",
            tenant="svc",
        )
        stream = await chat(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = [
            chunk.choices[0].delta.content async for chunk in stream if chunk.choices
        ]
        entries = await _entries(s)

    assert "".join(t or "" for t in text) == "The capital is Paris."
    assert fake.requests[0]["stream_options"] == {"include_usage": True}
    [settle] = entries["settle"]
    assert (settle.detail["input_tokens"], settle.detail["output_tokens"]) == (388, 7)
    assert settle.detail["cached_input_tokens"] == 512
    assert settle.detail["incomplete"] is False


async def test_metered_anthropic_stream_cut_off_settles_incomplete(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.MESSAGE_EVENTS[:5]), cut=True)

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        create: Any = metered(  # the SDK overloads create on stream=
            pool,
            fake.async_anthropic_client().messages.create,
            budget="b",
            tenant="svc",
        )
        stream = await create(
            model="claude-sonnet-4-5", max_tokens=500, messages=MESSAGES, stream=True
        )
        with pytest.raises(anthropic.APIConnectionError):
            async for _ in stream:
                pass
        entries = await _entries(s)

    [reserve] = entries["reserve"]
    [settle] = entries["settle"]
    assert settle.detail["incomplete"] is True
    assert settle.detail["input_tokens"] == 25
    assert settle.detail["cached_input_tokens"] == 1800
    # Cut off: the larger of measured (25 + 1800 + 6) and the hold is charged.
    assert settle.charged == max(25 + 1800 + 6, reserve.tokens)
    assert "release" not in entries


async def test_metered_rate_limited_call_settles_provider_signal(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.json(
        {"error": {"message": "Rate limit reached", "type": "tokens"}},
        429,
        **{"x-ratelimit-limit-tokens": "90000", "x-ratelimit-remaining-tokens": "0"},
    )

    async with serve(**BUDGET) as s:

        def call() -> None:
            with Client(s.address) as pool:
                create = metered(
                    pool,
                    fake.openai_client().responses.create,
                    budget="b",
                    tenant="svc",
                )
                create(model="gpt-4.1-mini", input="Hi", max_output_tokens=100)

        with pytest.raises(openai.RateLimitError, match="Rate limit reached"):
            await anyio.to_thread.run_sync(call)
        entries = await _entries(s)

    [settle] = entries["settle"]
    assert settle.detail["provider"] == {
        "rate_limited": True,
        "remaining_tokens": 0,
        "limit_tokens": 90000,
    }
    assert settle.charged == 0


async def test_metered_failed_call_releases(serve: ServeFactory) -> None:
    fake = p.FakeProvider()
    fake.json({"type": "error", "error": {"type": "api_error", "message": "down"}}, 500)

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        create = metered(
            pool,
            fake.async_anthropic_client().messages.create,
            budget="b",
            tenant="svc",
        )
        with pytest.raises(anthropic.InternalServerError):
            await create(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES)
        entries = await _entries(s)
        status = await pool.get_budget("b")

    assert sorted(entries) == ["release", "reserve"]
    assert status.open_reservations == 0


async def test_scope_meter_responses_stream_settles_exact(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.RESPONSE_EVENTS))
    llm = fake.async_openai_client()

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        async with pool.reservation("b", "svc", input_tokens=2000) as scope:
            stream = await llm.responses.create(
                model="gpt-4.1-mini", input="Hi", stream=True
            )
            async for _ in scope.meter(stream):
                pass
        entries = await _entries(s)

    [settle] = entries["settle"]
    assert settle.detail["input_tokens"] == 400
    assert settle.detail["cache_write_tokens"] == 64
    assert settle.detail["incomplete"] is False


async def test_scope_meter_stream_left_early_settles_incomplete(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.MESSAGE_EVENTS))
    llm = fake.async_anthropic_client()

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        async with pool.reservation("b", "svc", tokens=3000) as scope:
            stream = await llm.messages.create(
                model="claude-sonnet-4-5", max_tokens=50, messages=[], stream=True
            )
            async for event in scope.meter(stream):
                if event.type == "content_block_delta":
                    break
        entries = await _entries(s)

    [settle] = entries["settle"]
    assert settle.detail["incomplete"] is True
    assert settle.charged == 3000


async def test_reserve_retry_after_lost_answer_reuses_key(
    serve: ServeFactory, fake_daemon: FakeDaemon
) -> None:
    """A proxy passes the first Reserve on, then loses the daemon's answer."""
    keys: list[str] = []

    async with serve(**BUDGET) as s:

        async def reserve(request: Any, context: grpc.aio.ServicerContext) -> Any:
            keys.append(request.idempotency_key)
            response = await s.api.Reserve(request)
            if len(keys) == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
            return response

        async def settle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await s.api.Settle(request)

        async with (
            fake_daemon(Reserve=reserve, Settle=settle) as proxy,
            AsyncClient(proxy) as pool,
        ):
            async with pool.reservation("b", "svc", tokens=700) as scope:
                scope.record(output_tokens=100)
            counters = pool.counters()
        entries = await _entries(s)
        status = await AsyncClient(s.address).get_budget("b")

    assert len(keys) == 2
    assert keys[0] == keys[1] != ""
    assert counters.retries == 1
    assert [e.tokens for e in entries["reserve"]] == [700]
    assert len(entries["settle"]) == 1
    assert status.open_reservations == 0


async def test_sync_reserve_retry_reuses_key(
    serve: ServeFactory, fake_daemon: FakeDaemon
) -> None:
    keys: list[str] = []

    async with serve(**BUDGET) as s:

        async def reserve(request: Any, context: grpc.aio.ServicerContext) -> Any:
            keys.append(request.idempotency_key)
            if len(keys) < 3:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "starting up")
            return await s.api.Reserve(request)

        async with fake_daemon(Reserve=reserve) as proxy:

            def call() -> tuple[Reservation, int]:
                with Client(proxy) as pool:
                    reservation = pool.reserve("b", "svc", tokens=50)
                    return reservation, pool.counters().retries

            reservation, retries = await anyio.to_thread.run_sync(
                functools.partial(call)
            )

    assert len(set(keys)) == 1 and len(keys) == 3
    assert retries == 2
    assert reservation.granted_tokens == 50


async def test_sync_metered_stream_closed_early_settles_incomplete(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.RESPONSE_EVENTS))

    async with serve(**BUDGET) as s:

        def call() -> list[str]:
            with Client(s.address) as pool:
                create: Any = metered(  # the SDK overloads create on stream=
                    pool,
                    fake.openai_client().responses.create,
                    budget="b",
                    tenant="svc",
                    tokens=900,
                )
                kinds = []
                with create(model="gpt-4.1-mini", input="Hi", stream=True) as stream:
                    for event in stream:
                        kinds.append(event.type)
                        if event.type == "response.output_text.delta":
                            break
                return kinds

        kinds = await anyio.to_thread.run_sync(call)
        entries = await _entries(s)

    assert kinds == ["response.created", "response.output_text.delta"]
    [settle] = entries["settle"]
    assert settle.detail["incomplete"] is True
    assert settle.charged == 900


async def test_sync_metered_stream_to_the_end_settles_exact(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.MESSAGE_EVENTS))

    async with serve(**BUDGET) as s:

        def call() -> None:
            with Client(s.address) as pool:
                create: Any = metered(  # the SDK overloads create on stream=
                    pool,
                    fake.anthropic_client().messages.create,
                    budget="b",
                    tenant="svc",
                )
                for _ in create(
                    model="claude-sonnet-4-5",
                    max_tokens=100,
                    messages=MESSAGES,
                    stream=True,
                ):
                    pass

        await anyio.to_thread.run_sync(call)
        entries = await _entries(s)

    [settle] = entries["settle"]
    assert settle.detail["incomplete"] is False
    assert (settle.detail["input_tokens"], settle.detail["output_tokens"]) == (25, 9)
    assert settle.detail["cached_input_tokens"] == 1800


async def test_scope_record_openai_chat_settles_cached_split(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.json(p.CHAT_COMPLETION)
    llm = fake.async_openai_client()

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        async with pool.reservation("b", "svc", input_tokens=1300) as scope:
            answer = await llm.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=300
            )
            scope.record_openai(answer)
        entries = await _entries(s)

    [settle] = entries["settle"]
    assert settle.detail["input_tokens"] == 1300 - 1024
    assert settle.detail["cached_input_tokens"] == 1024
    # Chat completions here carry no cache_write_tokens: read as 0.
    assert settle.detail["cache_write_tokens"] == 0
    assert settle.detail["output_tokens"] == 40
    assert settle.detail["incomplete"] is False
    assert settle.detail["model"] == "gpt-4o-mini-2024-07-18"


async def test_sync_scope_record_openai_responses_settles_cache_writes(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.json(p.RESPONSE)

    async with serve(**BUDGET) as s:

        def call() -> None:
            llm = fake.openai_client()
            with (
                Client(s.address) as pool,
                pool.reservation("b", "svc", input_tokens=2000) as scope,
            ):
                scope.record_openai(
                    llm.responses.create(model="gpt-4.1-mini", input="Hi")
                )

        await anyio.to_thread.run_sync(call)
        entries = await _entries(s)

    [settle] = entries["settle"]
    assert settle.detail["input_tokens"] == 2000 - 1536 - 64
    assert settle.detail["cached_input_tokens"] == 1536
    assert settle.detail["cache_write_tokens"] == 64
    assert settle.detail["output_tokens"] == 50
    assert settle.detail["model"] == "gpt-4.1-mini-2025-04-14"


async def test_scope_record_anthropic_settles_cache_reads_and_writes(
    serve: ServeFactory,
) -> None:
    fake = p.FakeProvider()
    fake.json(p.MESSAGE)
    llm = fake.async_anthropic_client()

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        async with pool.reservation("b", "svc", input_tokens=2600) as scope:
            message = await llm.messages.create(
                model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
            )
            scope.record_anthropic(message)
        # The JSON of a message, as a plain dict, settles the same way.
        async with pool.reservation("b", "svc", input_tokens=2600) as scope:
            scope.record_anthropic(p.MESSAGE)
        entries = await _entries(s)

    assert len(entries["settle"]) == 2
    for settle in entries["settle"]:
        assert settle.detail["input_tokens"] == 30
        assert settle.detail["cached_input_tokens"] == 2000
        assert settle.detail["cache_write_tokens"] == 500
        assert settle.detail["output_tokens"] == 60
        assert settle.detail["model"] == "claude-sonnet-4-5-20250929"


async def test_scope_record_openai_without_usage_raises_and_releases(
    serve: ServeFactory,
) -> None:
    no_usage = {**p.CHAT_COMPLETION, "usage": None}

    async with serve(**BUDGET) as s, AsyncClient(s.address) as pool:
        with pytest.raises(ValueError, match="include_usage"):
            async with pool.reservation("b", "svc", input_tokens=100) as scope:
                scope.record_openai(no_usage)
        entries = await _entries(s)
        status = await pool.get_budget("b")

    assert sorted(entries) == ["release", "reserve"]
    assert status.open_reservations == 0
