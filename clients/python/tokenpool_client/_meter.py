"""Usage of streamed OpenAI and Anthropic responses, counted as they arrive.

A stream is complete when the provider's own usage for it arrived: the last
chat-completion chunk's `usage` (sent with `stream_options={"include_usage":
True}`), a Responses API `response.completed` / `response.incomplete` /
`response.failed` event, or Anthropic's `message_stop` (usage from
`message_start` and the last `message_delta`). A stream that ends, breaks
or is closed before that was cut off: it is settled with `incomplete=True`
and what was measured so far (input as the provider reported it or as
estimated at reserve, output estimated from the text that came through), so
the daemon charges the larger of that and the hold (SPEC 12.6).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ._estimate import TokenEstimator
from ._types import Usage
from ._usage import anthropic_usage, count, field, openai_usage

logger = logging.getLogger(__name__)

_E = TypeVar("_E")

# Responses API events that carry the whole response with its final usage.
_RESPONSES_FINAL = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)


class UsageMeter:
    """Reads a stream's events and says what the call used so far.

    Args:
        input_tokens: Input tokens estimated at reserve, used when the
            stream is cut off before the provider reported its own count.
        model: The model, for the output estimate of a cut-off stream.
        estimator: Counts the streamed text of a cut-off stream.
    """

    def __init__(
        self,
        *,
        input_tokens: int = 0,
        model: str = "",
        estimator: TokenEstimator | None = None,
    ) -> None:
        self._estimated_input = input_tokens
        self._model = model
        self._estimator = estimator or TokenEstimator()
        self._text: list[str] = []
        self._reported: Usage | None = None
        self._complete = False
        self.events = 0
        """Events observed so far."""

    @property
    def complete(self) -> bool:
        """Whether the provider's final usage for the stream has arrived."""
        return self._complete

    def observe(self, event: object) -> None:
        """Take one streamed event (chunk) into account."""
        self.events += 1
        if field(event, "object") == "chat.completion.chunk":
            self._chat_chunk(event)
            return

        kind = field(event, "type")
        if not isinstance(kind, str):
            return
        if kind.startswith("response."):
            self._responses_event(kind, event)
        else:
            self._anthropic_event(kind, event)

    def _chat_chunk(self, chunk: object) -> None:
        self._note_model(chunk)
        choices = field(chunk, "choices") or []
        for choice in choices if isinstance(choices, list) else []:
            delta = field(choice, "delta")
            self._note_text(field(delta, "content"))
            self._note_text(field(delta, "refusal"))
            tool_calls = field(delta, "tool_calls") or []
            for call in tool_calls if isinstance(tool_calls, list) else []:
                self._note_text(field(field(call, "function"), "arguments"))
        if field(chunk, "usage") is not None:
            self._reported = openai_usage(chunk)
            self._complete = True

    def _responses_event(self, kind: str, event: object) -> None:
        if kind.endswith(".delta"):
            self._note_text(field(event, "delta"))
            return
        response = field(event, "response")
        self._note_model(response)
        if kind in _RESPONSES_FINAL and field(response, "usage") is not None:
            self._reported = openai_usage(response)
            self._complete = True

    def _anthropic_event(self, kind: str, event: object) -> None:
        if kind == "message_start":
            message = field(event, "message")
            self._note_model(message)
            self._reported = anthropic_usage(field(message, "usage"))
        elif kind == "message_delta":
            self._merge_anthropic_delta(field(event, "usage"))
        elif kind == "content_block_delta":
            delta = field(event, "delta")
            for name in ("text", "partial_json", "thinking"):
                self._note_text(field(delta, name))
        elif kind == "message_stop" and self._reported is not None:
            self._complete = True

    def _merge_anthropic_delta(self, usage: object) -> None:
        """Apply a message_delta's cumulative counts over message_start's."""
        if usage is None:
            return
        reported = self._reported or Usage()
        reported.output_tokens = count(usage, "output_tokens")
        # Input and cache counts are cumulative when present, else unchanged.
        for source, target in (
            ("input_tokens", "input_tokens"),
            ("cache_read_input_tokens", "cached_input_tokens"),
            ("cache_creation_input_tokens", "cache_write_tokens"),
        ):
            if field(usage, source) is not None:
                setattr(reported, target, count(usage, source))
        self._reported = reported

    def _note_text(self, text: object) -> None:
        if isinstance(text, str) and text:
            self._text.append(text)

    def _note_model(self, obj: object) -> None:
        model = field(obj, "model")
        if isinstance(model, str) and model:
            self._model = model

    def usage(self) -> Usage:
        """Return the usage to settle: exact when complete, else incomplete."""
        if self._complete and self._reported is not None:
            usage = _tokens_of(self._reported)
            usage.model = self._model
            return usage

        reported = self._reported or Usage(input_tokens=self._estimated_input)
        streamed = self._estimator.count("".join(self._text), model=self._model)
        usage = _tokens_of(reported)
        usage.output_tokens = max(usage.output_tokens, streamed)
        usage.incomplete = True
        usage.model = self._model
        return usage


def _tokens_of(usage: Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
    )


class MeteredStream(Generic[_E]):
    """A stream that reports its usage once, when it ends or is closed.

    Iterate it as the SDK's stream (other attributes are the SDK stream's).
    `on_end` gets the usage and whether the stream failed, exactly once:
    when the events run out, when iterating raises, or at `close()` (also
    by leaving a `with` block). A stream dropped without either is never
    reported, and its reservation's lease expires.
    """

    def __init__(
        self,
        stream: Iterable[_E],
        meter: UsageMeter,
        on_end: Callable[[Usage, bool], None],
    ) -> None:
        self._stream = stream
        self._events = iter(stream)
        self._meter = meter
        self._on_end: Callable[[Usage, bool], None] | None = on_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Iterator[_E]:
        return self

    def __next__(self) -> _E:
        try:
            event = next(self._events)
        except StopIteration:
            self._end(failed=False)
            raise
        except BaseException:
            self._end(failed=True)
            raise
        self._meter.observe(event)
        return event

    @property
    def usage(self) -> Usage:
        """What the stream used so far (incomplete until its usage arrived)."""
        return self._meter.usage()

    def close(self) -> None:
        """Close the SDK stream and report its usage, if not done yet."""
        try:
            close = getattr(self._stream, "close", None)
            if callable(close):
                close()
        finally:
            self._end(failed=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _end(self, *, failed: bool) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(self._meter.usage(), failed)


class AsyncMeteredStream(Generic[_E]):
    """The asyncio twin of `MeteredStream`: `async for`, `await close()`."""

    def __init__(
        self,
        stream: AsyncIterable[_E],
        meter: UsageMeter,
        on_end: Callable[[Usage, bool], Awaitable[None]],
    ) -> None:
        self._stream = stream
        self._events = aiter(stream)
        self._meter = meter
        self._on_end: Callable[[Usage, bool], Awaitable[None]] | None = on_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> AsyncIterator[_E]:
        return self

    async def __anext__(self) -> _E:
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            await self._end(failed=False)
            raise
        except BaseException:
            await self._end(failed=True)
            raise
        self._meter.observe(event)
        return event

    @property
    def usage(self) -> Usage:
        """What the stream used so far (incomplete until its usage arrived)."""
        return self._meter.usage()

    async def close(self) -> None:
        """Close the SDK stream and report its usage, if not done yet."""
        try:
            close = getattr(self._stream, "close", None) or getattr(
                self._stream, "aclose", None
            )
            if callable(close):
                result = close()
                if isinstance(result, Awaitable):
                    await result
        finally:
            await self._end(failed=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _end(self, *, failed: bool) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            # Estimating a cut-off stream's output may load tiktoken's files.
            usage = await asyncio.to_thread(self._meter.usage)
            await on_end(usage, failed)
