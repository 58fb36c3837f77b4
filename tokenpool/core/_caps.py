"""Caps a tenant or a team is held to, and the subjects they are counted for."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Annotated, NamedTuple

from pydantic import Field, field_validator, model_validator

from tokenpool.core._model import FrozenModel

# Largest token cap: the usage bound of SPEC 12.9, restated because the
# policy module (which defines MAX_TOKENS) imports this one.
_MAX_COUNT = 2**62

# Largest money cap in USD; its micro-dollars stay far inside 64 bits.
_MAX_USD = 10**12

# Highest soft threshold, in percent of a calendar budget: ten times over.
_MAX_ALERT_PERCENT = 1000


_Count = Annotated[int, Field(ge=0, le=_MAX_COUNT)]
# At most six decimal places: a cap is a whole number of micro-dollars.
_Usd = Annotated[Decimal, Field(ge=0, le=_MAX_USD, decimal_places=6)]


class Caps(FrozenModel):
    """Limits a tenant or a team is held to, beside the pools' own.

    None means no limit; 0 means never (the request is out of range). Pool
    and in-flight caps count per budget; calendar budgets count across all
    budgets, in the daemon's calendar timezone.
    """

    max_pool_percent: int | None = Field(None, ge=0, le=100)
    """Largest share of any one pool's capacity held at once, in percent."""
    max_in_flight_tokens: _Count | None = None
    """Largest total of open holds in one budget."""
    daily_tokens: _Count | None = None
    """Tokens charged plus held per calendar day."""
    monthly_tokens: _Count | None = None
    """Tokens charged plus held per calendar month."""
    daily_cost_usd: _Usd | None = None
    """Dollars charged plus held per day: a decimal string or a number."""
    monthly_cost_usd: _Usd | None = None
    """Dollars charged plus held per month: a decimal string or a number."""
    alert_percent: tuple[int, ...] = ()
    """Soft thresholds, in percent of each calendar budget above: reaching one
    raises an alert (log, metric, operator hook) once per period, refusing
    nothing."""

    @field_validator("alert_percent")
    @classmethod
    def _sorted_thresholds(cls, percents: tuple[int, ...]) -> tuple[int, ...]:
        for percent in percents:
            if not 1 <= percent <= _MAX_ALERT_PERCENT:
                raise ValueError(
                    f"alert_percent {percent!r} is out of range; use whole "
                    f"percents from 1 to {_MAX_ALERT_PERCENT}"
                )
        return tuple(sorted(set(percents)))

    @model_validator(mode="after")
    def _thresholds_need_a_budget(self) -> Caps:
        calendar = (
            self.daily_tokens,
            self.monthly_tokens,
            self.daily_cost_usd,
            self.monthly_cost_usd,
        )
        if self.alert_percent and all(limit is None for limit in calendar):
            raise ValueError(
                "alert_percent is set but no calendar budget is: add daily_tokens, "
                "monthly_tokens, daily_cost_usd or monthly_cost_usd for it to watch"
            )
        return self

    @property
    def daily_cost_micros(self) -> int | None:
        """The daily money cap in micro-dollars."""
        usd = self.daily_cost_usd
        return None if usd is None else _micros(usd)

    @property
    def monthly_cost_micros(self) -> int | None:
        """The monthly money cap in micro-dollars."""
        usd = self.monthly_cost_usd
        return None if usd is None else _micros(usd)

    @property
    def has_cost_caps(self) -> bool:
        """Whether a money cap applies, so that calls need a price."""
        return self.daily_cost_usd is not None or self.monthly_cost_usd is not None


def _micros(usd: Decimal) -> int:
    return int(usd.scaleb(6))


class SubjectKind(enum.StrEnum):
    """Whose caps: tenants and teams are named in separate namespaces."""

    TENANT = "tenant"
    TEAM = "team"


class Subject(NamedTuple):
    """A tenant or a team, as the limit book counts it."""

    kind: SubjectKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value.capitalize()} {self.name!r}"
