"""What the service layer asks the engine to do, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenpool.core import PeriodUsage, Pool, PoolState, Reading


@dataclass(frozen=True, slots=True)
class ReserveCommand:
    """A Reserve request, already decoded from the wire."""

    budget: str
    tenant: str
    tokens: int = 0
    input_tokens: int = 0
    input_chars: int = 0
    max_output_tokens: int = 0
    model: str = ""
    task_type: str = ""
    output_detail: int = 0
    structured_output: bool = False
    context_items: int = 0
    urgency: int = 0
    max_wait_ms: int = 0
    lease_ms: int = 0
    idempotency_key: str = ""
    fallback_budgets: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SettleCommand:
    """A Settle request: what the call really used."""

    reservation_id: str
    tenant: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    incomplete: bool = False
    response_cache_hit: bool = False
    model: str = ""
    provider_rate_limited: bool = False
    provider_remaining_tokens: int = 0
    provider_limit_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ExtendCommand:
    """An Extend request; zero or None keeps the current value."""

    reservation_id: str
    tenant: str
    total_tokens: int = 0
    lease_expires_wall_ns: int | None = None


@dataclass(frozen=True, slots=True)
class PoolView:
    """One pool of a budget as the status RPCs show it."""

    name: Pool
    share_percent: int
    capacity_tokens: int
    available_tokens: int
    in_flight_tokens: int
    debt_tokens: int
    waiting: int
    lent_tokens: int
    borrowed_tokens: int
    charged_tokens: int
    """Charged to this pool since the daemon started."""
    state: PoolState = PoolState.ACTIVE
    """Active, or paused or draining by an operator."""
    open_reservations: int = 0
    """Open reservations holding tokens from this pool: what a drain waits for."""

    @property
    def utilization(self) -> float:
        """Live utilisation; 0 for a pool of capacity 0."""
        if self.capacity_tokens == 0:
            return 0.0
        return (self.capacity_tokens - self.available_tokens) / self.capacity_tokens


@dataclass(frozen=True, slots=True)
class BudgetView:
    """A budget and its pools as the status RPCs show it."""

    name: str
    capacity_tokens: int
    window_seconds: int
    pools: tuple[PoolView, ...]
    open_reservations: int


@dataclass(frozen=True, slots=True)
class TenantView:
    """A tenant's standing across budgets."""

    name: str
    tier: str
    weight: int
    configured: bool
    open_reservations: int
    in_flight_tokens: int
    team: str
    day: PeriodUsage
    month: PeriodUsage


@dataclass(frozen=True, slots=True)
class TeamView:
    """A team's members, holds and calendar usage."""

    name: str
    members: tuple[str, ...]
    in_flight_tokens: int
    day: PeriodUsage
    month: PeriodUsage


@dataclass(frozen=True, slots=True)
class AutoscaleView:
    """A budget's autoscaler as the status calls show it."""

    budget: str
    enabled: bool
    mode: str
    """act, recommend, or shadow (a shadow budget only recommends)."""
    interval_seconds: int
    readings: int
    """Intervals read since the daemon started."""
    last_reading: Reading | None
    restore_to: int | None
    """The capacity a provider cut grows back to; None when not cut."""
    minimum: int
    maximum: int
