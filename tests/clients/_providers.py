"""A fake OpenAI and Anthropic HTTP API for the real SDKs: no network.

The SDK clients get an `httpx2.MockTransport` through `http_client=`; it
answers with JSON and server-sent-event bodies shaped as the providers'
recorded answers, and can cut a stream off after some events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import openai

CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-A1",
    "object": "chat.completion",
    "created": 1_760_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1300,
        "completion_tokens": 40,
        "total_tokens": 1340,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_1",
}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-A2",
        "object": "chat.completion.chunk",
        "created": 1_760_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        ],
        "usage": None,
    }


CHAT_CHUNKS: list[dict[str, Any]] = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "The capital "}),
    _chunk({"content": "is Paris."}),
    _chunk({}, "stop"),
    {
        **_chunk({}),
        "choices": [],
        "usage": {
            "prompt_tokens": 900,
            "completion_tokens": 7,
            "total_tokens": 907,
            "prompt_tokens_details": {"cached_tokens": 512, "audio_tokens": 0},
        },
    },
]


def _response(status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_760_000_000,
        "status": status,
        "model": "gpt-4.1-mini-2025-04-14",
        "output": []
        if usage is None
        else [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi.", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


# The installed openai SDK declares input_tokens_details.cache_write_tokens
# (required in ResponseUsage, optional in chat's PromptTokensDetails), so the
# recorded shape carries it; CHAT_COMPLETION leaves it out, read as 0.
RESPONSE_USAGE: dict[str, Any] = {
    "input_tokens": 2000,
    "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 64},
    "output_tokens": 50,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 2050,
}

RESPONSE = _response("completed", RESPONSE_USAGE)

RESPONSE_EVENTS: list[dict[str, Any]] = [
    {
        "type": "response.created",
        "sequence_number": 0,
        "response": _response("in_progress", None),
    },
    {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hi",
        "logprobs": [],
    },
    {
        "type": "response.output_text.delta",
        "sequence_number": 2,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": ".",
        "logprobs": [],
    },
    {
        "type": "response.completed",
        "sequence_number": 3,
        "response": RESPONSE,
    },
]

MESSAGE: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Bonjour."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 30,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 2000,
        "output_tokens": 60,
        "service_tier": "standard",
    },
}

MESSAGE_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            **MESSAGE,
            "content": [],
            "stop_reason": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1800,
                "output_tokens": 1,
            },
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    },
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Bonjour, "},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "tout le monde."},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
]


def sse(events: list[dict[str, Any]], *, done: bool = False) -> list[bytes]:
    """Encode events as server-sent events, one chunk each."""
    chunks = []
    for event in events:
        name = event.get("type") if event.get("object") is None else None
        head = f"event: {name}\n" if name else ""
        chunks.append(f"{head}data: {json.dumps(event)}\n\n".encode())
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return chunks


class CutOffError(httpx2.RemoteProtocolError):
    """The connection dropped in the middle of a streamed body."""


class _Body(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A streamed body that raises after its chunks when cut."""

    def __init__(self, chunks: list[bytes], *, cut: bool) -> None:
        self._chunks = chunks
        self._cut = cut

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        if self._cut:
            raise CutOffError("peer closed connection without sending the rest")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._cut:
            raise CutOffError("peer closed connection without sending the rest")


class FakeProvider:
    """Answers each request with the next queued answer; records requests."""

    def __init__(self) -> None:
        self.answers: list[httpx2.Response] = []
        self.requests: list[dict[str, Any]] = []

    def json(self, body: dict[str, Any], status: int = 200, **headers: str) -> None:
        """Queue a JSON answer."""
        self.answers.append(httpx2.Response(status, json=body, headers=headers))

    def stream(self, chunks: list[bytes], *, cut: bool = False) -> None:
        """Queue a server-sent-events answer, cut off after chunks if cut."""
        self.answers.append(
            httpx2.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=_Body(chunks, cut=cut),
            )
        )

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append({"path": request.url.path, **json.loads(request.content)})
        return self.answers.pop(0)

    def openai_client(self) -> openai.OpenAI:
        transport = httpx2.MockTransport(self._handle)
        return openai.OpenAI(
            api_key="sk-test",
            max_retries=0,
            http_client=httpx2.Client(transport=transport),
        )

    def async_openai_client(self) -> openai.AsyncOpenAI:
        transport = httpx2.MockTransport(self._handle)
        return openai.AsyncOpenAI(
            api_key="sk-test",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )

    def anthropic_client(self) -> anthropic.Anthropic:
        transport = httpx2.MockTransport(self._handle)
        return anthropic.Anthropic(
            api_key="sk-ant-test",
            max_retries=0,
            http_client=httpx2.Client(transport=transport),
        )

    def async_anthropic_client(self) -> anthropic.AsyncAnthropic:
        transport = httpx2.MockTransport(self._handle)
        return anthropic.AsyncAnthropic(
            api_key="sk-ant-test",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )
