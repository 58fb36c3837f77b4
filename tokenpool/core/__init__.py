"""The scheduler core: every rule tokenpool applies, over plain data.

Nothing here does I/O or knows about gRPC, SQLite or telemetry; callers
pass the clock's readings in.
"""

from __future__ import annotations

from tokenpool.core._allocation import (
    Draws,
    Outcome,
    OverrunCharge,
    Reach,
    account,
    burst_limit,
    merge,
    plan_draws,
    plan_overrun,
    plan_refund,
    subtract,
    usage_tokens,
)
from tokenpool.core._bucket import TokenBucket
from tokenpool.core._learning import (
    FOLDED_KEY,
    EstimateBook,
    EstimateRow,
    LearningPolicy,
    corrected_allowance,
)
from tokenpool.core._policy import (
    MAX_TOKENS,
    BudgetPolicy,
    InputLimits,
    Shares,
    TenantPolicy,
)
from tokenpool.core._pools import DEFAULT_SHARES, POOL_ORDER, Pool, Tier, split_capacity
from tokenpool.core._reservation import Reservation, State
from tokenpool.core._scoring import (
    Complexity,
    MultiplierBand,
    ScoringPolicy,
    ScoringWeights,
    TaskFactors,
    TaskType,
    TypicalOutputs,
    score_call,
)
from tokenpool.core._sizing import CallShape, Sizing, size_call
from tokenpool.core._validation import (
    check_count,
    check_labels,
    check_name,
    check_range,
    check_text,
    check_total,
)

__all__ = [
    "DEFAULT_SHARES",
    "FOLDED_KEY",
    "MAX_TOKENS",
    "POOL_ORDER",
    "BudgetPolicy",
    "CallShape",
    "Complexity",
    "Draws",
    "EstimateBook",
    "EstimateRow",
    "InputLimits",
    "LearningPolicy",
    "MultiplierBand",
    "Outcome",
    "OverrunCharge",
    "Pool",
    "Reach",
    "Reservation",
    "ScoringPolicy",
    "ScoringWeights",
    "Shares",
    "Sizing",
    "State",
    "TaskFactors",
    "TaskType",
    "TenantPolicy",
    "Tier",
    "TokenBucket",
    "TypicalOutputs",
    "account",
    "burst_limit",
    "check_count",
    "check_labels",
    "check_name",
    "check_range",
    "check_text",
    "check_total",
    "corrected_allowance",
    "merge",
    "plan_draws",
    "plan_overrun",
    "plan_refund",
    "score_call",
    "size_call",
    "split_capacity",
    "subtract",
    "usage_tokens",
]
