"""What a replay run saw: each row's outcome, call latencies, the daemon's figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenpool_client import Reservation
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool.core import TaskType, TenantPolicy
from tokenpool.replay._plan import Call


@dataclass(slots=True)
class RowOutcome:
    """What became of one row's Reserve and Settle."""

    call: Call
    granted: bool = False
    reason: str = ""
    """Why the Reserve was refused: the daemon's reason, else the status."""
    waited_ms: int = 0
    """Daemon-reported wait of a grant, in the daemon's clock ms."""
    waited_then_refused: bool = False
    hold: int = 0
    requested: int = 0
    """Tokens a refused Reserve asked for, as the daemon's refusal said."""
    complexity_score: int = 0
    """The daemon's score of a granted call, 1 to 10."""
    pool: str = ""
    sources: tuple[tuple[str, int], ...] = ()
    used: int | None = None
    """Usage settled; None until a Settle succeeded."""
    settle_error: str = ""
    """The status of a failed Settle, e.g. FAILED_PRECONDITION."""


class Tally:
    """Collects outcomes and call latencies while a replay runs."""

    def __init__(self) -> None:
        self.outcomes: dict[int, RowOutcome] = {}
        self.latencies_ms: list[float] = []
        self.done = 0
        self.granted_count = 0
        self.refused_count = 0
        self.waited_count = 0

    def granted(self, call: Call, reservation: Reservation, latency_s: float) -> None:
        """Records a granted Reserve and its latency."""
        self.granted_hold(
            call,
            waited_ms=reservation.waited_ms,
            hold=reservation.granted_tokens,
            complexity_score=reservation.complexity_score,
            pool=reservation.pool,
            sources=tuple((draw.pool, draw.tokens) for draw in reservation.sources),
            latency_s=latency_s,
        )

    def granted_hold(
        self,
        call: Call,
        *,
        waited_ms: int,
        hold: int,
        complexity_score: int,
        pool: str,
        sources: tuple[tuple[str, int], ...],
        latency_s: float,
    ) -> None:
        """Records a grant as the engine made it (what-if replay: no wire)."""
        self.outcomes[call.index] = RowOutcome(
            call,
            granted=True,
            waited_ms=waited_ms,
            hold=hold,
            complexity_score=complexity_score,
            pool=pool,
            sources=sources,
        )
        self.latencies_ms.append(latency_s * 1000)
        self.granted_count += 1
        self.waited_count += waited_ms > 0

    def refused(
        self,
        call: Call,
        reason: str,
        latency_s: float,
        *,
        after_wait: bool,
        requested: int = 0,
    ) -> None:
        """Records a refused Reserve; the row is done."""
        self.outcomes[call.index] = RowOutcome(
            call, reason=reason, waited_then_refused=after_wait, requested=requested
        )
        self.latencies_ms.append(latency_s * 1000)
        self.refused_count += 1
        self.done += 1

    def settled(self, call: Call, latency_s: float, error: str = "") -> None:
        """Records a Settle (or its failure); the row is done."""
        outcome = self.outcomes[call.index]
        if error:
            outcome.settle_error = error
        else:
            outcome.used = call.used_tokens
        self.latencies_ms.append(latency_s * 1000)
        self.done += 1


@dataclass(frozen=True, slots=True)
class RunFacts:
    """How a replay ran, and the daemon's figures before and after it."""

    trace: str
    budget: str
    mode: str
    """One of simulated, paced or flood."""
    address: str
    """The daemon's address; "in-process" marks one replay started."""
    speed: float | None
    """Trace seconds per real second; None at --speed max."""
    seed: int
    skew: float
    tenants: Sequence[TenantPolicy]
    """The tenants drawn from, with the tier and weight the daemon gave them."""
    task_types: Mapping[str, TaskType]
    """The task type each tenant's Reserves named."""
    before: pb.BudgetStatus
    after: pb.BudgetStatus
    charged_before: int
    charged_after: int
    open_reservations_at_end: int
    real_seconds: float
    daemon_seconds: float
    """Time the daemon's clock moved during the run (trace time in-process)."""
    trace_seconds: float | None
    """Trace time the run covered; None when a flood ignores arrivals."""
    queueing: str | None = None
    """The in-process daemon's queueing (fair or fifo); None for another's."""
    learning: bool | None = None
    """Whether the in-process daemon corrected allowances; None for another's."""
    decisions: tuple[Mapping[str, object], ...] = ()
    """The autoscaler's decisions during the run, as its ledger entries say."""
    start_wall_ns: int = 0
    """Where the daemon's clock started: the first row's arrival (0: unknown)."""


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 by linear interpolation; zeros when empty."""
    ordered = sorted(values)
    result: dict[str, float] = {}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        if not ordered:
            result[name] = 0.0
            continue
        at = (len(ordered) - 1) * q
        low, high = math.floor(at), math.ceil(at)
        value = ordered[low] + (ordered[high] - ordered[low]) * (at - low)
        result[name] = round(value, 3)
    return result
