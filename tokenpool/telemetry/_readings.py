"""Engine state for gauges: read on the event loop, handed to any thread.

Gauges are collected on a metric reader's thread (a Prometheus scrape, a
periodic export), while the engine lives on the event loop and is not
thread-safe. A reading therefore asks the loop for a fresh snapshot and
waits briefly for it; a loop that is busy or gone gets the last one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenpool.core import PeriodUsage, TeamPolicy, TenantPolicy
from tokenpool.engine import BudgetView, Engine

logger = logging.getLogger(__name__)

# A snapshot younger than this is reused: one collection reads many gauges
# within a few milliseconds.
_FRESH_S = 0.05

# Longest a reader thread waits for the event loop to take a snapshot.
_WAIT_S = 0.25


@dataclass(frozen=True, slots=True)
class Spend:
    """One calendar budget of a tenant or team, and what is charged to it."""

    subject_kind: str
    subject: str
    window: str
    measure: str
    """tokens or cost (micro-dollars)."""
    used: int
    limit: int


@dataclass(frozen=True, slots=True)
class Readings:
    """What the gauges show: every budget's pools, and calendar spend."""

    budgets: tuple[BudgetView, ...] = ()
    spend: tuple[Spend, ...] = ()


class LiveReadings:
    """Snapshots of an engine, taken on its event loop at a reader's request."""

    def __init__(
        self,
        engine: Engine,
        tenants: Sequence[TenantPolicy] = (),
        teams: Sequence[TeamPolicy] = (),
    ) -> None:
        self._engine = engine
        self._tenants = [t for t in tenants if _has_calendar(t)]
        self._teams = [t for t in teams if _has_calendar(t)]
        self._loop = asyncio.get_running_loop()
        self._latest = Readings()
        # Never fresh until a reader asks: the first reading is taken then.
        self._taken_at = -_FRESH_S

    def refresh(self) -> None:
        """Takes a snapshot now; call on the event loop."""
        engine = self._engine
        budgets = tuple(engine.budget_status(name) for name in engine.budget_names())
        spend: list[Spend] = []
        for tenant in self._tenants:
            view = engine.tenant_status(tenant.name)
            spend += _spend("tenant", tenant, view.day, view.month)
        for team in self._teams:
            team_view = engine.team_status(team.name)
            spend += _spend("team", team, team_view.day, team_view.month)
        self._latest = Readings(budgets, tuple(spend))
        self._taken_at = time.monotonic()

    def __call__(self) -> Readings:
        """The latest snapshot, fresh when the loop answers in time (any thread)."""
        if time.monotonic() - self._taken_at < _FRESH_S:
            return self._latest
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self.refresh()
            return self._latest

        done = threading.Event()
        try:
            self._loop.call_soon_threadsafe(self._refresh_then, done)
        except RuntimeError:
            # The loop has closed: the daemon is stopping.
            return self._latest
        done.wait(_WAIT_S)
        return self._latest

    def _refresh_then(self, done: threading.Event) -> None:
        try:
            self.refresh()
        except Exception:
            logger.exception("gauge snapshot failed")
        finally:
            done.set()


def _has_calendar(caps: TenantPolicy | TeamPolicy) -> bool:
    return any(
        limit is not None
        for limit in (
            caps.daily_tokens,
            caps.monthly_tokens,
            caps.daily_cost_usd,
            caps.monthly_cost_usd,
        )
    )


def _spend(
    kind: str, caps: TenantPolicy | TeamPolicy, day: PeriodUsage, month: PeriodUsage
) -> list[Spend]:
    pairs: list[tuple[str, str, int, int | None]] = [
        ("day", "tokens", day.charged_tokens, caps.daily_tokens),
        ("month", "tokens", month.charged_tokens, caps.monthly_tokens),
        ("day", "cost", day.charged_micros, caps.daily_cost_micros),
        ("month", "cost", month.charged_micros, caps.monthly_cost_micros),
    ]
    return [
        Spend(kind, caps.name, window, measure, used, limit)
        for window, measure, used, limit in pairs
        if limit is not None
    ]


ReadingsSource = Callable[[], Readings]
