from __future__ import annotations

import random
from fractions import Fraction

import pytest

from tokenpool.core import (
    FOLDED_KEY,
    EstimateBook,
    LearningPolicy,
    corrected_allowance,
)

# Input part of every simulated call: held and used in full.
INPUT = 500
# Uncorrected output allowance of every simulated call.
ALLOWANCE = 4000


def _settle(
    book: EstimateBook,
    output_used: int,
    *,
    key: tuple[str, str] = ("t", "chat"),
    incomplete: bool = False,
) -> tuple[int, int]:
    """Reserves with the book's factor, settles; returns (hold, used)."""
    factor = book.output_factor(*key)
    hold = INPUT + corrected_allowance(ALLOWANCE, factor)
    used = INPUT + output_used
    book.observe(
        *key,
        hold=hold,
        output_allowance=ALLOWANCE,
        used=used,
        incomplete=incomplete,
        applied_factor=factor,
    )
    return hold, used


def _draw(rng: random.Random, scale: float = 1.0) -> int:
    """Output tokens of one call: skewed, median about 400."""
    return min(ALLOWANCE, int(scale * rng.lognormvariate(6.0, 0.5)))


def test_policy_defaults_are_off_and_bounded() -> None:
    policy = LearningPolicy()

    assert not policy.enabled
    assert (policy.overrun_target_percent, policy.window) == (5, 200)
    assert (policy.min_samples, policy.margin_percent) == (20, 10)
    assert policy.factor_bounds == (Fraction(1, 20), Fraction(4))
    assert policy.max_keys == 10_000


def test_policy_refuses_inconsistent_bounds() -> None:
    with pytest.raises(ValueError, match=r"min_samples \(30\) must be at most"):
        LearningPolicy(window=20, min_samples=30)
    with pytest.raises(ValueError, match=r"min_factor \(0.5\) must be at most"):
        LearningPolicy(min_factor=0.5, max_factor=0.25)
    with pytest.raises(ValueError, match="less than or equal to 100"):
        LearningPolicy(max_factor=101)


def test_report_statistics_on_constructed_data() -> None:
    book = EstimateBook(LearningPolicy(window=4, min_samples=1))
    settles = [(100, 50), (100, 100), (100, 130), (200, 20), (100, 90), (100, 70)]
    for hold, used in settles:
        book.observe("t", "chat", hold=hold, output_allowance=60, used=used)

    [row] = book.report()

    assert (row.tenant, row.task_type) == ("t", "chat")
    assert (row.samples, row.window_samples, row.incomplete) == (6, 4, 0)
    # The window holds used/hold 1.3, 0.1, 0.9, 0.7.
    assert (row.p50, row.p90, row.p99) == (0.7, 1.3, 1.3)
    assert (row.overruns, row.overrun_rate) == (1, 1 / 6)
    assert row.unused_tokens == 50 + 0 + 0 + 180 + 10 + 30
    assert row.overrun_tokens == 30
    assert row.factor is None


def test_report_sorts_by_tenant_then_task() -> None:
    book = EstimateBook()
    for tenant, task in [("b", "x"), ("a", "z"), ("a", "y")]:
        book.observe(tenant, task, hold=10, output_allowance=5, used=10)

    keys = [(row.tenant, row.task_type) for row in book.report()]

    assert keys == [("a", "y"), ("a", "z"), ("b", "x")]


def test_correction_is_off_by_default() -> None:
    book = EstimateBook()
    for _ in range(50):
        _settle(book, 400)

    assert book.output_factor("t", "chat") is None
    assert book.report()[0].samples == 50


def test_no_factor_below_min_samples() -> None:
    book = EstimateBook(LearningPolicy(enabled=True, min_samples=20))
    for _ in range(19):
        _settle(book, 400)

    assert book.output_factor("t", "chat") is None
    _settle(book, 400)
    assert book.output_factor("t", "chat") == Fraction(400, 4000) * Fraction(11, 10)
    assert book.output_factor("t", "other") is None


def test_incomplete_calls_are_counted_not_learned() -> None:
    book = EstimateBook(LearningPolicy(enabled=True, min_samples=3, window=10))
    for _ in range(5):
        _settle(book, 4000, incomplete=True)
    for _ in range(2):
        _settle(book, 400)

    row = book.report()[0]
    assert (row.samples, row.incomplete) == (7, 5)
    assert book.output_factor("t", "chat") is None

    _settle(book, 400)
    assert book.output_factor("t", "chat") == Fraction(400, 4000) * Fraction(11, 10)


def test_quantile_is_taken_at_the_overrun_target() -> None:
    policy = LearningPolicy(enabled=True, window=100, margin_percent=0)
    book = EstimateBook(policy)
    # 100 ratios 0.01 .. 1.00 in shuffled order; the 95th is 0.95.
    outputs = [40 * k for k in range(1, 101)]
    random.Random(7).shuffle(outputs)
    for output in outputs:
        book.observe(
            "t",
            "chat",
            hold=INPUT + ALLOWANCE,
            output_allowance=ALLOWANCE,
            used=INPUT + output,
        )

    assert book.output_factor("t", "chat") == Fraction(95, 100)


def test_learned_factor_keeps_overruns_under_target_and_cuts_waste() -> None:
    rng = random.Random(20240601)
    book = EstimateBook(LearningPolicy(enabled=True))
    draws = 5000
    overruns = unused = baseline_unused = 0
    for _ in range(draws):
        output = _draw(rng)
        hold, used = _settle(book, output)
        overruns += used > hold
        unused += max(0, hold - used)
        baseline_unused += INPUT + ALLOWANCE - used

    assert overruns / draws < 0.05
    assert unused < baseline_unused / 3
    assert book.report()[0].overruns == overruns


def test_overruns_above_target_raise_the_factor() -> None:
    policy = LearningPolicy(enabled=True, window=100, min_samples=20)
    corrected, plain = EstimateBook(policy), EstimateBook(policy)
    # Same ratios for both books: 90 at 0.1 and 10 at 0.3. Under a factor of
    # 1/4 the 0.3 ones overran their hold: 10 % against a 5 % target.
    quarter = Fraction(1, 4)
    for output in [400] * 90 + [1200] * 10:
        corrected.observe(
            "t",
            "chat",
            hold=INPUT + 1000,
            output_allowance=ALLOWANCE,
            used=INPUT + output,
            applied_factor=quarter,
        )
        plain.observe(
            "t",
            "chat",
            hold=INPUT + ALLOWANCE,
            output_allowance=ALLOWANCE,
            used=INPUT + output,
        )

    base = Fraction(3, 10) * Fraction(11, 10)
    assert plain.output_factor("t", "chat") == base
    assert corrected.output_factor("t", "chat") == base * 2


def test_upward_shift_is_caught_up_within_the_window() -> None:
    rng = random.Random(99)
    book = EstimateBook(LearningPolicy(enabled=True))
    for _ in range(400):
        _settle(book, _draw(rng))
    before = book.output_factor("t", "chat")

    late_overruns = 0
    for step in range(1000):
        hold, used = _settle(book, _draw(rng, scale=3.0))
        late_overruns += step >= 500 and used > hold

    after = book.output_factor("t", "chat")
    assert before is not None and after is not None
    assert after > 2 * before
    assert late_overruns / 500 < 0.05


def test_factor_never_above_max_nor_below_min() -> None:
    high = EstimateBook(LearningPolicy(enabled=True, min_samples=5, max_factor=0.5))
    low = EstimateBook(LearningPolicy(enabled=True, min_samples=5))
    for _ in range(5):
        # Usage far above the whole allowance, then no output at all.
        high.observe("t", "chat", hold=100, output_allowance=50, used=10_000)
        low.observe("t", "chat", hold=100, output_allowance=50, used=50)

    assert high.output_factor("t", "chat") == Fraction(1, 2)
    assert low.output_factor("t", "chat") == Fraction(1, 20)


def test_correction_raises_an_allowance_that_overruns_up_to_max_factor() -> None:
    book = EstimateBook(LearningPolicy(enabled=True, min_samples=5))
    for _ in range(5):
        book.observe("t", "chat", hold=100, output_allowance=50, used=10_000)

    factor = book.output_factor("t", "chat")

    assert factor == 4
    assert corrected_allowance(50, factor) == 200
    assert corrected_allowance(1000, Fraction(1, 3)) == 334
    assert corrected_allowance(1, Fraction(1, 20)) == 1
    with pytest.raises(ValueError, match="above 0"):
        corrected_allowance(10, Fraction(0))


def test_keys_beyond_the_bound_are_folded() -> None:
    book = EstimateBook(LearningPolicy(enabled=True, min_samples=1, max_keys=2))
    for tenant in ["a", "b", "c", "d", "a"]:
        book.observe(tenant, "chat", hold=10, output_allowance=5, used=7)

    rows = {(row.tenant, row.task_type): row for row in book.report()}

    assert list(rows) == [FOLDED_KEY, ("a", "chat"), ("b", "chat")]
    assert rows[FOLDED_KEY].samples == 2
    assert rows["a", "chat"].samples == 2
    assert book.output_factor("c", "chat") is None
    assert book.output_factor("a", "chat") is not None


def test_observe_refuses_inconsistent_figures() -> None:
    book = EstimateBook()

    with pytest.raises(ValueError, match="used is -1"):
        book.observe("t", "chat", hold=10, output_allowance=5, used=-1)
    with pytest.raises(ValueError, match="smaller than the output allowance"):
        book.observe("t", "chat", hold=10, output_allowance=50, used=1)
    with pytest.raises(ValueError, match="tenant must not be empty"):
        book.observe("", "chat", hold=10, output_allowance=5, used=1)
    with pytest.raises(ValueError, match="above 0"):
        book.observe(
            "t",
            "chat",
            hold=10,
            output_allowance=5,
            used=1,
            applied_factor=Fraction(0),
        )
    assert book.report() == []


def test_replaying_history_rebuilds_the_same_book() -> None:
    rng = random.Random(5)
    history = [(rng.choice("ab"), _draw(rng)) for _ in range(300)]
    policy = LearningPolicy(enabled=True)
    first, second = EstimateBook(policy), EstimateBook(policy)
    for tenant, output in history:
        _settle(first, output, key=(tenant, "chat"))
        _settle(second, output, key=(tenant, "chat"))

    assert first.report() == second.report()


def test_reconfigure_keeps_the_newest_settlements() -> None:
    book = EstimateBook(LearningPolicy(window=10, min_samples=1))
    for output in [4000] * 5 + [400] * 3:
        _settle(book, output)

    book.reconfigure(LearningPolicy(enabled=True, window=3, min_samples=1))

    assert book.report()[0].window_samples == 3
    assert book.output_factor("t", "chat") == Fraction(400, 4000) * Fraction(11, 10)
