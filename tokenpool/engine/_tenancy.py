"""Operator changes to tenants and teams, kept as run-time overrides (SPEC 8)."""

from __future__ import annotations

import logging

from tokenpool._errors import ConflictError, NotFoundError, UnknownTeamError
from tokenpool.core import (
    TeamPolicy,
    TenantPolicy,
    check_name,
    team_key,
    tenant_key,
)
from tokenpool.engine._admin import to_json
from tokenpool.engine._base import EngineBase
from tokenpool.ledger import Entry, EntryKind, LedgerBatch, OverrideRow

logger = logging.getLogger(__name__)


class Tenancy(EngineBase):
    """Adds, changes and removes tenants and teams while the daemon runs.

    A tenant's new tier, weight and caps apply to its next requests; its
    open reservations keep the pool they drew from. Removing a tenant
    leaves its reservations alone; its next requests are judged as an
    unknown tenant's (`unknown_tenants`).
    """

    def tenants(self) -> list[TenantPolicy]:
        """Every configured tenant, by name."""
        return [self._tenants[name] for name in sorted(self._tenants)]

    def teams(self) -> list[TeamPolicy]:
        """Every configured team, by name."""
        return [self._teams[name] for name in sorted(self._teams)]

    def team_members(self, team: str) -> list[str]:
        """Configured tenants that name a team."""
        return sorted(t.name for t in self._tenants.values() if t.team == team)

    async def upsert_tenant(self, tenant: TenantPolicy, *, actor: str = "") -> None:
        """Adds a tenant or replaces its policy.

        Raises:
            UnknownTeamError: the tenant names a team that is not configured.
        """
        self._check_serving()
        if tenant.team is not None and tenant.team not in self._teams:
            raise UnknownTeamError(tenant.team)
        previous = self._tenants.get(tenant.name)
        self._tenants[tenant.name] = tenant
        self._admitted.pop(tenant.name, None)
        self._alerting_changed()
        value = tenant.model_dump(mode="json")
        await self._record(
            EntryKind.TENANT,
            tenant_key(tenant.name),
            value,
            actor,
            detail={
                "change": "added" if previous is None else "changed",
                "tenant": value,
                "previous": None
                if previous is None
                else previous.model_dump(mode="json"),
            },
        )

    async def remove_tenant(self, name: str, *, actor: str = "") -> None:
        """Removes a configured tenant.

        Raises:
            NotFoundError: no tenant of that name is configured.
        """
        self._check_serving()
        check_name("tenant", name)
        previous = self._tenants.pop(name, None)
        if previous is None:
            raise NotFoundError(
                f"Tenant {name!r} is not configured; 'tokenpool tenants list' "
                "shows the configured ones."
            )
        self._alerting_changed()
        await self._record(
            EntryKind.TENANT,
            tenant_key(name),
            None,
            actor,
            detail={
                "change": "removed",
                "name": name,
                "previous": previous.model_dump(mode="json"),
            },
        )

    async def upsert_team(self, team: TeamPolicy, *, actor: str = "") -> None:
        """Adds a team or replaces its caps."""
        self._check_serving()
        previous = self._teams.get(team.name)
        self._teams[team.name] = team
        self._alerting_changed()
        value = team.model_dump(mode="json")
        await self._record(
            EntryKind.TEAM,
            team_key(team.name),
            value,
            actor,
            detail={
                "change": "added" if previous is None else "changed",
                "team": value,
                "previous": None
                if previous is None
                else previous.model_dump(mode="json"),
            },
        )

    async def remove_team(self, name: str, *, actor: str = "") -> None:
        """Removes a team that no configured tenant names.

        Raises:
            UnknownTeamError: no team of that name is configured.
            ConflictError: configured tenants still name it.
        """
        self._check_serving()
        check_name("team", name)
        if name not in self._teams:
            raise UnknownTeamError(name)
        members = self.team_members(name)
        if members:
            raise ConflictError(
                f"Team {name!r} still has members ({', '.join(members[:5])}); move "
                "or remove them first."
            )
        previous = self._teams.pop(name)
        self._alerting_changed()
        await self._record(
            EntryKind.TEAM,
            team_key(name),
            None,
            actor,
            detail={"change": "removed", "previous": previous.model_dump(mode="json")},
        )

    def _alerting_changed(self) -> None:
        self._alerting = any(
            caps.alert_percent
            for caps in (*self._tenants.values(), *self._teams.values())
        )

    async def _record(
        self,
        kind: EntryKind,
        key: str,
        value: object,
        actor: str,
        *,
        detail: dict[str, object],
    ) -> None:
        """Commits the change's entry and its override (None: removed).

        The entry names the tenant in its detail, not its tenant column,
        which usage reports sum.
        """
        wall = self._clock.wall_ns()
        entry = Entry(kind=kind, at_wall_ns=wall, budget="", actor=actor, detail=detail)
        override = OverrideRow(key, to_json(value), actor, wall)
        logger.info(
            "configuration changed kind=%s key=%s change=%s actor=%s",
            kind.value,
            key,
            detail["change"],
            actor or "-",
        )
        await self._settled(
            self._submit(LedgerBatch(entries=[entry], overrides=[override]))
        )
