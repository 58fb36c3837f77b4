"""Where a reservation's tokens come from, and where unused ones go back to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

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
    lenders: tuple[tuple[Pool, int], ...] = ()
    """Other pools, in lending order, and how much each may lend now."""

    @property
    def burst_usable(self) -> int:
        """Burst tokens this request may take."""
        return max(0, min(self.burst_available, self.burst_room))

    @property
    def lendable(self) -> int:
        """Tokens other pools may lend this request now."""
        return sum(tokens for _, tokens in self.lenders)

    @property
    def shared(self) -> int:
        """Tokens beyond the own pool: burst, then lenders."""
        return self.burst_usable + self.lendable

    @property
    def largest(self) -> int:
        """The largest request that could be granted now."""
        return self.own_available + self.shared

    def own_only(self) -> Reach:
        """The same reach without burst or lenders (others come first there)."""
        return Reach(self.own_pool, self.own_available, 0, 0)


def plan_draws(tokens: int, reach: Reach) -> Draws | None:
    """Takes from the own pool, then burst, then lenders; None when short.

    The draws are listed in the order taken, which is the reverse of the
    order unused tokens go back in.
    """
    if tokens > reach.largest:
        return None

    draws: list[tuple[Pool, int]] = []
    left = tokens
    for pool, usable in (
        (reach.own_pool, reach.own_available),
        (Pool.BURST, reach.burst_usable),
        *reach.lenders,
    ):
        take = min(left, usable)
        if take > 0:
            draws.append((pool, take))
            left -= take
    return tuple(draws)


def refilled_level(capacity: int, level: int, window_ns: int, elapsed_ns: int) -> int:
    """A pool's level after `elapsed_ns` of refill alone, never above capacity.

    Refunds are not foreseen, so this is the least the pool will hold then.
    """
    if level >= capacity or elapsed_ns <= 0 or window_ns <= 0:
        return level
    return min(capacity, level + capacity * elapsed_ns // window_ns)


def projected_reach(
    reach: Reach,
    capacities: Mapping[Pool, int],
    *,
    taken: Draws,
    window_ns: int,
    elapsed_ns: int,
) -> Reach:
    """What a tenant will reach after `elapsed_ns`, had `taken` been drawn now.

    The own pool and burst gain their refill (refunds are not foreseen, so
    this is the least they will hold); what lenders offer now is kept, less
    what `taken` drew from them, as their offers move with their own use.
    """
    minus = dict(taken)

    def later(pool: Pool, available: int) -> int:
        left = available - minus.get(pool, 0)
        return max(0, refilled_level(capacities[pool], left, window_ns, elapsed_ns))

    return replace(
        reach,
        own_available=later(reach.own_pool, reach.own_available),
        burst_available=later(Pool.BURST, reach.burst_available),
        lenders=tuple(
            (pool, max(0, offer - minus.get(pool, 0))) for pool, offer in reach.lenders
        ),
    )


def lendable_now(
    capacity: int,
    available: int,
    lent: int,
    lendable_percent: int,
    threshold_percent: int,
) -> int:
    """What a pool may lend now: within its lendable share, above its threshold.

    A loan never takes the pool's live utilisation, (capacity - available)
    / capacity, above the threshold, and the pool never has more than its
    lendable share of capacity out on loan.
    """
    room = capacity * lendable_percent // 100 - lent
    keep = capacity - capacity * threshold_percent // 100
    return max(0, min(room, available - keep))


def plan_refund(sources: Sequence[tuple[Pool, int]], tokens: int) -> Draws:
    """Splits a refund over the sources: lenders first, then burst, then own.

    Sources are kept in drawing order (own, burst, lenders; see `merge`), so
    this is the reverse of that order.
    """
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


def merge(sources: Sequence[tuple[Pool, int]], extra: Draws, own: Pool) -> Draws:
    """Sources after an extension drew `extra`, kept in drawing order.

    Drawing order is own pool, burst, then lenders (in the order they lent
    first), whenever each was drawn, so refunds go back lenders first.
    """
    merged = dict(sources)
    for pool, tokens in extra:
        merged[pool] = merged.get(pool, 0) + tokens

    def rank(pool: Pool) -> int:
        return 0 if pool is own else 1 if pool is Pool.BURST else 2

    ordered = sorted(merged.items(), key=lambda item: rank(item[0]))
    return tuple(ordered)


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
