"""Jain's fairness index over backlogged tenants, per second of trace time.

A tenant is backlogged in a second when one of its requests waited in the
daemon's queue at any moment of that second. In each second where at least
two tenants are backlogged, Jain's index is taken over the tokens granted
to each of them: granted in that very second (`jain_1s`), and granted in the
trailing window of `window_s` seconds that ends with it (`jain_window`).
`jain_1s_ceiling` bounds what any order of the same grants could score in
one second: a second holding k grants gives something to at most k of its
n backlogged tenants, and Jain's index is then at most min(k, n) / n.

Those raw indexes call a tenant that asked for little and got all of it
"unfair", though that is what max-min fairness gives it. `jain_maxmin` takes
each tenant's window grant relative to its max-min fair share instead: the
tokens the backlogged tenants were granted in the window, water-filled over
what each asked for there (its grants, plus what it still waited for at the
second's end). It is 1 when every backlogged tenant got its max-min share.
`jain_backlogged` is the textbook criterion of fair queuing: over an
interval in which tenants are all backlogged throughout, they should get
equal service. For each second it takes the tenants that had a request
waiting at every moment of the trailing window ending with that second, and
Jain's index over their window grants; seconds with fewer than two such
tenants are not counted (`seconds_backlogged`).
Each index is averaged over the seconds where it is defined. docs/replay.md
gives the exact definitions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Trace seconds are counted from the first row's arrival, in nanoseconds.
NS_PER_S = 1_000_000_000

# Sorts after any span starting at the same instant, for the bisection.
_FOREVER = 2**63

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
    requested_tokens: int = 0
    """Tokens asked for: the hold of a grant, the request of a refusal."""

    @property
    def granted_at_ns(self) -> int:
        """When the tokens were granted: arrival plus the wait."""
        return self.arrival_ns + self.waited_ns


@dataclass(frozen=True, slots=True)
class Fairness:
    """Jain's index over backlogged tenants, averaged over trace seconds."""

    jain_1s: float | None
    """Mean index of tokens granted in each second; None if never defined."""
    jain_1s_ceiling: float | None
    """Mean of min(grants, tenants) / tenants over the seconds of jain_1s."""
    jain_window: float | None
    """Mean index of tokens granted in the trailing window of each second."""
    jain_maxmin: float | None
    """Mean index of window grants relative to each tenant's max-min share."""
    jain_backlogged: float | None
    """Mean index of window grants of tenants backlogged all window long."""
    seconds_backlogged: int
    """Seconds with two or more tenants backlogged all through their window."""
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
            "jain_1s_ceiling": _rounded(self.jain_1s_ceiling),
            "jain_window": _rounded(self.jain_window),
            "jain_maxmin": _rounded(self.jain_maxmin),
            "jain_backlogged": _rounded(self.jain_backlogged),
            "seconds_backlogged": self.seconds_backlogged,
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


def pending_by_second(demands: Iterable[Demand]) -> dict[int, Counter[str]]:
    """For each trace second, tokens each tenant still waited for at its end."""
    pending: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for demand in demands:
        if demand.waited_ns <= 0:
            continue
        end_ns = demand.arrival_ns + demand.waited_ns
        # Second s ends at (s + 1) s: the request waits past it when it
        # arrived before that and was answered after it.
        for second in range(demand.arrival_ns // NS_PER_S, end_ns // NS_PER_S):
            pending[second][demand.tenant] += demand.requested_tokens
    return dict(pending)


def waiting_spans(demands: Iterable[Demand]) -> dict[str, list[tuple[int, int]]]:
    """Per tenant, the merged spans of trace time in which it had a waiter."""
    spans: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    for demand in sorted(demands, key=lambda d: d.arrival_ns):
        if demand.waited_ns <= 0:
            continue
        start, end = demand.arrival_ns, demand.arrival_ns + demand.waited_ns
        merged = spans[demand.tenant]
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return dict(spans)


def waited_throughout(spans: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    """Whether merged spans cover [start, end) without a gap."""
    index = bisect_right(spans, (start, _FOREVER)) - 1
    return index >= 0 and spans[index][0] <= start and spans[index][1] >= end


def max_min_shares(total: float, asks: Sequence[float]) -> list[float]:
    """Water-fills `total` over `asks`: small asks in full, the rest equally."""
    shares = [0.0] * len(asks)
    left = total
    order = sorted(range(len(asks)), key=lambda index: asks[index])
    for place, index in enumerate(order):
        equal = left / (len(asks) - place)
        shares[index] = min(asks[index], equal)
        left -= shares[index]
    return shares


def grants_by_second(demands: Iterable[Demand]) -> dict[int, Counter[str]]:
    """For each trace second, the tokens granted in it to each tenant."""
    grants: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for demand in demands:
        if demand.granted_tokens > 0:
            second = demand.granted_at_ns // NS_PER_S
            grants[second][demand.tenant] += demand.granted_tokens
    return dict(grants)


def grant_counts_by_second(demands: Iterable[Demand]) -> dict[int, Counter[str]]:
    """For each trace second, how many requests of each tenant were granted."""
    counts: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for demand in demands:
        if demand.granted_tokens > 0:
            counts[demand.granted_at_ns // NS_PER_S][demand.tenant] += 1
    return dict(counts)


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
    grant_counts = grant_counts_by_second(demands)
    pending = pending_by_second(demands)
    spans = waiting_spans(demands)
    empty: Counter[str] = Counter()
    steady: list[float] = []
    steady_seconds = 0
    one_second: list[float] = []
    ceilings: list[float] = []
    windowed: list[float] = []
    relative: list[float] = []
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
            counts = grant_counts.get(second, empty)
            made = sum(counts[tenant] for tenant in tenants)
            ceilings.append(min(made, len(tenants)) / len(tenants))

        recent = [
            grants.get(s, empty) for s in range(second - window_s + 1, second + 1)
        ]
        totals = [sum(g[tenant] for g in recent) for tenant in tenants]
        index = jain_index(totals)
        if index is not None:
            windowed.append(index)

        window_start = (second - window_s + 1) * NS_PER_S
        throughout = [
            total
            for tenant, total in zip(tenants, totals, strict=True)
            if waited_throughout(spans[tenant], window_start, (second + 1) * NS_PER_S)
        ]
        if len(throughout) >= 2:
            steady_seconds += 1
            index = jain_index(throughout)
            if index is not None:
                steady.append(index)

        waiting = pending.get(second, empty)
        asks = [
            got + waiting[tenant] for got, tenant in zip(totals, tenants, strict=True)
        ]
        shares = max_min_shares(sum(totals), asks)
        ratios = [
            got / share for got, share in zip(totals, shares, strict=True) if share
        ]
        index = jain_index(ratios) if len(ratios) >= 2 else None
        if index is not None:
            relative.append(index)

    return Fairness(
        jain_1s=sum(one_second) / len(one_second) if one_second else None,
        jain_1s_ceiling=sum(ceilings) / len(ceilings) if ceilings else None,
        jain_window=sum(windowed) / len(windowed) if windowed else None,
        jain_maxmin=sum(relative) / len(relative) if relative else None,
        jain_backlogged=sum(steady) / len(steady) if steady else None,
        seconds_backlogged=steady_seconds,
        window_s=window_s,
        seconds_counted=counted,
        seconds_undefined_1s=counted - len(one_second),
        seconds_undefined_window=counted - len(windowed),
    )
