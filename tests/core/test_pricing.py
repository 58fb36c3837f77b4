from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from tokenpool.core import ModelPrice, PriceTable, cost_micros, hold_cost_micros


def _price(model: str = "m", **prices: object) -> ModelPrice:
    return ModelPrice.model_validate({"model": model, **prices})


def test_cost_is_exact_micros_for_common_prices() -> None:
    price = _price(input=3, output="15", cached_input=0.3, cache_write="3.75")

    # USD per million tokens is micro-dollars per token.
    assert cost_micros(price, 1_000, 0, 0, 0) == 3_000
    assert cost_micros(price, 1_000, 2_000, 400, 100) == 3_000 + 600 + 1_500 + 1_500
    assert cost_micros(_price(input=0.15, output=0.6), 1_000_000, 0, 0, 0) == 150_000
    assert cost_micros(_price(input="2.5", output=10), 3, 0, 0, 2) == 28


def test_cost_rounds_up_to_a_whole_micro_dollar() -> None:
    price = _price(input="0.15", output="0.6")

    assert cost_micros(price, 7, 0, 0, 0) == 2
    assert cost_micros(price, 20, 0, 0, 0) == 3
    assert cost_micros(price, 0, 0, 0, 0) == 0
    assert cost_micros(_price(input="2.5", output=0), 3, 0, 0, 0) == 8


def test_cost_is_exact_at_the_largest_counts() -> None:
    price = _price(input="0.000000000001", output="999999.999999999999")
    huge = 2**62

    expected = -(-(huge * 1 + huge * 999_999_999_999_999_999) // 10**12)
    assert cost_micros(price, huge, 0, 0, huge) == expected


def test_cache_prices_default_to_input() -> None:
    price = _price(input="2.5", output="10")

    assert price.cached_input == Decimal("2.5")
    assert price.cache_write == Decimal("2.5")
    assert _price(input=1, cached_input="0.1", output=2).cached_input == Decimal("0.1")


def test_hold_cost_prices_input_at_the_dearest_input_rate() -> None:
    price = _price(input=3, cached_input="0.3", cache_write="3.75", output=15)

    assert hold_cost_micros(price, 1_000, 100) == 3_750 + 1_500
    assert hold_cost_micros(price, 0, 1_100) == 16_500


def test_prices_reject_negative_nan_and_float_noise() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        _price(input=-1, output=1)
    with pytest.raises(ValidationError, match="finite number"):
        _price(input="NaN", output=1)
    with pytest.raises(ValidationError, match="decimal places"):
        _price(input=0.1 + 0.2, output=1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        _price(input=1, output=1, outptu=2)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        cost_micros(_price(input=1, output=1), -1, 0, 0, 0)


def test_unknown_models_fall_back_to_default() -> None:
    table = PriceTable(
        [_price("gpt-x", input=1, output=2), _price("default", input=9, output=9)]
    )

    own = table.price_of("gpt-x")
    fallback = table.price_of("mystery")
    assert own is not None and own.model == "gpt-x"
    assert fallback is not None and fallback.model == "default"
    assert table.models == ("gpt-x", "default")


def test_unknown_models_are_unpriced_without_default() -> None:
    table = PriceTable([_price("gpt-x", input=1, output=2)])

    assert table.price_of("mystery") is None
    assert PriceTable().price_of("gpt-x") is None


def test_a_model_priced_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'m' is priced twice in \\[\\[prices\\]\\]"):
        PriceTable([_price(input=1, output=1), _price(input=2, output=2)])
