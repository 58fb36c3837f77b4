"""Translation between wire messages and the engine's commands and views."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import InvalidFieldError
from tokenpool.core import EstimateRow, PeriodUsage, PoolState, Reservation
from tokenpool.engine import (
    BudgetView,
    ExtendCommand,
    ReserveCommand,
    SettleCommand,
    TeamView,
    TenantView,
)

# Counters that sum usage can pass what an int64 field holds (each usage
# figure may be up to 2^62, SPEC 12.9); they are sent saturated at its ends.
_INT64_MAX = 2**63 - 1


# A pool's state on the wire; UNSPECIFIED is not a state.
POOL_STATES: dict[PoolState, pb.PoolState] = {
    PoolState.ACTIVE: pb.POOL_STATE_ACTIVE,
    PoolState.PAUSED: pb.POOL_STATE_PAUSED,
    PoolState.DRAINING: pb.POOL_STATE_DRAINING,
}
_FROM_WIRE = {wire: state for state, wire in POOL_STATES.items()}


def pool_state(wire: pb.PoolState) -> PoolState:
    """The engine's pool state for a SetPoolState request's `state`.

    Raises:
        InvalidFieldError: the state is unspecified or unknown.
    """
    state = _FROM_WIRE.get(wire)
    if state is None:
        shown = pb.PoolState.Name(wire) if wire in pb.PoolState.values() else wire
        raise InvalidFieldError(
            "state", f"{shown} is not a pool state; use ACTIVE, PAUSED or DRAINING"
        )
    return state


def saturated(value: int) -> int:
    """A sum as an int64 field can carry it: clipped to the int64 range."""
    return max(-_INT64_MAX - 1, min(_INT64_MAX, value))


def _timestamp(wall_ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(wall_ns)
    return stamp


def _draws(reservation: Reservation) -> list[pb.PoolDraw]:
    return [pb.PoolDraw(pool=pool.value, tokens=t) for pool, t in reservation.sources]


def reserve_command(request: pb.ReserveRequest) -> ReserveCommand:
    """The engine's view of a Reserve request."""
    return ReserveCommand(
        budget=request.budget,
        tenant=request.tenant,
        tokens=request.tokens,
        input_tokens=request.input_tokens,
        input_chars=request.input_chars,
        max_output_tokens=request.max_output_tokens,
        model=request.model,
        task_type=request.task_type,
        output_detail=request.output_detail,
        structured_output=request.structured_output,
        context_items=request.context_items,
        urgency=request.urgency,
        max_wait_ms=request.max_wait_ms,
        lease_ms=request.lease_ms,
        idempotency_key=request.idempotency_key,
        fallback_budgets=tuple(request.fallback_budgets),
        labels=dict(request.labels),
    )


def reserve_response(reservation: Reservation) -> pb.ReserveResponse:
    """The wire answer to a granted Reserve."""
    return pb.ReserveResponse(
        reservation_id=reservation.reservation_id,
        granted_tokens=reservation.hold,
        pool=reservation.pool.value,
        budget=reservation.budget,
        sources=_draws(reservation),
        complexity_score=reservation.complexity_score,
        multiplier=reservation.multiplier,
        lease_expires_at=_timestamp(reservation.lease_expires_wall_ns),
        waited_ms=reservation.waited_ms,
    )


def settle_command(request: pb.SettleRequest) -> SettleCommand:
    """The engine's view of a Settle request."""
    return SettleCommand(
        reservation_id=request.reservation_id,
        tenant=request.tenant,
        input_tokens=request.input_tokens,
        cached_input_tokens=request.cached_input_tokens,
        cache_write_tokens=request.cache_write_tokens,
        output_tokens=request.output_tokens,
        incomplete=request.incomplete,
        response_cache_hit=request.response_cache_hit,
        model=request.model,
        provider_rate_limited=request.provider_rate_limited,
        provider_remaining_tokens=request.provider_remaining_tokens,
        provider_limit_tokens=request.provider_limit_tokens,
    )


def extend_command(request: pb.ExtendRequest) -> ExtendCommand:
    """The engine's view of an Extend request."""
    lease = None
    if request.HasField("lease_expires_at"):
        try:
            lease = request.lease_expires_at.ToNanoseconds()
        except ValueError as exc:
            raise InvalidFieldError("lease_expires_at", str(exc)) from exc
    return ExtendCommand(
        reservation_id=request.reservation_id,
        tenant=request.tenant,
        total_tokens=request.total_tokens,
        lease_expires_wall_ns=lease,
    )


def extend_response(reservation: Reservation) -> pb.ExtendResponse:
    """The wire answer to an Extend."""
    return pb.ExtendResponse(
        granted_tokens=reservation.hold,
        sources=_draws(reservation),
        lease_expires_at=_timestamp(reservation.lease_expires_wall_ns),
    )


def budget_status(view: BudgetView) -> pb.BudgetStatus:
    """The wire form of a budget's status."""
    return pb.BudgetStatus(
        name=view.name,
        capacity_tokens=view.capacity_tokens,
        window_seconds=view.window_seconds,
        open_reservations=view.open_reservations,
        pools=[
            pb.PoolStatus(
                name=pool.name.value,
                share_percent=pool.share_percent,
                capacity_tokens=pool.capacity_tokens,
                available_tokens=pool.available_tokens,
                in_flight_tokens=pool.in_flight_tokens,
                debt_tokens=pool.debt_tokens,
                waiting=pool.waiting,
                lent_tokens=pool.lent_tokens,
                borrowed_tokens=pool.borrowed_tokens,
                utilization=pool.utilization,
                charged_tokens=saturated(pool.charged_tokens),
                state=POOL_STATES[pool.state],
                open_reservations=pool.open_reservations,
            )
            for pool in view.pools
        ],
    )


def tenant_status(view: TenantView) -> pb.TenantStatus:
    """The wire form of a tenant's standing."""
    return pb.TenantStatus(
        name=view.name,
        tier=view.tier,
        weight=view.weight,
        configured=view.configured,
        open_reservations=view.open_reservations,
        in_flight_tokens=view.in_flight_tokens,
        team=view.team,
        day=calendar_usage(view.day),
        month=calendar_usage(view.month),
    )


def team_status(view: TeamView) -> pb.TeamStatus:
    """The wire form of a team's standing."""
    return pb.TeamStatus(
        name=view.name,
        members=view.members,
        in_flight_tokens=view.in_flight_tokens,
        day=calendar_usage(view.day),
        month=calendar_usage(view.month),
    )


def calendar_usage(usage: PeriodUsage) -> pb.CalendarUsage:
    """One period's calendar counters."""
    return pb.CalendarUsage(
        period=usage.period,
        charged_tokens=saturated(usage.charged_tokens),
        held_tokens=saturated(usage.held_tokens),
        charged_micros=saturated(usage.charged_micros),
        held_micros=saturated(usage.held_micros),
        ends_at=_timestamp(usage.end_ns),
    )


def reservation_info(reservation: Reservation) -> pb.ReservationInfo:
    """The wire form of one reservation in a listing."""
    return pb.ReservationInfo(
        reservation_id=reservation.reservation_id,
        budget=reservation.budget,
        tenant=reservation.tenant,
        pool=reservation.pool.value,
        state=reservation.state.value,
        granted_tokens=reservation.hold,
        sources=_draws(reservation),
        lease_expires_at=_timestamp(reservation.lease_expires_wall_ns),
    )


def estimate_row(budget: str, row: EstimateRow) -> pb.EstimateRow:
    """One tenant and task type's estimate accuracy."""
    return pb.EstimateRow(
        budget=budget,
        tenant=row.tenant,
        task_type=row.task_type,
        samples=row.samples,
        window_samples=row.window_samples,
        used_to_held_p50=row.p50 or 0.0,
        used_to_held_p90=row.p90 or 0.0,
        used_to_held_p99=row.p99 or 0.0,
        overrun_rate=row.overrun_rate,
        unused_tokens=saturated(row.unused_tokens),
        overrun_tokens=saturated(row.overrun_tokens),
        output_factor=float(row.factor or 0),
        incomplete=row.incomplete,
    )


def report_row(row: dict[str, object]) -> pb.ReportRow:
    """One budget and tenant's totals from the ledger, sums saturated."""
    fields = {
        key: saturated(value) if isinstance(value, int) else value
        for key, value in row.items()
    }
    return pb.ReportRow(**fields)  # type: ignore[arg-type]
