"""What the engine tells an observer about its decisions, and their field names.

The engine calls an `Observer` synchronously on the event loop as things
happen; the default one does nothing. Telemetry (traces, metrics, the
operator hook) implements it outside the engine, which imports none of it.
Calls about one request are made in that request's own task, so context
variables such as the current span belong to it; expiries come from the
sweeper's task.

The same field names name log keys and, under a `tokenpool.` prefix, span
attributes, so that a log line and a span read alike.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from tokenpool._errors import RefusalError
from tokenpool.core import BudgetAlert, CacheSavings, Pool, Reservation, ScaleDecision
from tokenpool.engine._commands import ReserveCommand


class EndKind(enum.StrEnum):
    """How a reservation's hold came to an end (or was charged after it)."""

    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"
    UNDONE = "undone"
    """Granted, but its caller left before the answer reached it."""
    LATE_SETTLE = "late_settle"
    """A settle after expiry; only usage beyond what expiry charged counts."""


@dataclass(frozen=True, slots=True)
class Queued:
    """A Reserve that waits in a pool's queue for tokens."""

    budget: str
    tenant: str
    pool: Pool
    tokens: int
    queue_length: int
    """Requests waiting in that pool's queue, this one included."""


@dataclass(frozen=True, slots=True)
class Ending:
    """A reservation settled, released, expired or undone, and what it cost.

    The token figures are those of this event: for a late settle, only what
    it charged beyond expiry.
    """

    kind: EndKind
    reservation: Reservation
    charged: int
    refunded: int
    overrun: int
    used: int = 0
    """Usage the settle reported, as the budget counts it."""
    cost_micros: int = 0
    cached_input_tokens: int = 0
    savings: tuple[CacheSavings, ...] = ()
    violation: bool = False
    """Usage passed the hold by more than the budget's overrun limit."""
    provider_rate_limited: bool = False
    provider_remaining_tokens: int = 0
    provider_limit_tokens: int = 0
    repeated: bool = False
    """A repeat of an earlier settle or release: nothing changed now."""


@dataclass(frozen=True, slots=True)
class BudgetChange:
    """An operator's SetCapacity, Rebalance or SetPoolState of one budget."""

    budget: str
    kind: str
    """capacity or rebalance, as in the ledger."""
    actor: str
    capacity_tokens: int
    capacities: Mapping[Pool, int]
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AutoscaleNote:
    """An autoscaler decision, and whether it took effect."""

    decision: ScaleDecision
    mode: str
    """act, recommend, or shadow (the budget's shadow mode only recommends)."""
    applied: bool


@dataclass(slots=True)
class CommitNote:
    """Filled in by the engine while it waits for a ledger commit."""

    batches: int = 0
    """Batches written in the same transaction, this one included."""
    failed: bool = False


class Observer:
    """Receives the engine's decisions; every method does nothing here.

    Implementations must be quick and must never raise: the engine calls
    them in the middle of its work.
    """

    def reserve_queued(self, queued: Queued) -> None:
        """A Reserve started to wait for tokens."""

    def reserve_granted(self, reservation: Reservation, *, repeated: bool) -> None:
        """A Reserve is answered with this reservation (a repeat holds nothing)."""

    def reserve_refused(
        self, command: ReserveCommand, error: RefusalError, waited_ms: int
    ) -> None:
        """A Reserve is refused by every budget it named."""

    def reservation_extended(self, reservation: Reservation, delta: int) -> None:
        """An Extend changed a hold by `delta` tokens (or only its lease)."""

    def reservation_ended(self, ending: Ending) -> None:
        """A hold ended, or a late settle charged an overrun."""

    def budget_changed(self, change: BudgetChange) -> None:
        """An operator changed a budget's capacity, shares or a pool's state."""

    def budget_alert(self, alert: BudgetAlert) -> None:
        """Charged usage reached a soft threshold of a calendar budget."""

    def autoscale_decided(self, note: AutoscaleNote) -> None:
        """The autoscaler decided (or, in recommend mode, recommends) a change."""

    def ledger_commit(self) -> AbstractContextManager[CommitNote]:
        """Wraps the wait for one operation's ledger commit."""
        return nullcontext(CommitNote())


def lenders(reservation: Reservation) -> tuple[str, ...]:
    """Pools other than its own that a reservation drew on, as pool:tokens."""
    return tuple(
        f"{pool.value}:{tokens}"
        for pool, tokens in reservation.sources
        if pool is not reservation.pool
    )


def reservation_fields(reservation: Reservation) -> dict[str, object]:
    """A reservation's decision under the shared field names."""
    return {
        "budget": reservation.budget,
        "tenant": reservation.tenant,
        "pool": reservation.pool.value,
        "reservation_id": reservation.reservation_id,
        "tokens_requested": reservation.requested,
        "tokens_granted": reservation.hold,
        "lenders": lenders(reservation),
        "score": reservation.complexity_score,
        "multiplier": reservation.multiplier,
        "waited_ms": reservation.waited_ms,
        **({"shadow": reservation.shadow} if reservation.shadow else {}),
    }


def ending_fields(ending: Ending) -> dict[str, object]:
    """What ending a reservation did, under the shared field names."""
    reservation = ending.reservation
    fields: dict[str, object] = {
        "budget": reservation.budget,
        "tenant": reservation.tenant,
        "pool": reservation.pool.value,
        "reservation_id": reservation.reservation_id,
        "outcome": ending.kind.value,
        "tokens_granted": reservation.hold,
        "tokens_used": ending.used,
        "tokens_charged": ending.charged,
        "tokens_refunded": ending.refunded,
        "tokens_overrun": ending.overrun,
        "cost_micros": ending.cost_micros,
    }
    if ending.repeated:
        fields["repeated"] = True
    return fields


def refusal_fields(
    tenant: str, error: RefusalError, waited_ms: int = 0
) -> dict[str, object]:
    """A refusal under the shared field names."""
    retry_ms = None
    if error.retry_after_ns is not None:
        retry_ms = -(-error.retry_after_ns // 1_000_000)
    return {
        "budget": error.budget,
        "tenant": tenant,
        "pool": str(error.pool),
        "outcome": "refused",
        "reason": error.reason,
        "tokens_requested": error.requested,
        "largest_grantable": error.largest_grantable,
        "retry_after_ms": retry_ms,
        "waited_ms": waited_ms,
    }


def alert_fields(alert: BudgetAlert) -> dict[str, object]:
    """A soft-threshold alert under the shared field names."""
    return {
        "subject_kind": alert.subject.kind.value,
        "subject": alert.subject.name,
        "window": alert.window.value,
        "period": alert.period,
        "measure": alert.measure.value,
        "percent": alert.percent,
        "used": alert.used,
        "limit": alert.limit,
    }
