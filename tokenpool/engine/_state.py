"""A budget's live state beside its pool levels, and a Reserve waiting in a queue."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field

import anyio

from tokenpool._errors import RefusalError
from tokenpool.core import (
    POOL_ORDER,
    Autoscaler,
    Breach,
    BudgetPolicy,
    EstimateBook,
    FairQueue,
    Pool,
    PoolState,
    Reading,
    Reservation,
    Sizing,
    TenantPolicy,
    Ticket,
    split_capacity,
)
from tokenpool.engine._clock import Alarm
from tokenpool.engine._commands import ReserveCommand


@dataclass(eq=False, slots=True)
class Waiter:
    """A Reserve waiting in a pool's queue for tokens."""

    command: ReserveCommand
    tenant: TenantPolicy
    sizing: Sizing
    lease_ns: int
    fingerprint: str
    arrived_ns: int
    deadline_ns: int = 0
    """When its wait ends (monotonic clock); 0 until it waits."""
    event: anyio.Event = field(default_factory=anyio.Event)
    ticket: Ticket[Waiter] | None = None
    reservation: Reservation | None = None
    commit: Awaitable[int] | None = None
    refusal: RefusalError | None = None
    """Set when a limit that waiting cannot fix refused the waiter."""
    breach: Breach | None = None
    """The limit beside the pools that last kept it waiting."""
    blocked_by: str = ""
    """The limit that last kept it waiting, for the refusal's reason."""


@dataclass(slots=True)
class BudgetState:
    """A budget's live state beside its pool levels."""

    policy: BudgetPolicy
    capacities: dict[Pool, int]
    queues: dict[Pool, FairQueue[Waiter]]
    in_flight: dict[Pool, int]
    borrowed: dict[Pool, int]
    """Drawn by this pool's tenants from other pools, outstanding now."""
    lent: dict[Pool, int]
    """Drawn from this pool by other pools' tenants, outstanding now."""
    burst_by_tenant: Counter[str]
    charged: dict[Pool, int]
    estimates: EstimateBook
    """How settled use compared with holds, per tenant and task type."""
    unknown_task_types: int = 0
    """Reserves that named a task type the scoring does not know."""
    open_reservations: int = 0
    pool_states: dict[Pool, PoolState] = field(
        default_factory=lambda: dict.fromkeys(POOL_ORDER, PoolState.ACTIVE)
    )
    """Which pools an operator paused or is draining (SPEC 8)."""
    open_by_pool: Counter[Pool] = field(default_factory=Counter)
    """Open reservations holding tokens from each pool."""
    largest_capacity: int = 0
    """The most capacity set since start; with no configured maximum, the
    budget's maximum for what it could ever grant (SPEC 12.1)."""
    alarm: Alarm | None = None
    alarm_at: int = 0
    scaler: Autoscaler | None = None
    """The budget's autoscaling controller, while autoscale is enabled."""
    next_reading_ns: int | None = None
    """When the autoscaler's current interval ends (monotonic clock)."""
    charged_mark: dict[Pool, int] = field(default_factory=dict)
    """Each pool's charged tokens when the current interval began."""
    interval_waits: list[int] = field(default_factory=list)
    """Waits (ms) of requests that finished waiting in the current interval."""
    interval_refusals: int = 0
    """Requests refused for want of tokens in the current interval."""
    interval_provider_limited: int = 0
    """Settles that reported a provider rate limit in the current interval."""
    readings: int = 0
    """Intervals the autoscaler has read so far."""
    last_reading: Reading | None = None

    @classmethod
    def new(cls, policy: BudgetPolicy) -> BudgetState:
        """A budget with empty queues and tallies, split by its shares."""
        fifo = policy.queueing == "fifo"
        return cls(
            policy=policy,
            capacities=split_capacity(policy.capacity_tokens, policy.shares.by_pool()),
            queues={
                Pool.BASIC: FairQueue(fifo=fifo),
                Pool.PRIORITY: FairQueue(fifo=fifo),
            },
            in_flight=dict.fromkeys(POOL_ORDER, 0),
            borrowed=dict.fromkeys(POOL_ORDER, 0),
            lent=dict.fromkeys(POOL_ORDER, 0),
            burst_by_tenant=Counter(),
            charged=dict.fromkeys(POOL_ORDER, 0),
            estimates=EstimateBook(policy.learning),
            largest_capacity=policy.capacity_tokens,
            scaler=Autoscaler(policy.autoscale) if policy.autoscale.enabled else None,
        )
