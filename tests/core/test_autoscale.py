"""The autoscaling controller on readings made by hand, interval by interval."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from pydantic import ValidationError

from tokenpool.core import (
    Action,
    AutoscalePolicy,
    Autoscaler,
    Bounds,
    Pool,
    PoolReading,
    ProviderSignal,
    Reading,
    ScaleDecision,
)

S = 1_000_000_000
INTERVAL = 10
SHARES = {Pool.BASIC: 65, Pool.PRIORITY: 22, Pool.BURST: 13}


def policy(**overrides: object) -> AutoscalePolicy:
    settings: dict[str, object] = {
        "enabled": True,
        "interval_seconds": INTERVAL,
        "grow_after_intervals": 3,
        "shrink_after_intervals": 4,
        "cooldown_seconds": 0,
        "high_watermark_percent": 90,
        "low_watermark_percent": 50,
        "step_percent": 10,
        "shift_percent": 0,
    }
    settings.update(overrides)
    return AutoscalePolicy.model_validate(settings)


def reading(
    at: int,
    capacity: int,
    utilisation: float,
    *,
    waiting: int = 0,
    waits: Iterable[int] = (),
    refusals: int = 0,
    pools: dict[Pool, float] | None = None,
    shares: dict[Pool, int] = SHARES,
) -> Reading:
    """One interval of a budget whose pools all run at `utilisation`."""
    parts = []
    for pool in (Pool.BASIC, Pool.PRIORITY, Pool.BURST):
        pool_capacity = capacity * shares[pool] // 100
        offered = pool_capacity * INTERVAL // 60
        used = (pools or {}).get(pool, utilisation)
        parts.append(
            PoolReading(
                pool,
                pool_capacity,
                round(offered * used),
                offered,
                waiting if pool is Pool.BASIC else 0,
            )
        )
    return Reading(
        "b",
        at * INTERVAL * S,
        tuple(parts),
        waits_ms=tuple(waits),
        refusals=refusals,
    )


class Budget:
    """A budget the controller drives, as an engine in act mode would."""

    def __init__(
        self,
        scaler: Autoscaler,
        capacity: int = 600_000,
        *,
        minimum: int = 600_000,
        maximum: int = 900_000,
    ) -> None:
        self.scaler = scaler
        self.capacity = capacity
        self.minimum = minimum
        self.maximum = maximum
        self.shares = dict(SHARES)
        self.decisions: list[ScaleDecision] = []

    def bounds(self) -> Bounds:
        return Bounds(self.capacity, self.minimum, self.maximum, self.shares)

    def apply(self, decisions: list[ScaleDecision]) -> list[ScaleDecision]:
        for decision in decisions:
            self.scaler.applied(decision)
            self.capacity = decision.capacity_to
            self.shares = dict(decision.shares_to)
        self.decisions += decisions
        return decisions

    def run(self, at: int, utilisation: float, **figures: object) -> list[Action]:
        found = self.scaler.observe(
            reading(at, self.capacity, utilisation, shares=self.shares, **figures),  # type: ignore[arg-type]
            self.bounds(),
        )
        return [decision.action for decision in self.apply(found)]


def test_demand_step_grows_after_exactly_n_intervals() -> None:
    budget = Budget(Autoscaler(policy()))

    quiet = [budget.run(at, 0.7) for at in range(1, 6)]
    busy = [budget.run(at, 0.95) for at in range(6, 9)]

    assert quiet == [[]] * 5
    assert busy == [[], [], [Action.GROW]]
    decision = budget.decisions[0]
    assert (decision.capacity_from, decision.capacity_to) == (600_000, 660_000)
    assert "utilisation 95% at or above the high watermark 90%" in decision.reason
    assert "sustained 3 intervals" in decision.reason


def test_broken_streak_starts_counting_again() -> None:
    budget = Budget(Autoscaler(policy()))

    actions = [
        budget.run(at, u) for at, u in enumerate([0.95, 0.95, 0.8, 0.95, 0.95], 1)
    ]

    assert actions == [[]] * 5
    assert budget.run(6, 0.95) == [Action.GROW]


def test_waits_and_refusals_count_as_demand() -> None:
    by_waits = Budget(Autoscaler(policy(wait_target_ms=500)))
    by_refusals = Budget(Autoscaler(policy()))

    waits = [by_waits.run(at, 0.5, waits=[0, 0, 900]) for at in range(1, 4)]
    refused = [by_refusals.run(at, 0.5, refusals=2) for at in range(1, 4)]

    assert waits[-1] == refused[-1] == [Action.GROW]
    assert "p95 wait 900 ms above the target 500 ms" in by_waits.decisions[0].reason
    assert "2 requests refused" in by_refusals.decisions[0].reason


def test_steady_demand_near_the_watermark_does_not_flap() -> None:
    budget = Budget(Autoscaler(policy(grow_after_intervals=2, cooldown_seconds=30)))
    # Demand in tokens stays the same: ~91 % of the first capacity.
    demand = 0.91 * 600_000

    for at in range(1, 200):
        budget.run(at, demand / budget.capacity)

    assert [d.action for d in budget.decisions] == [Action.GROW]
    assert budget.capacity == 660_000


def test_grown_capacity_shrinks_back_after_sustained_quiet() -> None:
    budget = Budget(Autoscaler(policy()), capacity=800_000)

    actions = [budget.run(at, 0.4) for at in range(1, 5)]

    assert actions == [[], [], [], [Action.SHRINK]]
    assert budget.capacity == 720_000
    assert "at or below the low watermark 50%" in budget.decisions[0].reason


def test_shrink_that_would_cross_the_high_watermark_waits() -> None:
    budget = Budget(
        Autoscaler(policy(step_percent=50, low_watermark_percent=60)),
        capacity=800_000,
        minimum=100_000,
    )

    # At 400 k, the same use would be 110 % of capacity: no shrink.
    actions = [budget.run(at, 0.55) for at in range(1, 10)]

    assert actions == [[]] * 9
    assert budget.capacity == 800_000


def test_waiters_keep_a_quiet_budget_from_shrinking() -> None:
    budget = Budget(Autoscaler(policy()), capacity=800_000)

    actions = [budget.run(at, 0.3, waiting=1) for at in range(1, 10)]

    assert actions == [[]] * 9


@pytest.mark.parametrize(
    ("start", "utilisation", "expected"),
    [(880_000, 0.99, 900_000), (620_000, 0.1, 600_000)],
)
def test_max_and_min_hold(start: int, utilisation: float, expected: int) -> None:
    budget = Budget(Autoscaler(policy()), capacity=start)

    for at in range(1, 100):
        budget.run(at, utilisation)

    assert budget.capacity == expected
    assert len(budget.decisions) == 1


def test_cooldown_holds_between_changes() -> None:
    budget = Budget(
        Autoscaler(policy(grow_after_intervals=1, cooldown_seconds=35)),
        maximum=10_000_000,
    )

    grew_at = [at for at in range(1, 20) if budget.run(at, 0.99)]

    # Intervals are 10 s: after a change at t, the next may come at t + 40 s.
    assert grew_at == [1, 5, 9, 13, 17]


def test_provider_rate_limit_cuts_at_once_by_the_factor() -> None:
    scaler = Autoscaler(policy(provider_cut_percent=20))
    budget = Budget(scaler)

    cut = scaler.provider_signal(ProviderSignal(True), 5 * S, budget.bounds(), "b")
    assert cut is not None
    budget.apply([cut])
    again = scaler.provider_signal(ProviderSignal(True), 6 * S, budget.bounds(), "b")

    assert cut.action is Action.PROVIDER_CUT
    assert (cut.capacity_from, cut.capacity_to) == (600_000, 480_000)
    assert again is None  # one cut per interval for a burst of signals
    assert scaler.restore_to == 600_000


def test_provider_limit_cuts_to_the_reported_limit() -> None:
    scaler = Autoscaler(policy())
    budget = Budget(scaler)

    cut = scaler.provider_signal(
        ProviderSignal(False, remaining_tokens=10, limit_tokens=450_000),
        S,
        budget.bounds(),
        "b",
    )
    higher = scaler.provider_signal(
        ProviderSignal(False, limit_tokens=700_000), S, budget.bounds(), "b"
    )

    assert cut is not None and cut.capacity_to == 450_000
    assert "limit of 450,000 tokens" in cut.reason
    assert higher is None


def test_capacity_grows_back_after_quiet_provider_intervals() -> None:
    scaler = Autoscaler(policy(provider_recover_intervals=2, step_percent=10))
    budget = Budget(scaler)
    cut = scaler.provider_signal(ProviderSignal(True), 0, budget.bounds(), "b")
    assert cut is not None
    budget.apply([cut])

    actions = [budget.run(at, 0.95) for at in range(1, 7)]

    assert actions == [[], [Action.RECOVER]] * 3
    # 480 k -> 528 k -> 580.8 k -> 600 k, never past what it was before.
    assert [d.capacity_to for d in budget.decisions[1:]] == [528_000, 580_800, 600_000]
    assert scaler.restore_to is None
    # Only then does demand count again, from zero.
    assert [budget.run(at, 0.95) for at in range(7, 10)] == [[], [], [Action.GROW]]


def test_rate_limits_during_recovery_hold_it_back() -> None:
    scaler = Autoscaler(policy(provider_recover_intervals=2))
    budget = Budget(scaler)
    cut = scaler.provider_signal(ProviderSignal(True), 0, budget.bounds(), "b")
    assert cut is not None
    budget.apply([cut])

    for at in range(1, 10):
        limited = reading(at, budget.capacity, 0.7)
        limited = Reading(
            limited.budget, limited.at_ns, limited.pools, provider_limited=1
        )
        budget.apply(scaler.observe(limited, budget.bounds()))

    assert budget.capacity == 480_000


def test_starved_pool_takes_shares_from_an_idle_one_within_bounds() -> None:
    budget = Budget(
        Autoscaler(
            policy(shift_percent=3, shift_after_intervals=2, cooldown_seconds=0)
        ),
        maximum=600_000,
    )
    priority_busy = {Pool.BASIC: 0.3, Pool.PRIORITY: 0.97, Pool.BURST: 0.3}

    actions = [budget.run(at, 0.5, pools=priority_busy) for at in range(1, 9)]

    assert [a for a in actions if a] == [[Action.SHIFT]]
    # Priority may reach 25 %, its upper bound: 22 + 3, then no further.
    assert budget.shares[Pool.PRIORITY] == 25
    assert sum(budget.shares.values()) == 100
    assert all(d.capacity_to == 600_000 for d in budget.decisions)
    assert "pool priority starved" in budget.decisions[0].reason


def test_watermarks_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="must be below high_watermark"):
        AutoscalePolicy(low_watermark_percent=90, high_watermark_percent=80)


def test_same_readings_give_the_same_decisions() -> None:
    first, second = Budget(Autoscaler(policy())), Budget(Autoscaler(policy()))
    load = [0.5, 0.95, 0.95, 0.97, 0.99, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3]

    for budget in (first, second):
        for at, utilisation in enumerate(load, 1):
            budget.run(at, utilisation)

    assert first.decisions == second.decisions
    assert [d.action for d in first.decisions] == [Action.GROW, Action.SHRINK]
