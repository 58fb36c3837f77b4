"""Soft thresholds: each raised once per period, from charged usage."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tokenpool.core import (
    AlertBook,
    AlertMeasure,
    AlertWindow,
    PeriodUsage,
    Subject,
    SubjectKind,
    SubjectUsage,
    TenantPolicy,
)

_TENANT = Subject(SubjectKind.TENANT, "t")


def _usage(day: str, tokens: int, micros: int = 0) -> SubjectUsage:
    return SubjectUsage(
        _TENANT,
        {},
        PeriodUsage(day, 0, charged_tokens=tokens, charged_micros=micros),
        PeriodUsage(day[:7], 0, charged_tokens=tokens, charged_micros=micros),
    )


def test_each_threshold_is_raised_once_per_period() -> None:
    caps = TenantPolicy(name="t", daily_tokens=1000, alert_percent=[80, 100])
    book = AlertBook()

    first = book.check(_TENANT, caps, _usage("2025-03-01", 850))
    again = book.check(_TENANT, caps, _usage("2025-03-01", 900))
    both = book.check(_TENANT, caps, _usage("2025-03-01", 1200))
    next_day = book.check(_TENANT, caps, _usage("2025-03-02", 1000))

    assert [(a.window, a.percent, a.used) for a in first] == [
        (AlertWindow.DAY, 80, 850)
    ]
    assert again == []
    assert [a.percent for a in both] == [100]
    assert [a.percent for a in next_day] == [80, 100]


def test_money_budgets_alert_in_micro_dollars() -> None:
    caps = TenantPolicy(name="t", monthly_cost_usd="10", alert_percent=[50])
    book = AlertBook()

    [alert] = book.check(_TENANT, caps, _usage("2025-03-01", 0, micros=5_000_000))

    assert (alert.window, alert.measure) == (AlertWindow.MONTH, AlertMeasure.COST)
    assert (alert.used, alert.limit) == (5_000_000, 10_000_000)


def test_no_thresholds_raise_nothing() -> None:
    book = AlertBook()
    plain = TenantPolicy(name="t", daily_tokens=10)

    assert book.check(_TENANT, plain, _usage("2025-03-01", 100)) == []


def test_thresholds_without_a_calendar_budget_are_refused() -> None:
    with pytest.raises(ValidationError, match="no calendar budget is"):
        TenantPolicy(name="t", alert_percent=[80])


def test_threshold_out_of_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="alert_percent 0 is out of range"):
        TenantPolicy(name="t", alert_percent=[0])
