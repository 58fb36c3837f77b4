from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tokenpool.core import TokenBucket

_SECOND = 1_000_000_000


def test_refill_carries_fractions_exactly() -> None:
    bucket = TokenBucket(
        capacity=1000, window_ns=60 * _SECOND, level=0, carry=0, updated_ns=0
    )

    # 1000 tokens per 60 s is 16.66... per second; 60 one-second steps give 1000.
    for second in range(1, 61):
        bucket.refill(second * _SECOND)

    assert bucket.level == 1000
    assert bucket.carry == 0


@given(
    st.lists(st.integers(min_value=1, max_value=7 * _SECOND), min_size=1, max_size=40)
)
def test_refill_in_steps_equals_refill_at_once(steps: list[int]) -> None:
    stepped = TokenBucket(10**6, 60 * _SECOND, -(10**7), 0, 0)
    at_once = TokenBucket(10**6, 60 * _SECOND, -(10**7), 0, 0)

    now = 0
    for step in steps:
        now += step
        stepped.refill(now)
    at_once.refill(now)

    assert (stepped.level, stepped.carry) == (at_once.level, at_once.carry)


def test_refill_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(600, 60 * _SECOND, 0, 0, 10 * _SECOND)

    bucket.refill(5 * _SECOND)

    assert bucket.level == 0


def test_give_never_lifts_level_above_capacity() -> None:
    bucket = TokenBucket.full(100, _SECOND, 0)
    bucket.take(30)

    bucket.give(50)

    assert bucket.level == 100


def test_debt_shows_and_is_paid_by_refill() -> None:
    bucket = TokenBucket.full(600, 60 * _SECOND, 0)
    bucket.charge(700)
    assert (bucket.available, bucket.debt) == (0, 100)

    bucket.refill(20 * _SECOND)  # +200

    assert (bucket.available, bucket.debt) == (100, 0)


def test_resize_moves_level_by_the_change() -> None:
    bucket = TokenBucket.full(1000, _SECOND, 0)
    bucket.take(900)

    bucket.resize(500)

    assert (bucket.capacity, bucket.level, bucket.debt) == (500, -400, 400)


def test_ns_until_counts_the_carry() -> None:
    bucket = TokenBucket(60, 60 * _SECOND, 0, 0, 0)

    assert bucket.ns_until(0) == 0
    assert bucket.ns_until(1) == _SECOND
    assert bucket.ns_until(61) is None
    bucket.refill(_SECOND // 2)
    assert bucket.ns_until(1) == _SECOND // 2
