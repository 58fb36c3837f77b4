"""Replay runs against an in-process or a running daemon, and their figures.

With its own daemon, the replay is a discrete-event simulation on a clock it
drives (see `_simulation`), held to real time at `--speed N`. Against a
running daemon, which keeps its own clock, rows go out at their trace times
scaled down by `--speed N`, or at `--speed max` as fast as `--concurrency`
calls in flight allow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
import anyio.to_thread
import grpc
from tokenpool_client import AsyncClient, error_from_rpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tokenpool.core import BudgetPolicy, TenantPolicy, Tier
from tokenpool.daemon import Daemon, Settings
from tokenpool.engine import Engine
from tokenpool.ledger import EntryKind, Ledger
from tokenpool.replay._caller import CALL_TIMEOUT_S, Caller
from tokenpool.replay._errors import ReplayError
from tokenpool.replay._plan import Call, ReplayTenant
from tokenpool.replay._simulation import Simulation, WatchedClock
from tokenpool.replay._tally import RunFacts, Tally

logger = logging.getLogger(__name__)

# How often the progress view is refreshed, in real seconds.
_PROGRESS_EVERY_S = 0.2

# Called with rows done, granted, refused and waited so far.
ProgressHook = Callable[[int, int, int, int], None]


@dataclass(frozen=True, slots=True)
class ReplaySetup:
    """Everything a replay run needs, decided by the command line."""

    trace: str
    """The trace file's name, for the report."""
    calls: Sequence[Call]
    budget: str
    tenants: Sequence[ReplayTenant]
    max_output_tokens: int
    max_wait_ms: int
    speed: float | None
    """Trace seconds per real second; None for --speed max."""
    start_wall_ns: int
    """The first row's arrival: where the in-process daemon's clock starts."""
    seed: int
    skew: float
    address: str | None = None
    """A running daemon to replay against; None starts one in-process."""
    settings: Settings | None = None
    """The in-process daemon's settings (address and ledger already set)."""
    concurrency: int = 64
    """Calls in flight against a running daemon at --speed max."""
    session: bool = False
    """Send Reserve, Settle and Release over one Session stream."""
    token: str | None = None
    """Bearer token for a running daemon that requires credentials (the
    admin token: the replay acts as every tenant, and reads reports)."""


async def _pace(caller: Caller, calls: Sequence[Call], speed: float) -> None:
    """Sends each row at its trace time scaled down by `speed`."""
    origin = anyio.current_time()
    async with anyio.create_task_group() as tasks:
        for call in calls:
            delay = origin + call.arrival_ns / 1e9 / speed - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            tasks.start_soon(_paced_call, caller, call, speed)


async def _paced_call(caller: Caller, call: Call, speed: float) -> None:
    reservation = await caller.reserve(call)
    if reservation is not None:
        await anyio.sleep(call.duration_ns / 1e9 / speed)
        await caller.settle(call, reservation.reservation_id)


async def _flood(caller: Caller, calls: Sequence[Call], concurrency: int) -> None:
    """Sends rows as fast as `concurrency` calls in flight allow."""
    slots = anyio.Semaphore(concurrency)
    async with anyio.create_task_group() as tasks:
        for call in calls:
            await slots.acquire()
            tasks.start_soon(_flood_call, caller, call, slots)


async def _flood_call(caller: Caller, call: Call, slots: anyio.Semaphore) -> None:
    try:
        reservation = await caller.reserve(call)
        if reservation is not None:
            await caller.settle(call, reservation.reservation_id)
    finally:
        slots.release()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    status: pb.BudgetStatus
    charged: int
    open_reservations: int
    real_s: float


class _Reads:
    """The daemon's status, report and tenant reads over one channel."""

    def __init__(
        self, channel: grpc.aio.Channel, budget: str, token: str | None = None
    ) -> None:
        self._api = pb_grpc.TokenPoolStub(channel)  # type: ignore[no-untyped-call]
        self._admin = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        self._budget = budget
        self._metadata = () if not token else (("authorization", f"Bearer {token}"),)

    async def snapshot(self) -> _Snapshot:
        """The budget's pools, its ledger charges, and open reservations."""
        try:
            status = await self._api.GetBudget(
                pb.GetBudgetRequest(budget=self._budget),
                timeout=CALL_TIMEOUT_S,
                metadata=self._metadata,
            )
            report = await self._admin.Report(
                pb.ReportRequest(budget=self._budget),
                timeout=CALL_TIMEOUT_S,
                metadata=self._metadata,
            )
            budgets = await self._api.ListBudgets(
                pb.ListBudgetsRequest(), timeout=CALL_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        return _Snapshot(
            status=status,
            charged=sum(
                row.tokens_charged for row in report.rows if row.budget == self._budget
            ),
            open_reservations=sum(b.open_reservations for b in budgets.budgets),
            real_s=time.perf_counter(),
        )

    async def tenants(self, planned: Sequence[TenantPolicy]) -> list[TenantPolicy]:
        """The tenants as the daemon knows them: its tier and weight win."""
        known: list[TenantPolicy] = []
        for tenant in planned:
            try:
                status = await self._api.GetTenant(
                    pb.GetTenantRequest(tenant=tenant.name),
                    timeout=CALL_TIMEOUT_S,
                    metadata=self._metadata,
                )
            except grpc.RpcError as exc:
                raise error_from_rpc(exc) from exc
            actual = TenantPolicy(
                name=tenant.name, tier=Tier(status.tier), weight=status.weight or 1
            )
            if (actual.tier, actual.weight) != (tenant.tier, tenant.weight):
                logger.warning(
                    "the daemon's tenant differs from the plan tenant=%s tier=%s "
                    "weight=%d planned_tier=%s planned_weight=%d",
                    tenant.name,
                    actual.tier.value,
                    actual.weight,
                    tenant.tier.value,
                    tenant.weight,
                )
            known.append(actual)
        return known


async def _show(tally: Tally, hook: ProgressHook) -> None:
    """Shows progress; in a worker thread, as the view writes to a terminal."""
    counts = (tally.done, tally.granted_count, tally.refused_count, tally.waited_count)
    await anyio.to_thread.run_sync(hook, *counts)


async def _progress(tally: Tally, hook: ProgressHook) -> None:
    while True:
        await _show(tally, hook)
        await anyio.sleep(_PROGRESS_EVERY_S)


async def _replay(
    setup: ReplaySetup,
    address: str,
    tally: Tally,
    hook: ProgressHook,
    *,
    clock: WatchedClock | None = None,
    engine: Engine | None = None,
    ledger: Ledger | None = None,
) -> RunFacts:
    """Replays over one channel; a clock and engine mean our own daemon."""
    async with grpc.aio.insecure_channel(address) as channel:
        reads = _Reads(channel, setup.budget, setup.token)
        client = AsyncClient(
            address,
            channel=channel,
            timeout_s=CALL_TIMEOUT_S,
            token=setup.token,
            session=setup.session,
        )
        caller = Caller(
            client,
            tally,
            budget=setup.budget,
            max_output_tokens=setup.max_output_tokens,
            max_wait_ms=setup.max_wait_ms,
        )
        tenants = [tenant.policy for tenant in setup.tenants]
        if engine is None:
            tenants = await reads.tenants(tenants)
        before = await reads.snapshot()
        clock_before = clock.now_ns if clock is not None else 0

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_progress, tally, hook)
            if clock is not None and engine is not None:
                mode = "simulated"
                simulation = Simulation(
                    caller, setup.calls, clock, engine, speed=setup.speed
                )
                await simulation.run()
            elif setup.speed is None:
                mode = "flood"
                await _flood(caller, setup.calls, setup.concurrency)
            else:
                mode = "paced"
                await _pace(caller, setup.calls, setup.speed)
            tasks.cancel_scope.cancel()
        # Ends the Session stream, if any; the channel stays for the reads.
        await client.close()
        await _show(tally, hook)

        after = await reads.snapshot()
    decisions: tuple[dict[str, object], ...] = ()
    if ledger is not None:
        entries = await ledger.entries(kinds=[EntryKind.AUTOSCALE.value], limit=100_000)
        decisions = tuple(
            {"at_wall_ns": entry.at_wall_ns, **entry.detail}
            for entry in entries
            if entry.budget == setup.budget
        )

    real_s = after.real_s - before.real_s
    daemon_s = real_s
    trace_s: float | None = None
    if clock is not None:
        daemon_s = trace_s = (clock.now_ns - clock_before) / 1e9
    elif setup.speed is not None:
        trace_s = real_s * setup.speed
    policy = _budget_policy(setup) if engine is not None else None
    return RunFacts(
        trace=setup.trace,
        budget=setup.budget,
        mode=mode,
        address="in-process" if engine is not None else address,
        speed=setup.speed,
        seed=setup.seed,
        skew=setup.skew,
        tenants=tenants,
        task_types={tenant.name: tenant.task_type for tenant in setup.tenants},
        before=before.status,
        after=after.status,
        charged_before=before.charged,
        charged_after=after.charged,
        open_reservations_at_end=after.open_reservations,
        real_seconds=real_s,
        daemon_seconds=daemon_s,
        trace_seconds=trace_s,
        queueing=None if policy is None else policy.queueing,
        learning=None if policy is None else policy.learning.enabled,
        decisions=decisions,
        start_wall_ns=setup.start_wall_ns if clock is not None else 0,
    )


def _budget_policy(setup: ReplaySetup) -> BudgetPolicy | None:
    """The replayed budget's policy in the in-process daemon's settings."""
    if setup.settings is None:
        return None
    return next((b for b in setup.settings.budgets if b.name == setup.budget), None)


async def _replay_in_process(
    setup: ReplaySetup, tally: Tally, hook: ProgressHook
) -> RunFacts:
    if setup.settings is None:
        raise ReplayError("An in-process replay needs the daemon's settings.")

    clock = WatchedClock(start_wall_ns=setup.start_wall_ns)
    daemon = Daemon(setup.settings, clock=clock)
    async with anyio.create_task_group() as tasks:
        running = await tasks.start(daemon.run)
        try:
            facts = await _replay(
                setup,
                running.address,
                tally,
                hook,
                clock=clock,
                engine=running.engine,
                ledger=running.ledger,
            )
        finally:
            daemon.stop()
    return facts


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_leaves(error))
        else:
            found.append(error)
    return found


async def run_replay(setup: ReplaySetup, tally: Tally, hook: ProgressHook) -> RunFacts:
    """Replays the planned calls against a daemon and gathers its figures.

    Starts a daemon in this process unless `setup.address` names one; that
    daemon runs on a clock the replay drives through the trace's time.

    Raises:
        tokenpool_client.TokenPoolError: the daemon cannot be reached, or
            refuses every call the same way (bad budget, bad arguments).
        ReplayError: the simulation stalled.
        TokenPoolError: the in-process daemon could not start.
    """
    try:
        if setup.address is not None:
            return await _replay(setup, setup.address, tally, hook)
        return await _replay_in_process(setup, tally, hook)
    except BaseExceptionGroup as group:
        # One call's error cancelled the others: raise just that one.
        errors = _leaves(group)
        if len(errors) == 1 and isinstance(errors[0], Exception):
            raise errors[0] from None
        raise
