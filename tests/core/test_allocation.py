from __future__ import annotations

import pytest

from tokenpool import InvalidFieldError
from tokenpool.core import (
    BudgetPolicy,
    CallShape,
    InputLimits,
    Pool,
    Reach,
    Shares,
    account,
    check_labels,
    check_name,
    plan_draws,
    plan_overrun,
    plan_refund,
    projected_reach,
    refilled_level,
    size_call,
    split_capacity,
    usage_tokens,
)


def test_split_gives_remainder_to_basic() -> None:
    parts = split_capacity(1001, Shares().by_pool())

    assert parts == {Pool.BASIC: 651, Pool.PRIORITY: 220, Pool.BURST: 130}
    assert sum(parts.values()) == 1001


def test_shares_must_sum_to_100() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        Shares(basic=50, priority=20, burst=20)


def test_draws_take_own_pool_first_then_burst() -> None:
    reach = Reach(Pool.BASIC, own_available=30, burst_available=100, burst_room=50)

    assert plan_draws(20, reach) == ((Pool.BASIC, 20),)
    assert plan_draws(70, reach) == ((Pool.BASIC, 30), (Pool.BURST, 40))
    assert plan_draws(81, reach) is None
    assert reach.largest == 80


def test_refund_returns_last_drawn_first() -> None:
    sources = ((Pool.BASIC, 30), (Pool.BURST, 40))

    assert plan_refund(sources, 50) == ((Pool.BURST, 40), (Pool.BASIC, 10))
    assert plan_refund(sources, 10) == ((Pool.BURST, 10),)


def test_account_refunds_and_overruns() -> None:
    assert account(100, 60) == (account(100, 60).__class__(60, 40, 0))
    assert (account(100, 130).charged, account(100, 130).overrun) == (130, 30)
    incomplete = account(100, 60, incomplete=True)
    assert (incomplete.charged, incomplete.refunded) == (100, 0)


def test_overrun_goes_to_own_then_burst_then_debt() -> None:
    charge = plan_overrun(100, own_available=30, burst_available=50, debt_room=500)

    assert (charge.from_own, charge.from_burst, charge.debt) == (30, 50, 20)


def test_debt_stops_at_the_room_left() -> None:
    charge = plan_overrun(100, own_available=0, burst_available=10, debt_room=25)

    assert (charge.from_own, charge.from_burst, charge.debt) == (0, 10, 25)


def test_cache_reads_count_by_weight() -> None:
    assert usage_tokens(10, 100, 5, 20, 100) == 135
    assert usage_tokens(10, 100, 5, 20, 10) == 45
    assert usage_tokens(0, 3, 0, 0, 50) == 2


def test_sizing_with_nothing_to_go_on_is_refused() -> None:
    policy = BudgetPolicy(name="b", capacity_tokens=1000)

    with pytest.raises(InvalidFieldError, match="nothing to size"):
        size_call(CallShape(), policy)


@pytest.mark.parametrize("name", ["", "a" * 257, "bad\x00name", "tab\tname", "del\x7f"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidFieldError, match="tenant"):
        check_name("tenant", name)


def test_labels_are_limited() -> None:
    limits = InputLimits(max_labels=2, max_label_length=5)

    assert check_labels({"a": "b"}, limits) == {"a": "b"}
    with pytest.raises(InvalidFieldError, match="3 labels"):
        check_labels({"a": "", "b": "", "c": ""}, limits)
    with pytest.raises(InvalidFieldError, match="longer than 5"):
        check_labels({"a": "toolong"}, limits)


def test_refilled_level_gains_refill_up_to_capacity() -> None:
    minute = 60_000_000_000

    assert refilled_level(600, 0, minute, minute // 6) == 100
    assert refilled_level(600, 550, minute, minute) == 600
    assert refilled_level(600, -300, minute, minute // 2) == 0
    assert refilled_level(600, 700, minute, minute) == 700
    assert refilled_level(600, 10, minute, -5) == 10


def test_projected_reach_takes_draws_and_adds_refill() -> None:
    minute = 60_000_000_000
    reach = Reach(Pool.BASIC, 200, 100, 80, lenders=((Pool.PRIORITY, 50),))
    capacities = {Pool.BASIC: 600, Pool.PRIORITY: 300, Pool.BURST: 120}

    later = projected_reach(
        reach,
        capacities,
        taken=((Pool.BASIC, 150), (Pool.BURST, 100), (Pool.PRIORITY, 20)),
        window_ns=minute,
        elapsed_ns=minute // 6,
    )

    # Basic: 200 - 150 + 100; burst: 100 - 100 + 20; the loan offer: 50 - 20.
    assert (later.own_available, later.burst_available) == (150, 20)
    assert later.lenders == ((Pool.PRIORITY, 30),)
    assert later.burst_room == 80
