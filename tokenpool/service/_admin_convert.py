"""Translation of the Admin service's messages: tenants, teams, entries, reports."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2
from pydantic import ValidationError
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import InvalidFieldError
from tokenpool.core import Caps, TeamPolicy, TenantPolicy
from tokenpool.engine import AutoscaleView
from tokenpool.ledger import Entry, ReportQuery, ReportRow
from tokenpool.service._convert import saturated

# Cap fields a request may set or clear, and the proto field of each.
_CAP_FIELDS = (
    "max_pool_percent",
    "max_in_flight_tokens",
    "daily_tokens",
    "monthly_tokens",
    "daily_cost_usd",
    "monthly_cost_usd",
)
_CLEARABLE_TENANT = frozenset({"team", *_CAP_FIELDS, "alert_percent"})
_CLEARABLE_TEAM = frozenset({*_CAP_FIELDS, "alert_percent"})


def _timestamp(wall_ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(wall_ns)
    return stamp


def _usd(name: str, text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidFieldError(
            f"caps.{name}", f"{text[:32]!r} is not a decimal amount like 12.50"
        ) from None


def _cap_updates(
    caps: pb.Caps, clear: Sequence[str], clearable: frozenset[str]
) -> dict[str, Any]:
    """The fields a request sets or clears, as policy values."""
    updates: dict[str, Any] = {}
    for name in clear:
        if name not in clearable:
            raise InvalidFieldError(
                "clear", f"{name[:64]!r} is not one of {', '.join(sorted(clearable))}"
            )
        updates[name] = () if name == "alert_percent" else None
    for name in _CAP_FIELDS:
        if caps.HasField(name):
            value = getattr(caps, name)
            updates[name] = _usd(name, value) if name.endswith("_usd") else value
    if caps.alert_percent:
        updates["alert_percent"] = tuple(caps.alert_percent)
    return updates


_M = TypeVar("_M", TenantPolicy, TeamPolicy)


def _validated(kind: type[_M], data: dict[str, Any]) -> _M:
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "request"
        raise InvalidFieldError(where, error["msg"]) from None


def tenant_policy(
    request: pb.UpsertTenantRequest, current: TenantPolicy | None
) -> TenantPolicy:
    """The tenant a request describes, over its current policy.

    Raises:
        InvalidFieldError: a field is out of range or cannot be cleared.
    """
    data: dict[str, Any] = {"name": request.name}
    if current is not None:
        data = current.model_dump()
    data["name"] = request.name
    if request.tier:
        data["tier"] = request.tier
    if request.weight:
        data["weight"] = request.weight
    if request.HasField("team"):
        data["team"] = request.team or None
    data.update(_cap_updates(request.caps, request.clear, _CLEARABLE_TENANT))
    return _validated(TenantPolicy, data)


def team_policy(
    request: pb.UpsertTeamRequest, current: TeamPolicy | None
) -> TeamPolicy:
    """The team a request describes, over its current policy."""
    data: dict[str, Any] = {"name": request.name}
    if current is not None:
        data = current.model_dump()
    data.update(_cap_updates(request.caps, request.clear, _CLEARABLE_TEAM))
    return _validated(TeamPolicy, data)


def caps(policy: Caps) -> pb.Caps:
    """A policy's caps on the wire; unset ones stay unset."""
    message = pb.Caps(alert_percent=list(policy.alert_percent))
    for name in _CAP_FIELDS:
        value = getattr(policy, name)
        if value is not None:
            setattr(message, name, str(value) if name.endswith("_usd") else value)
    return message


def tenant_info(tenant: TenantPolicy, source: str) -> pb.TenantInfo:
    """A configured tenant on the wire."""
    return pb.TenantInfo(
        name=tenant.name,
        tier=tenant.tier.value,
        weight=tenant.weight,
        team=tenant.team or "",
        caps=caps(tenant),
        source=source,
    )


def team_info(team: TeamPolicy, members: Sequence[str], source: str) -> pb.TeamInfo:
    """A configured team on the wire."""
    return pb.TeamInfo(name=team.name, caps=caps(team), members=members, source=source)


def ledger_entry(entry: Entry, detail_json: str) -> pb.LedgerEntry:
    """One stored entry on the wire."""
    return pb.LedgerEntry(
        id=entry.id,
        at=_timestamp(entry.at_wall_ns),
        kind=entry.kind.value,
        budget=entry.budget,
        tenant=entry.tenant,
        reservation_id=entry.reservation_id,
        pool=str(entry.pool),
        tokens=entry.tokens,
        charged=entry.charged,
        refunded=entry.refunded,
        overrun=entry.overrun,
        actor=entry.actor,
        detail_json=detail_json,
    )


def _wall(request: Any, name: str) -> int | None:
    if not request.HasField(name):
        return None
    try:
        return int(getattr(request, name).ToNanoseconds())
    except (ValueError, OverflowError) as exc:
        raise InvalidFieldError(name, str(exc)) from None


def wall_range(request: Any) -> tuple[int | None, int | None]:
    """The since and until of a request, in wall nanoseconds."""
    return _wall(request, "since"), _wall(request, "until")


def is_grouped(request: pb.ReportRequest) -> bool:
    """Whether a Report asks for groups (the reservations-based report)."""
    return bool(
        request.group_by
        or request.period
        or request.tenant
        or request.HasField("since")
        or request.HasField("until")
    )


def report_query(request: pb.ReportRequest) -> ReportQuery:
    """The ledger's query for a grouped Report."""
    since, until = wall_range(request)
    return ReportQuery(
        group_by=tuple(request.group_by),
        period=request.period,
        budget=request.budget,
        tenant=request.tenant,
        since_wall_ns=since,
        until_wall_ns=until,
    )


def report_row(row: ReportRow) -> pb.ReportRow:
    """One group of a grouped Report."""
    figures = {name: saturated(value) for name, value in row.figures.items()}
    return pb.ReportRow(
        budget=row.keys.get("budget", ""),
        tenant=row.keys.get("tenant", ""),
        keys=row.keys,
        refusals=saturated(row.refusals or 0),
        refusals_known=row.refusals is not None,
        **figures,
    )


def autoscale_status(view: AutoscaleView, capacity: int) -> pb.AutoscaleStatus:
    """A budget's autoscaler on the wire."""
    reading = view.last_reading
    return pb.AutoscaleStatus(
        budget=view.budget,
        enabled=view.enabled,
        mode=view.mode,
        interval_seconds=view.interval_seconds,
        readings=view.readings,
        capacity_tokens=capacity,
        min_capacity_tokens=view.minimum,
        max_capacity_tokens=view.maximum,
        restore_to_tokens=view.restore_to or 0,
        utilization=0.0 if reading is None else reading.utilisation,
        wait_p95_ms=0 if reading is None else reading.wait_p95_ms,
        waiting=0 if reading is None else reading.waiting,
        refusals=0 if reading is None else reading.refusals,
    )
