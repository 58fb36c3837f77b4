"""The Admin service: operator calls, translated to engine, ledger and daemon calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tokenpool._errors import (
    AccessControlOffError,
    InvalidFieldError,
    NoConfigFileError,
)
from tokenpool.core import (
    Reservation,
    check_name,
    check_range,
    check_text,
    team_key,
    tenant_key,
)
from tokenpool.engine import BudgetView, Engine
from tokenpool.ledger import EntryKind, Ledger
from tokenpool.service import _admin_convert as admin_convert
from tokenpool.service import _convert as convert
from tokenpool.service._actor import actor_of
from tokenpool.service._servicer import answer, answer_now

logger = logging.getLogger(__name__)

# ListReservations answers this many when the request says 0, at most the max.
_LISTED = 100
_MAX_LISTED = 10_000

# The longest key label accepted, in characters, as CreateKey allows.
_MAX_LABEL = 256

# The longest backup path accepted, in characters: Linux's PATH_MAX.
_MAX_PATH = 4096

# ListEntries answers this many per page when the request says 0, at most the max.
_PAGE = 1000
_MAX_PAGE = 10_000


class Reloaded(Protocol):
    """What the daemon's reload tells the service."""

    @property
    def changes(self) -> tuple[str, ...]:
        """One line per change put in force."""

    @property
    def notes(self) -> tuple[str, ...]:
        """What needs a restart."""


Reload = Callable[..., Awaitable[Reloaded]]


class Keys(Protocol):
    """The daemon's tenant keys, as the Admin service manages them."""

    def keys(self, tenant: str = "") -> Sequence[KeyView]:
        """Every key, file and run-time."""

    async def create(
        self, tenant: str, label: str = "", *, actor: str = ""
    ) -> tuple[KeyView, str]:
        """A new key, returned once."""

    async def rotate(
        self, key_id: str, *, keep_old: bool = False, label: str = "", actor: str = ""
    ) -> tuple[KeyView, str, KeyView]:
        """A key replaced by a new one."""

    async def revoke(self, key_id: str, *, actor: str = "") -> KeyView:
        """A key revoked."""


class KeyView(Protocol):
    """A key without its secret."""

    @property
    def key_id(self) -> str:
        """The key's id in listings and for rotate and revoke."""

    @property
    def tenant(self) -> str:
        """The tenant it identifies."""

    @property
    def label(self) -> str:
        """The operator's name for it."""

    @property
    def fingerprint(self) -> str:
        """The first hex digits of its digest."""

    @property
    def source(self) -> str:
        """Where it comes from: "file" or "run-time"."""

    @property
    def created_wall_ns(self) -> int:
        """When it was made (0 for a file key)."""

    @property
    def revoked_wall_ns(self) -> int:
        """When it was revoked; 0 while valid."""


class AdminServicer(pb_grpc.AdminServicer):
    """Operator calls: budgets, tenants, teams, reservations, ledger, reload."""

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        reload: Reload | None = None,
        keys: Keys | None = None,
    ):
        self._engine = engine
        self._ledger = ledger
        self._reload = reload
        self._keys = keys

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReservationsResponse:
        async def listing() -> list[pb.ReservationInfo]:
            if request.budget:
                self._engine.budget_status(request.budget)
            if request.tenant:
                check_name("tenant", request.tenant)
            limit = check_range("limit", request.limit, 0, _MAX_LISTED) or _LISTED
            found = self._engine.reservations(
                budget=request.budget, tenant=request.tenant, limit=limit
            )
            return [convert.reservation_info(r) for r in found]

        rows = await answer("ListReservations", context, listing)
        return pb.ListReservationsResponse(reservations=rows)

    async def Report(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResponse:
        async def totals() -> list[pb.ReportRow]:
            if request.budget:
                self._engine.budget_status(request.budget)
            if not admin_convert.is_grouped(request):
                rows = await self._ledger.totals(budget=request.budget or None)
                return [convert.report_row(row) for row in rows]
            if request.tenant:
                check_name("tenant", request.tenant)
            query = admin_convert.report_query(request)
            found = await self._ledger.usage_report(query)
            return [admin_convert.report_row(row) for row in found]

        return pb.ReportResponse(rows=await answer("Report", context, totals))

    async def Rebalance(
        self, request: pb.RebalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        async def rebalance() -> BudgetView:
            await self._engine.rebalance(
                request.budget, dict(request.shares), actor=actor_of(context)
            )
            return self._engine.budget_status(request.budget)

        return convert.budget_status(await answer("Rebalance", context, rebalance))

    async def SetCapacity(
        self, request: pb.SetCapacityRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        async def set_capacity() -> BudgetView:
            await self._engine.set_capacity(
                request.budget, request.capacity_tokens, actor=actor_of(context)
            )
            return self._engine.budget_status(request.budget)

        return convert.budget_status(await answer("SetCapacity", context, set_capacity))

    async def SetPoolState(
        self, request: pb.SetPoolStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        async def set_pool_state() -> BudgetView:
            await self._engine.set_pool_state(
                request.budget,
                request.pool,
                convert.pool_state(request.state),
                actor=actor_of(context),
            )
            return self._engine.budget_status(request.budget)

        return convert.budget_status(
            await answer("SetPoolState", context, set_pool_state)
        )

    async def Estimates(
        self, request: pb.EstimatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimatesResponse:
        rows = await answer_now(
            "Estimates",
            context,
            lambda: self._engine.estimates(
                budget=request.budget, tenant=request.tenant
            ),
        )
        return pb.EstimatesResponse(
            rows=[convert.estimate_row(budget, row) for budget, row in rows],
            unknown_task_types=self._engine.unknown_task_types(),
        )

    async def UpsertTenant(
        self, request: pb.UpsertTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.TenantStatus:
        async def upsert() -> pb.TenantStatus:
            check_name("name", request.name)
            current = next(
                (t for t in self._engine.tenants() if t.name == request.name), None
            )
            tenant = admin_convert.tenant_policy(request, current)
            await self._engine.upsert_tenant(tenant, actor=actor_of(context))
            return convert.tenant_status(self._engine.tenant_status(tenant.name))

        return await answer("UpsertTenant", context, upsert)

    async def RemoveTenant(
        self, request: pb.RemoveTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveResponse:
        async def remove() -> pb.RemoveResponse:
            check_name("name", request.name)
            await self._engine.remove_tenant(request.name, actor=actor_of(context))
            return pb.RemoveResponse(message=f"tenant {request.name} removed")

        return await answer("RemoveTenant", context, remove)

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTenantsResponse:
        async def listing() -> pb.ListTenantsResponse:
            overridden = await self._overridden()
            return pb.ListTenantsResponse(
                tenants=[
                    admin_convert.tenant_info(
                        tenant,
                        "run-time" if tenant_key(tenant.name) in overridden else "file",
                    )
                    for tenant in self._engine.tenants()
                ]
            )

        return await answer("ListTenants", context, listing)

    async def UpsertTeam(
        self, request: pb.UpsertTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.TeamInfo:
        async def upsert() -> pb.TeamInfo:
            check_name("name", request.name)
            current = next(
                (t for t in self._engine.teams() if t.name == request.name), None
            )
            team = admin_convert.team_policy(request, current)
            await self._engine.upsert_team(team, actor=actor_of(context))
            members = self._engine.team_members(team.name)
            return admin_convert.team_info(team, members, "run-time")

        return await answer("UpsertTeam", context, upsert)

    async def RemoveTeam(
        self, request: pb.RemoveTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveResponse:
        async def remove() -> pb.RemoveResponse:
            check_name("name", request.name)
            await self._engine.remove_team(request.name, actor=actor_of(context))
            return pb.RemoveResponse(message=f"team {request.name} removed")

        return await answer("RemoveTeam", context, remove)

    async def ListTeams(
        self, request: pb.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamsResponse:
        async def listing() -> pb.ListTeamsResponse:
            overridden = await self._overridden()
            return pb.ListTeamsResponse(
                teams=[
                    admin_convert.team_info(
                        team,
                        self._engine.team_members(team.name),
                        "run-time" if team_key(team.name) in overridden else "file",
                    )
                    for team in self._engine.teams()
                ]
            )

        return await answer("ListTeams", context, listing)

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        async def release() -> Reservation:
            _check_id("reservation_id", request.reservation_id)
            return await self._engine.release_any(
                request.reservation_id,
                request.billed_input_tokens,
                actor=actor_of(context),
            )

        released = await answer("ReleaseReservation", context, release)
        return pb.ReleaseResponse(
            charged_tokens=released.charged, refunded_tokens=released.refunded
        )

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEntriesResponse:
        async def page() -> pb.ListEntriesResponse:
            limit = check_range("limit", request.limit, 0, _MAX_PAGE) or _PAGE
            if request.after_id < 0:
                raise InvalidFieldError(
                    "after_id", f"{request.after_id} is negative; give 0 or more"
                )
            kinds = _entry_kinds(request.kinds)
            since, until = admin_convert.wall_range(request)
            entries = await self._ledger.entries(
                after_id=request.after_id,
                limit=limit,
                kinds=kinds,
                since_wall_ns=since,
                until_wall_ns=until,
            )
            return pb.ListEntriesResponse(
                entries=[
                    admin_convert.ledger_entry(
                        entry, json.dumps(dict(entry.detail), default=str)
                    )
                    for entry in entries
                ],
                last_id=entries[-1].id if entries else request.after_id,
                more=len(entries) == limit,
            )

        return await answer("ListEntries", context, page)

    async def BackupLedger(
        self, request: pb.BackupLedgerRequest, context: grpc.aio.ServicerContext
    ) -> pb.BackupLedgerResponse:
        async def backup() -> pb.BackupLedgerResponse:
            target = await _backup_target(request.path)
            size = await self._ledger.backup(target)
            logger.info("ledger backup asked by actor=%s", actor_of(context))
            return pb.BackupLedgerResponse(path=target, bytes=size)

        return await answer("BackupLedger", context, backup)

    async def GetAutoscale(
        self, request: pb.GetAutoscaleRequest, context: grpc.aio.ServicerContext
    ) -> pb.AutoscaleStatus:
        return await answer_now(
            "GetAutoscale", context, lambda: self._autoscale_status(request.budget)
        )

    async def SetAutoscale(
        self, request: pb.SetAutoscaleRequest, context: grpc.aio.ServicerContext
    ) -> pb.AutoscaleStatus:
        async def switch() -> pb.AutoscaleStatus:
            await self._engine.set_autoscale(
                request.budget, request.mode, actor=actor_of(context)
            )
            return self._autoscale_status(request.budget)

        return await answer("SetAutoscale", context, switch)

    async def ReloadConfig(
        self, request: pb.ReloadConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadConfigResponse:
        async def reload() -> pb.ReloadConfigResponse:
            if self._reload is None:
                raise NoConfigFileError()
            done = await self._reload(actor=actor_of(context))
            lines = [*done.changes, *done.notes]
            return pb.ReloadConfigResponse(
                applied=True,
                message="\n".join(lines) if lines else "no changes",
                changes=done.changes,
            )

        return await answer("ReloadConfig", context, reload)

    async def CreateKey(
        self, request: pb.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatedKey:
        async def create() -> pb.CreatedKey:
            info, key = await self._key_ring().create(
                request.tenant, request.label, actor=actor_of(context)
            )
            return pb.CreatedKey(info=_key_info(info), key=key)

        return await answer("CreateKey", context, create)

    async def RotateKey(
        self, request: pb.RotateKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatedKey:
        async def rotate() -> pb.CreatedKey:
            _check_id("key_id", request.key_id)
            check_text("label", request.label, _MAX_LABEL)
            info, key, old = await self._key_ring().rotate(
                request.key_id,
                keep_old=request.keep_old,
                label=request.label,
                actor=actor_of(context),
            )
            return pb.CreatedKey(info=_key_info(info), key=key, replaced=_key_info(old))

        return await answer("RotateKey", context, rotate)

    async def RevokeKey(
        self, request: pb.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.KeyInfo:
        async def revoke() -> pb.KeyInfo:
            _check_id("key_id", request.key_id)
            info = await self._key_ring().revoke(
                request.key_id, actor=actor_of(context)
            )
            return _key_info(info)

        return await answer("RevokeKey", context, revoke)

    async def ListKeys(
        self, request: pb.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListKeysResponse:
        def listing() -> pb.ListKeysResponse:
            if request.tenant:
                check_name("tenant", request.tenant)
            found = self._key_ring().keys(request.tenant)
            return pb.ListKeysResponse(keys=[_key_info(info) for info in found])

        return await answer_now("ListKeys", context, listing)

    def _key_ring(self) -> Keys:
        if self._keys is None:
            raise AccessControlOffError()
        return self._keys

    def _autoscale_status(self, budget: str) -> pb.AutoscaleStatus:
        view = self._engine.autoscale_view(budget)
        capacity = self._engine.budget_status(budget).capacity_tokens
        return admin_convert.autoscale_status(view, capacity)

    async def _overridden(self) -> set[str]:
        """Fields whose run-time value is in force now."""
        stored = await self._ledger.load_overrides()
        return {key for key, row in stored.items() if row.has_override}


def _check_id(field: str, value: str) -> None:
    """Refuses an empty id: it can name nothing, so it is malformed."""
    if not value:
        raise InvalidFieldError(field, "must not be empty; give the id to act on")


def _entry_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The entry kinds a listing asks for, each one the ledger knows."""
    known = [kind.value for kind in EntryKind]
    for kind in kinds:
        if kind not in known:
            raise InvalidFieldError(
                "kinds", f"{kind[:32]!r} is not one of {', '.join(known)}"
            )
    return tuple(dict.fromkeys(kinds))


async def _backup_target(path: str) -> str:
    """The absolute path a backup is to be written to, or why it cannot be.

    Raises:
        InvalidFieldError: `path` is empty, too long, holds control
            characters, is not a path this system accepts, or exists.
    """
    if not path:
        raise InvalidFieldError("path", "name the file to write")
    check_text("path", path, _MAX_PATH)
    try:
        target = await anyio.Path(path).absolute()
        exists = await target.exists()
    except (OSError, ValueError) as exc:
        raise InvalidFieldError(
            "path", f"{path[:200]!r} is not a usable file name ({exc})"
        ) from exc
    if exists:
        raise InvalidFieldError(
            "path", f"{str(target)[:200]!r} exists already; name a new file"
        )
    return str(target)


def _key_info(info: KeyView) -> pb.KeyInfo:
    """A key on the wire, without its secret."""
    message = pb.KeyInfo(
        key_id=info.key_id,
        tenant=info.tenant,
        label=info.label,
        fingerprint=info.fingerprint,
        source=info.source,
        active=info.revoked_wall_ns == 0,
    )
    if info.created_wall_ns:
        message.created_at.FromNanoseconds(info.created_wall_ns)
    if info.revoked_wall_ns:
        message.revoked_at.FromNanoseconds(info.revoked_wall_ns)
    return message
