"""Conversions between live reservations and the rows and entries the ledger stores."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from tokenpool.core import Pool, Reservation
from tokenpool.ledger import Entry, EntryKind, ReservationRow


def reservation_row(reservation: Reservation) -> ReservationRow:
    """The row that stores a reservation as it is now."""
    return ReservationRow(
        reservation_id=reservation.reservation_id,
        budget=reservation.budget,
        tenant=reservation.tenant,
        pool=reservation.pool.value,
        state=reservation.state,
        hold=reservation.hold,
        sources=tuple((pool.value, tokens) for pool, tokens in reservation.sources),
        requested=reservation.requested,
        complexity_score=reservation.complexity_score,
        multiplier=reservation.multiplier,
        created_wall_ns=reservation.created_wall_ns,
        lease_expires_wall_ns=reservation.lease_expires_wall_ns,
        ended_wall_ns=reservation.ended_wall_ns,
        idempotency_key=reservation.idempotency_key,
        request_fingerprint=reservation.request_fingerprint,
        settle_fingerprint=reservation.end_fingerprint,
        charged=reservation.charged,
        refunded=reservation.refunded,
        overrun=reservation.overrun,
        waited_ms=reservation.waited_ms,
        model=reservation.model,
        labels=reservation.labels,
        task_type=reservation.task_type,
        output_allowance=reservation.output_allowance,
        output_factor=str(reservation.output_factor or ""),
        used=reservation.used,
        incomplete=reservation.incomplete,
        response_cache_hit=reservation.response_cache_hit,
        team=reservation.team,
        cost_micros=reservation.cost_micros,
        saved_tokens=reservation.saved_tokens,
        saved_micros=reservation.saved_micros,
        shadow=reservation.shadow,
    )


# Source lists as pools, shared by the reservations that drew alike, up to
# this many distinct lists (then the cache starts afresh).
_SHARED_LIMIT = 4096
_shared_sources: dict[tuple[tuple[str, int], ...], tuple[tuple[Pool, int], ...]] = {}
# Pools by their stored name: a dict lookup is cheaper than the enum's call.
_POOLS = {pool.value: pool for pool in Pool}


def _sources(stored: tuple[tuple[str, int], ...]) -> tuple[tuple[Pool, int], ...]:
    sources = _shared_sources.get(stored)
    if sources is None:
        if len(_shared_sources) >= _SHARED_LIMIT:
            _shared_sources.clear()
        sources = tuple((_POOLS[pool], tokens) for pool, tokens in stored)
        _shared_sources[stored] = sources
    return sources


def reservation_from_row(row: ReservationRow, now_ns: int, wall_ns: int) -> Reservation:
    """A live reservation from its row; its lease keeps its stored wall time.

    The labels map is the row's own, read-only and shared between rows.
    """
    return Reservation(
        reservation_id=row.reservation_id,
        budget=row.budget,
        tenant=row.tenant,
        pool=_POOLS[row.pool],
        hold=row.hold,
        sources=_sources(row.sources),
        requested=row.requested,
        complexity_score=row.complexity_score,
        multiplier=row.multiplier,
        created_wall_ns=row.created_wall_ns,
        lease_expires_wall_ns=row.lease_expires_wall_ns,
        lease_expires_mono_ns=now_ns + (row.lease_expires_wall_ns - wall_ns),
        waited_ms=row.waited_ms,
        state=row.state,
        ended_wall_ns=row.ended_wall_ns,
        idempotency_key=row.idempotency_key,
        request_fingerprint=row.request_fingerprint,
        end_fingerprint=row.settle_fingerprint,
        charged=row.charged,
        refunded=row.refunded,
        overrun=row.overrun,
        model=row.model,
        labels=row.labels,
        task_type=row.task_type,
        output_allowance=row.output_allowance,
        output_factor=Fraction(row.output_factor) if row.output_factor else None,
        used=row.used,
        incomplete=row.incomplete,
        response_cache_hit=row.response_cache_hit,
        team=row.team,
        cost_micros=row.cost_micros,
        saved_tokens=row.saved_tokens,
        saved_micros=row.saved_micros,
        shadow=row.shadow,
    )


def reservation_entry(
    kind: EntryKind,
    reservation: Reservation,
    wall_ns: int,
    *,
    tokens: int = 0,
    charged: int = 0,
    refunded: int = 0,
    overrun: int = 0,
    detail: Mapping[str, object] | None = None,
    actor: str = "",
) -> Entry:
    """The ledger entry for one change to a reservation."""
    return Entry(
        kind=kind,
        at_wall_ns=wall_ns,
        budget=reservation.budget,
        tenant=reservation.tenant,
        reservation_id=reservation.reservation_id,
        pool=reservation.pool,
        tokens=tokens,
        charged=charged,
        refunded=refunded,
        overrun=overrun,
        actor=actor,
        detail=detail or {},
    )
