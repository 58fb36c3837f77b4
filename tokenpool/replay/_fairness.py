"""Jain's fairness index over backlogged tenants, per second of trace time.

A tenant is backlogged in a second when one of its requests waited in the
daemon's queue at any moment of that second. In each second where at least
two tenants are backlogged, Jain's index is taken over the tokens granted
to each of them: granted in that very second (`jain_1s`), and granted in the
trailing window of `window_s` seconds that ends with it (`jain_window`).
Each is averaged over the seconds where it is defined. docs/replay.md gives
the exact definition.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Trace seconds are counted from the first row's arrival, in nanoseconds.
NS_PER_S = 1_000_000_000

# Trailing window of `jain_window` when the command line does not set one,
# in trace seconds: a basic pool grants a few requests a second, so one
# second alone is lumpy.
DEFAULT_WINDOW_S = 10


@dataclass(frozen=True, slots=True)
class Demand:
    """One request as fairness sees it: when it waited and what it got."""

    tenant: str
    arrival_ns: int
    """Arrival, in trace nanoseconds after the first row."""
    waited_ns: int
    """Time spent queued in the daemon; 0 for a request never queued."""
    granted_tokens: int
    """Tokens granted; 0 for a refused request."""

    @property
    def granted_at_ns(self) -> int:
        """When the tokens were granted: arrival plus the wait."""
        return self.arrival_ns + self.waited_ns


@dataclass(frozen=True, slots=True)
class Fairness:
    """Jain's index over backlogged tenants, averaged over trace seconds."""

    jain_1s: float | None
    """Mean index of tokens granted in each second; None if never defined."""
    jain_window: float | None
    """Mean index of tokens granted in the trailing window of each second."""
    window_s: int
    seconds_counted: int
    """Seconds with at least two backlogged tenants."""
    seconds_undefined_1s: int
    """Counted seconds left out of jain_1s: none of them got a token."""
    seconds_undefined_window: int
    """Counted seconds left out of jain_window, for the same reason."""

    def as_dict(self) -> dict[str, Any]:
        """The figures as the JSON report holds them."""
        return {
            "jain_1s": _rounded(self.jain_1s),
            "jain_window": _rounded(self.jain_window),
            "window_s": self.window_s,
            "seconds_counted": self.seconds_counted,
            "seconds_undefined_1s": self.seconds_undefined_1s,
            "seconds_undefined_window": self.seconds_undefined_window,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def jain_index(allocations: Sequence[float]) -> float | None:
    """Jain's index (sum x)^2 / (n sum x^2) of non-negative allocations.

    1 when all are equal, 1/n when one of n takes everything; None when
    there are none or all are 0 (the ratio is 0/0).
    """
    total = sum(allocations)
    squares = sum(x * x for x in allocations)
    if not allocations or squares == 0:
        return None
    return total * total / (len(allocations) * squares)


def backlogged_seconds(arrival_ns: int, waited_ns: int) -> range:
    """The trace seconds in which a request waited: those [arrival, grant) meets."""
    if waited_ns <= 0:
        return range(0)
    first = arrival_ns // NS_PER_S
    last = (arrival_ns + waited_ns - 1) // NS_PER_S
    return range(first, last + 1)


def backlog_by_second(demands: Iterable[Demand]) -> dict[int, set[str]]:
    """For each trace second, the tenants with a request waiting in it."""
    backlog: defaultdict[int, set[str]] = defaultdict(set)
    for demand in demands:
        for second in backlogged_seconds(demand.arrival_ns, demand.waited_ns):
            backlog[second].add(demand.tenant)
    return dict(backlog)


def grants_by_second(demands: Iterable[Demand]) -> dict[int, Counter[str]]:
    """For each trace second, the tokens granted in it to each tenant."""
    grants: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for demand in demands:
        if demand.granted_tokens > 0:
            second = demand.granted_at_ns // NS_PER_S
            grants[second][demand.tenant] += demand.granted_tokens
    return dict(grants)


def fairness(demands: Sequence[Demand], *, window_s: int) -> Fairness:
    """Jain's index over the backlogged tenants of each second, averaged.

    Only the demands given count, both as backlog and as grants: pass one
    tier's rows to measure fairness within that tier.

    Raises:
        ValueError: window_s is below 1.
    """
    if window_s < 1:
        raise ValueError(f"window_s must be at least 1, got {window_s}")

    backlog = backlog_by_second(demands)
    grants = grants_by_second(demands)
    empty: Counter[str] = Counter()
    one_second: list[float] = []
    windowed: list[float] = []
    counted = 0
    for second in sorted(backlog):
        tenants = sorted(backlog[second])
        if len(tenants) < 2:
            continue
        counted += 1

        granted = grants.get(second, empty)
        index = jain_index([granted[tenant] for tenant in tenants])
        if index is not None:
            one_second.append(index)

        recent = [
            grants.get(s, empty) for s in range(second - window_s + 1, second + 1)
        ]
        totals = [sum(g[tenant] for g in recent) for tenant in tenants]
        index = jain_index(totals)
        if index is not None:
            windowed.append(index)

    return Fairness(
        jain_1s=sum(one_second) / len(one_second) if one_second else None,
        jain_window=sum(windowed) / len(windowed) if windowed else None,
        window_s=window_s,
        seconds_counted=counted,
        seconds_undefined_1s=counted - len(one_second),
        seconds_undefined_window=counted - len(windowed),
    )
