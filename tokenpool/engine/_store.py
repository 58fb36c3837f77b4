"""Where pool levels live: an interface, and the in-process store behind it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tokenpool.core import POOL_ORDER, Pool, TokenBucket


@dataclass(frozen=True, slots=True)
class PoolLevel:
    """A pool's bucket as read at one instant."""

    capacity: int
    level: int
    carry: int

    @property
    def available(self) -> int:
        """Tokens that can be drawn; zero in debt."""
        return max(0, self.level)

    @property
    def debt(self) -> int:
        """How far the level is below zero."""
        return max(0, -self.level)


class PoolStore(Protocol):
    """Pool levels shared by whoever grants from them.

    Every method takes the monotonic time so that refill is brought up to
    date first. `take` is all-or-nothing, so a store shared by several
    daemons (Redis, SPEC 10) can implement it as one atomic script.
    """

    def add_budget(
        self,
        budget: str,
        capacities: Mapping[Pool, int],
        window_ns: int,
        now_ns: int,
        levels: Mapping[Pool, PoolLevel] | None = None,
    ) -> None:
        """Creates a budget's pools, full or at restored levels."""

    def remove_budget(self, budget: str) -> None:
        """Forgets a budget's pools (a reload dropped it)."""

    def levels(self, budget: str, now_ns: int) -> dict[Pool, PoolLevel]:
        """Every pool of a budget, refilled to now."""

    def take(self, budget: str, draws: Iterable[tuple[Pool, int]], now_ns: int) -> bool:
        """Draws from several pools if each has enough; otherwise changes nothing."""

    def give(
        self, budget: str, amounts: Iterable[tuple[Pool, int]], now_ns: int
    ) -> None:
        """Returns tokens; no pool rises above its capacity."""

    def charge(
        self, budget: str, amounts: Iterable[tuple[Pool, int]], now_ns: int
    ) -> None:
        """Draws tokens whether or not they are there; shortfalls become debt."""

    def resize(self, budget: str, capacities: Mapping[Pool, int], now_ns: int) -> None:
        """Sets new capacities, moving each level by its capacity's change."""

    def ns_until(self, budget: str, pool: Pool, tokens: int, now_ns: int) -> int | None:
        """Refill time until a pool holds `tokens`, or None if it never will."""


class MemoryPoolStore:
    """Pool levels in this process's memory: the single-daemon store."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[Pool, TokenBucket]] = {}

    def add_budget(
        self,
        budget: str,
        capacities: Mapping[Pool, int],
        window_ns: int,
        now_ns: int,
        levels: Mapping[Pool, PoolLevel] | None = None,
    ) -> None:
        """Creates a budget's pools, full or at restored levels."""
        buckets = {}
        for pool in POOL_ORDER:
            bucket = TokenBucket.full(capacities[pool], window_ns, now_ns)
            if levels and pool in levels:
                stored = levels[pool]
                bucket.capacity, bucket.level, bucket.carry = (
                    stored.capacity,
                    stored.level,
                    stored.carry,
                )
                bucket.resize(capacities[pool])
            buckets[pool] = bucket
        self._buckets[budget] = buckets

    def remove_budget(self, budget: str) -> None:
        """Forgets a budget's pools (a reload dropped it)."""
        self._buckets.pop(budget, None)

    def _refilled(self, budget: str, now_ns: int) -> dict[Pool, TokenBucket]:
        buckets = self._buckets[budget]
        for bucket in buckets.values():
            bucket.refill(now_ns)
        return buckets

    def levels(self, budget: str, now_ns: int) -> dict[Pool, PoolLevel]:
        """Every pool of a budget, refilled to now."""
        return {
            pool: PoolLevel(b.capacity, b.level, b.carry)
            for pool, b in self._refilled(budget, now_ns).items()
        }

    def take(self, budget: str, draws: Iterable[tuple[Pool, int]], now_ns: int) -> bool:
        """Draws from several pools if each has enough; otherwise changes nothing."""
        buckets = self._refilled(budget, now_ns)
        draws = tuple(draws)
        if any(buckets[pool].available < tokens for pool, tokens in draws):
            return False
        for pool, tokens in draws:
            buckets[pool].take(tokens)
        return True

    def give(
        self, budget: str, amounts: Iterable[tuple[Pool, int]], now_ns: int
    ) -> None:
        """Returns tokens; no pool rises above its capacity."""
        buckets = self._refilled(budget, now_ns)
        for pool, tokens in amounts:
            buckets[pool].give(tokens)

    def charge(
        self, budget: str, amounts: Iterable[tuple[Pool, int]], now_ns: int
    ) -> None:
        """Draws tokens whether or not they are there; shortfalls become debt."""
        buckets = self._refilled(budget, now_ns)
        for pool, tokens in amounts:
            buckets[pool].charge(tokens)

    def resize(self, budget: str, capacities: Mapping[Pool, int], now_ns: int) -> None:
        """Sets new capacities, moving each level by its capacity's change."""
        buckets = self._refilled(budget, now_ns)
        for pool, capacity in capacities.items():
            buckets[pool].resize(capacity)

    def ns_until(self, budget: str, pool: Pool, tokens: int, now_ns: int) -> int | None:
        """Refill time until a pool holds `tokens`, or None if it never will."""
        bucket = self._refilled(budget, now_ns)[pool]
        return bucket.ns_until(tokens)
