"""Checks and fingerprints of requests, before the engine acts on them."""

from __future__ import annotations

import hashlib

from tokenpool._errors import InvalidFieldError
from tokenpool.core import (
    BudgetPolicy,
    CallShape,
    check_count,
    check_range,
    check_text,
    usage_tokens,
)
from tokenpool.engine._commands import ReserveCommand, SettleCommand

# Fallback budgets one request may name.
_MAX_FALLBACKS = 8

# Largest urgency a request may carry; it multiplies a tenant's weight.
_MAX_URGENCY = 1000


def digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def check_request(command: ReserveCommand) -> None:
    """Refuses malformed optional fields of a Reserve before anything else."""
    check_text("model", command.model)
    check_text("task_type", command.task_type, 64)
    check_text("idempotency_key", command.idempotency_key)
    check_range("output_detail", command.output_detail, 0, 3)
    check_range("context_items", command.context_items, 0, 1_000_000)
    check_range("urgency", command.urgency, 0, _MAX_URGENCY)
    if len(command.fallback_budgets) > _MAX_FALLBACKS:
        raise InvalidFieldError(
            "fallback_budgets",
            f"{len(command.fallback_budgets)} given; at most {_MAX_FALLBACKS}",
        )


def shape(command: ReserveCommand) -> CallShape:
    return CallShape(
        tokens=check_count("tokens", command.tokens),
        input_tokens=check_count("input_tokens", command.input_tokens),
        input_chars=check_count("input_chars", command.input_chars),
        max_output_tokens=check_count("max_output_tokens", command.max_output_tokens),
        task_type=command.task_type,
        output_detail=command.output_detail,
        structured_output=command.structured_output,
        context_items=command.context_items,
    )


def counted_usage(command: SettleCommand, policy: BudgetPolicy) -> int:
    return usage_tokens(
        command.input_tokens,
        command.cached_input_tokens,
        command.cache_write_tokens,
        command.output_tokens,
        policy.cache_read_weight_percent,
    )


def request_shape(command: ReserveCommand) -> dict[str, object]:
    """What a replay of the ledger needs to send the same request again.

    Only fields that differ from their defaults are kept, so the entry stays
    short.
    """
    shape: dict[str, object] = {
        "tokens": command.tokens,
        "input_tokens": command.input_tokens,
        "input_chars": command.input_chars,
        "max_output_tokens": command.max_output_tokens,
        "output_detail": command.output_detail,
        "structured_output": command.structured_output,
        "context_items": command.context_items,
        "urgency": command.urgency,
        "max_wait_ms": command.max_wait_ms,
        "lease_ms": command.lease_ms,
        "task_type": command.task_type,
    }
    return {key: value for key, value in shape.items() if value}
