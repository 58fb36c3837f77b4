"""Random sequences of RPCs against a real daemon, checked against a model.

A hypothesis state machine starts one daemon per example (fresh ledger, a
ManualClock) in a background event loop, drives it through gRPC with
Reserve, Settle, Release, Extend, expiry, clock advances, SetCapacity and
Rebalance, and after every step compares pools, holds and ledger sums with
the reference model in `_model.py` (the budgets it draws are in
`_machine_setups.py`). Engine bugs it found are kept as plain regression
tests at the end of this file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import pools, refusal, wait_until
from tests.service._machine_setups import SETUPS, Setup, pool_shares
from tests.service._model import (
    POOLS,
    BudgetModel,
    Hold,
    Totals,
    lender_of,
)
from tokenpool.core import LimitReason
from tokenpool.engine import ManualClock

NS_PER_MS = 1_000_000

# 2026-05-09 12:00:00 UTC: an example runs for hours at most, so every grant
# and charge falls in one calendar day.
NOON_NS = 1_778_328_000 * 1_000_000_000

# Reasons the limit book refuses with (the rest are the pools').
LIMIT_REASONS = frozenset(reason.value for reason in LimitReason)

# The lease of a Reserve that asks for 0 (SPEC 3: 5 minutes).
DEFAULT_LEASE_NS = 300_000 * NS_PER_MS

# Tenants and their tiers; "bob" is not configured and is admitted as basic.
TENANTS = {"ann": "basic", "bob": "basic", "pro": "priority", "vip": "priority"}

# Fields that make a Reserve score high (SPEC 3), so the larger burst limit
# applies; the explicit token count still sets the hold.
COMPLEX_CALL: dict[str, Any] = {
    "task_type": "code",
    "output_detail": 3,
    "structured_output": True,
    "context_items": 50,
}

# Lease lengths in milliseconds; 0 asks for the default.
LEASES = st.one_of(st.just(0), st.integers(1, 600_000))

# Examples and steps: enough to reach debt, loans, expiry and every cap,
# while the whole machine stays around 40 s on two cores.
MACHINE_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class Harness:
    """What every example shares: the event loop thread and the daemon factory."""

    portal: BlockingPortal
    serve: ServeFactory
    directory: Path
    examples: int = 0


@dataclass
class Failure:
    """A refused call: its code, and the largest grantable it reported."""

    code: grpc.StatusCode
    message: str
    largest: int | None
    reason: str = ""


async def _call(method: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
    """Awaits one RPC; a gRPC error comes back as a Failure, not raised."""
    try:
        return await method(request)
    except grpc.aio.AioRpcError as exc:
        largest, reason = None, ""
        status = rpc_status.from_call(exc)
        for packed in status.details if status else ():
            if packed.Is(pb.RefusalDetail.DESCRIPTOR):
                detail = pb.RefusalDetail()
                packed.Unpack(detail)
                largest = detail.largest_grantable_tokens
            elif packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                reason = info.reason
        return Failure(exc.code(), exc.details() or "", largest, reason)


def _pick(holds: dict[str, Hold], index: int) -> Hold:
    # In grant order: reservation ids are random, so ordering by them would
    # pick another reservation when hypothesis replays an example.
    ordered = list(holds.values())
    return ordered[index % len(ordered)]


def _draws(sources: Any) -> list[tuple[str, int]]:
    return [(draw.pool, draw.tokens) for draw in sources]


def _totals(row: pb.ReportRow) -> Totals:
    return Totals(
        row.reservations,
        row.tokens_reserved,
        row.tokens_charged,
        row.tokens_refunded,
        row.tokens_overrun,
    )


class PoolMachine(RuleBasedStateMachine):
    """Drives one daemon per example and keeps a model of its budget beside it."""

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.portal = harness.portal
        self.model: BudgetModel | None = None
        self.daemon: AbstractContextManager[Served] | None = None
        self.served: Served | None = None
        # Complexity score per request shape, learned from the first grant.
        self.scores: dict[bool, int] = {}

    @property
    def s(self) -> Served:
        assert self.served is not None
        return self.served

    @property
    def m(self) -> BudgetModel:
        assert self.model is not None
        return self.model

    def rpc(self, method: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
        """Calls the daemon from the machine's thread; errors come back as values."""
        return self.portal.call(_call, method, request)

    def advance(self, dt_ns: int) -> None:
        """Moves the daemon's clock and the model's; waits for expiries to land."""
        before = self.s.clock.monotonic_ns()
        self.portal.call(self.s.clock.advance, dt_ns / 1e9)
        assert self.s.clock.monotonic_ns() - before == dt_ns
        self.m.advance(dt_ns)
        open_now = len(self.m.holds)

        async def swept() -> bool:
            status = await self.s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
            return bool(status.open_reservations == open_now)

        # On a timeout the invariant reports the difference.
        with suppress(TimeoutError):
            self.portal.call(wait_until, swept)

    # Setup and teardown.

    @initialize(setup=SETUPS)
    def start(self, setup: Setup) -> None:
        self.harness.examples += 1
        path = self.harness.directory / f"ledger-{self.harness.examples}.db"
        self.daemon = self.portal.wrap_async_context_manager(
            self.harness.serve(
                db_path=path,
                clock=ManualClock(start_wall_ns=NOON_NS),
                budgets=[setup.budget()],
                **setup.tenants_and_teams(),
            )
        )
        self.served = self.daemon.__enter__()
        self.model = BudgetModel(setup.rules(), setup.capacity, setup.share_map)

    def teardown(self) -> None:
        if self.daemon is not None:
            self.daemon.__exit__(None, None, None)
            self.daemon = None

    # Reserve.

    @rule(
        tenant=st.sampled_from(sorted(TENANTS)),
        permille=st.integers(0, 400),
        lease_ms=LEASES,
        complex_call=st.booleans(),
    )
    def reserve_small(
        self, tenant: str, permille: int, lease_ms: int, complex_call: bool
    ) -> None:
        tokens = 1 + self.m.caps[TENANTS[tenant]] * permille // 1000
        self.reserve(tenant, tokens, lease_ms, complex_call)

    @rule(
        tenant=st.sampled_from(sorted(TENANTS)),
        permille=st.integers(1, 1100),
        lease_ms=LEASES,
        complex_call=st.booleans(),
    )
    def reserve_large(
        self, tenant: str, permille: int, lease_ms: int, complex_call: bool
    ) -> None:
        score = self.scores.get(complex_call, 0)
        reach = self.m.full_reach(TENANTS[tenant], score)
        self.reserve(tenant, max(1, reach * permille // 1000), lease_ms, complex_call)

    def reserve(
        self, tenant: str, tokens: int, lease_ms: int, complex_call: bool
    ) -> None:
        """Reserves without waiting; checks the grant's draws or the refusal."""
        pool = TENANTS[tenant]
        shape: dict[str, Any] = COMPLEX_CALL if complex_call else {}
        answer = self.rpc(
            self.s.api.Reserve,
            pb.ReserveRequest(
                budget="b",
                tenant=tenant,
                tokens=tokens,
                max_wait_ms=0,
                lease_ms=lease_ms,
                **shape,
            ),
        )

        if isinstance(answer, Failure):
            self._check_refusal(answer, tenant, pool, tokens, complex_call)
            return
        score = answer.complexity_score
        assert self.scores.setdefault(complex_call, score) == score
        assert (answer.granted_tokens, answer.pool, answer.budget) == (
            tokens,
            pool,
            "b",
        )
        draws = _draws(answer.sources)
        problems = self.m.draw_problems(tenant, pool, tokens, score, draws)
        assert not problems, f"Reserve of {tokens} by {tenant}: {problems}"
        broken, _ = self.m.limit_breaches(tenant, tokens, dict(draws))
        assert not broken, f"Reserve of {tokens} by {tenant} past {broken}"
        lease_ns = lease_ms * NS_PER_MS or DEFAULT_LEASE_NS
        lease_wall = answer.lease_expires_at.ToNanoseconds()
        assert lease_wall == self.s.clock.wall_ns() + lease_ns
        self.m.grant(answer.reservation_id, tenant, pool, score, draws, lease_ns)

    def _check_refusal(
        self, answer: Failure, tenant: str, pool: str, tokens: int, complex_call: bool
    ) -> None:
        # Until a grant has shown the score, the smaller burst limit is the
        # guess that cannot blame the daemon wrongly.
        score = self.scores.get(complex_call)
        largest = self.m.largest(tenant, pool, score or 0)
        if answer.reason in LIMIT_REASONS:
            planned = self.m.plan(tenant, pool, tokens, score or 0)
            sources = None if planned is None else dict(planned)
            self._check_limit_refusal(answer, tenant, tokens, sources)
            return

        assert answer.code in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.OUT_OF_RANGE,
        ), answer
        assert largest < tokens, (
            f"{tenant} was refused {tokens} tokens with {largest} grantable "
            f"({answer.code}: {answer.message})"
        )
        if answer.code is grpc.StatusCode.OUT_OF_RANGE:
            assert tokens > self.m.full_reach(pool, score or 0), answer
        elif score is not None:
            assert answer.largest == largest, (answer, largest)

    def _check_limit_refusal(
        self,
        answer: Failure,
        tenant: str,
        tokens: int,
        sources: dict[str, int] | None,
        hold: Hold | None = None,
    ) -> None:
        """A cap, calendar budget or request limit refused: the model agrees."""
        _, may = self.m.limit_breaches(tenant, tokens, sources, hold)
        assert answer.reason in may, (
            f"{tenant} refused {tokens} tokens by {answer.reason}, which allows "
            f"it (the model finds {sorted(may)}): {answer.message}"
        )
        if answer.code is grpc.StatusCode.OUT_OF_RANGE:
            assert may[answer.reason], answer
        else:
            assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED, answer

    def _check_flag(self, rid: str, kind: str, flagged: bool) -> None:
        """The ledger entry of an overrun carries the violation flag (SPEC 4)."""

        async def entry_detail() -> dict[str, object]:
            wall = self.s.clock.wall_ns()
            found = await self.s.ledger.entries(kinds=[kind], since_wall_ns=wall)
            (entry,) = [e for e in found if e.reservation_id == rid]
            return dict(entry.detail)

        detail = self.portal.call(entry_detail)
        assert detail.get("violation", False) is flagged, (rid, kind, detail)

    # Ending and changing holds.

    @precondition(lambda self: self.model is not None and self.model.holds)
    @rule(
        index=st.integers(0, 100),
        permille=st.integers(0, 2500),
        incomplete=st.booleans(),
    )
    def settle(self, index: int, permille: int, incomplete: bool) -> None:
        hold = _pick(self.m.holds, index)
        used = hold.hold * permille // 1000
        answer = self.rpc(
            self.s.api.Settle,
            pb.SettleRequest(
                reservation_id=hold.rid,
                tenant=hold.tenant,
                input_tokens=used // 3,
                output_tokens=used - used // 3,
                incomplete=incomplete,
            ),
        )

        assert not isinstance(answer, Failure), answer
        outcome = self.m.settle(hold.rid, used, incomplete=incomplete)
        got = (answer.charged_tokens, answer.refunded_tokens, answer.overrun_tokens)
        assert got == (outcome.charged, outcome.refunded, outcome.overrun)
        self._check_flag(hold.rid, "settle", self.m.violation(hold.hold, used))

    @precondition(lambda self: self.model is not None and self.model.holds)
    @rule(index=st.integers(0, 100), permille=st.integers(0, 1500))
    def release(self, index: int, permille: int) -> None:
        hold = _pick(self.m.holds, index)
        billed = hold.hold * permille // 1000
        answer = self.rpc(
            self.s.api.Release,
            pb.ReleaseRequest(
                reservation_id=hold.rid, tenant=hold.tenant, billed_input_tokens=billed
            ),
        )

        assert not isinstance(answer, Failure), answer
        outcome = self.m.release(hold.rid, billed)
        got = (answer.charged_tokens, answer.refunded_tokens)
        assert got == (outcome.charged, outcome.refunded)

    @precondition(lambda self: self.model is not None and self.model.holds)
    @rule(
        index=st.integers(0, 100),
        permille=st.one_of(st.just(0), st.integers(1, 3000)),
        lease_ms=st.one_of(st.none(), st.integers(1, 600_000)),
    )
    def extend(self, index: int, permille: int, lease_ms: int | None) -> None:
        hold = _pick(self.m.holds, index)
        total = max(1, hold.hold * permille // 1000) if permille else 0
        request = pb.ExtendRequest(
            reservation_id=hold.rid, tenant=hold.tenant, total_tokens=total
        )
        if lease_ms is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromNanoseconds(self.s.clock.wall_ns() + lease_ms * NS_PER_MS)
            request.lease_expires_at.CopyFrom(stamp)
        before = dict(hold.sources)
        answer = self.rpc(self.s.api.Extend, request)

        delta = (total or hold.hold) - hold.hold
        if isinstance(answer, Failure):
            self._check_extend_refusal(answer, hold, total, delta)
            return
        after = dict(_draws(answer.sources))
        assert answer.granted_tokens == hold.hold + delta
        broken, _ = self.m.limit_breaches(hold.tenant, hold.hold + delta, after, hold)
        assert not broken, f"Extend of {hold.rid} by {delta} past {broken}"
        if delta > 0:
            extra = [
                (pool, after.get(pool, 0) - before.get(pool, 0))
                for pool in (hold.pool, "burst", lender_of(hold.pool))
                if after.get(pool, 0) != before.get(pool, 0)
            ]
            problems = self.m.draw_problems(
                hold.tenant, hold.pool, delta, hold.score, extra
            )
            assert not problems, f"Extend of {hold.rid} by {delta}: {problems}"
            self.m.grow(hold.rid, extra)
        elif delta < 0:
            self.m.shrink(hold.rid, -delta)
        assert after == hold.sources, f"Extend left {after}, model {hold.sources}"
        if lease_ms is not None:
            hold.lease_ns = self.m.now_ns + lease_ms * NS_PER_MS
            lease_wall = answer.lease_expires_at.ToNanoseconds()
            assert lease_wall == self.s.clock.wall_ns() + lease_ms * NS_PER_MS

    def _check_extend_refusal(
        self, answer: Failure, hold: Hold, total: int, delta: int
    ) -> None:
        # Moving the lease or shrinking asks for nothing more: never refused.
        assert delta > 0, f"Extend of {hold.rid} to {total} refused: {answer}"
        if answer.reason in LIMIT_REASONS:
            planned = self.m.plan(hold.tenant, hold.pool, delta, hold.score)
            sources = None
            if planned is not None:
                sources = dict(hold.sources)
                for pool, tokens in planned:
                    sources[pool] = sources.get(pool, 0) + tokens
            self._check_limit_refusal(answer, hold.tenant, total, sources, hold)
            return
        # A total no tenant could ever hold at once is out of range, even when
        # refill since the grant would cover the growth (SPEC 12.1).
        if answer.code is grpc.StatusCode.OUT_OF_RANGE:
            assert total > self.m.full_reach(hold.pool, hold.score), answer
            return
        largest = self.m.largest(hold.tenant, hold.pool, hold.score)

        assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED, answer
        assert delta > largest, (
            f"Extend of {hold.rid} by {delta} refused with {largest} grantable "
            f"({answer.code}: {answer.message})"
        )

    @precondition(lambda self: self.model is not None and self.model.expired)
    @rule(index=st.integers(0, 100), permille=st.integers(0, 2500))
    def settle_late(self, index: int, permille: int) -> None:
        hold = _pick(self.m.expired, index)
        used = hold.hold * permille // 1000
        answer = self.rpc(
            self.s.api.Settle,
            pb.SettleRequest(
                reservation_id=hold.rid, tenant=hold.tenant, output_tokens=used
            ),
        )

        assert isinstance(answer, Failure), answer
        assert answer.code is grpc.StatusCode.FAILED_PRECONDITION, answer
        if self.m.late_settle(hold.rid, used):
            # Charged as an overrun (SPEC 12.2), flagged as one (SPEC 4).
            self._check_flag(hold.rid, "overrun", self.m.violation(hold.hold, used))

    # The clock.

    @precondition(lambda self: self.model is not None and self.model.holds)
    @rule(index=st.integers(0, 100), past_ms=st.integers(0, 3))
    def expire(self, index: int, past_ms: int) -> None:
        hold = _pick(self.m.holds, index)
        self.advance(hold.lease_ns - self.m.now_ns + past_ms * NS_PER_MS)
        assert hold.rid not in self.m.holds

    @precondition(lambda self: self.model is not None)
    @rule(ms=st.one_of(st.integers(1, 2000), st.integers(1, 90_000)))
    def refill(self, ms: int) -> None:
        self.advance(ms * NS_PER_MS)

    # Administration.

    @precondition(lambda self: self.model is not None)
    @rule(capacity=st.integers(0, 3000))
    def set_capacity(self, capacity: int) -> None:
        answer = self.rpc(
            self.s.admin.SetCapacity,
            pb.SetCapacityRequest(budget="b", capacity_tokens=capacity),
        )

        assert not isinstance(answer, Failure), answer
        self.m.resize(capacity, self.m.shares)

    @precondition(lambda self: self.model is not None)
    @rule(shares=pool_shares(), named=st.sets(st.sampled_from(POOLS), min_size=1))
    def rebalance(self, shares: tuple[int, int], named: set[str]) -> None:
        full = {"basic": shares[0], "priority": shares[1]}
        full["burst"] = 100 - shares[0] - shares[1]
        sent = {pool: full[pool] for pool in named}
        answer = self.rpc(
            self.s.admin.Rebalance, pb.RebalanceRequest(budget="b", shares=sent)
        )

        merged = {**self.m.shares, **sent}
        if sum(merged.values()) != 100:
            assert isinstance(answer, Failure), answer
            assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, answer
            return
        assert not isinstance(answer, Failure), answer
        self.m.resize(self.m.capacity, merged)

    # Checks after every step.

    @invariant()
    def pools_match_the_model(self) -> None:
        if self.model is None:
            return
        m = self.m
        status = self.rpc(self.s.api.GetBudget, pb.GetBudgetRequest(budget="b"))
        assert not isinstance(status, Failure), status

        assert status.open_reservations == len(m.holds)
        columns = (
            "share, capacity, level, available, in flight, lent, borrowed, "
            "charged, waiting"
        )
        got = {
            name: (
                pool.share_percent,
                pool.capacity_tokens,
                pool.available_tokens - pool.debt_tokens,
                pool.available_tokens,
                pool.in_flight_tokens,
                pool.lent_tokens,
                pool.borrowed_tokens,
                pool.charged_tokens,
                pool.waiting,
            )
            for name, pool in pools(status).items()
        }
        expected = {
            name: (
                m.shares[name],
                m.caps[name],
                m.level(name),
                m.available(name),
                m.in_flight(name),
                m.lent(name),
                m.borrowed(name),
                m.charged[name],
                0,
            )
            for name in POOLS
        }
        assert got == expected, f"({columns}) at {m.now_ns} ns"
        open_holds = sum(hold.hold for hold in m.holds.values())
        assert sum(pool.in_flight_tokens for pool in status.pools) == open_holds

    @invariant()
    def limits_match_the_model(self) -> None:
        """Tenant and team counters are the model's (SPEC 2, 12.4)."""
        if self.model is None or self.m.rules.limits is None:
            return
        m = self.m
        for kind, name in (("tenant", "ann"), ("tenant", "pro"), ("team", "crew")):
            if kind == "tenant":
                request: Any = pb.GetTenantRequest(tenant=name)
                status = self.rpc(self.s.api.GetTenant, request)
            else:
                status = self.rpc(self.s.api.GetTeam, pb.GetTeamRequest(team=name))
            assert not isinstance(status, Failure), status
            held = sum(h.hold for h in m.holds_of(kind, name))
            day = status.day
            got = (status.in_flight_tokens, day.charged_tokens, day.held_tokens)
            assert got == (held, *m.day_used(kind, name)), f"{kind} {name}"

    @invariant()
    def ledger_matches_the_model(self) -> None:
        if self.model is None:
            return
        expected = {
            tenant: totals
            for tenant, totals in self.m.totals.items()
            if totals != Totals()
        }
        seen: dict[str, Totals] = {}

        # The sweeper commits an expiry just after the pools show it.
        async def agrees() -> bool:
            report = await self.s.admin.Report(pb.ReportRequest(budget="b"))
            seen.clear()
            for row in report.rows:
                if _totals(row) != Totals():
                    seen[row.tenant] = _totals(row)
            return seen == expected

        # On a timeout the assertion shows the difference.
        with suppress(TimeoutError):
            self.portal.call(wait_until, agrees)
        assert seen == expected


@pytest.fixture
def harness(serve: ServeFactory, tmp_path: Path) -> Iterator[Harness]:
    with start_blocking_portal(backend="asyncio") as portal:
        yield Harness(portal, serve, tmp_path)


def test_random_operations_match_the_model(harness: Harness) -> None:
    class Machine(PoolMachine):
        def __init__(self) -> None:
            super().__init__(harness)

    run_state_machine_as_test(Machine, settings=MACHINE_SETTINGS)


# Engine bugs the machine found, as plain examples.

# 1000 tokens at the default split: basic 650, priority 220, burst 130.
SPLIT_1000 = {"name": "b", "capacity_tokens": 1000}


def _basic_and_burst(status: pb.BudgetStatus) -> tuple[int, int]:
    found = pools(status)
    return found["basic"].available_tokens, found["burst"].available_tokens


@pytest.mark.anyio
async def test_extend_keeps_the_burst_tenant_limit(serve: ServeFactory) -> None:
    budget = {**SPLIT_1000, "lending": {"basic": {"never_borrow": True}}}
    async with serve(budgets=[budget]) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=650))
        spike = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=60)
        )
        assert _draws(spike.sources) == [("burst", 60)]

        # Half of burst's 130 is 65 per tenant: 5 more, not 60.
        grown = await refusal(
            s.api.Extend(
                pb.ExtendRequest(
                    reservation_id=spike.reservation_id, tenant="t", total_tokens=120
                )
            )
        )

        assert grown.code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.anyio
async def test_extend_keeps_the_lendable_share(serve: ServeFactory) -> None:
    budget = {**SPLIT_1000, "burst_tenant_percent": 0}
    async with serve(budgets=[budget]) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=650))
        loan = await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=50))
        assert _draws(loan.sources) == [("priority", 50)]

        # Priority may lend 25 % of its 220 (55) at once: 5 more, not 50.
        grown = await refusal(
            s.api.Extend(
                pb.ExtendRequest(
                    reservation_id=loan.reservation_id, tenant="t", total_tokens=100
                )
            )
        )

        assert grown.code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.anyio
async def test_refund_after_extend_goes_to_burst_first(serve: ServeFactory) -> None:
    async with serve(budgets=[SPLIT_1000]) as s:
        first = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=650)
        )
        spike = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=50)
        )
        await s.api.Settle(
            pb.SettleRequest(reservation_id=first.reservation_id, tenant="t")
        )
        grown = await s.api.Extend(
            pb.ExtendRequest(
                reservation_id=spike.reservation_id, tenant="t", total_tokens=100
            )
        )
        assert dict(_draws(grown.sources)) == {"burst": 50, "basic": 50}

        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=spike.reservation_id, tenant="t", output_tokens=50
            )
        )

        # Unused tokens go back burst first, then the own pool (SPEC 4).
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert _basic_and_burst(status) == (600, 130)


@pytest.mark.anyio
async def test_extend_moves_the_lease_of_a_hold_above_the_ceiling(
    serve: ServeFactory,
) -> None:
    async with serve(budgets=[SPLIT_1000]) as s:
        granted = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=600)
        )
        # Basic now has no share: a basic tenant could never again be granted
        # 600 (burst's 65 and priority's loans at most), but it holds them.
        await s.admin.Rebalance(
            pb.RebalanceRequest(budget="b", shares={"basic": 0, "priority": 87})
        )
        later = timestamp_pb2.Timestamp()
        later.FromNanoseconds(s.clock.wall_ns() + 600 * 10**9)

        moved = await s.api.Extend(
            pb.ExtendRequest(
                reservation_id=granted.reservation_id,
                tenant="t",
                lease_expires_at=later,
            )
        )

        assert moved.lease_expires_at == later


@pytest.mark.anyio
async def test_refund_to_capacity_drops_the_fraction(serve: ServeFactory) -> None:
    budget = {
        "name": "b",
        "capacity_tokens": 600,
        "shares": {"basic": 100, "priority": 0, "burst": 0},
    }
    async with serve(budgets=[budget]) as s:
        first = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=300)
        )
        s.clock.advance(0.05)  # Half a token of refill (600 per 60 s).
        await s.api.Settle(
            pb.SettleRequest(reservation_id=first.reservation_id, tenant="t")
        )
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=600))

        s.clock.advance(0.05)  # Another half token.

        # The refund filled the pool to exactly 600 and 600 were drawn: half
        # a token has refilled since, so none is available yet.
        status = await s.api.GetBudget(pb.GetBudgetRequest(budget="b"))
        assert pools(status)["basic"].available_tokens == 0
