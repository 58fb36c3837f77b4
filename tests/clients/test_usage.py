"""The SDK usage helpers on objects the real openai and anthropic SDKs parse."""

from __future__ import annotations

import anthropic
import openai
import pytest
from tokenpool_client import (
    Usage,
    UsageMeter,
    anthropic_usage,
    openai_usage,
    usage_of,
)

from . import _providers as p


def test_openai_chat_completion_takes_cached_tokens_out() -> None:
    fake = p.FakeProvider()
    fake.json(p.CHAT_COMPLETION)

    answer = fake.openai_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital?"}]
    )

    assert openai_usage(answer) == Usage(
        input_tokens=1300 - 1024,
        cached_input_tokens=1024,
        output_tokens=40,
        model="gpt-4o-mini-2024-07-18",
    )
    assert openai_usage(answer.usage) == Usage(
        input_tokens=276, cached_input_tokens=1024, output_tokens=40
    )


def test_openai_responses_api_splits_cache_reads_and_writes() -> None:
    fake = p.FakeProvider()
    fake.json(p.RESPONSE)

    answer = fake.openai_client().responses.create(model="gpt-4.1-mini", input="Hi")

    assert usage_of(answer) == Usage(
        input_tokens=2000 - 1536 - 64,
        cached_input_tokens=1536,
        cache_write_tokens=64,
        output_tokens=50,
        model="gpt-4.1-mini-2025-04-14",
    )


def test_anthropic_message_adds_cache_counts_beside_input() -> None:
    fake = p.FakeProvider()
    fake.json(p.MESSAGE)

    message = fake.anthropic_client().messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Salut"}],
    )

    assert usage_of(message) == Usage(
        input_tokens=30,
        cached_input_tokens=2000,
        cache_write_tokens=500,
        output_tokens=60,
        model="claude-sonnet-4-5-20250929",
    )
    assert anthropic_usage(message.usage).input_tokens == 30


def test_usage_of_plain_json_dicts() -> None:
    assert usage_of(p.CHAT_COMPLETION).cached_input_tokens == 1024
    assert usage_of(p.MESSAGE).cache_write_tokens == 500
    assert usage_of({"usage": p.RESPONSE_USAGE}).input_tokens == 400


def test_usage_of_ambiguous_dict_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"Cannot tell whether dict comes from"):
        usage_of({"input_tokens": 5, "output_tokens": 2})


def test_openai_response_without_usage_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"include_usage"):
        openai_usage({**p.CHAT_COMPLETION, "usage": None})


def test_non_integer_count_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"'output_tokens' must be an integer"):
        anthropic_usage({"input_tokens": 1, "output_tokens": "9"})


def test_meter_openai_chat_stream_with_usage_is_complete() -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.CHAT_CHUNKS, done=True))
    meter = UsageMeter(input_tokens=999)

    stream = fake.openai_client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Capital?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        meter.observe(chunk)

    assert meter.complete
    assert meter.usage() == Usage(
        input_tokens=388,
        cached_input_tokens=512,
        output_tokens=7,
        model="gpt-4o-mini-2024-07-18",
    )


def test_meter_openai_chat_stream_cut_off_is_incomplete() -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.CHAT_CHUNKS[:3]), cut=True)
    meter = UsageMeter(input_tokens=999)

    stream = fake.openai_client().chat.completions.create(
        model="gpt-4o-mini", messages=[], stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            meter.observe(chunk)

    usage = meter.usage()
    assert not meter.complete
    assert usage.incomplete
    # The estimate at reserve stands in for input; output is counted from
    # the 21 characters that came through ("The capital is Paris.").
    assert (usage.input_tokens, usage.output_tokens) == (999, 6)


def test_meter_responses_stream_reads_completed_event() -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.RESPONSE_EVENTS))
    meter = UsageMeter()

    for event in fake.openai_client().responses.create(
        model="gpt-4.1-mini", input="Hi", stream=True
    ):
        meter.observe(event)

    assert meter.complete
    assert meter.usage().output_tokens == 50
    assert meter.usage().cached_input_tokens == 1536


def test_meter_anthropic_stream_merges_start_and_delta() -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.MESSAGE_EVENTS))
    meter = UsageMeter()

    for event in fake.anthropic_client().messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=[], stream=True
    ):
        meter.observe(event)

    assert meter.complete
    assert meter.usage() == Usage(
        input_tokens=25,
        cached_input_tokens=1800,
        output_tokens=9,
        model="claude-sonnet-4-5-20250929",
    )


def test_meter_anthropic_helper_stream_counts_once() -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.MESSAGE_EVENTS))
    meter = UsageMeter()

    with fake.anthropic_client().messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[]
    ) as stream:
        for event in stream:
            meter.observe(event)

    assert meter.usage().output_tokens == 9
    assert not meter.usage().incomplete


def test_meter_anthropic_stream_cut_before_stop_is_incomplete() -> None:
    fake = p.FakeProvider()
    fake.stream(p.sse(p.MESSAGE_EVENTS[:5]), cut=True)
    meter = UsageMeter(input_tokens=7)

    with pytest.raises(anthropic.APIConnectionError):
        for event in fake.anthropic_client().messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=[], stream=True
        ):
            meter.observe(event)

    usage = meter.usage()
    assert usage.incomplete
    # Input as message_start reported it; output from the streamed text
    # ("Bonjour, tout le monde." is 23 characters: 6 tokens by the rule).
    assert (usage.input_tokens, usage.cached_input_tokens) == (25, 1800)
    assert usage.output_tokens == 6
