"""A reservation: tokens held for one API call, under a lease."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from tokenpool.core._pools import Pool


class State(enum.StrEnum):
    """Where a reservation is; it ends in exactly one of the last four."""

    OPEN = "open"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"
    UNDONE = "undone"
    """Granted, but the caller gave up before the answer reached it."""


@dataclass(slots=True)
class Reservation:
    """Tokens held for one call, where they came from, and how it ended.

    Times come in pairs: wall-clock nanoseconds (UTC, what is stored) and
    the daemon's monotonic nanoseconds (what leases run on while it runs).
    """

    reservation_id: str
    budget: str
    tenant: str
    pool: Pool
    hold: int
    sources: tuple[tuple[Pool, int], ...]
    requested: int
    complexity_score: int
    multiplier: float
    created_wall_ns: int
    lease_expires_wall_ns: int
    lease_expires_mono_ns: int
    waited_ms: int = 0
    state: State = State.OPEN
    ended_wall_ns: int = 0
    idempotency_key: str = ""
    request_fingerprint: str = ""
    end_fingerprint: str = ""
    charged: int = 0
    refunded: int = 0
    overrun: int = 0
    model: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Free labels; never changed in place, so reservations may share one."""
    task_type: str = ""
    output_allowance: int = 0
    """Output allowance before the learned correction (0: explicit tokens)."""
    output_factor: Fraction | None = None
    """The learned correction applied to the allowance, if any."""
    used: int = 0
    """Usage a settle reported."""
    incomplete: bool = False
    response_cache_hit: bool = False
    """Settled as a response-cache hit: no call was made, nothing to learn."""
    team: str = ""
    cost_micros: int = 0
    """Estimated cost of the hold while open; the charged cost once ended."""
    saved_tokens: int = 0
    """Tokens a cache saved when it was settled."""
    saved_micros: int = 0
    """Money a cache saved when it was settled, in micro-dollars."""
    shadow: str = ""
    """Shadow mode: why an enforcing daemon would not have granted it now."""

    @property
    def is_open(self) -> bool:
        """Whether the reservation still holds tokens."""
        return self.state is State.OPEN

    def drawn_from(self, pool: Pool) -> int:
        """Tokens this reservation holds from one pool."""
        return sum(tokens for source, tokens in self.sources if source is pool)
