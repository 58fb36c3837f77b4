"""Cache savings: a response hit saves its hold, cached input its price gap."""

from __future__ import annotations

from tokenpool.core import (
    CacheKind,
    ModelPrice,
    prompt_cache_savings,
    response_cache_savings,
)

_PRICE = ModelPrice.model_validate(
    {"model": "m", "input": "3", "cached_input": "0.3", "output": "15"}
)


def test_response_hit_saves_the_hold_and_its_cost() -> None:
    saved = response_cache_savings(1200, 9_000)

    assert (saved.kind, saved.tokens, saved.micros) == (CacheKind.RESPONSE, 1200, 9000)


def test_cached_input_saves_the_price_gap_and_the_unweighted_share() -> None:
    saved = prompt_cache_savings(1000, 25, _PRICE)

    assert saved is not None
    assert saved.kind is CacheKind.PROMPT
    # 1000 x (3 - 0.3) micro-dollars; 75 % of the tokens do not count.
    assert (saved.tokens, saved.micros) == (750, 2700)


def test_no_cached_input_saves_nothing() -> None:
    assert prompt_cache_savings(0, 100, _PRICE) is None
    unpriced = prompt_cache_savings(10, 100, None)
    assert unpriced is not None
    assert (unpriced.tokens, unpriced.micros) == (0, 0)
