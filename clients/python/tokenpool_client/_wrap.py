"""`metered`: reserve before an SDK call and settle after it, in one line."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, Unpack, cast, overload

from ._aio import AsyncClient
from ._estimate import TokenEstimator
from ._meter import AsyncMeteredStream, MeteredStream, UsageMeter
from ._sync import Client
from ._types import ReservationScope, ReserveOptions, Usage
from ._usage import field, usage_of

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

# SDK arguments that bound the output, newest name first.
_MAX_OUTPUT_ARGUMENTS = ("max_output_tokens", "max_completion_tokens", "max_tokens")

# SDK arguments that hold the input text.
_INPUT_ARGUMENTS = ("system", "instructions", "messages", "input", "prompt")

# Rate-limit headers, (remaining, limit) pairs: OpenAI's, then Anthropic's.
_RATE_LIMIT_HEADERS = (
    ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-limit"),
)

# The status code providers answer when a rate limit is hit.
_TOO_MANY_REQUESTS = 429


def sizing(
    kwargs: Mapping[str, Any], estimator: TokenEstimator | None = None
) -> ReserveOptions:
    """Reserve options read from an SDK call's keyword arguments.

    `model`, the max output tokens (`max_tokens`, `max_completion_tokens`
    or `max_output_tokens`) and an estimate of the input tokens from
    `messages`, `input`, `instructions`, `system` and `prompt`.
    """
    estimator = estimator or TokenEstimator()
    options: ReserveOptions = {}
    model = kwargs.get("model")
    model = model if isinstance(model, str) else ""
    if model:
        options["model"] = model

    for name in _MAX_OUTPUT_ARGUMENTS:
        value = kwargs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            options["max_output_tokens"] = value
            break

    inputs = [kwargs[name] for name in _INPUT_ARGUMENTS if kwargs.get(name)]
    if inputs:
        estimate = sum(estimator.count(part, model=model) for part in inputs)
        options["input_tokens"] = max(estimate, 1)
    return options


def _ask_for_stream_usage(fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Ask a streamed OpenAI chat completion to end with its usage."""
    owner = getattr(fn, "__self__", None)
    if not type(owner).__module__.startswith(("openai.resources.chat",)):
        return
    if kwargs.get("stream") and "stream_options" not in kwargs:
        kwargs["stream_options"] = {"include_usage": True}


def _header_int(headers: Any, name: str) -> int:
    try:
        return max(int(headers.get(name) or 0), 0)
    except (TypeError, ValueError):
        return 0


def note_provider_error(scope: ReservationScope, exc: BaseException) -> None:
    """Mark scope rate-limited when exc is the provider's 429 answer.

    The call is then settled with `provider_rate_limited` (and the token
    figures of the rate-limit headers), so the daemon cuts the budget's
    capacity (SPEC 6), instead of released.
    """
    if getattr(exc, "status_code", None) != _TOO_MANY_REQUESTS:
        return
    scope.usage.provider_rate_limited = True
    headers: Any = field(getattr(exc, "response", None), "headers")
    if headers is None:
        return
    for remaining, limit in _RATE_LIMIT_HEADERS:
        if headers.get(limit) is not None:
            scope.usage.provider_remaining_tokens = _header_int(headers, remaining)
            scope.usage.provider_limit_tokens = _header_int(headers, limit)
            return


def _record_result(scope: ReservationScope, result: object, input_tokens: int) -> None:
    """Record result's usage; settle incomplete when it has none."""
    try:
        usage = usage_of(result)
    except ValueError as exc:
        logger.warning(
            "no usage in the response; settling incomplete reservation_id=%s error=%s",
            scope.reservation.reservation_id,
            exc,
            extra={"reservation_id": scope.reservation.reservation_id},
        )
        usage = Usage(input_tokens=input_tokens, incomplete=True)
    scope.record(
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        incomplete=usage.incomplete,
    )
    if usage.model:
        scope.usage.model = usage.model


def _take_stream_usage(scope: ReservationScope, usage: Usage) -> None:
    usage.provider_rate_limited = scope.usage.provider_rate_limited
    scope.usage = usage


@overload
def metered(
    pool: AsyncClient,
    fn: Callable[_P, Awaitable[_R]],
    *,
    budget: str,
    tenant: str,
    estimator: TokenEstimator | None = None,
    **options: Unpack[ReserveOptions],
) -> Callable[_P, Awaitable[_R]]: ...


@overload
def metered(
    pool: Client,
    fn: Callable[_P, _R],
    *,
    budget: str,
    tenant: str,
    estimator: TokenEstimator | None = None,
    **options: Unpack[ReserveOptions],
) -> Callable[_P, _R]: ...


def metered(
    pool: Client | AsyncClient,
    fn: Callable[_P, Any],
    *,
    budget: str,
    tenant: str,
    estimator: TokenEstimator | None = None,
    **options: Unpack[ReserveOptions],
) -> Callable[_P, Any]:
    """Wrap an OpenAI or Anthropic SDK call in a reservation.

    Each call of the returned function reserves (sized from the call's
    `model`, max output tokens and an estimate of its input, unless options
    say otherwise), makes the SDK call, and settles the response's usage.
    When the SDK call raises, the reservation is released (a 429 answer is
    settled as rate-limited instead) and the error propagates. With
    `stream=True` the call returns a `MeteredStream` (`AsyncMeteredStream`)
    over the SDK's stream, which settles when the stream ends or is closed,
    incomplete when cut off; a streamed OpenAI chat completion is asked for
    its usage (`stream_options={"include_usage": True}`) unless the call
    gives stream_options itself.

    Example:
        `chat = metered(pool, llm.chat.completions.create, budget="default",
        tenant="search-svc")`, then `chat(model=..., messages=...)`.

    Args:
        pool: A `Client` for a blocking SDK call, an `AsyncClient` for an
            async one (`AsyncOpenAI`, `AsyncAnthropic`).
        fn: The SDK method, e.g. `OpenAI().chat.completions.create`,
            `OpenAI().responses.create` or `Anthropic().messages.create`.
        budget: Budget to draw on.
        tenant: Who spends the tokens.
        estimator: Counts the input; tiktoken when available offline, else
            characters (see `TokenEstimator`).
        **options: Reserve options that override what is read from the
            call, e.g. `max_wait_ms=2000` or `labels={...}`.

    Returns:
        A function with fn's arguments and result.
    """
    if isinstance(pool, AsyncClient):
        return _metered_async(pool, fn, budget, tenant, estimator, options)
    return _metered_sync(pool, fn, budget, tenant, estimator, options)


def _metered_sync(
    pool: Client,
    fn: Callable[_P, Any],
    budget: str,
    tenant: str,
    estimator: TokenEstimator | None,
    options: ReserveOptions,
) -> Callable[_P, Any]:
    estimator = estimator or TokenEstimator()

    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> Any:
        sized: ReserveOptions = {**sizing(kwargs, estimator), **options}
        input_tokens = sized.get("input_tokens", 0)
        _ask_for_stream_usage(fn, kwargs)
        if not kwargs.get("stream"):
            with pool.reservation(budget, tenant, **sized) as scope:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    note_provider_error(scope, exc)
                    raise
                _record_result(scope, result, input_tokens)
            return result

        scope = ReservationScope(pool.reserve(budget, tenant, **sized))
        try:
            stream = fn(*args, **kwargs)
        except BaseException as exc:
            note_provider_error(scope, exc)
            pool._end_scope(scope, tenant, failed=True)
            raise

        def on_end(usage: Usage, failed: bool) -> None:
            _take_stream_usage(scope, usage)
            pool._end_scope(scope, tenant, failed=failed)

        model = sized.get("model", "")
        meter = UsageMeter(input_tokens=input_tokens, model=model, estimator=estimator)
        return MeteredStream(stream, meter, on_end)

    return call


def _metered_async(
    pool: AsyncClient,
    fn: Callable[_P, Any],
    budget: str,
    tenant: str,
    estimator: TokenEstimator | None,
    options: ReserveOptions,
) -> Callable[_P, Awaitable[Any]]:
    estimator = estimator or TokenEstimator()
    async_fn = cast(Callable[_P, Awaitable[Any]], fn)

    @functools.wraps(fn)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> Any:
        # tiktoken's first load reads files and encoding is CPU work: off the loop.
        estimated = await asyncio.to_thread(sizing, kwargs, estimator)
        sized: ReserveOptions = {**estimated, **options}
        input_tokens = sized.get("input_tokens", 0)
        _ask_for_stream_usage(fn, kwargs)
        if not kwargs.get("stream"):
            async with pool.reservation(budget, tenant, **sized) as scope:
                try:
                    result = await async_fn(*args, **kwargs)
                except Exception as exc:
                    note_provider_error(scope, exc)
                    raise
                _record_result(scope, result, input_tokens)
            return result

        scope = ReservationScope(await pool.reserve(budget, tenant, **sized))
        try:
            stream = await async_fn(*args, **kwargs)
        except BaseException as exc:
            note_provider_error(scope, exc)
            await pool._end_scope(scope, tenant, failed=True)
            raise

        async def on_end(usage: Usage, failed: bool) -> None:
            _take_stream_usage(scope, usage)
            await pool._end_scope(scope, tenant, failed=failed)

        model = sized.get("model", "")
        meter = UsageMeter(input_tokens=input_tokens, model=model, estimator=estimator)
        return AsyncMeteredStream(stream, meter, on_end)

    return call
