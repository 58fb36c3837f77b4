"""A token bucket with continuous refill and exact integer accounting."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """One pool's level, refilled at capacity per window, carried exactly.

    The level may go below zero (debt) when usage overruns a hold or the
    capacity is lowered below what is held. Refill adds `capacity` tokens
    per `window_ns`; the fraction of a token not yet whole is kept in
    `carry`, a numerator over `window_ns`, so no refill is ever lost.
    """

    capacity: int
    window_ns: int
    level: int
    carry: int
    updated_ns: int

    @classmethod
    def full(cls, capacity: int, window_ns: int, now_ns: int) -> TokenBucket:
        """Creates a bucket that starts at its capacity."""
        return cls(capacity, window_ns, capacity, 0, now_ns)

    @property
    def available(self) -> int:
        """Tokens that can be drawn now; zero while in debt."""
        return max(0, self.level)

    @property
    def debt(self) -> int:
        """How far the level is below zero."""
        return max(0, -self.level)

    def refill(self, now_ns: int) -> None:
        """Brings the level up to date; a clock going backwards adds nothing."""
        if now_ns <= self.updated_ns:
            return
        elapsed = now_ns - self.updated_ns
        self.updated_ns = now_ns
        if self.level >= self.capacity:
            self.carry = 0
            return

        whole, self.carry = divmod(self.capacity * elapsed + self.carry, self.window_ns)
        self.level += whole
        if self.level >= self.capacity:
            self.level = self.capacity
            self.carry = 0

    def take(self, tokens: int) -> None:
        """Draws tokens the caller has checked are available."""
        self.level -= tokens

    def give(self, tokens: int) -> None:
        """Returns tokens; the level never rises above capacity.

        A full bucket also drops the fraction of a token refill had carried,
        as refill does: nothing accumulates above capacity.
        """
        self.level = min(self.capacity, self.level + tokens)
        if self.level >= self.capacity:
            self.carry = 0

    def charge(self, tokens: int) -> None:
        """Draws tokens whether or not they are there; a shortfall is debt."""
        self.level -= tokens

    def resize(self, capacity: int) -> None:
        """Changes capacity, moving the level by the same amount."""
        self.level += capacity - self.capacity
        self.capacity = capacity
        if self.level >= capacity:
            self.carry = 0

    def ns_until(self, tokens: int) -> int | None:
        """Nanoseconds of refill until `tokens` are available, if ever."""
        if tokens <= self.level:
            return 0
        if tokens > self.capacity or self.capacity == 0:
            return None
        missing = (tokens - self.level) * self.window_ns - self.carry
        return -(-missing // self.capacity)
