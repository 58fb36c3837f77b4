from __future__ import annotations

from fractions import Fraction

import pytest

from tokenpool import InvalidFieldError
from tokenpool.core import BudgetPolicy, CallShape, Sizing, TaskType, size_call


def _policy(**scoring: object) -> BudgetPolicy:
    return BudgetPolicy.model_validate(
        {"name": "b", "capacity_tokens": 1000, "scoring": scoring}
    )


def test_hold_is_input_plus_typical_output() -> None:
    sizing = size_call(CallShape(input_tokens=100, task_type="extraction"), _policy())

    # Score 1 + round(9 x (0.3 x 100/8192 + 0.4 x 0.3)) = 2: multiplier 1.0.
    assert sizing == Sizing(
        tokens=356,
        complexity_score=2,
        multiplier=1.0,
        input_tokens=100,
        output_allowance=256,
        task_type=TaskType.EXTRACTION,
        unknown_task_type=False,
    )


def test_allowance_scales_by_band_multiplier() -> None:
    shape = CallShape(input_tokens=8192, task_type="code", output_detail=3)

    sizing = size_call(shape, _policy())

    # 9 x (0.3 + 0.4 + 0.2 x 0.75) = 7.65: score 9, band x2.0.
    assert (sizing.complexity_score, sizing.multiplier) == (9, 2.0)
    assert sizing.output_allowance == 2048
    assert sizing.tokens == 8192 + 2048


def test_allowance_is_rounded_up() -> None:
    policy = _policy(typical_output_tokens={"summarization": 101})
    # 9 x (0.4 x 0.4 + 0.2 x 0.75 + 0.1 x 1) = 3.69: score 5, band x1.5.
    shape = CallShape(task_type="summarization", output_detail=3, context_items=8)

    sizing = size_call(shape, policy)

    assert sizing.multiplier == 1.5
    assert sizing.output_allowance == 152


def test_allowance_is_capped_by_max_output_tokens() -> None:
    policy = _policy()

    capped = size_call(
        CallShape(input_tokens=10, max_output_tokens=300, task_type="code"), policy
    )
    roomy = size_call(
        CallShape(input_tokens=10, max_output_tokens=5000, task_type="code"), policy
    )

    # Score 5, band x1.5: 1024 x 1.5 = 1536 fits under 5000 but not under 300.
    assert (capped.output_allowance, capped.tokens) == (300, 310)
    assert (roomy.output_allowance, roomy.tokens) == (1536, 1546)


def test_max_output_tokens_without_task_caps_other() -> None:
    policy = _policy()

    small = size_call(CallShape(input_tokens=100, max_output_tokens=50), policy)
    large = size_call(CallShape(input_tokens=100, max_output_tokens=9999), policy)
    uncapped = size_call(CallShape(input_tokens=100), policy)

    assert (small.tokens, small.task_type) == (150, TaskType.OTHER)
    assert large.tokens == uncapped.tokens == 100 + 512


def test_explicit_tokens_are_the_hold_but_still_scored() -> None:
    shape = CallShape(tokens=77, input_tokens=8192, task_type="code", output_detail=3)

    sizing = size_call(shape, _policy(), output_factor=Fraction(1, 3))

    assert sizing == Sizing(77, 9, 2.0, 0, 0, TaskType.CODE, False)


def test_input_chars_convert_rounding_up() -> None:
    policy = BudgetPolicy(name="b", capacity_tokens=1000, chars_per_token=4)

    sizing = size_call(CallShape(input_chars=10, max_output_tokens=1), policy)
    explicit = size_call(
        CallShape(input_tokens=7, input_chars=10, max_output_tokens=1), policy
    )

    assert (sizing.input_tokens, sizing.tokens) == (3, 4)
    assert explicit.input_tokens == 7


def test_input_chars_feed_the_score() -> None:
    shape = CallShape(tokens=1, input_chars=4 * 8192, task_type="code")

    # The input factor is 1 only if the characters were converted: 9 x 0.7.
    assert size_call(shape, _policy()).complexity_score == 7


def test_task_type_alone_is_enough_to_size() -> None:
    sizing = size_call(CallShape(task_type="classification"), _policy())

    assert (sizing.input_tokens, sizing.output_allowance) == (0, 16)


def test_unknown_task_type_is_sized_as_other_and_flagged() -> None:
    sizing = size_call(CallShape(input_tokens=10, task_type="poetry"), _policy())

    assert (sizing.task_type, sizing.unknown_task_type) == (TaskType.OTHER, True)
    assert sizing.output_allowance == 512


@pytest.mark.parametrize(
    "shape",
    [
        CallShape(),
        CallShape(task_type="  ", output_detail=3, context_items=4),
        CallShape(tokens=-5, input_tokens=-1),
    ],
)
def test_nothing_to_size_is_refused(shape: CallShape) -> None:
    with pytest.raises(InvalidFieldError, match="nothing to size") as caught:
        size_call(shape, _policy())

    assert caught.value.field == "tokens"
    assert "task_type" in caught.value.reason


def test_output_factor_corrects_the_capped_allowance_rounding_up() -> None:
    policy = _policy()
    shape = CallShape(input_tokens=10, task_type="extraction")
    capped_shape = CallShape(
        input_tokens=10, task_type="extraction", max_output_tokens=200
    )

    # 256 x 1.0 x 1/3 = 85.33... is held as 86.
    third = size_call(shape, policy, output_factor=Fraction(1, 3))
    # The cap comes first: 200 x 1/2 = 100.
    capped = size_call(capped_shape, policy, output_factor=Fraction(1, 2))

    assert (third.tokens, third.output_allowance) == (10 + 86, 256)
    assert third.output_factor == Fraction(1, 3)
    assert (capped.tokens, capped.output_allowance) == (10 + 100, 200)


@pytest.mark.parametrize("factor", [Fraction(-1), Fraction(0)])
def test_output_factor_of_zero_or_less_is_a_bug(factor: Fraction) -> None:
    with pytest.raises(ValueError, match="factor"):
        size_call(CallShape(input_tokens=1), _policy(), output_factor=factor)


def test_a_raised_allowance_stops_at_max_output_tokens() -> None:
    shape = CallShape(input_tokens=10, task_type="extraction", max_output_tokens=300)

    raised = size_call(shape, _policy(), output_factor=Fraction(3))

    # 256 x 3 = 768, but the caller allows 300: the factor applied is 300/256.
    assert (raised.tokens, raised.output_allowance) == (10 + 300, 256)
    assert raised.output_factor == Fraction(300, 256)


def test_sizing_still_builds_from_three_values() -> None:
    sizing = Sizing(120, 5, 1.5)

    assert (sizing.input_tokens, sizing.output_allowance) == (0, 0)
    assert (sizing.task_type, sizing.unknown_task_type) == (TaskType.OTHER, False)
