"""How many tokens to hold for a call described by a Reserve request."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from tokenpool._errors import InvalidFieldError
from tokenpool.core._learning import corrected_allowance
from tokenpool.core._policy import BudgetPolicy
from tokenpool.core._scoring import Complexity, TaskType, score_call


@dataclass(frozen=True, slots=True)
class CallShape:
    """What a Reserve request says about the call it is for."""

    tokens: int = 0
    input_tokens: int = 0
    input_chars: int = 0
    max_output_tokens: int = 0
    task_type: str = ""
    output_detail: int = 0
    structured_output: bool = False
    context_items: int = 0


@dataclass(frozen=True, slots=True)
class Sizing:
    """The hold decided for a call, and the score that shaped it."""

    tokens: int
    """The hold: input_tokens + output_allowance, or the explicit count."""
    complexity_score: int
    multiplier: float
    """The score's band multiplier, as the wire carries it."""
    input_tokens: int = 0
    """The input part of the hold; 0 when the caller gave explicit tokens."""
    output_allowance: int = 0
    """The output allowance before any learned correction (capped by the
    caller's max_output_tokens); 0 when the caller gave explicit tokens."""
    task_type: TaskType = TaskType.OTHER
    """The task type scored: OTHER when the request's was unknown or empty."""
    unknown_task_type: bool = False
    """The request named a task type that is not known."""
    output_factor: Fraction | None = None
    """The learned correction the hold applied to the allowance, if any."""


def size_call(
    shape: CallShape, policy: BudgetPolicy, *, output_factor: Fraction | None = None
) -> Sizing:
    """Decides the hold: an explicit count, or input plus an output allowance.

    The call is scored either way, so the score and multiplier are known
    even when the caller gave explicit tokens.

    Args:
        shape: what the request says about the call.
        policy: the budget's policy; its scoring part sets the allowance.
        output_factor: a learned correction of the allowance, above 0
            (None: none); the hold keeps allowance x factor, rounded up,
            and never more than max_output_tokens (the factor recorded in
            the result is the one applied).

    Raises:
        InvalidFieldError: nothing in the request says how big the call is.
        ValueError: output_factor is not above 0.
    """
    if not (
        shape.tokens > 0
        or shape.input_tokens > 0
        or shape.input_chars > 0
        or shape.max_output_tokens > 0
        or shape.task_type.strip()
    ):
        raise InvalidFieldError(
            "tokens",
            "nothing to size the reservation from; give tokens, or input_tokens "
            "(or input_chars), max_output_tokens or task_type",
        )
    input_tokens = shape.input_tokens or -(-shape.input_chars // policy.chars_per_token)
    complexity = score_call(
        policy.scoring,
        input_tokens=input_tokens,
        task_type=shape.task_type,
        output_detail=shape.output_detail,
        structured_output=shape.structured_output,
        context_items=shape.context_items,
    )
    if shape.tokens > 0:
        return _sized(complexity, shape.tokens, 0, 0, None)

    allowance = _output_allowance(shape, policy, complexity)
    if output_factor is not None and shape.max_output_tokens > 0 and allowance:
        # A raised allowance still stops at what the caller said it may use.
        output_factor = min(output_factor, Fraction(shape.max_output_tokens, allowance))
    held = corrected_allowance(allowance, output_factor)
    return _sized(
        complexity, input_tokens + held, input_tokens, allowance, output_factor
    )


def _output_allowance(
    shape: CallShape, policy: BudgetPolicy, complexity: Complexity
) -> int:
    """Typical output x multiplier, rounded up, then capped."""
    typical = policy.scoring.typical_output_tokens.of(complexity.task_type)
    exact = typical * Fraction(complexity.multiplier)
    allowance = math.ceil(exact)
    if shape.max_output_tokens > 0:
        allowance = min(allowance, shape.max_output_tokens)
    return allowance


def _sized(
    complexity: Complexity,
    tokens: int,
    input_tokens: int,
    output: int,
    output_factor: Fraction | None,
) -> Sizing:
    return Sizing(
        tokens,
        complexity.score,
        float(complexity.multiplier),
        input_tokens,
        output,
        complexity.task_type,
        complexity.unknown_task_type,
        output_factor,
    )
