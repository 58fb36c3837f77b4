"""Budget setups the state machine draws: capacity, shares, lending, caps.

Each example of `test_state_machine.py` starts a daemon from one `Setup`
and hands the model the same budget; the setups live here so that the
test module keeps to the machine and its regression tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.service._model import CapRules, Limits, Rules

# The configured tenants; "bob" is left out, so he is admitted as basic.
CONFIGURED_TENANTS = [
    {"name": "ann", "tier": "basic"},
    {"name": "pro", "tier": "priority"},
    {"name": "vip", "tier": "priority", "weight": 2},
]


# A cap as a share of the budget's capacity, in permille; None: no cap.
CAP_PERMILLE = st.sampled_from([None, 150, 400, 1000])
# A daily token budget in permille of capacity: a few windows' worth at most.
DAILY_PERMILLE = st.sampled_from([None, 500, 1500, 4000])


@dataclass(frozen=True)
class CapSetup:
    """A tenant's or team's caps, relative to the budget's capacity."""

    pool_percent: int | None
    in_flight_permille: int | None
    daily_permille: int | None

    def rules(self, capacity: int) -> CapRules:
        """The caps in tokens."""

        def tokens(permille: int | None) -> int | None:
            return None if permille is None else max(1, capacity * permille // 1000)

        return CapRules(
            self.pool_percent,
            tokens(self.in_flight_permille),
            tokens(self.daily_permille),
        )


CAPS = st.builds(
    CapSetup,
    pool_percent=st.sampled_from([None, 30, 60]),
    in_flight_permille=CAP_PERMILLE,
    daily_permille=DAILY_PERMILLE,
)


@dataclass(frozen=True)
class LimitSetup:
    """Caps for "ann", a team "crew" of ann and "pro", and budget limits."""

    ann: CapSetup
    crew: CapSetup
    requests_per_minute: int | None
    concurrency: int | None

    def limits(self, capacity: int) -> Limits:
        """What the model needs to know of the limits."""
        return Limits(
            tenants={"ann": self.ann.rules(capacity)},
            team="crew",
            members=frozenset({"ann", "pro"}),
            team_caps=self.crew.rules(capacity),
            requests_per_minute=self.requests_per_minute,
            concurrency=self.concurrency,
        )


LIMIT_SETUPS = st.builds(
    LimitSetup,
    ann=CAPS,
    crew=CAPS,
    requests_per_minute=st.sampled_from([None, 4, 12]),
    concurrency=st.sampled_from([None, 2, 4]),
)


def _caps_config(caps: CapRules) -> dict[str, int]:
    found = {
        "max_pool_percent": caps.pool_percent,
        "max_in_flight_tokens": caps.in_flight,
        "daily_tokens": caps.daily_tokens,
    }
    return {key: value for key, value in found.items() if value is not None}


@dataclass(frozen=True)
class Setup:
    """One example's budget configuration."""

    capacity: int
    window_seconds: int
    shares: tuple[int, int]
    max_debt_windows: int
    burst_tenant_percent: int
    lendable_percent: tuple[int, int]
    threshold_percent: tuple[int, int]
    limits: LimitSetup | None = None

    @property
    def share_map(self) -> dict[str, int]:
        basic, priority = self.shares
        return {"basic": basic, "priority": priority, "burst": 100 - basic - priority}

    def budget(self) -> dict[str, Any]:
        """The budget as the daemon's configuration spells it."""
        lending = {
            pool: {
                "lendable_percent": self.lendable_percent[index],
                "lend_threshold_percent": self.threshold_percent[index],
            }
            for index, pool in enumerate(("basic", "priority"))
        }
        budget: dict[str, Any] = {
            "name": "b",
            "capacity_tokens": self.capacity,
            "window_seconds": self.window_seconds,
            "shares": self.share_map,
            "max_debt_windows": self.max_debt_windows,
            "burst_tenant_percent": self.burst_tenant_percent,
            "lending": lending,
        }
        if self.limits is not None:
            if self.limits.requests_per_minute is not None:
                budget["requests_per_minute"] = self.limits.requests_per_minute
            if self.limits.concurrency is not None:
                budget["max_concurrent_reservations"] = self.limits.concurrency
        return budget

    def tenants_and_teams(self) -> dict[str, Any]:
        """The [[tenants]] and [[teams]] tables: ann and pro form a team."""
        if self.limits is None:
            return {"tenants": CONFIGURED_TENANTS}
        limits = self.limits.limits(self.capacity)
        tenants = [
            {"name": "ann", "tier": "basic", "team": "crew"}
            | _caps_config(limits.tenants["ann"]),
            {"name": "pro", "tier": "priority", "team": "crew"},
            {"name": "vip", "tier": "priority", "weight": 2},
        ]
        team = {"name": "crew"} | _caps_config(limits.team_caps)
        return {"tenants": tenants, "teams": [team]}

    def rules(self) -> Rules:
        """What the model needs to know of the same budget."""
        return Rules(
            window_ns=self.window_seconds * 1_000_000_000,
            max_debt_windows=self.max_debt_windows,
            burst_tenant_percent=self.burst_tenant_percent,
            burst_high_complexity_percent=100,
            lendable_percent=dict(
                zip(("basic", "priority"), self.lendable_percent, strict=True)
            ),
            lend_threshold_percent=dict(
                zip(("basic", "priority"), self.threshold_percent, strict=True)
            ),
            limits=None if self.limits is None else self.limits.limits(self.capacity),
        )


@st.composite
def pool_shares(draw: st.DrawFn) -> tuple[int, int]:
    """A basic and a priority share; the burst pool gets the rest."""
    basic = draw(st.integers(0, 100))
    return basic, draw(st.integers(0, 100 - basic))


SETUPS = st.builds(
    Setup,
    capacity=st.integers(100, 3000),
    window_seconds=st.sampled_from([1, 7, 60]),
    shares=st.one_of(st.just((65, 22)), pool_shares()),
    max_debt_windows=st.sampled_from([0, 1, 2]),
    burst_tenant_percent=st.sampled_from([0, 50, 100]),
    lendable_percent=st.tuples(*[st.sampled_from([0, 25, 100])] * 2),
    threshold_percent=st.tuples(*[st.sampled_from([0, 75, 100])] * 2),
    limits=st.one_of(st.none(), LIMIT_SETUPS),
)
