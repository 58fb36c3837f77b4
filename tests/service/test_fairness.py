"""Fair sharing of a pool among waiting tenants, through gRPC on the driven clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.abc
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import (
    Pending,
    drawn,
    pool_status,
    refusal,
    wait_until,
)

pytestmark = pytest.mark.anyio

# The longest wait a Reserve may ask for under the default policy.
MAX_WAIT_MS = 60_000

# Nanoseconds per second of the driven clock.
NS = 1_000_000_000

BASIC_ONLY = {"basic": 100, "priority": 0, "burst": 0}
PRIORITY_ONLY = {"basic": 0, "priority": 100, "burst": 0}

# Pools of 1440, 1440 and 720 tokens that refill by well under a token in the
# few driven seconds a test takes, so only a refund brings tokens back.
SLOW_SPLIT = {
    "name": "b",
    "capacity_tokens": 3600,
    "window_seconds": 86_400,
    "shares": {"basic": 40, "priority": 40, "burst": 20},
}


@dataclass
class Grant:
    """One granted Reserve as its caller saw it."""

    tenant: str
    tokens: int
    waited_ms: int


class Traffic:
    """Callers in closed loops on the driven clock: reserve, hold, settle, repeat.

    Between clock steps the test waits until every caller is either queued in
    the daemon or asleep until a later clock time, so what is granted depends
    on the clock alone, not on how fast the event loop happens to run.
    """

    def __init__(self, served: Served, budget: str = "b") -> None:
        self._served = served
        self._budget = budget
        self._moved = anyio.Event()
        self._asleep: dict[object, int] = {}
        self._reserving: Counter[str] = Counter()
        self._settling = 0
        self.asked: Counter[str] = Counter()
        self.grants: list[Grant] = []

    async def start(
        self,
        tasks: anyio.abc.TaskGroup,
        tenant: str,
        tokens: int,
        *,
        hold_s: float,
        pause_s: float = 0.0,
        urgency: int = 0,
    ) -> None:
        """Starts one caller; it has sent its first Reserve when this returns."""
        caller = partial(self._loop, tenant, tokens, hold_s, pause_s, urgency)
        await tasks.start(caller)

    def queued(self, tenant: str) -> int:
        """Requests of a tenant waiting in the daemon (exact between steps)."""
        return self._reserving[tenant]

    async def run(
        self, *, seconds: float, step_s: float
    ) -> list[tuple[int, Counter[str]]]:
        """Drives the clock; returns who was queued before each step, and when."""
        before: list[tuple[int, Counter[str]]] = []
        for _ in range(round(seconds / step_s)):
            await self._calm()
            before.append((self._served.clock.monotonic_ns(), +self._reserving))
            self._served.clock.advance(step_s)
            self._moved.set()
            self._moved = anyio.Event()
        await self._calm()
        return before

    async def granted_between(self, start_s: float, end_s: float) -> Counter[str]:
        """Tokens the ledger's reserve entries granted per tenant in a span."""
        clock = self._served.clock
        offset = clock.wall_ns() - clock.monotonic_ns()
        granted: Counter[str] = Counter()
        for entry in await self._served.ledger.entries(limit=100_000):
            at = entry.at_wall_ns - offset
            if entry.kind == "reserve" and start_s * NS <= at < end_s * NS:
                granted[entry.tenant] += entry.tokens
        return granted

    async def _loop(
        self,
        tenant: str,
        tokens: int,
        hold_s: float,
        pause_s: float,
        urgency: int,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        api = self._served.api
        me = object()
        started = False
        while True:
            self._reserving[tenant] += 1
            self.asked[tenant] += tokens
            if not started:
                task_status.started()
                started = True
            granted = await api.Reserve(
                pb.ReserveRequest(
                    budget=self._budget,
                    tenant=tenant,
                    tokens=tokens,
                    max_wait_ms=MAX_WAIT_MS,
                    urgency=urgency,
                )
            )
            self._reserving[tenant] -= 1
            self.grants.append(Grant(tenant, granted.granted_tokens, granted.waited_ms))

            await self._sleep(me, hold_s)
            self._settling += 1
            await api.Settle(
                pb.SettleRequest(
                    reservation_id=granted.reservation_id,
                    tenant=tenant,
                    output_tokens=tokens,
                )
            )
            self._settling -= 1
            await self._sleep(me, pause_s)

    async def _sleep(self, caller: object, seconds: float) -> None:
        """Waits for the driven clock to move on by some seconds."""
        clock = self._served.clock
        self._asleep[caller] = wake = clock.monotonic_ns() + round(seconds * NS)
        while clock.monotonic_ns() < wake:
            await self._moved.wait()
        # Nothing may run between waking and the caller's next step, or the
        # driver could take the clock on before the caller is counted busy.
        del self._asleep[caller]

    async def _calm(self) -> None:
        with anyio.fail_after(5):
            # Polls the daemon over gRPC, more often than wait_until does.
            while not await self._is_calm():  # noqa: ASYNC110
                await anyio.sleep(0.001)

    async def _is_calm(self) -> bool:
        now = self._served.clock.monotonic_ns()
        if self._settling or any(wake <= now for wake in self._asleep.values()):
            return False
        reserving = sum(self._reserving.values())
        status = await pool_status(self._served.api, self._budget)
        queued = sum(pool.waiting for pool in status.values())
        return queued == reserving == sum(self._reserving.values())


def _shares(granted: Counter[str]) -> dict[str, float]:
    total = sum(granted.values())
    return {tenant: tokens / total for tenant, tokens in granted.items()}


def _backlogged(
    before: list[tuple[int, Counter[str]]], start_s: float, tenants: tuple[str, ...]
) -> bool:
    """Whether every tenant had a request queued before every step after a time."""
    return all(
        all(queued[tenant] > 0 for tenant in tenants)
        for at, queued in before
        if at >= start_s * NS
    )


@pytest.mark.parametrize("queueing", ["fair", "fifo"])
async def test_backlogged_basic_tenants_share_tokens_equally(
    serve: ServeFactory, queueing: str
) -> None:
    # 400 tokens a second; "many" asks 100 at a time from 12 callers, "few"
    # 200 at a time from 3, and both always have requests queued.
    budget = {
        "name": "b",
        "capacity_tokens": 800,
        "window_seconds": 2,
        "shares": BASIC_ONLY,
        "queueing": queueing,
    }
    async with serve(budgets=[budget]) as s:
        traffic = Traffic(s)
        async with anyio.create_task_group() as tasks:
            for _ in range(12):
                await traffic.start(tasks, "many", 100, hold_s=0.5)
            for _ in range(3):
                await traffic.start(tasks, "few", 200, hold_s=0.5)
            before = await traffic.run(seconds=45, step_s=0.5)
            tasks.cancel_scope.cancel()

        granted = await traffic.granted_between(5, 45)

    assert _backlogged(before, 5, ("many", "few"))
    # 40 s of refill, all of it granted while both wait.
    assert sum(granted.values()) >= 15_600
    shares = _shares(granted)
    if queueing == "fair":
        assert shares["many"] == pytest.approx(0.5, rel=0.05)
        assert shares["few"] == pytest.approx(0.5, rel=0.05)
    else:
        # Arrival order serves requests, not tokens: 12 x 100 per 3 x 200.
        assert shares["many"] > 0.6


async def test_priority_tenants_share_by_weight(serve: ServeFactory) -> None:
    budget = {
        "name": "b",
        "capacity_tokens": 800,
        "window_seconds": 2,
        "shares": PRIORITY_ONLY,
    }
    tenants = [
        {"name": "heavy", "tier": "priority", "weight": 3},
        {"name": "light", "tier": "priority", "weight": 1},
    ]
    async with serve(budgets=[budget], tenants=tenants) as s:
        traffic = Traffic(s)
        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                await traffic.start(tasks, "heavy", 100, hold_s=0.5)
            for _ in range(4):
                await traffic.start(tasks, "light", 100, hold_s=0.5)
            before = await traffic.run(seconds=45, step_s=0.5)
            tasks.cancel_scope.cancel()

        granted = await traffic.granted_between(5, 45)

    assert _backlogged(before, 5, ("heavy", "light"))
    assert sum(granted.values()) >= 15_600
    shares = _shares(granted)
    assert shares["heavy"] == pytest.approx(0.75, rel=0.05)
    assert shares["light"] == pytest.approx(0.25, rel=0.05)


async def test_priority_tenants_of_equal_weight_share_by_urgency(
    serve: ServeFactory,
) -> None:
    # Weight x urgency (SPEC 2): 1 x 2 against 1 x 1 shares 2:1.
    budget = {
        "name": "b",
        "capacity_tokens": 800,
        "window_seconds": 2,
        "shares": PRIORITY_ONLY,
    }
    tenants = [
        {"name": "urgent", "tier": "priority"},
        {"name": "calm", "tier": "priority"},
    ]
    async with serve(budgets=[budget], tenants=tenants) as s:
        traffic = Traffic(s)
        async with anyio.create_task_group() as tasks:
            for _ in range(6):
                await traffic.start(tasks, "urgent", 100, hold_s=0.5, urgency=2)
            for _ in range(6):
                await traffic.start(tasks, "calm", 100, hold_s=0.5, urgency=1)
            before = await traffic.run(seconds=45, step_s=0.5)
            tasks.cancel_scope.cancel()

        granted = await traffic.granted_between(5, 45)

    assert _backlogged(before, 5, ("urgent", "calm"))
    assert sum(granted.values()) >= 15_600
    shares = _shares(granted)
    assert shares["urgent"] == pytest.approx(2 / 3, rel=0.05)
    assert shares["calm"] == pytest.approx(1 / 3, rel=0.05)


async def test_basic_tenants_share_equally_whatever_their_weight(
    serve: ServeFactory,
) -> None:
    # Weights (and urgency) count only in priority: basic is round-robin.
    budget = {
        "name": "b",
        "capacity_tokens": 800,
        "window_seconds": 2,
        "shares": BASIC_ONLY,
    }
    tenants = [
        {"name": "heavy", "tier": "basic", "weight": 3},
        {"name": "light", "tier": "basic", "weight": 1},
    ]
    async with serve(budgets=[budget], tenants=tenants) as s:
        traffic = Traffic(s)
        async with anyio.create_task_group() as tasks:
            for _ in range(6):
                await traffic.start(tasks, "heavy", 100, hold_s=0.5, urgency=3)
            for _ in range(6):
                await traffic.start(tasks, "light", 100, hold_s=0.5)
            before = await traffic.run(seconds=45, step_s=0.5)
            tasks.cancel_scope.cancel()

        granted = await traffic.granted_between(5, 45)

    assert _backlogged(before, 5, ("heavy", "light"))
    assert sum(granted.values()) >= 15_600
    shares = _shares(granted)
    assert shares["heavy"] == pytest.approx(0.5, rel=0.05)
    assert shares["light"] == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("queueing", ["fair", "fifo"])
async def test_light_tenant_gets_what_it_asks_at_once(
    serve: ServeFactory, queueing: str
) -> None:
    # 400 tokens a second, all of which "heavy" would take from its eight
    # callers; "light" asks 20 tokens every two seconds or so.
    budget = {
        "name": "b",
        "capacity_tokens": 800,
        "window_seconds": 2,
        "shares": BASIC_ONLY,
        "queueing": queueing,
    }
    async with serve(budgets=[budget]) as s:
        traffic = Traffic(s)
        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                await traffic.start(tasks, "heavy", 100, hold_s=0.5)
            await traffic.run(seconds=3, step_s=0.5)
            await traffic.start(tasks, "light", 20, hold_s=0.5, pause_s=1.5)
            before = await traffic.run(seconds=40, step_s=0.5)
            left_waiting = traffic.queued("light")
            tasks.cancel_scope.cancel()

    assert _backlogged(before, 0, ("heavy",))
    light = [grant for grant in traffic.grants if grant.tenant == "light"]
    assert len(light) >= 10
    assert sum(grant.tokens for grant in light) == (
        traffic.asked["light"] - 20 * left_waiting
    )
    waits = [grant.waited_ms for grant in light]
    if queueing == "fair":
        # At most one heavy request (a quarter second) goes before it.
        assert max(waits) <= 300
    else:
        # In arrival order it waits behind the heavy tenant's whole queue.
        assert min(waits) >= 750


def _wait_for(
    tenant: str, tokens: int, max_wait_ms: int = MAX_WAIT_MS
) -> pb.ReserveRequest:
    return pb.ReserveRequest(
        budget="b", tenant=tenant, tokens=tokens, max_wait_ms=max_wait_ms
    )


async def _waiting_are(s: Served, basic: int, priority: int = 0) -> bool:
    status = await pool_status(s.api)
    return (status["basic"].waiting, status["priority"].waiting) == (basic, priority)


async def _waiting_in_all(s: Served, count: int) -> bool:
    status = await pool_status(s.api)
    return sum(pool.waiting for pool in status.values()) == count


async def _grants(s: Served) -> list[tuple[str, int]]:
    return [
        (entry.tenant, entry.tokens)
        for entry in await s.ledger.entries(limit=10_000)
        if entry.kind == "reserve"
    ]


@pytest.mark.parametrize(
    ("basic_waited_s", "first"),
    [(2.5, "old"), (1.0, "vip")],
    ids=["aged-basic-first", "young-basic-after-priority"],
)
async def test_aged_basic_waiter_goes_first_in_burst(
    serve: ServeFactory, basic_waited_s: float, first: str
) -> None:
    tenants = [
        {"name": "vip", "tier": "priority"},
        {"name": "p-hog", "tier": "priority"},
    ]
    async with serve(budgets=[SLOW_SPLIT], tenants=tenants) as s:
        # Own pools empty, and burst too: each hog holds its pool and its
        # half of burst (360 each).
        hogs = {}
        for hog in ("b-hog", "p-hog"):
            hogs[hog] = await s.api.Reserve(
                pb.ReserveRequest(budget="b", tenant=hog, tokens=1800)
            )
            assert drawn(hogs[hog])[1] == ("burst", 360)
        old, vip = Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(old.send, s.api, _wait_for("old", 100))
            await wait_until(partial(_waiting_are, s, 1))
            # Past the starvation age (2 s) or not, the priority one comes.
            s.clock.advance(basic_waited_s)
            tasks.start_soon(vip.send, s.api, _wait_for("vip", 100))
            await wait_until(partial(_waiting_are, s, 1, 1))

            # 100 tokens come back to burst: enough for one of the two.
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=hogs["p-hog"].reservation_id,
                    tenant="p-hog",
                    output_tokens=1700,
                )
            )

            served, left = (old, vip) if first == "old" else (vip, old)
            answer = await served.answered()
            # The other one still waits in its queue.
            assert await _waiting_are(s, *((0, 1) if first == "old" else (1, 0)))
            tasks.cancel_scope.cancel()

    assert drawn(answer) == [("burst", 100)]
    assert left.answer is None


@pytest.mark.parametrize(
    ("tokens", "gap_s", "first"),
    [(400, 2.5, "old"), (100, 0.5, "vip")],
    ids=["aged-basic-first", "young-basic-after-priority"],
)
async def test_aged_basic_waiter_goes_first_when_burst_refills(
    serve: ServeFactory, tokens: int, gap_s: float, first: str
) -> None:
    # Own pools of 0 and a burst that refills 100 tokens a second, so both
    # tiers wait for burst alone.
    budget = {
        "name": "b",
        "capacity_tokens": 1000,
        "window_seconds": 10,
        "shares": {"basic": 0, "priority": 0, "burst": 100},
    }
    async with serve(
        budgets=[budget], tenants=[{"name": "vip", "tier": "priority"}]
    ) as s:
        for hog in ("hog-1", "hog-2"):
            await s.api.Reserve(pb.ReserveRequest(budget="b", tenant=hog, tokens=500))
        old, vip = Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(old.send, s.api, _wait_for("old", tokens))
            await wait_until(partial(_waiting_are, s, 1))
            s.clock.advance(gap_s)
            tasks.start_soon(vip.send, s.api, _wait_for("vip", tokens))
            await wait_until(partial(_waiting_are, s, 1, 1))

            # Burst holds exactly one request's tokens when the basic waiter
            # is 4 s old (past the 2 s starvation age) or 1 s old (not yet).
            s.clock.advance(tokens / 100 - gap_s)

            served, left = (old, vip) if first == "old" else (vip, old)
            answer = await served.answered()
            assert await _waiting_are(s, *((0, 1) if first == "old" else (1, 0)))
            tasks.cancel_scope.cancel()

    assert drawn(answer) == [("burst", tokens)]
    waited_s = tokens / 100 - (gap_s if first == "vip" else 0)
    assert answer.waited_ms == round(waited_s * 1000)
    assert left.answer is None


async def test_aged_basic_waiter_behind_a_light_head_goes_first(
    serve: ServeFactory,
) -> None:
    tenants = [
        {"name": "vip", "tier": "priority"},
        {"name": "p-hog", "tier": "priority"},
    ]
    async with serve(budgets=[SLOW_SPLIT], tenants=tenants) as s:
        hogs = {}
        for hog in ("b-hog", "p-hog"):
            hogs[hog] = await s.api.Reserve(
                pb.ReserveRequest(budget="b", tenant=hog, tokens=1800)
            )
        old, vip, light = Pending(), Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(old.send, s.api, _wait_for("old", 300))
            await wait_until(partial(_waiting_are, s, 1))
            s.clock.advance(2.5)
            tasks.start_soon(vip.send, s.api, _wait_for("vip", 300))
            await wait_until(partial(_waiting_are, s, 1, 1))
            # A light basic tenant arrives last; fair order puts its 50 at the
            # head of the basic queue, ahead of the aged 300.
            s.clock.advance(0.5)
            tasks.start_soon(light.send, s.api, _wait_for("light", 50))
            await wait_until(partial(_waiting_are, s, 2, 1))

            # 350 come back to burst: enough for both basic waiters, or for
            # the priority one and the light one.
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=hogs["p-hog"].reservation_id,
                    tenant="p-hog",
                    output_tokens=1450,
                )
            )
            await wait_until(partial(_waiting_in_all, s, 1))
            status = await pool_status(s.api)
            tasks.cancel_scope.cancel()

    # The 3 s old basic request went before the newer priority one: both
    # basic requests were served, the priority one still waits.
    assert (status["basic"].waiting, status["priority"].waiting) == (0, 1)


@pytest.mark.parametrize("how", ["cancelled", "max_wait"])
async def test_caller_that_gives_up_leaves_at_once(
    serve: ServeFactory, how: str
) -> None:
    budget = {"name": "b", "capacity_tokens": 1000, "shares": BASIC_ONLY}
    async with serve(budgets=[budget]) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=500))
        big, small = Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            # 600 is more than the pool has; the same tenant's 100 queues
            # behind it even though 500 are there.
            tasks.start_soon(big.send, s.api, _wait_for("a", 600, 1000))
            await wait_until(partial(_waiting_are, s, 1))
            tasks.start_soon(small.send, s.api, _wait_for("a", 100))
            await wait_until(partial(_waiting_are, s, 2))
            await anyio.sleep(0.05)
            assert small.answer is None

            if how == "cancelled":
                big.cancel()
            else:
                # One second of refill (16 tokens) does not make 600.
                s.clock.advance(1.0)
            await wait_until(partial(_waiting_are, s, 0))

        assert big.answer is None
        assert big.code == (
            grpc.StatusCode.CANCELLED
            if how == "cancelled"
            else grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert small.answer is not None and small.answer.granted_tokens == 100
        assert await _grants(s) == [("t", 500), ("a", 100)]
        basic = (await pool_status(s.api))["basic"]
        assert basic.available_tokens == 400 + (16 if how == "max_wait" else 0)


async def test_full_queue_refuses_at_once(serve: ServeFactory) -> None:
    budget = {
        "name": "b",
        "capacity_tokens": 1000,
        "shares": BASIC_ONLY,
        "queue_limit": 2,
    }
    async with serve(budgets=[budget]) as s:
        held = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=1000)
        )
        queued = [Pending(), Pending()]
        async with anyio.create_task_group() as tasks:
            for index, pending in enumerate(queued):
                tasks.start_soon(pending.send, s.api, _wait_for(f"w{index}", 100))
                await wait_until(partial(_waiting_are, s, index + 1))

            # The clock stands still: only an immediate answer ends this.
            # w0 already waits, so its new request's fair place is last.
            with anyio.fail_after(2):
                full = await refusal(s.api.Reserve(_wait_for("w0", 10)))

            assert full.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert full.reason == "QUEUE_FULL"
            assert await _waiting_are(s, 2)
            await s.api.Settle(
                pb.SettleRequest(
                    reservation_id=held.reservation_id, tenant="t", output_tokens=800
                )
            )

        assert [p.answer.granted_tokens for p in queued if p.answer] == [100, 100]


async def test_new_request_never_jumps_its_tenants_queue(serve: ServeFactory) -> None:
    budget = {"name": "b", "capacity_tokens": 1000, "shares": BASIC_ONLY}
    async with serve(budgets=[budget]) as s:
        held = await s.api.Reserve(
            pb.ReserveRequest(budget="b", tenant="t", tokens=900)
        )
        heavy = [Pending(), Pending(), Pending()]
        async with anyio.create_task_group() as tasks:
            for index, tokens in enumerate((300, 300, 50)):
                request = _wait_for("heavy", tokens)
                tasks.start_soon(heavy[index].send, s.api, request)
                await wait_until(partial(_waiting_are, s, index + 1))

            # 100 tokens are there, but heavy's 50 is behind its own 300s.
            await anyio.sleep(0.05)
            assert heavy[2].answer is None
            assert (await pool_status(s.api))["basic"].available_tokens == 100
            # A tenant with nothing queued is not behind them, and goes now.
            light = await s.api.Reserve(_wait_for("light", 50, 0))
            assert light.waited_ms == 0

            await s.api.Settle(
                pb.SettleRequest(reservation_id=held.reservation_id, tenant="t")
            )
            await wait_until(partial(_waiting_are, s, 0))

        assert await _grants(s) == [
            ("t", 900),
            ("light", 50),
            ("heavy", 300),
            ("heavy", 300),
            ("heavy", 50),
        ]


async def test_a_tenant_out_of_burst_share_does_not_hold_the_queue(
    serve: ServeFactory,
) -> None:
    # Basic 6500, burst 1300 of which one tenant may hold 650; no loans.
    budget = {
        "name": "b",
        "capacity_tokens": 10_000,
        "lending": {"basic": {"never_borrow": True}},
    }
    async with serve(budgets=[budget]) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="a", tokens=7150))
        first, second = Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first.send, s.api, _wait_for("a", 300))
            await wait_until(partial(_waiting_are, s, 1))
            # b queues behind a in fair order, but a can only wait for its
            # own pool to refill, while b may still use burst: b goes now.
            tasks.start_soon(second.send, s.api, _wait_for("b", 300))
            await second.ended.wait()
            assert await _waiting_are(s, 1)
            first.cancel()

    assert second.answer is not None
    assert drawn(second.answer) == [("burst", 300)]
    assert first.answer is None


@pytest.mark.parametrize(
    ("head_wait_ms", "rescued"),
    [(MAX_WAIT_MS, True), (16_000, False)],
    ids=["head-keeps-its-deadline", "head-would-miss-it"],
)
async def test_a_waiter_whose_tokens_are_there_is_granted_at_its_deadline(
    serve: ServeFactory, head_wait_ms: int, rescued: bool
) -> None:
    # 1000 tokens a minute: the pool refills 16.67 tokens a second.
    budget = {"name": "b", "capacity_tokens": 1000, "shares": BASIC_ONLY}
    async with serve(budgets=[budget]) as s:
        await s.api.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=1000))
        first, second, head = Pending(), Pending(), Pending()
        async with anyio.create_task_group() as tasks:
            # Fair order: heavy's first 100, light's 150, heavy's second 100.
            tasks.start_soon(first.send, s.api, _wait_for("heavy", 100))
            await wait_until(partial(_waiting_are, s, 1))
            tasks.start_soon(second.send, s.api, _wait_for("heavy", 100, 13_000))
            await wait_until(partial(_waiting_are, s, 2))
            tasks.start_soon(head.send, s.api, _wait_for("light", 150, head_wait_ms))
            await wait_until(partial(_waiting_are, s, 3))

            s.clock.advance(6)
            await first.answered()
            # At 13 s the pool holds 116: heavy's second fits, light's 150
            # does not. Granting it leaves light 150 tokens by 60 s, but not
            # by 16 s, so then it is refused instead.
            s.clock.advance(7)
            await second.ended.wait()
            assert await _waiting_are(s, 1)
            assert head.answer is None
            s.clock.advance(3 if not rescued else 8)
            await head.answered()
        grants = await _grants(s)

    if rescued:
        assert second.answer is not None and second.answer.waited_ms == 13_000
        assert grants == [("t", 1000), ("heavy", 100), ("heavy", 100), ("light", 150)]
    else:
        assert second.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert grants == [("t", 1000), ("heavy", 100), ("light", 150)]
