"""Jain's index and the per-second backlog behind replay's fairness figure."""

from __future__ import annotations

import pytest

from tokenpool.replay import (
    Demand,
    backlog_by_second,
    backlogged_seconds,
    fairness,
    grants_by_second,
    jain_index,
    max_min_shares,
    pending_by_second,
)

S = 1_000_000_000


def test_jain_equal_allocations_is_one() -> None:
    assert jain_index([5, 5, 5, 5]) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_jain_one_takes_all_is_one_over_n(n: int) -> None:
    assert jain_index([7] + [0] * (n - 1)) == pytest.approx(1 / n)


def test_jain_uneven_allocations_match_formula() -> None:
    # (1 + 2 + 3)^2 / (3 x (1 + 4 + 9))
    assert jain_index([1, 2, 3]) == pytest.approx(36 / 42)


def test_jain_nothing_allocated_is_undefined() -> None:
    assert jain_index([]) is None
    assert jain_index([0, 0]) is None


def test_backlogged_seconds_cover_the_wait_only() -> None:
    assert backlogged_seconds(S + S // 2, 0) == range(0)
    assert list(backlogged_seconds(S + S // 2, S // 4)) == [1]
    assert list(backlogged_seconds(S + S // 2, S)) == [1, 2]
    # The wait ends at 2.0 s exactly: second 2 is not touched.
    assert list(backlogged_seconds(S, S)) == [1]
    assert list(backlogged_seconds(0, 3 * S + 1)) == [0, 1, 2, 3]


def test_backlog_and_grants_bucket_by_second() -> None:
    demands = [
        Demand("a", arrival_ns=0, waited_ns=2 * S + S // 2, granted_tokens=100),
        Demand("b", arrival_ns=S, waited_ns=0, granted_tokens=40),
        Demand("b", arrival_ns=S + 1, waited_ns=S // 2, granted_tokens=0),
    ]

    backlog = backlog_by_second(demands)
    grants = grants_by_second(demands)

    assert backlog == {0: {"a"}, 1: {"a", "b"}, 2: {"a"}}
    assert grants == {1: {"b": 40}, 2: {"a": 100}}


def test_fairness_equal_shares_of_backlogged_tenants_is_one() -> None:
    demands = [
        Demand(tenant, arrival_ns=0, waited_ns=at * S + S // 2, granted_tokens=10)
        for tenant in ("a", "b", "c")
        for at in (0, 1, 2)
    ]

    result = fairness(demands, window_s=2)

    assert result.seconds_counted == 3
    assert result.jain_1s == pytest.approx(1.0)
    assert result.jain_window == pytest.approx(1.0)


def test_fairness_one_tenant_served_gives_one_over_n() -> None:
    # a, b, c all wait through seconds 0 and 1; only a is granted, at 1.5 s.
    demands = [
        Demand("a", arrival_ns=0, waited_ns=S + S // 2, granted_tokens=30),
        Demand("b", arrival_ns=0, waited_ns=2 * S, granted_tokens=0),
        Demand("c", arrival_ns=0, waited_ns=2 * S, granted_tokens=0),
    ]

    result = fairness(demands, window_s=10)

    assert result.seconds_counted == 2
    # Second 0: nothing granted, index undefined; second 1: a took all.
    assert result.seconds_undefined_1s == 1
    assert result.jain_1s == pytest.approx(1 / 3)
    assert result.seconds_undefined_window == 1
    assert result.jain_window == pytest.approx(1 / 3)


def test_fairness_window_smooths_lumpy_grants() -> None:
    # a and b wait through seconds 0-3; a is granted in second 0, b in 1.
    demands = [
        Demand("a", arrival_ns=0, waited_ns=S // 2, granted_tokens=50),
        Demand("a", arrival_ns=S // 2, waited_ns=3 * S, granted_tokens=0),
        Demand("b", arrival_ns=0, waited_ns=S + S // 2, granted_tokens=50),
        Demand("b", arrival_ns=S + S // 2, waited_ns=2 * S, granted_tokens=0),
    ]

    result = fairness(demands, window_s=2)

    assert result.seconds_counted == 4
    # 1 s: second 0 (a only) and second 1 (b only) give 1/2; 2, 3 undefined.
    assert result.jain_1s == pytest.approx(0.5)
    assert result.seconds_undefined_1s == 2
    # 2 s window: second 0 sees a's 50 (1/2), second 1 both (1.0), second
    # 2 only b's (1/2), second 3 none (undefined).
    assert result.jain_window == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert result.seconds_undefined_window == 1
    # One grant a second among two waiting tenants: no order of those grants
    # scores above 1/2 in one second, and this one reaches it.
    assert result.jain_1s_ceiling == pytest.approx(0.5)


def test_one_second_ceiling_counts_grants_against_waiting_tenants() -> None:
    # a, b, c wait through second 0; a gets two grants in it, b one.
    demands = [
        Demand("a", arrival_ns=0, waited_ns=S // 4, granted_tokens=10),
        Demand("a", arrival_ns=0, waited_ns=S // 2, granted_tokens=10),
        Demand("b", arrival_ns=0, waited_ns=S // 2, granted_tokens=40),
        Demand("c", arrival_ns=0, waited_ns=S - 1, granted_tokens=0),
    ]

    result = fairness(demands, window_s=1)

    # Three grants could have gone to three tenants: the ceiling is 1, the
    # index of 20 / 40 / 0 is 60^2 / (3 x 2000) = 0.6.
    assert result.jain_1s_ceiling == pytest.approx(1.0)
    assert result.jain_1s == pytest.approx(0.6)


def test_fairness_single_backlogged_tenant_counts_nothing() -> None:
    demands = [Demand("a", arrival_ns=0, waited_ns=5 * S, granted_tokens=10)]

    result = fairness(demands, window_s=10)

    assert result.seconds_counted == 0
    assert result.jain_1s is None
    assert result.as_dict()["jain_window"] is None


def test_fairness_window_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s must be at least 1"):
        fairness([], window_s=0)


def test_max_min_shares_fill_small_asks_and_split_the_rest() -> None:
    assert max_min_shares(90, [10, 100, 100]) == pytest.approx([10, 40, 40])
    assert max_min_shares(30, [5, 5, 5]) == pytest.approx([5, 5, 5])
    assert max_min_shares(12, [100, 100, 100]) == pytest.approx([4, 4, 4])


def test_pending_counts_what_still_waits_at_each_second_end() -> None:
    demands = [
        Demand(
            "a",
            arrival_ns=S // 2,
            waited_ns=2 * S,
            granted_tokens=7,
            requested_tokens=7,
        ),
    ]

    # Waiting from 0.5 s to 2.5 s: past the ends of seconds 0 and 1.
    assert pending_by_second(demands) == {0: {"a": 7}, 1: {"a": 7}}


def test_maxmin_index_is_one_when_a_light_tenant_gets_all_it_asks() -> None:
    # In second 0, light asks 10 and gets it; heavy asks 1000 and gets 90.
    demands = [
        Demand(
            "light",
            arrival_ns=0,
            waited_ns=S // 2,
            granted_tokens=10,
            requested_tokens=10,
        ),
        Demand(
            "heavy",
            arrival_ns=0,
            waited_ns=S // 2,
            granted_tokens=90,
            requested_tokens=90,
        ),
        Demand(
            "heavy",
            arrival_ns=0,
            waited_ns=3 * S,
            granted_tokens=910,
            requested_tokens=910,
        ),
    ]

    result = fairness(demands, window_s=1)

    # Raw: 10 against 90 looks unfair; relative to max-min shares it is not.
    assert result.jain_1s is not None and result.jain_1s < 0.7
    assert result.jain_maxmin == pytest.approx(1.0)


def test_maxmin_index_is_low_when_a_heavy_tenant_takes_a_light_ones_share() -> None:
    demands = [
        Demand(
            "light",
            arrival_ns=0,
            waited_ns=3 * S,
            granted_tokens=10,
            requested_tokens=10,
        ),
        Demand(
            "heavy",
            arrival_ns=0,
            waited_ns=S // 2,
            granted_tokens=100,
            requested_tokens=100,
        ),
    ]

    result = fairness(demands, window_s=1)

    # Second 0: heavy got 100 of 100, light 0 of its 10-token share.
    assert result.jain_maxmin == pytest.approx(0.5)


def test_backlogged_index_counts_only_tenants_waiting_all_window() -> None:
    # a and b wait from 0 to 3 s and get 30 and 10; c waits only at 2.5 s.
    demands = [
        Demand("a", arrival_ns=0, waited_ns=3 * S, granted_tokens=30),
        Demand("b", arrival_ns=0, waited_ns=3 * S, granted_tokens=10),
        Demand("c", arrival_ns=2 * S + S // 2, waited_ns=S // 4, granted_tokens=5),
    ]

    result = fairness(demands, window_s=2)

    # Windows [0, 2) and [1, 3) hold a and b all along, with nothing granted
    # before 3 s: no index; [2, 4) does not (they stop waiting at 3 s).
    assert result.seconds_backlogged == 2
    assert result.jain_backlogged is None


def test_backlogged_index_of_equal_service_is_one() -> None:
    demands = [
        Demand(tenant, arrival_ns=0, waited_ns=at * S + S // 2, granted_tokens=10)
        for tenant in ("a", "b")
        for at in range(6)
    ] + [
        Demand(tenant, arrival_ns=at * S + S // 2, waited_ns=6 * S, granted_tokens=0)
        for tenant in ("a", "b")
        for at in range(6)
    ]

    result = fairness(demands, window_s=3)

    assert result.seconds_backlogged >= 3
    assert result.jain_backlogged == pytest.approx(1.0)
