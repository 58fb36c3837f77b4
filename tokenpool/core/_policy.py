"""Budget, tenant and input-limit policies, validated where they are declared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tokenpool.core._autoscale import AutoscalePolicy
from tokenpool.core._caps import Caps
from tokenpool.core._learning import LearningPolicy
from tokenpool.core._model import FrozenModel
from tokenpool.core._pools import DEFAULT_SHARES, Pool, Tier
from tokenpool.core._scoring import ScoringPolicy

# Largest usage figure accepted anywhere (SPEC 12.9): sums stay inside 64 bits.
MAX_TOKENS = 2**62

# Printable, no control characters; the length is checked by the validators.
Name = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class Shares(FrozenModel):
    """Whole percent of capacity per pool; they must sum to 100."""

    basic: int = Field(DEFAULT_SHARES[Pool.BASIC], ge=0, le=100)
    priority: int = Field(DEFAULT_SHARES[Pool.PRIORITY], ge=0, le=100)
    burst: int = Field(DEFAULT_SHARES[Pool.BURST], ge=0, le=100)

    @model_validator(mode="after")
    def _sum_to_100(self) -> Shares:
        total = self.basic + self.priority + self.burst
        if total != 100:
            raise ValueError(
                f"shares must sum to 100, got {total} "
                f"(basic={self.basic}, priority={self.priority}, burst={self.burst})"
            )
        return self

    def by_pool(self) -> dict[Pool, int]:
        """The shares keyed by pool."""
        return {
            Pool.BASIC: self.basic,
            Pool.PRIORITY: self.priority,
            Pool.BURST: self.burst,
        }


class TenantPolicy(Caps):
    """A configured tenant: its tier picks its pool, its weight its share."""

    name: Name
    tier: Tier = Tier.BASIC
    weight: int = Field(1, ge=1, le=1_000_000)
    team: Name | None = None
    """A team whose caps and calendar budgets also apply to this tenant."""


class TeamPolicy(Caps):
    """A group of tenants held to shared caps and calendar budgets."""

    name: Name


class LendingPolicy(FrozenModel):
    """What one pool lends to other pools' tenants, and whether it borrows.

    Lending is step 3 of SPEC 3: after the own pool and burst. Burst itself
    is governed by the per-tenant burst percents instead.
    """

    lendable_percent: int = Field(25, ge=0, le=100)
    """Most of this pool's capacity that may be out on loan at once."""
    lend_threshold_percent: int = Field(75, ge=0, le=100)
    """A loan never lifts this pool's live utilisation above this percent."""
    never_lend: bool = False
    never_borrow: bool = False
    """This pool's tenants take no loans from other pools (burst still serves)."""


class Lending(FrozenModel):
    """Lending rules per pool."""

    basic: LendingPolicy = LendingPolicy()
    priority: LendingPolicy = LendingPolicy()

    def of(self, pool: Pool) -> LendingPolicy | None:
        """The rules of a pool that lends; None for burst (not a lender)."""
        if pool is Pool.BASIC:
            return self.basic
        if pool is Pool.PRIORITY:
            return self.priority
        return None


class BudgetPolicy(FrozenModel):
    """One upstream quota and the rules its pools follow."""

    name: Name
    capacity_tokens: int = Field(ge=0, le=MAX_TOKENS)
    """Tokens per window the upstream allows."""
    window_seconds: int = Field(60, ge=1, le=86_400)
    """Refill window: each pool refills its capacity once per window."""
    max_capacity_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS)
    """Largest capacity the budget may reach; defaults to capacity_tokens."""
    min_capacity_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS)
    """Smallest capacity the autoscaler may shrink to; defaults to capacity_tokens."""
    unknown_tenants: Literal["admit", "refuse"] = "admit"
    """Admit unknown tenants as basic with weight 1, or refuse them."""
    shares: Shares = Shares()
    lease_seconds: float = Field(300.0, gt=0)
    """Lease given when a Reserve asks for 0."""
    max_lease_seconds: float = Field(3600.0, gt=0)
    """Longest lease a Reserve or Extend may ask for."""
    max_wait_ms: int = Field(60_000, ge=0)
    """Longest wait a Reserve may ask for."""
    queue_limit: int = Field(1000, ge=0)
    """Requests that may wait per pool; a full queue refuses at once."""
    burst_tenant_percent: int = Field(50, ge=0, le=100)
    """Share of burst's capacity one tenant may hold at a time."""
    burst_high_complexity_percent: int = Field(100, ge=0, le=100)
    """Share of burst one tenant may hold for requests scored 7 or more."""
    refund_on_expiry: bool = False
    """Give an expired reservation's hold back instead of charging it."""
    cache_read_weight_percent: int = Field(100, ge=0, le=100)
    """Percent of a cached input token that counts against the budget."""
    overrun_limit_percent: int = Field(10, ge=0)
    """Usage this far above the hold is flagged as a violation."""
    max_debt_windows: int = Field(1, ge=0, le=1000)
    """A pool's debt never passes this many windows of its capacity.

    Usage beyond it is still charged in the ledger, but the pool stops
    counting it, so one wild usage report cannot lock a pool for years.
    """
    chars_per_token: int = Field(4, ge=1, le=100)
    """Converts input_chars to tokens when no token count is given."""
    scoring: ScoringPolicy = ScoringPolicy()
    """Complexity score, multiplier bands and output allowances."""
    learning: LearningPolicy = LearningPolicy()
    """Learning from settlements, and the opt-in allowance correction."""
    queueing: Literal["fair", "fifo"] = "fair"
    """fair: weighted fair queuing over tenants; fifo: arrival order."""
    starvation_age_ms: int = Field(2000, ge=0, le=3_600_000)
    """In shared pools, a waiter this old goes before newer higher-tier ones."""
    lending: Lending = Lending()
    requests_per_minute: int | None = Field(None, ge=0)
    """Reservations granted per minute (a token bucket; None: no limit)."""
    max_concurrent_reservations: int | None = Field(None, ge=0)
    """Open reservations at once (None: no limit)."""
    autoscale: AutoscalePolicy = AutoscalePolicy()
    """The autoscaling controller of this budget (off unless enabled)."""
    shadow: bool = False
    """Decide, record and trace everything, but grant every request."""

    @model_validator(mode="after")
    def _bounds(self) -> BudgetPolicy:
        if self.max_lease_seconds < self.lease_seconds:
            raise ValueError(
                f"max_lease_seconds ({self.max_lease_seconds}) must be at least "
                f"lease_seconds ({self.lease_seconds})"
            )
        if self.max_capacity_tokens is not None and (
            self.max_capacity_tokens < self.capacity_tokens
        ):
            raise ValueError(
                f"max_capacity_tokens ({self.max_capacity_tokens}) must be at "
                f"least capacity_tokens ({self.capacity_tokens})"
            )
        if self.min_capacity_tokens is not None and (
            self.min_capacity_tokens > self.capacity_tokens
        ):
            raise ValueError(
                f"min_capacity_tokens ({self.min_capacity_tokens}) must be at "
                f"most capacity_tokens ({self.capacity_tokens})"
            )
        return self

    @property
    def window_ns(self) -> int:
        """The refill window in nanoseconds."""
        return self.window_seconds * 1_000_000_000

    @property
    def peak_capacity(self) -> int:
        """The largest capacity this budget can ever have."""
        return self.max_capacity_tokens or self.capacity_tokens

    @property
    def floor_capacity(self) -> int:
        """The smallest capacity the autoscaler may set."""
        if self.min_capacity_tokens is None:
            return self.capacity_tokens
        return self.min_capacity_tokens

    def with_capacity(self, capacity: int) -> BudgetPolicy:
        """This policy at another capacity (run time: a change or an override).

        The bounds stay: the minimum is pinned to what it was (an unset one
        to the file's capacity), so a capacity below it (a provider cut, an
        operator's choice) is kept and the autoscaler only grows it from
        there; the maximum is the configured one (SetCapacity refuses to
        pass it; without one, the engine remembers the largest capacity set
        for what a request could ever get).
        """
        return self.model_copy(
            update={
                "capacity_tokens": capacity,
                "min_capacity_tokens": self.floor_capacity,
            }
        )


class InputLimits(FrozenModel):
    """How big names, labels and waits in requests may be (SPEC 12.11)."""

    max_labels: int = Field(64, ge=0)
    max_label_length: int = Field(256, ge=1)
    idempotency_ttl_seconds: int = Field(86_400, ge=1)
    """How long idempotency keys and ended reservations are remembered."""
