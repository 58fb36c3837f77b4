"""The engine: applies the core's rules to live state and records every change."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
from collections.abc import Iterator
from typing import NoReturn

import anyio

from tokenpool._errors import LedgerError, LedgerUnavailableError, UnknownTeamError
from tokenpool.core import (
    POOL_ORDER,
    CalendarPeriods,
    ChargedRow,
    EstimateRow,
    LimitBook,
    Pool,
    Reservation,
    RestoredHold,
    State,
    Subject,
    SubjectKind,
    TenantPolicy,
    TokenBucket,
    check_name,
)
from tokenpool.engine._base import ENDED_KEPT_NS
from tokenpool.engine._closing import Closing
from tokenpool.engine._commands import BudgetView, PoolView, TeamView, TenantView
from tokenpool.engine._reconfigure import Reconfiguring
from tokenpool.engine._records import reservation_from_row
from tokenpool.engine._shadow import Shadowing
from tokenpool.engine._state import BudgetState
from tokenpool.engine._store import MemoryPoolStore, PoolLevel
from tokenpool.ledger import ChargedSlot, LedgerBatch, PoolRow, StoredState

logger = logging.getLogger(__name__)

# The sweeper looks again at least this often (clock time), to flush
# refusal counts and forget old reservations even when no lease is due.
_SWEEP_IDLE_NS = 1_000_000_000

# Calendar usage is restored from grants this recent: a month and a day.
_CALENDAR_LOOKBACK_NS = 32 * 86_400 * 1_000_000_000

# After a failed commit, how long to let in-flight commits finish before
# state is rebuilt from the database (seconds of real time).
_RECOVERY_PAUSE_S = 0.2

# While the ledger stays unwritable, the pause between attempts doubles up
# to this (seconds of real time): a full disk is not hammered.
_RECOVERY_MAX_PAUSE_S = 2.0


class Engine(Shadowing, Closing, Reconfiguring):
    """Grants, settles and expires reservations; the daemon's single authority.

    Every change happens synchronously on the event loop (so no two requests
    see the same tokens), is added to a ledger batch, and is answered only
    once that batch is committed.
    """

    async def restore(self) -> None:
        """Rebuilds pools and reservations from the ledger (SPEC 12.8, 12.10)."""
        with _collector_paused():
            self._install(*await self._read_stored())

    async def _read_stored(self) -> tuple[StoredState, list[ChargedSlot]]:
        """What a restore needs from the database, read before memory changes."""
        wall = self._clock.wall_ns()
        ttl_ns = self._limits.idempotency_ttl_seconds * 1_000_000_000
        state = await self._ledger.load_state(keep_ended_after_wall_ns=wall - ttl_ns)
        charged = await self._ledger.charged_since(wall - _CALENDAR_LOOKBACK_NS)
        return state, charged

    def _install(self, state: StoredState, charged: list[ChargedSlot]) -> None:
        """Puts stored state in memory, in one step: no call sees it half done."""
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()

        # Calendar periods never go back, even to before the last shutdown.
        last_seen = max((row.at_wall_ns for row in state.pools), default=wall)
        self._limit_book.calendar.at(max(wall, last_seen))
        self._limit_book.restore_charged(self._calendar_rows(charged), wall)

        stored: dict[str, dict[Pool, PoolLevel]] = {}
        for row in state.pools:
            if row.budget in self._budgets:
                stored.setdefault(row.budget, {})[Pool(row.pool)] = _refilled(
                    row, self._budgets[row.budget].policy.window_ns, wall
                )
        for name, budget in self._budgets.items():
            self._store.add_budget(
                name, budget.capacities, budget.policy.window_ns, now, stored.get(name)
            )

        reopened = 0
        learned = sorted(
            (row for row in state.reservations if row.state is State.SETTLED),
            key=lambda row: row.ended_wall_ns,
        )
        kept_after = wall - ENDED_KEPT_NS
        keys_only: list[tuple[int, str, str, str]] = []
        for stored_row in state.reservations:
            if (
                stored_row.state is not State.OPEN
                and stored_row.ended_wall_ns < kept_after
            ):
                # Ended a while ago: only its idempotency key stays in memory
                # (SPEC 12.7); the ledger answers the rest, as at run time.
                if stored_row.idempotency_key:
                    key = (stored_row.tenant, stored_row.idempotency_key)
                    self._idempotency[key] = stored_row.reservation_id
                    keys_only.append(
                        (stored_row.ended_wall_ns, *key, stored_row.reservation_id)
                    )
                continue
            reservation = reservation_from_row(stored_row, now, wall)
            if reservation.budget not in self._budgets and reservation.is_open:
                logger.warning(
                    "reservation of an unconfigured budget left alone "
                    "reservation_id=%s budget=%s",
                    reservation.reservation_id,
                    reservation.budget,
                )
                continue
            self._remember(reservation)
            if reservation.is_open:
                self._reopen(reservation, now, wall)
                reopened += 1
        keys_only.sort()
        self._ended_keys.extendleft(reversed(keys_only))
        self._mark_alerts(wall)
        # Learning resumes from the settles still remembered, oldest first.
        for settled in learned:
            if settled.budget in self._budgets:
                remembered = self._reservations.get(
                    settled.reservation_id
                ) or reservation_from_row(settled, now, wall)
                self._learn(self._budgets[settled.budget], remembered)
        # Intervals start now (again, after a rebuild from the ledger).
        self._start_scalers(now)
        logger.info(
            "state restored budgets=%d open_reservations=%d remembered=%d",
            len(self._budgets),
            reopened,
            len(self._reservations),
        )

    def _reopen(self, reservation: Reservation, now: int, wall: int) -> None:
        """Counts a restored open reservation in its budget and its limits."""
        budget = self._budgets[reservation.budget]
        self._hold(budget, reservation)
        tenant = self._tenants.get(reservation.tenant)
        team = (
            tenant.team if tenant is not None and tenant.team in self._teams else None
        )
        self._limit_book.restore_hold(
            reservation.reservation_id,
            RestoredHold(
                reservation.budget,
                reservation.tenant,
                team,
                reservation.sources,
                reservation.hold,
                reservation.cost_micros,
                reservation.created_wall_ns,
            ),
            wall,
        )

    def _calendar_rows(self, slots: list[ChargedSlot]) -> list[ChargedRow]:
        """Ledger sums per quarter hour, placed in this timezone's days and months."""
        totals: dict[tuple[SubjectKind, str, str], list[int]] = {}
        for slot in slots:
            periods = self._limit_book.calendar.of(slot.slot_wall_ns)
            subjects = [(SubjectKind.TENANT, slot.tenant)]
            if slot.team:
                subjects.append((SubjectKind.TEAM, slot.team))
            for kind, name in subjects:
                for period in (periods.day, periods.month):
                    total = totals.setdefault((kind, name, period), [0, 0])
                    total[0] += slot.tokens
                    total[1] += slot.micros
        return [
            ChargedRow(kind, name, period, tokens, micros)
            for (kind, name, period), (tokens, micros) in totals.items()
        ]

    def begin_shutdown(self) -> None:
        """Refuses new work and sends every waiter away."""
        self._draining = True
        for budget in self._budgets.values():
            for queue in budget.queues.values():
                for waiter in queue.drain():
                    waiter.event.set()

    async def flush_refusals(self) -> None:
        """Writes the refusal counts not yet in the ledger, before it closes.

        Counts ride along with the next commit or sweep; at shutdown there
        is no next one.
        """
        if not self._refusals:
            return
        try:
            await self._submit(LedgerBatch())
        except LedgerUnavailableError as exc:
            logger.warning("refusal counts not recorded at shutdown error=%s", exc)

    async def run_sweeper(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Expires reservations whose lease ended, and keeps memory bounded."""
        task_status.started()
        while True:
            if self._ledger.failed_commits != self._failures_seen:
                self._degrade()
            if self._degraded:
                await self._recover()
            now = self._clock.monotonic_ns()
            batch = self._expire_due(now)
            self._forget_old(self._clock.wall_ns())
            if self._refusals and batch.is_empty():
                batch.refusals.extend(self._take_refusals())
            if not batch.is_empty():
                try:
                    await self._submit(batch)
                except LedgerUnavailableError as exc:
                    logger.warning("expiry not recorded, will retry error=%s", exc)

            wake_at = now + _SWEEP_IDLE_NS
            if self._leases:
                wake_at = min(wake_at, self._leases[0][0])
            self._sweep_wake = anyio.Event()
            self._sweep_at = wake_at
            alarm = self._clock.call_at(wake_at, self._sweep_wake.set)
            try:
                await self._sweep_wake.wait()
            finally:
                alarm.cancel()

    async def _recover(self) -> None:
        """Reloads state from the ledger after a commit failed; resumes when it writes.

        Changes whose commit failed were applied in memory but never
        recorded; the database holds the truth, so memory is rebuilt from
        it. Waiters are sent away, and new work is refused until the
        rebuilt state has been written back once: a ledger that still
        cannot be written (disk full, lock held) keeps the daemon refusing.
        """
        logger.warning("ledger failed; rebuilding state from the database")
        pause_s = _RECOVERY_PAUSE_S
        while True:
            await anyio.sleep(pause_s)
            try:
                await self._rebuild()
                await self._write_back()
            except LedgerError as exc:
                pause_s = min(2 * pause_s, _RECOVERY_MAX_PAUSE_S)
                logger.warning(
                    "ledger still unusable; new work stays refused error=%s "
                    "retry_in_s=%s",
                    exc,
                    pause_s,
                )
                continue
            break

        self._degraded = False
        self._failures_seen = self._ledger.failed_commits
        logger.info("state rebuilt from the ledger; serving again")

    async def _rebuild(self) -> None:
        """Replaces memory with what the database holds.

        Raises:
            LedgerError: the database cannot be read.
        """
        # Read first: until the database has answered, memory stays whole
        # for the reads and the callers still running.
        stored = await self._read_stored()
        for budget in self._budgets.values():
            if budget.alarm is not None:
                budget.alarm.cancel()
            for queue in budget.queues.values():
                for waiter in queue.drain():
                    waiter.event.set()
        policies = [budget.policy for budget in self._budgets.values()]
        # Pool states are not rebuilt from reservations: a change whose
        # commit failed was already taken back by its caller.
        states = {name: budget.pool_states for name, budget in self._budgets.items()}
        self._budgets = {policy.name: BudgetState.new(policy) for policy in policies}
        for name, budget in self._budgets.items():
            budget.pool_states.update(states[name])
        self._store = MemoryPoolStore() if self._owns_store else self._store
        calendar = CalendarPeriods(self._calendar_timezone)
        if self._limit_book.calendar.latest_wall_ns > 0:
            calendar.at(self._limit_book.calendar.latest_wall_ns)
        self._limit_book = LimitBook(calendar)
        self._reservations.clear()
        self._commits.clear()
        self._idempotency.clear()
        self._leases.clear()
        self._ended.clear()
        self._ended_keys.clear()
        with _collector_paused():
            self._install(*stored)

    async def _write_back(self) -> None:
        """Writes the rebuilt pool levels: proof that the ledger takes writes.

        Raises:
            LedgerUnavailableError: the write failed.
        """
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        rows = [
            row for name in self._budgets for row in self._pool_rows(name, now, wall)
        ]
        await self._ledger.submit(LedgerBatch(pools=rows))

    def budget_names(self) -> list[str]:
        """Every configured budget, in configuration order."""
        return list(self._budgets)

    def budget_status(self, name: str) -> BudgetView:
        """A budget's capacity, pools and holds as they stand now."""
        budget = self._budget(name)
        levels = self._store.levels(name, self._clock.monotonic_ns())
        shares = budget.policy.shares.by_pool()
        pools = tuple(
            PoolView(
                name=pool,
                share_percent=shares[pool],
                capacity_tokens=levels[pool].capacity,
                available_tokens=levels[pool].available,
                in_flight_tokens=budget.in_flight[pool],
                debt_tokens=levels[pool].debt,
                waiting=len(budget.queues[pool]) if pool in budget.queues else 0,
                lent_tokens=budget.lent[pool],
                borrowed_tokens=budget.borrowed[pool],
                charged_tokens=budget.charged[pool],
                state=budget.pool_states[pool],
                open_reservations=budget.open_by_pool[pool],
            )
            for pool in POOL_ORDER
        )
        return BudgetView(
            name=name,
            capacity_tokens=sum(level.capacity for level in levels.values()),
            window_seconds=budget.policy.window_seconds,
            pools=pools,
            open_reservations=budget.open_reservations,
        )

    def tenant_status(self, name: str) -> TenantView:
        """A tenant's tier and what it holds now."""
        check_name("tenant", name)
        tenant = self._tenants.get(name) or TenantPolicy(name=name)
        subject = Subject(SubjectKind.TENANT, name)
        # Counted per tenant as holds begin and end: no scan of reservations.
        holds, in_flight = self._limit_book.holding(subject)
        usage = self._limit_book.usage(subject, self._clock.wall_ns())
        return TenantView(
            name=name,
            tier=tenant.tier.value,
            weight=tenant.weight,
            configured=name in self._tenants,
            open_reservations=holds,
            in_flight_tokens=in_flight,
            team=tenant.team or "",
            day=usage.day,
            month=usage.month,
        )

    def team_status(self, name: str) -> TeamView:
        """A team's members, what they hold and their calendar usage."""
        check_name("team", name)
        if name not in self._teams:
            raise UnknownTeamError(name)
        usage = self._limit_book.usage(
            Subject(SubjectKind.TEAM, name), self._clock.wall_ns()
        )
        return TeamView(
            name=name,
            members=tuple(t.name for t in self._tenants.values() if t.team == name),
            in_flight_tokens=sum(tokens for tokens, _ in usage.in_flight.values()),
            day=usage.day,
            month=usage.month,
        )

    def reservations(
        self, *, budget: str = "", tenant: str = "", limit: int = 100
    ) -> list[Reservation]:
        """Open reservations, newest first, optionally of one budget or tenant."""
        found = (
            r
            for r in reversed(self._reservations.values())
            if r.is_open
            and (not budget or r.budget == budget)
            and (not tenant or r.tenant == tenant)
        )
        return list(itertools.islice(found, limit))

    def estimates(
        self, *, budget: str = "", tenant: str = ""
    ) -> list[tuple[str, EstimateRow]]:
        """Estimate accuracy per budget, tenant and task type."""
        names = [self._budget(budget).policy.name] if budget else list(self._budgets)
        if tenant:
            check_name("tenant", tenant)
        return [
            (name, row)
            for name in names
            for row in self._budgets[name].estimates.report()
            if not tenant or row.tenant == tenant
        ]

    def unknown_task_types(self) -> dict[str, int]:
        """Reserves per budget whose task type was not known to the scoring."""
        return {
            name: budget.unknown_task_types for name, budget in self._budgets.items()
        }

    @property
    def waiting(self) -> int:
        """Requests queued for tokens over every budget."""
        return sum(
            len(queue) for b in self._budgets.values() for queue in b.queues.values()
        )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while state is rebuilt.

    A restart builds millions of objects, none of them garbage; collecting
    meanwhile scans the growing heap again and again (a third of the time
    at a million open reservations). Afterwards the rebuilt objects are
    frozen out of later collections, which they would only slow down:
    they are freed by reference counting when they end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _refilled(row: PoolRow, window_ns: int, wall: int) -> PoolLevel:
    """A stored level refilled for the wall time since it was stored."""
    bucket = TokenBucket(row.capacity, window_ns, row.level, row.carry, 0)
    bucket.refill(max(0, wall - row.at_wall_ns))
    return PoolLevel(bucket.capacity, bucket.level, bucket.carry)
