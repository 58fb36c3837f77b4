"""Cache savings: the tokens and money a cached answer or prompt did not cost."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tokenpool.core._pricing import ModelPrice, cost_micros


class CacheKind(enum.StrEnum):
    """Which cache saved: the caller's response cache or the provider's prompt cache."""

    RESPONSE = "response"
    """The answer came from the caller's cache; no call was made."""
    PROMPT = "prompt"
    """Part of the input was read from the provider's prompt cache."""


@dataclass(frozen=True, slots=True)
class CacheSavings:
    """What one settle saved thanks to a cache (SPEC 7)."""

    kind: CacheKind
    tokens: int
    """Tokens the budget did not have to count."""
    micros: int
    """Micro-dollars not spent; 0 for a model with no price."""


def response_cache_savings(hold: int, hold_cost_micros: int) -> CacheSavings:
    """A response-cache hit saves the call it avoided: its hold and hold cost."""
    return CacheSavings(CacheKind.RESPONSE, hold, hold_cost_micros)


def prompt_cache_savings(
    cached_input_tokens: int,
    cache_read_weight_percent: int,
    price: ModelPrice | None,
) -> CacheSavings | None:
    """What prompt-cache reads saved; None when the settle read no cached input.

    Against the budget, a cached token counts only its weight (rounded up, as
    usage counts it), so the rest is saved. In money, each cached token costs
    the cached-input price instead of the input price; the difference is saved.
    """
    if cached_input_tokens <= 0:
        return None

    counted = -(-cached_input_tokens * cache_read_weight_percent // 100)
    micros = 0
    if price is not None:
        full = cost_micros(price, cached_input_tokens, 0, 0, 0)
        cached = cost_micros(price, 0, cached_input_tokens, 0, 0)
        micros = max(0, full - cached)
    return CacheSavings(CacheKind.PROMPT, cached_input_tokens - counted, micros)
