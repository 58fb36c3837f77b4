"""Where a reservation's tokens come from, and where unused ones go back to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenpool.core._pools import Pool

Draws = tuple[tuple[Pool, int], ...]


@dataclass(frozen=True, slots=True)
class Reach:
    """What one tenant can draw on right now for one request."""

    own_pool: Pool
    own_available: int
    burst_available: int
    burst_room: int
    """Burst tokens this tenant may still hold under its burst limit."""

    @property
    def burst_usable(self) -> int:
        """Burst tokens this request may take."""
        return max(0, min(self.burst_available, self.burst_room))

    @property
    def largest(self) -> int:
        """The largest request that could be granted now."""
        return self.own_available + self.burst_usable


def plan_draws(tokens: int, reach: Reach) -> Draws | None:
    """Takes from the own pool first, then burst; None when both fall short."""
    from_own = min(tokens, reach.own_available)
    rest = tokens - from_own
    if rest > reach.burst_usable:
        return None

    draws: list[tuple[Pool, int]] = []
    if from_own:
        draws.append((reach.own_pool, from_own))
    if rest:
        draws.append((Pool.BURST, rest))
    return tuple(draws)


def plan_refund(sources: Sequence[tuple[Pool, int]], tokens: int) -> Draws:
    """Splits a refund over the sources, last drawn first (lenders, burst, own)."""
    refund: list[tuple[Pool, int]] = []
    left = tokens
    for pool, drawn in reversed(sources):
        if left == 0:
            break
        back = min(drawn, left)
        refund.append((pool, back))
        left -= back
    return tuple(refund)


def subtract(sources: Sequence[tuple[Pool, int]], taken: Draws) -> Draws:
    """The sources left after a refund plan has been taken out of them."""
    remaining = dict(sources)
    for pool, tokens in taken:
        remaining[pool] -= tokens
    return tuple((pool, remaining[pool]) for pool, _ in sources if remaining[pool])


def merge(sources: Sequence[tuple[Pool, int]], extra: Draws) -> Draws:
    """Sources after an extension drew `extra`, in first-drawn order."""
    merged = dict(sources)
    for pool, tokens in extra:
        merged[pool] = merged.get(pool, 0) + tokens
    return tuple(merged.items())


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a settle or release is accounted against a hold."""

    charged: int
    refunded: int
    overrun: int


def account(hold: int, used: int, *, incomplete: bool = False) -> Outcome:
    """Charges what was used; a cut-off call is charged at least its hold."""
    charged = max(used, hold) if incomplete else used
    return Outcome(charged, max(0, hold - charged), max(0, charged - hold))


@dataclass(frozen=True, slots=True)
class OverrunCharge:
    """Where usage beyond a hold is charged: own pool, burst, then debt."""

    from_own: int
    from_burst: int
    debt: int


def plan_overrun(
    overrun: int, own_available: int, burst_available: int, debt_room: int
) -> OverrunCharge:
    """Charges an overrun to the own pool, what it lacks to burst, the rest as debt.

    Debt stops at `debt_room` (how much more debt the own pool may carry);
    what lies beyond is not counted by any pool.
    """
    from_own = min(overrun, own_available)
    from_burst = min(overrun - from_own, burst_available)
    debt = min(overrun - from_own - from_burst, max(0, debt_room))
    return OverrunCharge(from_own, from_burst, debt)


def burst_limit(burst_capacity: int, percent: int) -> int:
    """Burst tokens one tenant may hold at a time."""
    return burst_capacity * percent // 100


def usage_tokens(
    input_tokens: int,
    cached_input_tokens: int,
    cache_write_tokens: int,
    output_tokens: int,
    cache_read_weight_percent: int,
) -> int:
    """Tokens a call counts against its budget; cache reads by their weight."""
    cached = -(-cached_input_tokens * cache_read_weight_percent // 100)
    return input_tokens + cached + cache_write_tokens + output_tokens
