"""Model prices, and the exact cost of a call in micro-dollars."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, model_validator

from tokenpool.core._model import FrozenModel

# The [[prices]] entry used for models that have none of their own.
DEFAULT_PRICE_MODEL = "default"

# Prices may carry up to this many decimal places, so that a price times
# 10**_PRICE_PLACES is a whole number and costs are computed on integers.
_PRICE_PLACES = 12
_PRICE_SCALE: int = 10**_PRICE_PLACES

# Dearest price accepted, in USD per million tokens; bounds the integers.
_MAX_PRICE_USD = 1_000_000

# USD per million tokens: a Decimal from a TOML string or number, never a float.
Price = Annotated[Decimal, Field(ge=0, le=_MAX_PRICE_USD, decimal_places=_PRICE_PLACES)]


class ModelPrice(FrozenModel):
    """What one model costs, in USD per million tokens of each kind.

    A price in USD per million tokens is also micro-dollars per token, so a
    call's cost in micro-dollars is the token counts times these prices.
    """

    model: str = Field(min_length=1, max_length=256)
    """The model name as callers send it; "default" prices unknown models."""
    input: Price
    """Input tokens that were not read from the provider's prompt cache."""
    cached_input: Price
    """Input tokens read from the prompt cache; defaults to `input`."""
    cache_write: Price
    """Input tokens written to the prompt cache; defaults to `input`."""
    output: Price

    @model_validator(mode="before")
    @classmethod
    def _cache_prices_default_to_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and "input" in data:
            data = {
                "cached_input": data["input"],
                "cache_write": data["input"],
                **data,
            }
        return data


class PriceTable:
    """Prices by model name, with an optional "default" for unknown models."""

    def __init__(self, prices: Iterable[ModelPrice] = ()) -> None:
        """Indexes the prices; a model priced twice is an error.

        Raises:
            ValueError: two entries name the same model.
        """
        self._prices: dict[str, ModelPrice] = {}
        for price in prices:
            if price.model in self._prices:
                raise ValueError(
                    f"Model {price.model!r} is priced twice in [[prices]]; "
                    "keep one entry per model."
                )
            self._prices[price.model] = price

    @property
    def prices(self) -> tuple[ModelPrice, ...]:
        """Every price, in the order given."""
        return tuple(self._prices.values())

    @property
    def models(self) -> tuple[str, ...]:
        """The model names priced, "default" included when configured."""
        return tuple(self._prices)

    def price_of(self, model: str) -> ModelPrice | None:
        """The model's own price, else the default one, else None (unpriced)."""
        return self._prices.get(model) or self._prices.get(DEFAULT_PRICE_MODEL)


def cost_micros(
    price: ModelPrice,
    input_tokens: int,
    cached_input_tokens: int,
    cache_write_tokens: int,
    output_tokens: int,
) -> int:
    """What a call cost, in micro-dollars, rounded up to a whole one.

    The counts follow the usage convention of SPEC 12.5: `input_tokens`
    excludes the cached ones.

    Raises:
        ValueError: a count is negative.
    """
    return _ceil_micros(
        (input_tokens, price.input),
        (cached_input_tokens, price.cached_input),
        (cache_write_tokens, price.cache_write),
        (output_tokens, price.output),
    )


def hold_cost_micros(price: ModelPrice, input_tokens: int, output_tokens: int) -> int:
    """A hold's cost estimate, in micro-dollars, erring on the dear side.

    Before the call nobody knows how much input the prompt cache will serve
    or take, so input is priced at the dearest of the three input prices.
    A caller that knows only a total passes it all as output.

    Raises:
        ValueError: a count is negative.
    """
    dearest_input = max(price.input, price.cached_input, price.cache_write)
    return _ceil_micros((input_tokens, dearest_input), (output_tokens, price.output))


def _ceil_micros(*parts: tuple[int, Decimal]) -> int:
    total = 0
    for tokens, usd_per_million in parts:
        if tokens < 0:
            raise ValueError(f"Token counts must not be negative, got {tokens}.")
        # Exact: a validated price has at most _PRICE_PLACES decimal places.
        total += tokens * int(usd_per_million.scaleb(_PRICE_PLACES))
    return -(-total // _PRICE_SCALE)
