"""Soft budget thresholds: the alerts a tenant's or team's usage has crossed."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tokenpool.core._caps import Caps, Subject
from tokenpool.core._limits import PeriodUsage, SubjectUsage


class AlertWindow(enum.StrEnum):
    """Which calendar budget a threshold belongs to."""

    DAY = "day"
    MONTH = "month"


class AlertMeasure(enum.StrEnum):
    """What a calendar budget counts: tokens, or money in micro-dollars."""

    TOKENS = "tokens"
    COST = "cost"


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A soft threshold of a calendar budget that charged usage just reached."""

    subject: Subject
    window: AlertWindow
    period: str
    """The period's key, as the calendar names it (e.g. 2025-03 or 2025-03-14)."""
    measure: AlertMeasure
    percent: int
    used: int
    """Charged in the period: tokens, or micro-dollars for cost."""
    limit: int
    """The calendar budget, in the same unit as `used`."""


class AlertBook:
    """Remembers which thresholds were raised, so each is raised once per period.

    Usage counts what was charged (settled, released with billed input, or
    expired), not what is merely held: a hold may still come back. Only
    subjects with `alert_percent` configured are tracked, so the book stays
    as small as the configuration.
    """

    def __init__(self) -> None:
        self._raised: dict[tuple[Subject, AlertWindow, AlertMeasure], _Raised] = {}

    def check(
        self, subject: Subject, caps: Caps, usage: SubjectUsage
    ) -> list[BudgetAlert]:
        """The thresholds this usage reaches that were not raised this period."""
        if not caps.alert_percent:
            return []

        found: list[BudgetAlert] = []
        for window, period, measure, used, limit in _budgets(caps, usage):
            key = (subject, window, measure)
            raised = self._raised.get(key)
            highest = raised.percent if raised and raised.period == period else 0
            crossed = [
                percent
                for percent in caps.alert_percent
                if percent > highest and used * 100 >= percent * limit
            ]
            if not crossed:
                continue
            self._raised[key] = _Raised(period, crossed[-1])
            found.extend(
                BudgetAlert(subject, window, period, measure, p, used, limit)
                for p in crossed
            )
        return found


@dataclass(frozen=True, slots=True)
class _Raised:
    period: str
    percent: int


def _budgets(
    caps: Caps, usage: SubjectUsage
) -> list[tuple[AlertWindow, str, AlertMeasure, int, int]]:
    """Each calendar budget that is set, with the usage it is measured against."""
    day: PeriodUsage = usage.day
    month: PeriodUsage = usage.month
    candidates = (
        (AlertWindow.DAY, day, AlertMeasure.TOKENS, caps.daily_tokens),
        (AlertWindow.MONTH, month, AlertMeasure.TOKENS, caps.monthly_tokens),
        (AlertWindow.DAY, day, AlertMeasure.COST, caps.daily_cost_micros),
        (AlertWindow.MONTH, month, AlertMeasure.COST, caps.monthly_cost_micros),
    )
    found = []
    for window, period, measure, limit in candidates:
        # A cap of 0 refuses everything; there is nothing to warn about.
        if not limit:
            continue
        used = (
            period.charged_tokens
            if measure is AlertMeasure.TOKENS
            else period.charged_micros
        )
        found.append((window, period.period, measure, used, limit))
    return found
