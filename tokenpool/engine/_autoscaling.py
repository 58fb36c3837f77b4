"""The autoscaler on the engine's clock: readings out of live state, decisions in.

Every budget with `autoscale.enabled` gets an `Autoscaler` (the core's
controller). The engine measures each interval as it goes (charged tokens
per pool, waits and refusals), and a task of the daemon's task group hands
the controller a reading at the end of each interval, on the engine's own
clock, so a ManualClock drives it in tests and in replays. Provider signals
arrive with settles and are judged at once.

Every decision becomes an `autoscale` ledger entry, a log line and an
observer call (span, metric, operator hook). In `act` mode it changes the
budget through the same path as SetCapacity and Rebalance (levels move by
the capacity change; a shrink below what is held shows as debt); in
`recommend` mode, and in shadow mode, it is recorded and reported only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import NoReturn

import anyio

from tokenpool._errors import InvalidFieldError
from tokenpool._fields import log_event
from tokenpool.core import (
    POOL_ORDER,
    Action,
    Autoscaler,
    Bounds,
    BudgetPolicy,
    PoolReading,
    ProviderSignal,
    Reading,
    ScaleDecision,
    Shares,
    autoscale_key,
)
from tokenpool.engine._admin import Administering, to_json
from tokenpool.engine._base import NS_PER_MS
from tokenpool.engine._commands import AutoscaleView, SettleCommand
from tokenpool.engine._events import AutoscaleNote
from tokenpool.engine._state import BudgetState
from tokenpool.ledger import Entry, EntryKind, LedgerBatch, OverrideRow

logger = logging.getLogger(__name__)

# Who the ledger names for the autoscaler's own changes.
AUTOSCALER_ACTOR = "autoscaler"


class Autoscaling(Administering):
    """Measures budgets per interval and carries out the autoscaler's decisions."""

    def _start_scalers(self, now: int) -> None:
        """Starts (or stops) each budget's controller as its policy says."""
        for budget in self._budgets.values():
            policy = budget.policy.autoscale
            if not policy.enabled:
                budget.scaler = None
                budget.next_reading_ns = None
                continue
            if budget.scaler is None:
                budget.scaler = Autoscaler(policy)
            else:
                budget.scaler.reconfigure(policy)
            if budget.next_reading_ns is None:
                budget.next_reading_ns = now + policy.interval_ns
                budget.charged_mark = dict(budget.charged)
                budget.interval_waits.clear()
                budget.interval_refusals = 0
                budget.interval_provider_limited = 0
        if self._autoscale_wake is not None:
            self._autoscale_wake.set()

    async def run_autoscaler(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Reads every autoscaled budget at the end of each interval, and acts."""
        self._autoscale_wake = anyio.Event()
        self._start_scalers(self._clock.monotonic_ns())
        task_status.started()
        while True:
            now = self._clock.monotonic_ns()
            # Every decision due now is in force before the first commit is
            # awaited: a slow commit must not let grants in between them.
            commits: list[Awaitable[int]] = []
            for budget in list(self._budgets.values()):
                due = budget.next_reading_ns
                if budget.scaler is None or due is None or due > now:
                    continue
                decisions = self._read_interval(budget, now)
                if self._draining or self._degraded:
                    continue
                commits.extend(self._enact(budget, d) for d in decisions)
            for commit in commits:
                await self._settled(commit)

            wake_at = min(
                (
                    b.next_reading_ns
                    for b in self._budgets.values()
                    if b.scaler is not None and b.next_reading_ns is not None
                ),
                default=None,
            )
            self._autoscale_wake = anyio.Event()
            alarm = None
            if wake_at is not None:
                alarm = self._clock.call_at(wake_at, self._autoscale_wake.set)
            try:
                await self._autoscale_wake.wait()
            finally:
                if alarm is not None:
                    alarm.cancel()

    def _read_interval(self, budget: BudgetState, now: int) -> list[ScaleDecision]:
        """Closes the budget's interval: the reading, and what it calls for."""
        scaler = budget.scaler
        assert scaler is not None and budget.next_reading_ns is not None
        policy = budget.policy
        interval_ns = scaler.policy.interval_ns
        levels = self._store.levels(policy.name, now)
        pools = []
        for pool in POOL_ORDER:
            capacity = levels[pool].capacity
            queue = budget.queues.get(pool)
            pools.append(
                PoolReading(
                    pool=pool,
                    capacity=capacity,
                    charged=budget.charged[pool] - budget.charged_mark.get(pool, 0),
                    offered=capacity * interval_ns // policy.window_ns,
                    waiting=len(queue) if queue is not None else 0,
                )
            )
        ages = [
            (now - ticket.arrived_ns) // NS_PER_MS
            for queue in budget.queues.values()
            for ticket in queue.tickets()
        ]
        reading = Reading(
            budget=policy.name,
            # The interval's scheduled end, not the moment this task ran: the
            # cooldown then counts whole intervals, however late the task
            # woke (a live replay's clock steps past the alarm to the next
            # call; a busy loop wakes it late), and a grow exactly a
            # cooldown after the last one is not put off by that lateness.
            at_ns=budget.next_reading_ns,
            pools=tuple(pools),
            waits_ms=(*budget.interval_waits, *ages),
            refusals=budget.interval_refusals,
            provider_limited=budget.interval_provider_limited,
        )

        budget.charged_mark = dict(budget.charged)
        budget.interval_waits.clear()
        budget.interval_refusals = 0
        budget.interval_provider_limited = 0
        budget.readings += 1
        budget.last_reading = reading
        # A clock that jumped (a long pause) starts a fresh interval from now.
        budget.next_reading_ns += interval_ns
        if budget.next_reading_ns <= now:
            budget.next_reading_ns = now + interval_ns
        return scaler.observe(reading, self._bounds(budget))

    async def set_autoscale(self, name: str, mode: str, *, actor: str = "") -> None:
        """Turns a budget's autoscaler off, on (act) or to recommend-only.

        Stored as a run-time override of the file's `autoscale.enabled` and
        `autoscale.mode` (SPEC 8); the other autoscale keys stay the file's.

        Raises:
            InvalidFieldError: the mode is not off, act or recommend.
        """
        self._check_serving()
        budget = self._budget(name)
        if mode not in ("off", "act", "recommend"):
            raise InvalidFieldError(
                "mode", f"{mode[:32]!r} is not one of off, act or recommend"
            )
        policy = budget.policy
        switch: dict[str, object] = {"enabled": mode != "off"}
        if mode != "off":
            switch["mode"] = mode
        autoscale = policy.autoscale.model_copy(update=switch)
        previous = policy.autoscale
        budget.policy = policy.model_copy(update={"autoscale": autoscale})
        now, wall = self._clock.monotonic_ns(), self._clock.wall_ns()
        self._start_scalers(now)
        entry = Entry(
            kind=EntryKind.AUTOSCALE,
            at_wall_ns=wall,
            budget=name,
            tokens=policy.capacity_tokens,
            actor=actor,
            detail={
                "action": "mode",
                "mode": mode,
                "previous": "off" if not previous.enabled else previous.mode,
            },
        )
        override = OverrideRow(
            autoscale_key(name),
            to_json({"enabled": autoscale.enabled, "mode": autoscale.mode}),
            actor,
            wall,
        )
        logger.info(
            "autoscaler switched budget=%s mode=%s actor=%s", name, mode, actor or "-"
        )
        await self._settled(
            self._submit(LedgerBatch(entries=[entry], overrides=[override]))
        )

    def autoscale_view(self, name: str) -> AutoscaleView:
        """A budget's autoscaler: its mode, last reading and provider cut."""
        budget = self._budget(name)
        policy = budget.policy
        scaler = budget.scaler
        return AutoscaleView(
            budget=policy.name,
            enabled=scaler is not None,
            mode="shadow" if policy.shadow else policy.autoscale.mode,
            interval_seconds=policy.autoscale.interval_seconds,
            readings=budget.readings,
            last_reading=budget.last_reading,
            restore_to=None if scaler is None else scaler.restore_to,
            minimum=policy.floor_capacity,
            maximum=_maximum(budget),
        )

    def _bounds(self, budget: BudgetState) -> Bounds:
        policy = budget.policy
        return Bounds(
            capacity=policy.capacity_tokens,
            minimum=policy.floor_capacity,
            maximum=_maximum(budget),
            shares=policy.shares.by_pool(),
        )

    def _provider_decision(
        self, budget: BudgetState, command: SettleCommand
    ) -> ScaleDecision | None:
        """What a settle's provider figures call for, if the budget autoscales."""
        scaler = budget.scaler
        if scaler is None or not (
            command.provider_rate_limited or command.provider_limit_tokens
        ):
            return None
        budget.interval_provider_limited += command.provider_rate_limited
        signal = ProviderSignal(
            rate_limited=command.provider_rate_limited,
            remaining_tokens=command.provider_remaining_tokens,
            limit_tokens=command.provider_limit_tokens,
        )
        return scaler.provider_signal(
            signal, self._clock.monotonic_ns(), self._bounds(budget), budget.policy.name
        )

    def _enact(self, budget: BudgetState, decision: ScaleDecision) -> Awaitable[int]:
        """Records a decision and, in act mode, applies it; await the commit.

        Synchronous up to the commit: a cut is in force before anything else
        is granted.
        """
        policy = budget.policy
        mode = "shadow" if policy.shadow else policy.autoscale.mode
        applied = mode == "act"
        scaler = budget.scaler
        if scaler is not None:
            scaler.applied(decision)
        fields = decision.fields()
        fields["mode"] = mode
        fields["applied"] = applied
        wall = self._clock.wall_ns()
        entry = Entry(
            kind=EntryKind.AUTOSCALE,
            at_wall_ns=wall,
            budget=policy.name,
            tokens=decision.capacity_to,
            actor=AUTOSCALER_ACTOR,
            detail={
                **fields,
                "shares_from": {p.value: s for p, s in decision.shares_from.items()},
                "shares_to": {p.value: s for p, s in decision.shares_to.items()},
                "figures": dict(decision.figures),
            },
        )
        log_event(logger, logging.INFO, "autoscale decision", fields)
        self._observer.autoscale_decided(AutoscaleNote(decision, mode, applied))

        if not applied:
            return self._submit(LedgerBatch(entries=[entry]))
        return self._changed(
            budget, _decided(policy, decision), entry, AUTOSCALER_ACTOR
        )


def _maximum(budget: BudgetState) -> int:
    """How far the autoscaler may grow a budget: its configured maximum.

    Without one, the largest capacity it has had (at first the file's), so a
    budget shrunk in a quiet spell can grow back, and no further.
    """
    configured = budget.policy.max_capacity_tokens
    if configured is not None:
        return configured
    return max(budget.largest_capacity, budget.policy.capacity_tokens)


def _decided(policy: BudgetPolicy, decision: ScaleDecision) -> BudgetPolicy:
    """The budget's policy once a decision is applied."""
    if decision.action is Action.SHIFT:
        shares = decision.shares_to
        return policy.model_copy(
            update={
                "shares": Shares(
                    basic=shares[POOL_ORDER[0]],
                    priority=shares[POOL_ORDER[1]],
                    burst=shares[POOL_ORDER[2]],
                )
            }
        )
    return policy.with_capacity(decision.capacity_to)
