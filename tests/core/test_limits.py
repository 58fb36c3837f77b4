from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tokenpool.core import (
    Ask,
    BudgetUsage,
    CalendarPeriods,
    Caps,
    ChargedRow,
    ChargeTarget,
    LimitBook,
    LimitReason,
    Pool,
    Subject,
    SubjectKind,
    TenantPolicy,
)

SECOND = 1_000_000_000
HOUR = 3600 * SECOND
CAPACITIES = {Pool.BASIC: 1000, Pool.PRIORITY: 0, Pool.BURST: 0}
TENANT_A = Subject(SubjectKind.TENANT, "a")
TEAM_T = Subject(SubjectKind.TEAM, "t")


def _wall(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return (
        (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    )


NOON = _wall("2026-05-09T12:00:00+00:00")


def _ask(
    tokens: int,
    *,
    tenant: str = "a",
    caps: Caps | None = None,
    team: str | None = None,
    team_caps: Caps | None = None,
    cost: int | None = -1,
    rpm: int | None = None,
    concurrent: int | None = None,
    draws: tuple[tuple[Pool, int], ...] | None = None,
) -> Ask:
    """A request costing a micro-dollar per token unless told otherwise."""
    return Ask(
        budget="b",
        tenant=tenant,
        tokens=tokens,
        draws=((Pool.BASIC, tokens),) if draws is None else draws,
        tenant_caps=caps or Caps(),
        team=team,
        team_caps=team_caps,
        cost_micros=tokens if cost == -1 else cost,
        model="gpt-x",
        pool_capacities=CAPACITIES,
        requests_per_minute=rpm,
        max_concurrent_reservations=concurrent,
    )


def _subject_ask(kind: SubjectKind, caps: Caps, tokens: int) -> Ask:
    if kind is SubjectKind.TENANT:
        return _ask(tokens, caps=caps, team="t", team_caps=Caps())
    return _ask(tokens, team="t", team_caps=caps)


# Each cap, set so that it allows 100 tokens (a micro-dollar each).
CAP_CASES = [
    ("max_in_flight_tokens", 100, "IN_FLIGHT_CAP", True),
    ("max_pool_percent", 10, "POOL_SHARE_CAP", True),
    ("daily_tokens", 100, "DAILY_TOKENS", False),
    ("monthly_tokens", 100, "MONTHLY_TOKENS", False),
    ("daily_cost_usd", "0.0001", "DAILY_COST", False),
    ("monthly_cost_usd", Decimal("0.0001"), "MONTHLY_COST", False),
]


@pytest.mark.parametrize("kind", list(SubjectKind))
@pytest.mark.parametrize(("setting", "value", "reason", "waitable"), CAP_CASES)
def test_each_cap_refuses_just_past_its_edge(
    kind: SubjectKind, setting: str, value: object, reason: str, waitable: bool
) -> None:
    book = LimitBook()
    caps = Caps.model_validate({setting: value})
    book.hold("first", _subject_ask(kind, caps, 40), 0, NOON)

    assert book.check(_subject_ask(kind, caps, 59), 0, NOON) is None
    assert book.check(_subject_ask(kind, caps, 60), 0, NOON) is None
    breach = book.check(_subject_ask(kind, caps, 61), 0, NOON)

    assert breach is not None
    assert breach.reason == f"{kind.upper()}_{reason}"
    assert breach.subject == ("a" if kind is SubjectKind.TENANT else "t")
    assert (breach.waitable, breach.never) == (waitable, False)
    assert breach.largest_grantable == 60
    assert setting in breach.message
    assert ("retry in" in breach.message) is not waitable
    assert breach.message.endswith("ask for at most 60 tokens.")


@pytest.mark.parametrize("kind", list(SubjectKind))
@pytest.mark.parametrize(("setting", "value", "reason", "waitable"), CAP_CASES)
def test_a_request_bigger_than_a_cap_is_never_granted(
    kind: SubjectKind, setting: str, value: object, reason: str, waitable: bool
) -> None:
    caps = Caps.model_validate({setting: value})

    breach = LimitBook().check(_subject_ask(kind, caps, 101), 0, NOON)

    assert breach is not None
    assert breach.reason == f"{kind.upper()}_{reason}"
    assert (breach.never, breach.waitable, breach.retry_after_ns) == (True, False, None)
    assert "raise the limit in the configuration" in breach.message
    assert LimitBook().check(_subject_ask(kind, caps, 100), 0, NOON) is None


@pytest.mark.parametrize(("setting", "value", "reason", "waitable"), CAP_CASES)
def test_a_cap_of_zero_is_never_granted(
    setting: str, value: object, reason: str, waitable: bool
) -> None:
    breach = LimitBook().check(_ask(1, caps=Caps.model_validate({setting: 0})), 0, NOON)

    assert breach is not None
    assert breach.reason == f"TENANT_{reason}"
    assert breach.never
    assert breach.largest_grantable == 0
    assert breach.message.startswith(f"Tenant 'a' has {setting} = 0;")


@pytest.mark.parametrize(
    ("rpm", "concurrent", "reason"),
    [
        (0, None, LimitReason.BUDGET_RATE_LIMIT),
        (None, 0, LimitReason.BUDGET_CONCURRENCY),
    ],
)
def test_budget_limits_of_zero_are_never_granted(
    rpm: int | None, concurrent: int | None, reason: LimitReason
) -> None:
    breach = LimitBook().check(_ask(1, rpm=rpm, concurrent=concurrent), 0, NOON)

    assert breach is not None
    assert (breach.reason, breach.never, breach.subject) == (reason, True, "b")
    assert "= 0;" in breach.message


def test_team_cap_refuses_and_changes_no_counter() -> None:
    book = LimitBook()
    tenant_caps = Caps(max_in_flight_tokens=500, daily_tokens=10_000)
    team_caps = Caps(max_in_flight_tokens=100, daily_cost_usd=Decimal(1))

    def ask(tokens: int, tenant: str = "a") -> Ask:
        caps = tenant_caps if tenant == "a" else None
        return _ask(
            tokens,
            tenant=tenant,
            caps=caps,
            team="t",
            team_caps=team_caps,
            rpm=60,
            concurrent=10,
            draws=((Pool.BASIC, tokens - tokens // 4), (Pool.BURST, tokens // 4)),
        )

    book.hold("r1", ask(60), 0, NOON)
    book.hold("r2", ask(20, "b"), 0, NOON)
    book.end("r2", 25, 30, NOON)
    book.hold("r3", ask(20, "b"), 0, NOON)
    before = book.snapshot()
    usages = [book.usage(who, NOON) for who in (TENANT_A, TEAM_T)]
    budget = book.budget_usage("b", 60, SECOND)

    breach = book.check(ask(21), SECOND, NOON)

    assert breach is not None
    assert (breach.reason, breach.subject) == (LimitReason.TEAM_IN_FLIGHT_CAP, "t")
    assert (breach.limit, breach.current, breach.requested) == (100, 80, 21)
    assert breach.largest_grantable == 20
    assert book.snapshot() == before
    assert [book.usage(who, NOON) for who in (TENANT_A, TEAM_T)] == usages
    assert book.budget_usage("b", 60, SECOND) == budget
    assert budget.open_reservations == 2
    assert book.check(ask(20), SECOND, NOON) is None


def test_team_and_tenant_namespaces_are_apart() -> None:
    book = LimitBook()
    book.hold("r1", _ask(50, tenant="x", team="y"), 0, NOON)

    caps = Caps(max_in_flight_tokens=60)
    assert book.check(_ask(60, tenant="y", caps=caps, team="x"), 0, NOON) is None
    assert book.usage(Subject(SubjectKind.TEAM, "x"), NOON).in_flight == {}
    assert book.usage(Subject(SubjectKind.TEAM, "y"), NOON).in_flight == {
        "b": (50, {Pool.BASIC: 50})
    }


def test_largest_grantable_is_the_tightest_limit() -> None:
    book = LimitBook()
    caps = Caps(max_in_flight_tokens=120, max_pool_percent=10, daily_tokens=1000)
    book.hold("r1", _ask(90, caps=caps), 0, NOON)

    breach = book.check(_ask(40, caps=caps), 0, NOON)

    assert breach is not None
    assert breach.reason == LimitReason.TENANT_IN_FLIGHT_CAP
    assert (breach.limit, breach.current, breach.pool) == (120, 90, None)
    assert breach.largest_grantable == 10
    assert breach.message.endswith("or ask for at most 10 tokens.")


def test_pool_share_room_follows_the_draw_order() -> None:
    capacities = {Pool.BASIC: 1000, Pool.PRIORITY: 0, Pool.BURST: 1000}
    caps = Caps(max_pool_percent=10)
    book = LimitBook()
    book.hold("r1", _ask(90, caps=caps), 0, NOON)

    def ask(draws: tuple[tuple[Pool, int], ...]) -> Ask:
        tokens = sum(tokens for _, tokens in draws)
        return replace(_ask(tokens, caps=caps, draws=draws), pool_capacities=capacities)

    over_burst = book.check(ask(((Pool.BASIC, 10), (Pool.BURST, 150))), 0, NOON)
    over_basic = book.check(ask(((Pool.BASIC, 30), (Pool.BURST, 50))), 0, NOON)

    assert over_burst is not None and over_burst.pool is Pool.BURST
    assert over_burst.reason == LimitReason.TENANT_POOL_SHARE_CAP
    assert (over_burst.limit, over_burst.current, over_burst.requested) == (100, 0, 150)
    assert over_burst.largest_grantable == 110
    assert over_basic is not None and over_basic.pool is Pool.BASIC
    assert over_basic.largest_grantable == 10
    assert book.check(ask(((Pool.BASIC, 10), (Pool.BURST, 100))), 0, NOON) is None


def test_calendar_counts_charged_plus_held_plus_requested() -> None:
    book = LimitBook()
    caps = Caps(daily_tokens=100)
    book.hold("r1", _ask(30, caps=caps), 0, NOON)
    book.end("r1", 40, 40, NOON)
    book.hold("r2", _ask(20, caps=caps), 0, NOON)

    assert book.check(_ask(40, caps=caps), 0, NOON) is None
    breach = book.check(_ask(41, caps=caps), 0, NOON)

    assert breach is not None
    assert (breach.limit, breach.current, breach.requested) == (100, 60, 41)
    assert breach.retry_after_ns == 12 * HOUR
    assert "Tenant 'a' has used 60 tokens in 2026-05-09" in breach.message
    assert "retry in 43200 s, or ask for at most 40 tokens." in breach.message
    day = book.usage(TENANT_A, NOON).day
    assert (day.charged_tokens, day.held_tokens, day.charged_micros) == (40, 20, 40)


def test_monthly_retry_after_is_the_month_end() -> None:
    book = LimitBook()
    caps = Caps(monthly_cost_usd=Decimal("0.00005"))

    breach = book.check(_ask(60, caps=caps), 0, NOON)
    never = book.check(_ask(60, caps=Caps(monthly_tokens=50)), 0, NOON)
    book.hold("r1", _ask(50, caps=caps), 0, NOON)
    spent = book.check(_ask(1, caps=caps), 0, NOON)

    assert breach is not None and breach.never
    assert never is not None and never.never
    assert spent is not None and spent.reason == LimitReason.TENANT_MONTHLY_COST
    assert spent.retry_after_ns == _wall("2026-06-01T00:00:00+00:00") - NOON
    assert spent.unit == "micro-dollars"
    assert "has spent $0.00005 in 2026-05" in spent.message


def test_usage_is_charged_to_the_grant_period_after_midnight() -> None:
    book = LimitBook()
    caps = Caps(daily_tokens=100, monthly_tokens=1000)
    book.hold("r1", _ask(80, caps=caps), 0, _wall("2026-05-09T23:59:00+00:00"))
    after_midnight = _wall("2026-05-10T00:01:00+00:00")

    target = book.end("r1", 90, 90, after_midnight)

    usage = book.usage(TENANT_A, after_midnight)
    assert target.day == "2026-05-09"
    assert (usage.day.period, usage.day.charged_tokens) == ("2026-05-10", 0)
    assert usage.month.charged_tokens == 90
    assert book.check(_ask(100, caps=caps), 0, after_midnight) is None


def test_day_boundary_follows_the_timezone() -> None:
    book = LimitBook(CalendarPeriods("Asia/Kolkata"))
    caps = Caps(daily_tokens=100)
    before = _wall("2026-05-09T18:29:59+00:00")
    book.hold("r1", _ask(100, caps=caps), 0, before)
    book.end("r1", 100, 0, before)

    refused = book.check(_ask(1, caps=caps), 0, before)

    assert refused is not None
    assert refused.retry_after_ns == SECOND
    assert book.check(_ask(100, caps=caps), 0, before + SECOND) is None
    assert book.calendar.of(before).day == "2026-05-09"
    assert book.calendar.of(before + SECOND).day == "2026-05-10"


def test_a_dst_day_has_23_hours() -> None:
    periods = CalendarPeriods("Europe/Berlin").of(_wall("2026-03-29T12:00:00+00:00"))

    assert periods.day_end_ns - periods.day_start_ns == 23 * HOUR
    assert periods.month_end_ns == _wall("2026-03-31T22:00:00+00:00")


def test_december_ends_on_new_year() -> None:
    periods = CalendarPeriods().of(_wall("2026-12-31T12:00:00+00:00"))

    assert (periods.day, periods.month) == ("2026-12-31", "2026-12")
    assert periods.month_end_ns == _wall("2027-01-01T00:00:00+00:00")


def test_wall_clock_going_back_keeps_the_new_period() -> None:
    book = LimitBook()
    caps = Caps(daily_tokens=100)
    new_day = _wall("2026-05-10T00:10:00+00:00")
    book.hold("r1", _ask(100, caps=caps), 0, new_day)
    book.end("r1", 100, 100, new_day)
    stepped_back = _wall("2026-05-09T23:50:00+00:00")

    breach = book.check(_ask(1, caps=caps), 0, stepped_back)

    assert breach is not None
    assert breach.retry_after_ns == _wall("2026-05-11T00:00:00+00:00") - new_day
    assert book.calendar.at(stepped_back).day == "2026-05-10"
    assert book.usage(TENANT_A, stepped_back).day.charged_tokens == 100


def test_unpriced_model_with_a_money_cap_is_never_granted() -> None:
    book = LimitBook()

    caps = Caps(daily_cost_usd=Decimal(5))
    breach = book.check(_ask(10, caps=caps, cost=None), 0, NOON)

    assert breach is not None
    assert breach.reason == LimitReason.MODEL_UNPRICED
    assert (breach.subject, breach.never, breach.waitable) == ("gpt-x", True, False)
    assert "Model 'gpt-x' has no price" in breach.message
    assert "[[prices]]" in breach.message
    assert book.check(_ask(10, caps=Caps(daily_tokens=50), cost=None), 0, NOON) is None


def test_money_caps_convert_exactly_to_micros() -> None:
    assert Caps(daily_cost_usd=Decimal("1.234567")).daily_cost_micros == 1_234_567
    assert Caps.model_validate({"monthly_cost_usd": 0.1}).monthly_cost_micros == 100_000
    assert Caps.model_validate({"daily_cost_usd": "25"}).daily_cost_micros == 25 * 10**6
    assert Caps().daily_cost_micros is None
    assert Caps(monthly_cost_usd=Decimal(0)).has_cost_caps
    assert not Caps(daily_tokens=5).has_cost_caps
    with pytest.raises(ValidationError, match="decimal places"):
        Caps.model_validate({"daily_cost_usd": "0.0000001"})


def test_caps_are_validated() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Caps(max_in_flight_tokens=-1)
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        Caps(max_pool_percent=101)
    with pytest.raises(ValidationError, match="finite number"):
        Caps.model_validate({"daily_cost_usd": "NaN"})
    policy = TenantPolicy.model_validate({"name": "a", "daily_cost_usd": "5.00"})
    assert policy.daily_cost_micros == 5_000_000


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown timezone 'Mars/Olympus'"):
        CalendarPeriods("Mars/Olympus")


def test_rate_limit_refills_one_a_second_without_window_edges() -> None:
    book = LimitBook()
    for index in range(60):
        book.hold(f"r{index}", _ask(1, rpm=60), 0, NOON)

    refused = book.check(_ask(1, rpm=60), 0, NOON)
    half = book.check(_ask(1, rpm=60), SECOND // 2, NOON)

    assert refused is not None
    assert (refused.reason, refused.waitable) == (LimitReason.BUDGET_RATE_LIMIT, True)
    assert refused.retry_after_ns == SECOND
    assert refused.largest_grantable == 0
    assert half is not None and half.retry_after_ns == SECOND // 2
    assert book.check(_ask(1, rpm=60), SECOND, NOON) is None
    book.hold("late", _ask(1, rpm=60), SECOND, NOON)
    assert book.check(_ask(1, rpm=60), SECOND, NOON) is not None
    assert book.budget_usage("b", 60, 31 * SECOND).rate_available == 30
    assert book.budget_usage("b", 60, 600 * SECOND).rate_available == 60


def test_restored_holds_take_no_request_rate() -> None:
    book = LimitBook()
    for index in range(5):
        book.hold(f"r{index}", _ask(1, rpm=5), 0, NOON, restoring=True)

    assert book.check(_ask(1, rpm=5), 0, NOON) is None
    assert book.budget_usage("b", 5, 0) == BudgetUsage(5, 5)


def test_concurrency_waits_for_an_end() -> None:
    book = LimitBook()
    book.hold("r1", _ask(1, concurrent=2), 0, NOON)
    book.hold("r2", _ask(1, concurrent=2), 0, NOON)

    breach = book.check(_ask(1, concurrent=2), 0, NOON)
    book.end("r1", 1, 1, NOON)

    assert breach is not None
    assert breach.reason == LimitReason.BUDGET_CONCURRENCY
    assert (breach.waitable, breach.retry_after_ns) == (True, None)
    assert "wait for a reservation to end" in breach.message
    assert book.check(_ask(1, concurrent=2), 0, NOON) is None


def test_extend_is_checked_as_a_delta() -> None:
    book = LimitBook()
    caps = Caps(max_in_flight_tokens=100, daily_tokens=150)
    book.hold("r1", _ask(50, caps=caps), 0, NOON)
    book.hold("r2", _ask(30, caps=caps), 0, NOON)

    assert book.check_change("r1", _ask(70, caps=caps), NOON) is None
    breach = book.check_change("r1", _ask(71, caps=caps), NOON)
    assert breach is not None
    assert (breach.reason, breach.current, breach.requested) == (
        LimitReason.TENANT_IN_FLIGHT_CAP,
        80,
        21,
    )
    assert breach.largest_grantable == 70

    tighter = Caps(max_in_flight_tokens=10)
    assert book.check_change("r1", _ask(40, caps=tighter), NOON) is None
    book.change("r1", _ask(70, caps=caps), NOON)
    usage = book.usage(TENANT_A, NOON)
    assert usage.in_flight == {"b": (100, {Pool.BASIC: 100})}
    assert usage.day.held_tokens == 100


def test_extend_growth_counts_the_grant_day_only_while_current() -> None:
    book = LimitBook()
    caps = Caps(daily_tokens=100, monthly_tokens=1000)
    book.hold("r1", _ask(60, caps=caps), 0, _wall("2026-05-09T23:00:00+00:00"))

    same_day = book.check_change(
        "r1", _ask(101, caps=caps), _wall("2026-05-09T23:30:00+00:00")
    )
    next_day = _wall("2026-05-10T01:00:00+00:00")
    later = book.check_change("r1", _ask(101, caps=caps), next_day)

    assert same_day is not None and same_day.reason == LimitReason.TENANT_DAILY_TOKENS
    assert later is None


def test_end_returns_every_counter_to_zero() -> None:
    book = LimitBook()
    caps = Caps(max_in_flight_tokens=1000, daily_cost_usd=1)
    draws = ((Pool.BASIC, 30), (Pool.BURST, 20))
    for index in range(4):
        ask = _ask(50, caps=caps, team="t", team_caps=caps, concurrent=5, draws=draws)
        book.hold(f"r{index}", ask, 0, NOON)
    book.change("r0", _ask(70, caps=caps, team="t", concurrent=5), NOON)

    for index in range(4):
        book.end(f"r{index}", 0, 0, NOON)

    assert book.snapshot() == {
        "in_flight": {},
        "calendar": {},
        "budgets": {},
        "held": {},
    }
    assert book.counter_count() == 0
    usage = book.usage(TEAM_T, NOON)
    assert usage.in_flight == {}
    assert (usage.day.held_tokens, usage.month.held_micros) == (0, 0)


def test_end_uses_the_grant_even_after_a_config_change() -> None:
    book = LimitBook()
    book.hold("r1", _ask(50, team="t"), 0, NOON)

    target = book.end("r1", 50, 50, NOON)

    assert target.subjects == (TENANT_A, TEAM_T)
    assert book.usage(TEAM_T, NOON).day.charged_tokens == 50
    assert book.usage(TEAM_T, NOON).in_flight == {}
    with pytest.raises(KeyError):
        book.end("r1", 0, 0, NOON)
    book.hold("r2", _ask(1), 0, NOON)
    with pytest.raises(ValueError, match="already held"):
        book.hold("r2", _ask(1), 0, NOON)


def test_late_overrun_charges_the_grant_periods() -> None:
    book = LimitBook()
    book.hold("r1", _ask(50, team="t"), 0, NOON)
    target = book.end("r1", 50, 50, NOON)

    book.add_charge(target, 7, 9, NOON + HOUR)
    tomorrow = _wall("2026-05-10T12:00:00+00:00")
    book.add_charge(target, 100, 100, tomorrow)

    usage = book.usage(TENANT_A, tomorrow)
    assert usage.day.charged_tokens == 0
    assert (usage.month.charged_tokens, usage.month.charged_micros) == (157, 159)


def test_restore_seeds_current_periods_only() -> None:
    book = LimitBook()
    rows = [
        ChargedRow(SubjectKind.TENANT, "a", "2026-05-09", 10, 11),
        ChargedRow(SubjectKind.TENANT, "a", "2026-05", 30, 33),
        ChargedRow(SubjectKind.TEAM, "a", "2026-05-09", 5, 5),
        ChargedRow(SubjectKind.TENANT, "a", "2026-05-08", 99, 99),
        ChargedRow(SubjectKind.TENANT, "a", "2026-04", 99, 99),
    ]

    book.restore_charged(rows, NOON)

    tenant = book.usage(TENANT_A, NOON)
    team = book.usage(Subject(SubjectKind.TEAM, "a"), NOON)
    assert (tenant.day.charged_tokens, tenant.day.charged_micros) == (10, 11)
    assert tenant.month.charged_tokens == 30
    assert team.day.charged_tokens == 5
    assert book.counter_count() == 3


def test_reopened_reservation_holds_in_its_grant_period() -> None:
    book = LimitBook()
    yesterday = _wall("2026-05-08T20:00:00+00:00")

    target = book.hold(
        "r1", _ask(40), 0, NOON, restoring=True, granted_wall_ns=yesterday
    )

    assert target.day == "2026-05-08"
    assert book.usage(TENANT_A, NOON).day.held_tokens == 0
    assert book.usage(TENANT_A, NOON).month.held_tokens == 40
    book.end("r1", 40, 40, NOON)
    assert book.usage(TENANT_A, NOON).month.charged_tokens == 40
    assert book.counter_count() == 1


def test_memory_stays_bounded_as_subjects_come_and_go() -> None:
    book = LimitBook()
    for index in range(2000):
        book.hold(f"r{index}", _ask(5, tenant=f"t{index}", team="team"), 0, NOON)
        book.end(f"r{index}", 0 if index % 2 else 5, 0, NOON)

    # Tenants that charged something keep this day and month; the team too.
    assert book.counter_count() == 1000 * 2 + 2
    next_month = _wall("2026-06-01T00:00:01+00:00")
    book.hold("last", _ask(5, tenant="new"), 0, next_month)
    assert book.counter_count() == 1 + 2 + 1 + 1
    book.end("last", 0, 0, next_month)
    assert book.counter_count() == 0


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["hold", "change", "end", "check"]),
        st.integers(0, 7),
        st.integers(0, 120),
        st.integers(0, 30 * HOUR),
    ),
    max_size=40,
)


@given(_STEPS)
def test_random_books_end_empty_and_checks_change_nothing(
    steps: list[tuple[str, int, int, int]],
) -> None:
    book = LimitBook(CalendarPeriods("Asia/Kolkata"))
    caps = Caps(max_in_flight_tokens=300, max_pool_percent=50, daily_tokens=500)
    open_keys: set[str] = set()
    wall = NOON
    for action, index, tokens, step_ns in steps:
        wall += step_ns
        key = f"r{index}"
        draws = ((Pool.BASIC, tokens - tokens // 3), (Pool.BURST, tokens // 3))
        capacities = {Pool.BASIC: 400, Pool.PRIORITY: 0, Pool.BURST: 400}
        ask = replace(
            _ask(tokens, tenant=f"t{index % 3}", caps=caps, team="t", team_caps=caps),
            draws=draws,
            pool_capacities=capacities,
            requests_per_minute=100,
        )
        if action == "check" or (action == "hold" and key not in open_keys):
            before = book.snapshot()
            breach = book.check(ask, wall, wall)
            assert book.snapshot() == before
            if action == "hold" and breach is None:
                book.hold(key, ask, wall, wall)
                open_keys.add(key)
        elif action == "change" and key in open_keys:
            if book.check_change(key, ask, wall) is None:
                book.change(key, ask, wall)
        elif action == "end" and key in open_keys:
            book.end(key, tokens, tokens, wall)
            open_keys.remove(key)
        held, pools = book.usage(TEAM_T, wall).in_flight.get("b", (0, {}))
        assert held <= 300
        assert all(tokens <= 200 for tokens in pools.values())

    for key in open_keys:
        book.end(key, 0, 0, wall)
    book.add_charge(ChargeTarget((), "", ""), 0, 0, wall + 40 * 86_400 * SECOND)
    snapshot = book.snapshot()
    assert (snapshot["in_flight"], snapshot["calendar"], snapshot["held"]) == (
        {},
        {},
        {},
    )
    assert book.budget_usage("b", 100, 0).open_reservations == 0
