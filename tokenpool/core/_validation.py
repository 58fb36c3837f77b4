"""Checks on request fields that every RPC shares (SPEC 11 and 12.11)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tokenpool._errors import InvalidFieldError
from tokenpool.core._policy import MAX_TOKENS, InputLimits

# The largest cost of one call, in micro-dollars, that the ledger records:
# sums of such costs still fit its 64-bit columns after exact summing.
MAX_MICROS = 2**62

# Names are 1 to 256 characters; anything longer is refused, not cut.
MAX_NAME_LENGTH = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_name(field: str, value: str) -> str:
    """Returns a tenant, team or budget name, or refuses it."""
    if not value:
        raise InvalidFieldError(field, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidFieldError(
            field, f"is {len(value)} characters long; at most {MAX_NAME_LENGTH}"
        )
    if _CONTROL.search(value) or not value.isprintable():
        raise InvalidFieldError(field, f"{value[:40]!r} holds non-printable characters")
    return value


def check_count(field: str, value: int, *, maximum: int = MAX_TOKENS) -> int:
    """Returns a token count or duration, or refuses a negative or huge one."""
    if value < 0:
        raise InvalidFieldError(field, f"{value} is negative; give 0 or more")
    if value > maximum:
        raise InvalidFieldError(field, f"{value} is above the maximum {maximum}")
    return value


def check_total(field: str, *values: int) -> int:
    """Returns a sum of counts, or refuses one that would pass 2^62."""
    total = sum(values)
    if total > MAX_TOKENS:
        raise InvalidFieldError(
            field,
            f"the usage figures add up to {total}, above the maximum {MAX_TOKENS}",
        )
    return total


def check_micros(field: str, micros: int, model: str) -> int:
    """Returns a cost in micro-dollars, or refuses one the ledger cannot record.

    Costs are stored as 64-bit integers; more than 2^62 micro-dollars (4.6
    trillion dollars) for one call can only come from absurd token counts.
    """
    if micros > MAX_MICROS:
        raise InvalidFieldError(
            field,
            f"the tokens price at {micros} micro-dollars on model {model!r}, above "
            f"the most one call may cost ({MAX_MICROS}); check the token counts",
        )
    return micros


def check_labels(labels: Mapping[str, str], limits: InputLimits) -> dict[str, str]:
    """Returns request labels, or refuses too many or too long ones."""
    if len(labels) > limits.max_labels:
        raise InvalidFieldError(
            "labels", f"{len(labels)} labels given; at most {limits.max_labels}"
        )
    for key, value in labels.items():
        if not key or len(key) > limits.max_label_length:
            raise InvalidFieldError(
                "labels",
                f"key {key[:40]!r} must be 1 to {limits.max_label_length} characters",
            )
        if len(value) > limits.max_label_length:
            raise InvalidFieldError(
                "labels",
                f"value of {key[:40]!r} is longer than {limits.max_label_length} "
                "characters",
            )
        if _CONTROL.search(key):
            raise InvalidFieldError(
                "labels", f"key {key[:40]!r} holds control characters"
            )
        if _CONTROL.search(value):
            raise InvalidFieldError(
                "labels", f"value of {key[:40]!r} holds control characters"
            )
    return dict(labels)


def check_range(field: str, value: int, low: int, high: int) -> int:
    """Returns a small integer field, or refuses one outside [low, high]."""
    if not low <= value <= high:
        raise InvalidFieldError(field, f"{value} is outside {low} to {high}")
    return value


def check_text(field: str, value: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """Returns an optional free-text field (may be empty), or refuses it."""
    if len(value) > max_length:
        raise InvalidFieldError(
            field, f"is {len(value)} characters long; at most {max_length}"
        )
    if _CONTROL.search(value):
        raise InvalidFieldError(field, f"{value[:40]!r} holds control characters")
    return value
