from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tokenpool.core import (
    CallShape,
    Complexity,
    MultiplierBand,
    ScoringPolicy,
    ScoringWeights,
    TaskFactors,
    TaskType,
    TypicalOutputs,
    score_call,
)

# Task factors of 0 and 1, so one factor can be switched off and on alone.
_ZERO_ONE_TASKS = {"classification": 0, "code": 1}


def test_defaults_span_the_whole_range() -> None:
    policy = ScoringPolicy()

    lightest = score_call(policy, task_type="classification")
    heaviest = score_call(
        policy,
        input_tokens=8192,
        task_type="code",
        output_detail=3,
        structured_output=True,
        context_items=8,
    )

    assert (lightest.score, lightest.multiplier) == (1, Decimal("1.0"))
    assert (heaviest.score, heaviest.multiplier) == (10, Decimal("2.0"))
    assert heaviest.weighted_sum == 1


def test_score_3_and_4_meet_at_a_half_rounded_up() -> None:
    # 9 x 30 % x 25/27 = 2.5 exactly: a float sum or banker's rounding gives 3.
    policy = ScoringPolicy(input_tokens_full=27, task_factors=_ZERO_ONE_TASKS)

    below = score_call(policy, input_tokens=24, task_type="classification")
    edge = score_call(policy, input_tokens=25, task_type="classification")

    assert 9 * edge.weighted_sum == Fraction(5, 2)
    assert (below.score, below.multiplier) == (3, Decimal("1.0"))
    assert (edge.score, edge.multiplier) == (4, Decimal("1.5"))


def test_score_6_and_7_meet_at_a_half_rounded_up() -> None:
    # Code gives 9 x 40 % = 3.6; 19 of 27 input tokens add 1.9, so 5.5.
    policy = ScoringPolicy(input_tokens_full=27)

    below = score_call(policy, input_tokens=18, task_type="code")
    edge = score_call(policy, input_tokens=19, task_type="code")

    assert 9 * edge.weighted_sum == Fraction(11, 2)
    assert (below.score, below.multiplier) == (6, Decimal("1.5"))
    assert (edge.score, edge.multiplier) == (7, Decimal("2.0"))


def test_decimal_config_from_toml_floats_stays_exact() -> None:
    # 9 x (40 % x 0.7 + 20 % x 0.85 + 10 % x 4/8) is 4.5; summed in floats it
    # comes to 4.4999... and would round down to a score of 5.
    policy = ScoringPolicy.model_validate({"structured_output_share": 0.85})

    scored = score_call(
        policy, task_type="analysis", structured_output=True, context_items=4
    )

    assert policy.structured_output_share == Decimal("0.85")
    assert 9 * scored.weighted_sum == Fraction(9, 2)
    assert scored.score == 6


def _score(policy: ScoringPolicy, shape: CallShape) -> Complexity:
    return score_call(
        policy,
        input_tokens=shape.input_tokens,
        task_type=shape.task_type,
        output_detail=shape.output_detail,
        structured_output=shape.structured_output,
        context_items=shape.context_items,
    )


# Every factor at 0 (with _ZERO_ONE_TASKS), then each one alone at 1.
_ALL_ZERO = CallShape(task_type="classification")
_ONE_AT_1 = {
    "input_length": replace(_ALL_ZERO, input_tokens=8192),
    "task_type": replace(_ALL_ZERO, task_type="code"),
    "output_requirements": replace(_ALL_ZERO, output_detail=3, structured_output=True),
    "context_dependencies": replace(_ALL_ZERO, context_items=8),
}


@pytest.mark.parametrize(
    ("factor", "shift"),
    [
        ("input_length", 3),
        ("task_type", 4),
        ("output_requirements", 2),
        ("context_dependencies", 1),
    ],
)
def test_each_factor_moves_score_by_its_weight(factor: str, shift: int) -> None:
    # 9 x 30 % = 2.7, 9 x 40 % = 3.6, 9 x 20 % = 1.8, 9 x 10 % = 0.9, rounded.
    policy = ScoringPolicy(task_factors=_ZERO_ONE_TASKS)

    base = _score(policy, _ALL_ZERO)
    moved = _score(policy, _ONE_AT_1[factor])

    assert base.score == 1
    assert moved.score - base.score == shift


@pytest.mark.parametrize("factor", sorted(_ONE_AT_1))
def test_a_factor_weighted_0_does_not_count(factor: str) -> None:
    weights = {name: 25 for name in _ONE_AT_1}
    weights[factor] = 0
    weights[next(name for name in sorted(_ONE_AT_1) if name != factor)] = 50
    policy = ScoringPolicy.model_validate(
        {"weights": weights, "task_factors": _ZERO_ONE_TASKS}
    )

    assert _score(policy, _ONE_AT_1[factor]).score == 1


def test_custom_weights_change_the_score() -> None:
    policy = ScoringPolicy(
        weights=ScoringWeights(
            input_length=0, task_type=100, output_requirements=0, context_dependencies=0
        )
    )

    assert score_call(policy, task_type="code", input_tokens=8192).score == 10
    # 9 x 0.4 = 3.6 rounds to 4.
    assert score_call(policy, task_type="summarization").score == 5


def test_weights_not_summing_to_100_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"weights\n.*must sum to 100, got 90"):
        ScoringPolicy.model_validate({"weights": {"context_dependencies": 0}})


@pytest.mark.parametrize(
    ("bands", "match"),
    [
        ([[2, 1.0], [7, 2.0]], "must start at min_score 1"),
        ([], "must start at min_score 1"),
        ([[1, 1.0], [5, 1.5], [5, 2.0]], "strictly increasing"),
        ([[1, 1.0], [4, 0.5]], "greater than or equal to 1"),
        ([[1, 1.0], [11, 2.0]], "less than or equal to 10"),
    ],
)
def test_bad_bands_are_refused(bands: list[list[float]], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ScoringPolicy.model_validate({"bands": bands})


def test_bands_are_configurable_as_pairs_or_tables() -> None:
    policy = ScoringPolicy.model_validate(
        {"bands": [[1, "1"], {"min_score": 2, "multiplier": 1.25}, [9, 3]]}
    )

    assert policy.bands[1] == MultiplierBand(min_score=2, multiplier=Decimal("1.25"))
    assert [policy.multiplier(score) for score in (1, 2, 8, 9, 10)] == [
        Decimal(1),
        Decimal("1.25"),
        Decimal("1.25"),
        Decimal(3),
        Decimal(3),
    ]


def test_factors_outside_0_to_1_are_refused() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        TaskFactors.model_validate({"code": "1.5"})
    with pytest.raises(ValidationError, match="finite number"):
        ScoringPolicy.model_validate({"structured_output_share": "NaN"})


@pytest.mark.parametrize("name", ["", "  "])
def test_no_task_type_is_other_and_not_counted_as_unknown(name: str) -> None:
    scored = score_call(ScoringPolicy(), task_type=name)

    assert (scored.task_type, scored.unknown_task_type) == (TaskType.OTHER, False)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="codes"):
        TypicalOutputs.model_validate({"codes": 10})


@pytest.mark.parametrize("name", ["poetry", "Poëtry "])
def test_unknown_task_type_is_scored_as_other(name: str) -> None:
    policy = ScoringPolicy()

    unknown = score_call(policy, task_type=name)
    other = score_call(policy, task_type="other")

    assert (unknown.task_type, unknown.unknown_task_type) == (TaskType.OTHER, True)
    assert (other.task_type, other.unknown_task_type) == (TaskType.OTHER, False)
    assert unknown.score == other.score


def test_task_type_ignores_case_and_spaces() -> None:
    scored = score_call(ScoringPolicy(), task_type=" Code ")

    assert (scored.task_type, scored.unknown_task_type) == (TaskType.CODE, False)


def test_every_task_type_has_a_factor_and_typical_output() -> None:
    policy = ScoringPolicy()

    for task in TaskType:
        assert 0 <= policy.task_factors.of(task) <= 1
        assert policy.typical_output_tokens.of(task) > 0


# One step up in each factor's input, for the monotonicity property.
_GROW: dict[str, Callable[[CallShape], CallShape]] = {
    "input_tokens": lambda shape: replace(shape, input_tokens=shape.input_tokens + 1),
    "output_detail": lambda shape: replace(
        shape, output_detail=shape.output_detail + 1
    ),
    "structured_output": lambda shape: replace(shape, structured_output=True),
    "context_items": lambda shape: replace(
        shape, context_items=shape.context_items + 1
    ),
}

_SHAPES = st.builds(
    CallShape,
    input_tokens=st.integers(min_value=-10, max_value=20_000),
    task_type=st.sampled_from([*TaskType, "unknown", ""]),
    output_detail=st.integers(min_value=-1, max_value=4),
    structured_output=st.booleans(),
    context_items=st.integers(min_value=-1, max_value=20),
)


@st.composite
def _weights(draw: st.DrawFn) -> ScoringWeights:
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=3, max_size=3)))
    parts = [high - low for low, high in zip([0, *cuts], [*cuts, 100], strict=True)]
    return ScoringWeights(
        input_length=parts[0],
        task_type=parts[1],
        output_requirements=parts[2],
        context_dependencies=parts[3],
    )


@given(weights=_weights(), shape=_SHAPES, grow=st.sampled_from(sorted(_GROW)))
def test_score_is_in_range_and_monotone(
    weights: ScoringWeights, shape: CallShape, grow: str
) -> None:
    policy = ScoringPolicy(weights=weights)

    scored = _score(policy, shape)
    more = _score(policy, _GROW[grow](shape))

    assert 1 <= scored.score <= more.score <= 10
    assert scored.multiplier <= more.multiplier


# Each factor alone at 1, the others at 0 (with _ZERO_ONE_TASKS): the
# weighted sum is exactly the factor's weight, 30/40/20/10 % (SPEC 3).
@pytest.mark.parametrize(
    ("factor", "weight", "score"),
    [
        ("input_length", Fraction(30, 100), 4),  # 1 + round(2.7)
        ("task_type", Fraction(40, 100), 5),  # 1 + round(3.6)
        ("output_requirements", Fraction(20, 100), 3),  # 1 + round(1.8)
        ("context_dependencies", Fraction(10, 100), 2),  # 1 + round(0.9)
    ],
)
def test_each_factor_weighs_exactly_its_percent(
    factor: str, weight: Fraction, score: int
) -> None:
    policy = ScoringPolicy(task_factors=_ZERO_ONE_TASKS)

    scored = _score(policy, _ONE_AT_1[factor])

    assert scored.weighted_sum == weight
    assert scored.score == score


# Each factor pushed to a band edge by input tokens (of 27, so each token is
# exactly 9 x 30 % / 27 = 0.1): at the edge 9 x the sum is exactly 2.5 or
# 5.5 and rounds up into the next band; a token less, it stays below. A
# weight one percent off would move the sum off the half.
_EDGES = [
    # 9 x 20 % = 1.8 from output, 0.7 from 7 input tokens: 2.5.
    ("output_requirements", {"output_detail": 3, "structured_output": True}, 7, 3),
    # 9 x 10 % = 0.9 from context, 1.6 from 16 input tokens: 2.5.
    ("context_dependencies", {"context_items": 8}, 16, 3),
    # 9 x 40 % x 0.25 = 0.9 from a task factor of 0.25, 1.6 from input: 2.5.
    ("task_type", {"task_type": "extraction"}, 16, 3),
    # 9 x 40 % = 3.6 from code, 1.9 from 19 input tokens: 5.5.
    ("task_type", {"task_type": "code"}, 19, 6),
    # 3.6 (code) + 1.8 (output) + 0.1 (1 of 9 context items): 5.5, no input.
    ("output_and_context", {"task_type": "code", "output_detail": 3}, 0, 6),
]


@pytest.mark.parametrize(("factor", "shape", "input_tokens", "below"), _EDGES)
def test_band_edges_fall_exactly_on_each_factors_weight(
    factor: str, shape: dict[str, Any], input_tokens: int, below: int
) -> None:
    policy = ScoringPolicy.model_validate(
        {
            "input_tokens_full": 27,
            "context_items_full": 9 if factor == "output_and_context" else 8,
            "task_factors": {"classification": 0, "extraction": "0.25", "code": 1},
        }
    )
    call = CallShape(task_type="classification", input_tokens=input_tokens)
    call = replace(call, **shape)
    if factor == "output_and_context":
        edge_call = replace(call, structured_output=True, context_items=1)
        below_call = replace(call, structured_output=True, context_items=0)
    else:
        edge_call, below_call = call, replace(call, input_tokens=input_tokens - 1)

    edge, under = _score(policy, edge_call), _score(policy, below_call)

    assert 9 * edge.weighted_sum == below - Fraction(1, 2)
    assert 9 * edge.weighted_sum - 9 * under.weighted_sum == Fraction(1, 10)
    assert (under.score, edge.score) == (below, below + 1)
    assert under.multiplier < edge.multiplier
    expected = {3: (Decimal("1.0"), Decimal("1.5")), 6: (Decimal("1.5"), Decimal(2))}
    assert (under.multiplier, edge.multiplier) == expected[below]
