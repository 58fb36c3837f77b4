"""Complexity scoring of a Reserve request, and the multiplier it sets (SPEC 3)."""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import Field, model_validator

from tokenpool.core._model import FrozenModel

# Lowest and highest complexity score (SPEC 3).
MIN_SCORE = 1
MAX_SCORE = 10

# Largest typical output accepted: the bound on every token count (SPEC 12.9).
_MAX_TYPICAL_TOKENS = 2**62


class TaskType(enum.StrEnum):
    """The kinds of call a Reserve request may name; unknown ones are OTHER."""

    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    SUMMARIZATION = "summarization"
    ANALYSIS = "analysis"
    GENERATION = "generation"
    CODE = "code"
    OTHER = "other"


# A normalised factor: an exact decimal from 0 to 1 (a float from TOML is
# read through its shortest text, so 0.1 stays exactly one tenth).
Factor = Annotated[Decimal, Field(ge=0, le=1)]


class ScoringWeights(FrozenModel):
    """Whole percent each factor counts for in the score; they sum to 100."""

    input_length: int = Field(30, ge=0, le=100)
    """Input tokens, against scoring.input_tokens_full."""
    task_type: int = Field(40, ge=0, le=100)
    """The task type's factor in scoring.task_factors."""
    output_requirements: int = Field(20, ge=0, le=100)
    """Output detail and whether the output is structured."""
    context_dependencies: int = Field(10, ge=0, le=100)
    """Context items, against scoring.context_items_full."""

    @model_validator(mode="after")
    def _sum_to_100(self) -> ScoringWeights:
        total = (
            self.input_length
            + self.task_type
            + self.output_requirements
            + self.context_dependencies
        )
        if total != 100:
            raise ValueError(
                f"scoring weights must sum to 100, got {total} "
                f"(input_length={self.input_length}, task_type={self.task_type}, "
                f"output_requirements={self.output_requirements}, "
                f"context_dependencies={self.context_dependencies})"
            )
        return self


class TaskFactors(FrozenModel):
    """How demanding each task type is, from 0 (trivial) to 1 (hardest).

    The defaults rank tasks by how much reasoning and fresh text they need:
    picking a label is near trivial, pulling fields out or condensing text
    is light, weighing evidence or writing new prose is heavy, and code,
    which must be exactly right, is the hardest. An unknown type sits in
    the middle.
    """

    classification: Factor = Decimal("0.1")
    extraction: Factor = Decimal("0.3")
    summarization: Factor = Decimal("0.4")
    analysis: Factor = Decimal("0.7")
    generation: Factor = Decimal("0.8")
    code: Factor = Decimal("1")
    other: Factor = Decimal("0.5")

    def of(self, task: TaskType) -> Decimal:
        """The factor of one task type."""
        factor: Decimal = getattr(self, task.value)
        return factor


class TypicalOutputs(FrozenModel):
    """Output tokens a call of each task type typically produces.

    A label is a few tokens, extracted fields or a summary a few hundred,
    an analysis or fresh text or code around a page.
    """

    classification: int = Field(16, ge=0, le=_MAX_TYPICAL_TOKENS)
    extraction: int = Field(256, ge=0, le=_MAX_TYPICAL_TOKENS)
    summarization: int = Field(384, ge=0, le=_MAX_TYPICAL_TOKENS)
    analysis: int = Field(768, ge=0, le=_MAX_TYPICAL_TOKENS)
    generation: int = Field(1024, ge=0, le=_MAX_TYPICAL_TOKENS)
    code: int = Field(1024, ge=0, le=_MAX_TYPICAL_TOKENS)
    other: int = Field(512, ge=0, le=_MAX_TYPICAL_TOKENS)

    def of(self, task: TaskType) -> int:
        """The typical output of one task type."""
        tokens: int = getattr(self, task.value)
        return tokens


class MultiplierBand(FrozenModel):
    """Scores from min_score up to the next band's get this multiplier."""

    min_score: int = Field(ge=MIN_SCORE, le=MAX_SCORE)
    multiplier: Decimal = Field(ge=1)
    """Exact; scales the task type's typical output."""

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: object) -> object:
        # TOML may spell a band as a pair: [min_score, multiplier].
        if isinstance(data, list | tuple) and len(data) == 2:
            return {"min_score": data[0], "multiplier": data[1]}
        return data


_DEFAULT_BANDS = (
    MultiplierBand(min_score=1, multiplier=Decimal("1.0")),
    MultiplierBand(min_score=4, multiplier=Decimal("1.5")),
    MultiplierBand(min_score=7, multiplier=Decimal("2.0")),
)


class ScoringPolicy(FrozenModel):
    """How requests are scored and how big their output allowance is."""

    weights: ScoringWeights = ScoringWeights()
    input_tokens_full: int = Field(8192, ge=1)
    """Input tokens at which the input-length factor reaches 1."""
    task_factors: TaskFactors = TaskFactors()
    structured_output_share: Factor = Decimal("0.25")
    """Part of the output factor that structured output gives.

    The rest comes from output_detail: 0 (brief) gives none of it, 3
    (exhaustive) all of it, linearly in between.
    """
    context_items_full: int = Field(8, ge=1)
    """Context items at which the context-dependencies factor reaches 1."""
    bands: tuple[MultiplierBand, ...] = _DEFAULT_BANDS
    """Multiplier by score: each band runs from its min_score to the next's."""
    typical_output_tokens: TypicalOutputs = TypicalOutputs()

    @model_validator(mode="after")
    def _bands_cover_all_scores(self) -> ScoringPolicy:
        starts = [band.min_score for band in self.bands]
        if not starts or starts[0] != MIN_SCORE:
            raise ValueError(
                f"scoring bands must start at min_score {MIN_SCORE}, got {starts}"
            )
        if any(low >= high for low, high in itertools.pairwise(starts)):
            raise ValueError(
                f"scoring bands need strictly increasing min_score, got {starts}"
            )
        return self

    def multiplier(self, score: int) -> Decimal:
        """The multiplier of the band a score falls in."""
        return next(
            band.multiplier for band in reversed(self.bands) if band.min_score <= score
        )


@dataclass(frozen=True, slots=True)
class Complexity:
    """A request's complexity score and the multiplier its band sets."""

    score: int
    """From 1 to 10."""
    multiplier: Decimal
    task_type: TaskType
    """The task type scored: OTHER when the request's was unknown or empty."""
    unknown_task_type: bool
    """The request named no task type, or one that is not known."""
    weighted_sum: Fraction
    """The factors' weighted sum, from 0 to 1, before rounding."""


def score_call(
    policy: ScoringPolicy,
    *,
    input_tokens: int = 0,
    task_type: str = "",
    output_detail: int = 0,
    structured_output: bool = False,
    context_items: int = 0,
) -> Complexity:
    """Scores a call from 1 to 10, exactly, and picks its multiplier.

    The score is 1 + 9 x the weighted sum of the four factors, rounded half
    up. Counts below 0 count as 0 and output_detail is held to 0..3, so any
    input gives a score.

    Args:
        policy: weights, normalisation and bands.
        input_tokens: the call's input, in tokens.
        task_type: a TaskType value, in any case; anything else is OTHER.
        output_detail: 0 (brief) to 3 (exhaustive).
        structured_output: the output must follow a schema.
        context_items: prior turns or documents the call refers to.
    """
    task, unknown = _task_of(task_type)
    structured = Fraction(policy.structured_output_share)
    detail = Fraction(min(max(output_detail, 0), 3), 3)
    input_factor = _saturating(input_tokens, policy.input_tokens_full)
    task_factor = Fraction(policy.task_factors.of(task))
    output_factor = (1 - structured) * detail + (structured if structured_output else 0)
    context_factor = _saturating(context_items, policy.context_items_full)

    weights = policy.weights
    weighted = (
        weights.input_length * input_factor
        + weights.task_type * task_factor
        + weights.output_requirements * output_factor
        + weights.context_dependencies * context_factor
    ) / 100
    score = MIN_SCORE + math.floor((MAX_SCORE - MIN_SCORE) * weighted + Fraction(1, 2))

    return Complexity(score, policy.multiplier(score), task, unknown, weighted)


def _task_of(name: str) -> tuple[TaskType, bool]:
    """The task type a request names, and whether it named one we do not know.

    An empty name is simply `other`: only a name we cannot read is counted.
    """
    name = name.strip().lower()
    if not name:
        return TaskType.OTHER, False
    try:
        return TaskType(name), False
    except ValueError:
        return TaskType.OTHER, True


def _saturating(count: int, full: int) -> Fraction:
    return min(Fraction(max(count, 0), full), Fraction(1))
