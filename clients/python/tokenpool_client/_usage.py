"""Conversion of the OpenAI and Anthropic SDKs' usage objects to settle fields.

Settle counts input in three disjoint parts (SPEC 12.5): `input_tokens`
that touched no prompt cache, `cached_input_tokens` read from the cache and
`cache_write_tokens` written to it. The providers count differently:

- OpenAI (chat completions `prompt_tokens`, Responses `input_tokens`)
  counts every input token, cached ones included, and lists cache reads
  (`cached_tokens`) and writes (`cache_write_tokens`) in a details object;
  those are taken out of the input count here.
- Anthropic's `input_tokens` already leaves out `cache_read_input_tokens`
  and `cache_creation_input_tokens`, so it is settled as it is.

Neither SDK is imported: the functions read attributes (or the keys of a
plain dict holding the JSON), so they work with any SDK version that keeps
these names, and the client works without either SDK installed.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._types import Usage


def field(obj: object, name: str) -> object:
    """Return obj's attribute or key name, or None when it has neither."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def count(obj: object, name: str) -> int:
    """Return the token count obj holds under name; None and absent are 0."""
    value = field(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"Usage field {name!r} must be an integer token count, got {value!r}."
        )
    return value


def _usage_part(obj: object) -> object:
    """Return obj's `usage` when obj is a whole response, else obj itself."""
    usage = field(obj, "usage")
    return obj if usage is None and _looks_like_usage(obj) else usage


def _looks_like_usage(obj: object) -> bool:
    names = ("prompt_tokens", "input_tokens", "output_tokens", "completion_tokens")
    return any(field(obj, name) is not None for name in names)


def _model(obj: object) -> str:
    model = field(obj, "model")
    return model if isinstance(model, str) else ""


def openai_usage(response: object) -> Usage:
    """Convert an OpenAI usage object, or a whole response, to settle fields.

    Takes a chat completion (or its `CompletionUsage`, also the usage of the
    last streamed chunk) or a Responses API response (or its
    `ResponseUsage`). Cache reads (`prompt_tokens_details.cached_tokens`,
    `input_tokens_details.cached_tokens`) and writes (`cache_write_tokens`)
    are taken out of the prompt count, which OpenAI reports with them in.

    Args:
        response: The SDK object, or a dict of the same JSON.

    Returns:
        The usage to settle, with the response's model when it names one.

    Raises:
        ValueError: response has no usage (as a streamed chat completion
            without `stream_options={"include_usage": True}`).
    """
    usage = _usage_part(response)
    if usage is None:
        raise ValueError(
            "The OpenAI response carries no usage; for a streamed chat completion "
            'pass stream_options={"include_usage": True}.'
        )

    if field(usage, "prompt_tokens") is not None:
        prompt = count(usage, "prompt_tokens")
        details = field(usage, "prompt_tokens_details")
        output = count(usage, "completion_tokens")
    else:
        prompt = count(usage, "input_tokens")
        details = field(usage, "input_tokens_details")
        output = count(usage, "output_tokens")
    cached = count(details, "cached_tokens")
    written = count(details, "cache_write_tokens")
    return Usage(
        input_tokens=max(prompt - cached - written, 0),
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=output,
        model=_model(response),
    )


def anthropic_usage(message: object) -> Usage:
    """Convert an Anthropic usage object, or a whole message, to settle fields.

    Takes a `Message` (or its `Usage`) or a `MessageDeltaUsage` of a
    stream's `message_delta` event. Anthropic's `input_tokens` already
    excludes the cache, so `cache_read_input_tokens` and
    `cache_creation_input_tokens` are added beside it, not taken out.

    Args:
        message: The SDK object, or a dict of the same JSON.

    Returns:
        The usage to settle, with the message's model when it names one.

    Raises:
        ValueError: message has no usage.
    """
    usage = _usage_part(message)
    if usage is None:
        raise ValueError("The Anthropic message carries no usage.")

    return Usage(
        input_tokens=count(usage, "input_tokens"),
        cached_input_tokens=count(usage, "cache_read_input_tokens"),
        cache_write_tokens=count(usage, "cache_creation_input_tokens"),
        output_tokens=count(usage, "output_tokens"),
        model=_model(message),
    )


def _vendor_of(obj: object) -> str:
    """Return "openai" or "anthropic" for an SDK object or its JSON, or ""."""
    module = type(obj).__module__.split(".")[0]
    if module in ("openai", "anthropic"):
        return module

    usage = _usage_part(obj)
    if field(usage, "prompt_tokens") is not None:
        return "openai"
    if field(usage, "input_tokens_details") is not None:
        return "openai"
    anthropic_only = ("cache_read_input_tokens", "cache_creation_input_tokens")
    if isinstance(usage, Mapping) and any(name in usage for name in anthropic_only):
        return "anthropic"
    if any(field(usage, name) is not None for name in anthropic_only):
        return "anthropic"
    return ""


def usage_of(response: object) -> Usage:
    """Convert an OpenAI or Anthropic response, telling which it is.

    The SDK is recognised from the object's package, or for a plain dict
    from the field names only one provider uses.

    Raises:
        ValueError: It is neither, or has no usage; call `openai_usage` or
            `anthropic_usage` instead.
    """
    vendor = _vendor_of(response)
    if vendor == "openai":
        return openai_usage(response)
    if vendor == "anthropic":
        return anthropic_usage(response)
    raise ValueError(
        f"Cannot tell whether {type(response).__name__} comes from OpenAI or "
        "Anthropic; call openai_usage() or anthropic_usage() instead."
    )
