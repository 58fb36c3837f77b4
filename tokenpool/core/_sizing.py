"""How many tokens to hold for a call described by a Reserve request."""

from __future__ import annotations

from dataclasses import dataclass

from tokenpool._errors import InvalidFieldError
from tokenpool.core._policy import BudgetPolicy


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
    complexity_score: int
    multiplier: float


def size_call(shape: CallShape, policy: BudgetPolicy) -> Sizing:
    """Decides the hold: an explicit count, or input plus an output allowance.

    Raises:
        InvalidFieldError: nothing in the request says how big the call is.
    """
    if shape.tokens > 0:
        return Sizing(shape.tokens, 0, 1.0)

    input_tokens = shape.input_tokens or -(-shape.input_chars // policy.chars_per_token)
    if input_tokens == 0 and shape.max_output_tokens == 0:
        raise InvalidFieldError(
            "tokens",
            "nothing to size the reservation from; give tokens, or "
            "input_tokens (or input_chars) and max_output_tokens",
        )

    # TODO(#3): the output allowance comes from the complexity score once
    # scoring lands; until then it is the caller's max or a fixed default.
    output = shape.max_output_tokens or policy.default_output_tokens
    return Sizing(input_tokens + output, 0, 1.0)
