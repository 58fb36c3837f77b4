"""The autoscaling controller: readings of a budget in, capacity decisions out.

The controller is plain data and arithmetic. Every interval the engine hands
it a `Reading` of one budget (what each pool was charged, who waited and for
how long, what was refused); it answers with the decisions that reading
calls for, judged against the `AutoscalePolicy`:

- *grow*: the budget's utilisation reached the high watermark, or its p95
  wait the wait target, or requests were refused for want of tokens, in
  `grow_after_intervals` intervals in a row; capacity grows by one step, up
  to the maximum;
- *shrink*: utilisation stayed at or below the low watermark, with nobody
  waiting and nothing refused, for `shrink_after_intervals` intervals; it
  shrinks by one step, down to the minimum, and only when the last
  interval's use would still sit below the high watermark at the smaller
  capacity (so a shrink never sets up the next grow);
- *shift*: one pool starved (at the high watermark, or with waiters) and
  another idle (at the low watermark, nobody waiting) for
  `shift_after_intervals` intervals; share points move from the idle pool
  to the starved one, inside both pools' share bounds;
- *provider_cut*: a settle said the provider rate-limited the call (or
  reported a limit below the capacity): capacity drops at once, to the
  reported limit or by `provider_cut_percent`;
- *recover*: after a cut, once no settle has reported a rate limit for
  `provider_recover_intervals` intervals, capacity grows back one step at a
  time to what it was before the cut.

Grows and shrinks are separated by the cooldown, and so are shifts; a cut
ignores it (the provider has spoken). The clock is passed in: the same
readings always give the same decisions, in a test, a replay or a daemon.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import Field, model_validator

from tokenpool.core._model import FrozenModel
from tokenpool.core._pools import POOL_ORDER, Pool

_NS_PER_S = 1_000_000_000


class ShareBounds(FrozenModel):
    """The share range, in percent, each pool may be shifted within."""

    basic: tuple[int, int] = (60, 70)
    priority: tuple[int, int] = (20, 25)
    burst: tuple[int, int] = (10, 15)

    @model_validator(mode="after")
    def _ordered(self) -> ShareBounds:
        for pool in POOL_ORDER:
            low, high = self.of(pool)
            if not 0 <= low <= high <= 100:
                raise ValueError(
                    f"{pool.value} bounds ({low}, {high}) must be two percents "
                    "from 0 to 100, the lower first"
                )
        return self

    def of(self, pool: Pool) -> tuple[int, int]:
        """The (lowest, highest) share of one pool."""
        bounds: tuple[int, int] = getattr(self, pool.value)
        return bounds


class AutoscalePolicy(FrozenModel):
    """When and how far the autoscaler changes a budget (SPEC 6).

    The defaults suit the bundled hour of traffic (deploy/demo): they grow
    the budget through its busiest eight minutes and bring it back after,
    without flapping (docs/operations.md shows the run).
    """

    enabled: bool = False
    """Whether the controller watches this budget at all."""
    mode: Literal["act", "recommend"] = "act"
    """act: decisions change the budget; recommend: they are only reported."""
    interval_seconds: int = Field(15, ge=1, le=86_400)
    """Length of one measured interval, on the daemon's clock."""
    high_watermark_percent: int = Field(90, ge=1, le=1000)
    """Utilisation over an interval at or above this is high demand."""
    low_watermark_percent: int = Field(60, ge=0, le=1000)
    """Utilisation over an interval at or below this (nobody waiting) is quiet."""
    wait_target_ms: int = Field(1000, ge=0)
    """A p95 wait above this in an interval is high demand too (0: waits ignored)."""
    grow_after_intervals: int = Field(2, ge=1, le=1000)
    """High demand in this many intervals in a row grows capacity."""
    shrink_after_intervals: int = Field(8, ge=1, le=1000)
    """Quiet in this many intervals in a row shrinks it."""
    step_percent: int = Field(10, ge=1, le=100)
    """One grow or shrink step, in percent of the capacity before it."""
    step_tokens: int | None = Field(None, ge=1)
    """A fixed step in tokens instead of step_percent."""
    cooldown_seconds: int = Field(60, ge=0)
    """Least time between two capacity changes (and between two shifts)."""
    shift_after_intervals: int = Field(2, ge=1, le=1000)
    """A pool starved while another is idle this many intervals shifts shares."""
    shift_percent: int = Field(2, ge=0, le=100)
    """Share points one shift moves (0: shares are never shifted)."""
    share_bounds: ShareBounds = ShareBounds()
    """Bounds that limit the shifts (an admin may set any split)."""
    provider_cut_percent: int = Field(20, ge=1, le=100)
    """Cut on a provider rate-limit signal that carries no limit."""
    provider_recover_intervals: int = Field(4, ge=1, le=1000)
    """Intervals without a rate-limit signal before each step back up."""

    @model_validator(mode="after")
    def _watermarks(self) -> AutoscalePolicy:
        if self.low_watermark_percent >= self.high_watermark_percent:
            raise ValueError(
                f"low_watermark_percent ({self.low_watermark_percent}) must be "
                f"below high_watermark_percent ({self.high_watermark_percent})"
            )
        return self

    @property
    def interval_ns(self) -> int:
        """One interval in nanoseconds."""
        return self.interval_seconds * _NS_PER_S


class Action(enum.StrEnum):
    """What one decision does to a budget."""

    GROW = "grow"
    SHRINK = "shrink"
    SHIFT = "shift"
    PROVIDER_CUT = "provider_cut"
    RECOVER = "recover"


@dataclass(frozen=True, slots=True)
class PoolReading:
    """One pool over one interval."""

    pool: Pool
    capacity: int
    charged: int
    """Tokens charged to the pool during the interval."""
    offered: int
    """Tokens its capacity made available: capacity x interval / window."""
    waiting: int = 0
    """Requests in its queue when the interval ended."""

    @property
    def utilisation(self) -> float:
        """Charged over offered; 0 for a pool of capacity 0 (SPEC 2)."""
        return self.charged / self.offered if self.offered > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    """What one budget did over one interval: the controller's input."""

    budget: str
    at_ns: int
    """When the interval ended (the daemon's monotonic clock)."""
    pools: tuple[PoolReading, ...]
    waits_ms: tuple[int, ...] = ()
    """Waits that ended in the interval, and the ages of those still waiting."""
    refusals: int = 0
    """Requests refused for want of tokens (pool exhausted, queue full)."""
    provider_limited: int = 0
    """Settles in the interval that reported a provider rate limit."""

    @property
    def capacity(self) -> int:
        """The budget's capacity during the interval."""
        return sum(pool.capacity for pool in self.pools)

    @property
    def charged(self) -> int:
        """Tokens charged to every pool during the interval."""
        return sum(pool.charged for pool in self.pools)

    @property
    def utilisation(self) -> float:
        """The whole budget's charged over offered tokens."""
        offered = sum(pool.offered for pool in self.pools)
        return self.charged / offered if offered > 0 else 0.0

    @property
    def waiting(self) -> int:
        """Requests queued when the interval ended, over every pool."""
        return sum(pool.waiting for pool in self.pools)

    @property
    def wait_p95_ms(self) -> int:
        """The 95th percentile of `waits_ms` (nearest rank); 0 when none."""
        if not self.waits_ms:
            return 0
        ordered = sorted(self.waits_ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def pool(self, pool: Pool) -> PoolReading:
        """One pool's reading."""
        return next(reading for reading in self.pools if reading.pool is pool)

    def figures(self) -> dict[str, object]:
        """The reading as the fields a decision's record carries."""
        return {
            "utilisation": round(self.utilisation, 4),
            "wait_p95_ms": self.wait_p95_ms,
            "waiting": self.waiting,
            "refusals": self.refusals,
            "charged_tokens": self.charged,
            "pool_utilisation": {
                reading.pool.value: round(reading.utilisation, 4)
                for reading in self.pools
            },
        }


@dataclass(frozen=True, slots=True)
class ProviderSignal:
    """What a settle said about the provider's own limit."""

    rate_limited: bool
    remaining_tokens: int = 0
    limit_tokens: int = 0
    """The provider's limit, taken as tokens per budget window; 0: not said."""


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """One change the controller decided (or recommends), and why."""

    budget: str
    action: Action
    reason: str
    """A sentence naming the figures and thresholds that decided it."""
    at_ns: int
    capacity_from: int
    capacity_to: int
    shares_from: Mapping[Pool, int]
    shares_to: Mapping[Pool, int]
    figures: Mapping[str, object] = field(default_factory=dict)
    """The reading (or signal) behind it, as record fields."""

    def fields(self) -> dict[str, object]:
        """The decision under the shared field names (logs, spans, ledger)."""
        return {
            "budget": self.budget,
            "action": self.action.value,
            "reason": self.reason,
            "capacity_from": self.capacity_from,
            "capacity_to": self.capacity_to,
            "shares_from": ",".join(
                f"{pool.value}:{self.shares_from[pool]}" for pool in POOL_ORDER
            ),
            "shares_to": ",".join(
                f"{pool.value}:{self.shares_to[pool]}" for pool in POOL_ORDER
            ),
        }


@dataclass(frozen=True, slots=True)
class Bounds:
    """The capacities the controller stays within, and the budget as it is now."""

    capacity: int
    minimum: int
    maximum: int
    shares: Mapping[Pool, int]


@dataclass(slots=True)
class _Streaks:
    """How many intervals in a row each condition has held."""

    high: int = 0
    quiet: int = 0
    starved: dict[Pool, int] = field(
        default_factory=lambda: dict.fromkeys(POOL_ORDER, 0)
    )
    idle: dict[Pool, int] = field(default_factory=lambda: dict.fromkeys(POOL_ORDER, 0))


class Autoscaler:
    """Decides one budget's capacity changes from its interval readings.

    Call `observe` once per interval and `provider_signal` for each settle
    that carries provider figures; apply (or only report, in recommend
    mode) what they return, then tell the controller with `applied` or
    `capacity_set` when an operator changed the budget.
    """

    def __init__(self, policy: AutoscalePolicy, *, restore_to: int | None = None):
        self._policy = policy
        self._streaks = _Streaks()
        self._last_change_ns: int | None = None
        self._last_shift_ns: int | None = None
        self._restore_to = restore_to
        self._quiet_provider = 0
        self._cut_at_ns: int | None = None

    @property
    def policy(self) -> AutoscalePolicy:
        """The rules in force."""
        return self._policy

    @property
    def restore_to(self) -> int | None:
        """The capacity a provider cut will grow back to; None when not cut."""
        return self._restore_to

    def reconfigure(self, policy: AutoscalePolicy) -> None:
        """Applies new rules; streaks start again, a provider cut is kept."""
        if policy != self._policy:
            self._policy = policy
            self._streaks = _Streaks()

    def capacity_set(self) -> None:
        """An operator set the capacity: streaks and any provider cut are cleared."""
        self._streaks = _Streaks()
        self._restore_to = None
        self._quiet_provider = 0

    def observe(self, reading: Reading, bounds: Bounds) -> list[ScaleDecision]:
        """The decisions one interval's reading calls for (at most two).

        A capacity decision (recover, grow or shrink) and a shift may come
        from the same interval; the shift is computed on the shares as they
        stand, since a capacity change keeps them.
        """
        decisions: list[ScaleDecision] = []
        capacity = self._capacity_decision(reading, bounds)
        if capacity is not None:
            decisions.append(capacity)
            bounds = replace(bounds, capacity=capacity.capacity_to)
        shift = self._shift_decision(reading, bounds)
        if shift is not None:
            decisions.append(shift)
        return decisions

    def provider_signal(
        self, signal: ProviderSignal, at_ns: int, bounds: Bounds, budget: str
    ) -> ScaleDecision | None:
        """A cut for a rate-limit signal, or None when the signal asks for none.

        A reported limit below the capacity cuts to that limit (at least 1
        token). A rate limit with no limit cuts by `provider_cut_percent`,
        at most once per interval, so a burst of limited settles is one
        cut. Cuts may go below the minimum capacity: the provider enforces
        its limit whatever the budget says.
        """
        if signal.rate_limited:
            self._quiet_provider = 0
        capacity = bounds.capacity
        target: int | None = None
        if 0 < signal.limit_tokens < capacity:
            target = max(1, signal.limit_tokens)
            reason = (
                f"the provider reported a limit of {signal.limit_tokens:,} tokens, "
                f"below the capacity of {capacity:,}"
            )
        elif signal.rate_limited and not self._cut_recently(at_ns):
            target = max(1, capacity * (100 - self._policy.provider_cut_percent) // 100)
            reason = (
                "the provider rate-limited a call; capacity cut by "
                f"{self._policy.provider_cut_percent}%"
            )
        if target is None or target >= capacity:
            return None

        if self._restore_to is None:
            self._restore_to = capacity
        self._cut_at_ns = at_ns
        self._streaks = _Streaks()
        return ScaleDecision(
            budget=budget,
            action=Action.PROVIDER_CUT,
            reason=reason,
            at_ns=at_ns,
            capacity_from=capacity,
            capacity_to=target,
            shares_from=dict(bounds.shares),
            shares_to=dict(bounds.shares),
            figures={
                "provider_rate_limited": signal.rate_limited,
                "provider_remaining_tokens": signal.remaining_tokens,
                "provider_limit_tokens": signal.limit_tokens,
                "restore_to": self._restore_to,
            },
        )

    def applied(self, decision: ScaleDecision) -> None:
        """Records that a decision took effect (or was reported, in recommend mode).

        Capacity decisions start the cooldown, shifts their own.
        """
        if decision.action is Action.SHIFT:
            self._last_shift_ns = decision.at_ns
        elif decision.action is not Action.PROVIDER_CUT:
            self._last_change_ns = decision.at_ns

    def _cut_recently(self, at_ns: int) -> bool:
        return (
            self._cut_at_ns is not None
            and at_ns - self._cut_at_ns < self._policy.interval_ns
        )

    def _cooling(self, last_ns: int | None, at_ns: int) -> bool:
        cooldown_ns = self._policy.cooldown_seconds * _NS_PER_S
        return last_ns is not None and at_ns - last_ns < cooldown_ns

    def _step(self, capacity: int) -> int:
        policy = self._policy
        if policy.step_tokens is not None:
            return policy.step_tokens
        return max(1, -(-capacity * policy.step_percent // 100))

    def _capacity_decision(
        self, reading: Reading, bounds: Bounds
    ) -> ScaleDecision | None:
        policy = self._policy
        if self._restore_to is not None:
            recovery = self._recovery(reading, bounds)
            if recovery is not None:
                return recovery

        utilisation = reading.utilisation
        high = utilisation * 100 >= policy.high_watermark_percent
        waits_high = (
            policy.wait_target_ms > 0 and reading.wait_p95_ms > policy.wait_target_ms
        )
        quiet = (
            utilisation * 100 <= policy.low_watermark_percent
            and reading.waiting == 0
            and reading.refusals == 0
            and reading.wait_p95_ms == 0
        )
        # Demand does not build up while a provider cut is being undone: the
        # provider's limit, not demand, sets the pace until then.
        demand = (high or waits_high or reading.refusals > 0) and (
            self._restore_to is None
        )
        streaks = self._streaks
        streaks.high = streaks.high + 1 if demand else 0
        streaks.quiet = streaks.quiet + 1 if quiet else 0
        if self._cooling(self._last_change_ns, reading.at_ns):
            return None

        capacity = bounds.capacity
        if (
            streaks.high >= policy.grow_after_intervals
            and self._restore_to is None
            and capacity < bounds.maximum
        ):
            target = min(bounds.maximum, capacity + self._step(capacity))
            reason = _demand_reason(reading, policy, streaks.high)
            streaks.high = 0
            return self._decision(reading, bounds, Action.GROW, target, reason)
        if streaks.quiet >= policy.shrink_after_intervals and capacity > bounds.minimum:
            target = max(bounds.minimum, capacity - self._step(capacity))
            # The interval's use at the smaller capacity must stay below the
            # high watermark, or the next interval would grow it straight back.
            offered = sum(pool.offered for pool in reading.pools)
            if offered and capacity:
                projected = reading.charged * capacity / (offered * target)
                if projected * 100 >= policy.high_watermark_percent:
                    return None
            streaks.quiet = 0
            return self._decision(
                reading,
                bounds,
                Action.SHRINK,
                target,
                f"utilisation {utilisation:.0%} at or below the low watermark "
                f"{policy.low_watermark_percent}% with nobody waiting "
                f"(sustained {policy.shrink_after_intervals} intervals)",
            )
        return None

    def _recovery(self, reading: Reading, bounds: Bounds) -> ScaleDecision | None:
        """One step back towards the capacity before a provider cut."""
        restore_to = self._restore_to
        assert restore_to is not None
        if reading.provider_limited:
            self._quiet_provider = 0
            return None
        self._quiet_provider += 1
        capacity = bounds.capacity
        if capacity >= restore_to:
            self._restore_to = None
            return None
        if self._quiet_provider < self._policy.provider_recover_intervals:
            return None

        self._quiet_provider = 0
        target = min(restore_to, capacity + self._step(capacity))
        if target >= restore_to:
            self._restore_to = None
        return self._decision(
            reading,
            bounds,
            Action.RECOVER,
            target,
            f"no provider rate limit for {self._policy.provider_recover_intervals} "
            f"intervals; growing back towards {restore_to:,}",
        )

    def _shift_decision(self, reading: Reading, bounds: Bounds) -> ScaleDecision | None:
        policy = self._policy
        streaks = self._streaks
        for pool in reading.pools:
            percent = pool.utilisation * 100
            starved = (
                pool.capacity > 0 and percent >= policy.high_watermark_percent
            ) or pool.waiting > 0
            idle = percent <= policy.low_watermark_percent and pool.waiting == 0
            streaks.starved[pool.pool] = (
                streaks.starved[pool.pool] + 1 if starved else 0
            )
            streaks.idle[pool.pool] = streaks.idle[pool.pool] + 1 if idle else 0
        if policy.shift_percent == 0 or self._cooling(
            self._last_shift_ns, reading.at_ns
        ):
            return None

        needed = policy.shift_after_intervals
        starved_pools = [p for p in POOL_ORDER if streaks.starved[p] >= needed]
        idle_pools = [p for p in POOL_ORDER if streaks.idle[p] >= needed]
        for taker in starved_pools:
            for giver in idle_pools:
                points = _room(bounds.shares, policy, taker, giver)
                if giver is taker or points == 0:
                    continue
                shares = dict(bounds.shares)
                shares[taker] += points
                shares[giver] -= points
                streaks.starved[taker] = streaks.idle[giver] = 0
                taken = reading.pool(taker)
                given = reading.pool(giver)
                return ScaleDecision(
                    budget=reading.budget,
                    action=Action.SHIFT,
                    reason=(
                        f"pool {taker.value} starved (utilisation "
                        f"{taken.utilisation:.0%}, {taken.waiting} waiting) while "
                        f"{giver.value} idled ({given.utilisation:.0%}) for "
                        f"{needed} intervals; {points} share point"
                        f"{'' if points == 1 else 's'} moved"
                    ),
                    at_ns=reading.at_ns,
                    capacity_from=bounds.capacity,
                    capacity_to=bounds.capacity,
                    shares_from=dict(bounds.shares),
                    shares_to=shares,
                    figures=reading.figures(),
                )
        return None

    def _decision(
        self,
        reading: Reading,
        bounds: Bounds,
        action: Action,
        target: int,
        reason: str,
    ) -> ScaleDecision:
        return ScaleDecision(
            budget=reading.budget,
            action=action,
            reason=reason,
            at_ns=reading.at_ns,
            capacity_from=bounds.capacity,
            capacity_to=target,
            shares_from=dict(bounds.shares),
            shares_to=dict(bounds.shares),
            figures=reading.figures(),
        )


def _room(
    shares: Mapping[Pool, int], policy: AutoscalePolicy, taker: Pool, giver: Pool
) -> int:
    """Share points that may move from giver to taker inside both bounds."""
    taker_high = policy.share_bounds.of(taker)[1]
    giver_low = policy.share_bounds.of(giver)[0]
    return max(
        0,
        min(
            policy.shift_percent, taker_high - shares[taker], shares[giver] - giver_low
        ),
    )


def _demand_reason(reading: Reading, policy: AutoscalePolicy, streak: int) -> str:
    """Which of the high-demand conditions held, in words."""
    parts: list[str] = []
    if reading.utilisation * 100 >= policy.high_watermark_percent:
        parts.append(
            f"utilisation {reading.utilisation:.0%} at or above the high watermark "
            f"{policy.high_watermark_percent}%"
        )
    if policy.wait_target_ms > 0 and reading.wait_p95_ms > policy.wait_target_ms:
        parts.append(
            f"p95 wait {reading.wait_p95_ms:,} ms above the target "
            f"{policy.wait_target_ms:,} ms"
        )
    if reading.refusals:
        parts.append(f"{reading.refusals:,} requests refused for want of tokens")
    return "; ".join(parts or ["high demand"]) + f" (sustained {streak} intervals)"
