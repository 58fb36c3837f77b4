"""A reference model of one budget's pools, written from SPEC sections 2-4 and 12.

It knows nothing of the engine: levels are exact fractions refilled
continuously, draws are checked against the SPEC's order and limits, and
refunds, overruns, expiry and capacity changes follow the SPEC's words. The
only things it takes from the daemon are what the daemon decides by design
(which sources a grant drew on, its complexity score), and it checks those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

POOLS = ("basic", "priority", "burst")

# Requests scored this high may use the larger per-tenant burst limit.
HIGH_COMPLEXITY_SCORE = 7


# A requests-per-minute limit refills its capacity once a minute.
MINUTE_NS = 60_000_000_000


@dataclass(frozen=True)
class CapRules:
    """A tenant's or team's caps (SPEC 2); None is no limit."""

    pool_percent: int | None = None
    in_flight: int | None = None
    daily_tokens: int | None = None


@dataclass(frozen=True)
class Limits:
    """Caps, one team and the budget's request limits, as configured."""

    tenants: dict[str, CapRules]
    team: str
    members: frozenset[str]
    team_caps: CapRules
    requests_per_minute: int | None
    concurrency: int | None


@dataclass(frozen=True)
class Rules:
    """The budget settings the model needs, as configured for the daemon."""

    window_ns: int
    max_debt_windows: int
    burst_tenant_percent: int
    burst_high_complexity_percent: int
    lendable_percent: dict[str, int]
    lend_threshold_percent: dict[str, int]
    overrun_limit_percent: int = 10
    limits: Limits | None = None


@dataclass
class Hold:
    """One open (or expired, awaiting a late settle) reservation."""

    rid: str
    tenant: str
    pool: str
    hold: int
    sources: dict[str, int]
    lease_ns: int
    score: int


@dataclass
class Totals:
    """What the ledger should sum to for one tenant."""

    reservations: int = 0
    reserved: int = 0
    charged: int = 0
    refunded: int = 0
    overrun: int = 0


@dataclass(frozen=True)
class Outcome:
    """How a settle or release should be accounted."""

    charged: int
    refunded: int
    overrun: int


def split(capacity: int, shares: dict[str, int]) -> dict[str, int]:
    """Each pool's share of capacity rounded down; the remainder goes to basic."""
    parts = {pool: capacity * shares[pool] // 100 for pool in POOLS}
    parts["basic"] += capacity - sum(parts.values())
    return parts


def lender_of(pool: str) -> str:
    """The other pool that lends to a tenant of `pool` (burst never lends)."""
    return "priority" if pool == "basic" else "basic"


@dataclass
class BudgetModel:
    """One budget: three pools, open holds, and the ledger's expected sums."""

    rules: Rules
    capacity: int
    shares: dict[str, int]
    now_ns: int = 0
    caps: dict[str, int] = field(default_factory=dict)
    levels: dict[str, Fraction] = field(default_factory=dict)
    charged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POOLS, 0))
    holds: dict[str, Hold] = field(default_factory=dict)
    expired: dict[str, Hold] = field(default_factory=dict)
    totals: dict[str, Totals] = field(default_factory=dict)
    day_charged: dict[tuple[str, str], int] = field(default_factory=dict)
    """Tokens charged today per (tenant or team, name); one day runs at most."""
    rate: Fraction = Fraction(0)
    """The request-rate bucket's level, when the budget has one."""

    def __post_init__(self) -> None:
        self.caps = split(self.capacity, self.shares)
        self.levels = {pool: Fraction(self.caps[pool]) for pool in POOLS}
        limits = self.rules.limits
        if limits is not None and limits.requests_per_minute is not None:
            self.rate = Fraction(limits.requests_per_minute)

    # Reading the pools.

    def level(self, pool: str) -> int:
        """The whole-token level; negative is debt."""
        return math.floor(self.levels[pool])

    def available(self, pool: str) -> int:
        """Tokens that can be drawn now."""
        return max(0, self.level(pool))

    def in_flight(self, pool: str) -> int:
        """Tokens open holds drew from this pool."""
        return sum(h.sources.get(pool, 0) for h in self.holds.values())

    def lent(self, pool: str) -> int:
        """Tokens drawn from this pool by other pools' tenants, outstanding."""
        return sum(
            h.sources.get(pool, 0) for h in self.holds.values() if h.pool != pool
        )

    def borrowed(self, pool: str) -> int:
        """Tokens this pool's tenants drew from other pools, outstanding."""
        return sum(
            tokens
            for h in self.holds.values()
            if h.pool == pool
            for source, tokens in h.sources.items()
            if source != pool
        )

    def burst_limit(self, score: int) -> int:
        """Burst tokens one tenant may hold at once (SPEC 3, step 2)."""
        percent = self.rules.burst_tenant_percent
        if score >= HIGH_COMPLEXITY_SCORE:
            percent = self.rules.burst_high_complexity_percent
        return self.caps["burst"] * percent // 100

    def burst_room(self, tenant: str, score: int) -> int:
        """Burst tokens this tenant may still take, counting all it holds."""
        held = sum(
            h.sources.get("burst", 0) for h in self.holds.values() if h.tenant == tenant
        )
        return max(0, min(self.available("burst"), self.burst_limit(score) - held))

    def loan_room(self, lender: str) -> int:
        """What a pool may lend now (SPEC 3, step 3).

        Never more than its lendable share of capacity out at once, and a
        loan never lifts its live utilisation, (capacity - available) /
        capacity, above its lending threshold.
        """
        cap = self.caps[lender]
        share_left = cap * self.rules.lendable_percent[lender] // 100 - self.lent(
            lender
        )
        # available - x >= cap * (1 - threshold): x <= available - cap + cap*t.
        threshold_left = (
            self.available(lender)
            - cap
            + cap * self.rules.lend_threshold_percent[lender] // 100
        )
        return max(0, min(share_left, threshold_left))

    def largest(self, tenant: str, pool: str, score: int) -> int:
        """The largest request this tenant could be granted now."""
        return (
            self.available(pool)
            + self.burst_room(tenant, score)
            + self.loan_room(lender_of(pool))
        )

    def full_reach(self, pool: str, score: int) -> int:
        """What the tenant could reach now with every pool full and nothing lent."""
        lender = lender_of(pool)
        cap = self.caps[lender]
        lendable = min(
            cap * self.rules.lendable_percent[lender] // 100,
            cap * self.rules.lend_threshold_percent[lender] // 100,
        )
        return self.caps[pool] + self.burst_limit(score) + lendable

    def tally(self, tenant: str) -> Totals:
        """The ledger sums expected for one tenant."""
        return self.totals.setdefault(tenant, Totals())

    # Caps, calendar budgets and request limits (SPEC 2, 12.4).

    def subjects(self, tenant: str) -> list[tuple[str, str, CapRules]]:
        """(tenant or team, name, caps) of every subject a tenant counts for."""
        limits = self.rules.limits
        if limits is None:
            return []
        found = [("tenant", tenant, limits.tenants.get(tenant, CapRules()))]
        if tenant in limits.members:
            found.append(("team", limits.team, limits.team_caps))
        return found

    def holds_of(self, kind: str, name: str) -> list[Hold]:
        """Open holds that count for a tenant or team."""
        limits = self.rules.limits
        if kind == "tenant":
            return [h for h in self.holds.values() if h.tenant == name]
        assert limits is not None
        return [h for h in self.holds.values() if h.tenant in limits.members]

    def day_used(self, kind: str, name: str) -> tuple[int, int]:
        """(charged, held) tokens today for a tenant or team."""
        held = sum(h.hold for h in self.holds_of(kind, name))
        return self.day_charged.get((kind, name), 0), held

    def plan(
        self, tenant: str, pool: str, tokens: int, score: int
    ) -> list[tuple[str, int]] | None:
        """The draws SPEC 3 takes for `tokens` now: own, burst, lender; None: short."""
        own = min(tokens, self.available(pool))
        burst = min(tokens - own, self.burst_room(tenant, score))
        loan = tokens - own - burst
        if loan > self.loan_room(lender_of(pool)):
            return None
        draws = [(pool, own), ("burst", burst), (lender_of(pool), loan)]
        return [(name, amount) for name, amount in draws if amount]

    def limit_breaches(
        self,
        tenant: str,
        tokens: int,
        sources: dict[str, int] | None,
        hold: Hold | None = None,
    ) -> tuple[set[str], dict[str, bool]]:
        """Limits a hold of `tokens` drawn from `sources` would break.

        `hold` is the reservation an Extend grows (None: a new Reserve).
        Returns the reasons the daemon must refuse with, and every reason it
        may refuse with mapped to whether it may say "never" (OUT_OF_RANGE).
        A pool-share cap over all pools is decided at the budget's largest
        capacity, which the model does not track: at the present capacity it
        is only a reason the daemon may give.
        """
        limits = self.rules.limits
        must: set[str] = set()
        may: dict[str, bool] = {}
        if limits is None:
            return must, may
        old_tokens = hold.hold if hold else 0
        old_sources = hold.sources if hold else {}
        grows = tokens > old_tokens

        def breach(reason: str, never: bool, *, certain: bool = True) -> None:
            may[reason] = may.get(reason, False) or never
            if certain:
                must.add(reason)

        for kind, name, caps in self.subjects(tenant):
            prefix = kind.upper()
            held = self.holds_of(kind, name)
            others = sum(h.hold for h in held) - old_tokens
            if (
                caps.in_flight is not None
                and grows
                and others + tokens > caps.in_flight
            ):
                breach(f"{prefix}_IN_FLIGHT_CAP", tokens > caps.in_flight)
            charged, held_today = self.day_used(kind, name)
            daily = caps.daily_tokens
            used = charged + held_today - old_tokens
            if daily is not None and grows and used + tokens > daily:
                breach(f"{prefix}_DAILY_TOKENS", tokens > daily)
            percent = caps.pool_percent
            if percent is None:
                continue
            total = sum(self.caps[pool] * percent // 100 for pool in POOLS)
            if grows and tokens > total:
                breach(f"{prefix}_POOL_SHARE_CAP", True, certain=False)
            for pool, amount in (sources or {}).items():
                old = old_sources.get(pool, 0)
                mine = sum(h.sources.get(pool, 0) for h in held) - old
                if amount > old and mine + amount > self.caps[pool] * percent // 100:
                    breach(f"{prefix}_POOL_SHARE_CAP", False)

        if hold is None:
            if limits.concurrency is not None and len(self.holds) >= limits.concurrency:
                breach("BUDGET_CONCURRENCY", limits.concurrency == 0)
            if limits.requests_per_minute is not None and self.rate < 1:
                breach("BUDGET_RATE_LIMIT", limits.requests_per_minute == 0)
        return must, may

    def violation(self, hold: int, used: int) -> bool:
        """Usage past the hold by more than the overrun limit (SPEC 4)."""
        return (used - hold) * 100 > hold * self.rules.overrun_limit_percent

    def _charge_day(self, tenant: str, tokens: int) -> None:
        for kind, name, _ in self.subjects(tenant):
            key = (kind, name)
            self.day_charged[key] = self.day_charged.get(key, 0) + tokens

    # Checking what the daemon drew.

    def draw_problems(
        self,
        tenant: str,
        pool: str,
        tokens: int,
        score: int,
        draws: list[tuple[str, int]],
    ) -> list[str]:
        """Why these draws break the SPEC's order or limits (empty: none)."""
        problems: list[str] = []
        lender = lender_of(pool)
        order = [pool, "burst", lender]
        names = [name for name, _ in draws]
        got = dict(draws)
        if sum(got.values()) != tokens:
            problems.append(f"draws sum to {sum(got.values())}, not {tokens}")
        if len(set(names)) != len(names) or any(n not in order for n in names):
            problems.append(f"draws name unexpected or repeated pools: {names}")
        elif names != sorted(names, key=order.index):
            problems.append(f"draws out of order (own, burst, lenders): {names}")
        for name, amount in draws:
            if amount <= 0:
                problems.append(f"a draw of {amount} from {name}")
            if self.level(name) <= 0:
                problems.append(
                    f"drew {amount} from {name} while its level was {self.level(name)}"
                )
            if amount > self.available(name):
                problems.append(
                    f"drew {amount} from {name} holding only {self.available(name)}"
                )
        burst, loan = got.get("burst", 0), got.get(lender, 0)
        if burst > self.burst_room(tenant, score):
            problems.append(
                f"burst draw {burst} passes the tenant's burst room "
                f"{self.burst_room(tenant, score)} (limit {self.burst_limit(score)})"
            )
        if loan > self.loan_room(lender):
            problems.append(
                f"loan {loan} from {lender} passes its room {self.loan_room(lender)}"
            )
        if (burst or loan) and got.get(pool, 0) != min(tokens, self.available(pool)):
            problems.append(
                f"went past the own pool with {self.available(pool)} left in it"
            )
        if loan and burst != self.burst_room(tenant, score):
            problems.append("borrowed before using the burst it could")
        return problems

    # Changing the pools.

    def advance(self, dt_ns: int) -> list[Hold]:
        """Refills every pool for dt_ns, then expires holds whose lease ended."""
        self.now_ns += dt_ns
        limits = self.rules.limits
        if limits is not None and limits.requests_per_minute is not None:
            rpm = limits.requests_per_minute
            self.rate = min(Fraction(rpm), self.rate + Fraction(rpm * dt_ns, MINUTE_NS))
        for pool in POOLS:
            cap = self.caps[pool]
            if self.levels[pool] < cap:
                refill = Fraction(cap * dt_ns, self.rules.window_ns)
                self.levels[pool] = min(Fraction(cap), self.levels[pool] + refill)

        due = [h for h in self.holds.values() if h.lease_ns <= self.now_ns]
        for hold in due:
            # Expiry charges the whole hold (SPEC 12.2): nothing goes back.
            self._close(hold, Outcome(hold.hold, 0, 0))
            self.expired[hold.rid] = hold
        return due

    def grant(
        self,
        rid: str,
        tenant: str,
        pool: str,
        score: int,
        draws: list[tuple[str, int]],
        lease_ns: int,
    ) -> None:
        """Takes a granted reservation's tokens out of its sources at once."""
        for name, amount in draws:
            self.levels[name] -= amount
        tokens = sum(amount for _, amount in draws)
        self.holds[rid] = Hold(
            rid, tenant, pool, tokens, dict(draws), self.now_ns + lease_ns, score
        )
        totals = self.tally(tenant)
        totals.reservations += 1
        totals.reserved += tokens
        if self.rules.limits is not None:
            self.rate -= 1

    def settle(self, rid: str, used: int, *, incomplete: bool) -> Outcome:
        """Charges usage; a cut-off call is charged at least its hold (12.6)."""
        hold = self.holds[rid]
        charged = max(used, hold.hold) if incomplete else used
        outcome = Outcome(
            charged, max(0, hold.hold - charged), max(0, charged - hold.hold)
        )
        self._close(hold, outcome)
        return outcome

    def release(self, rid: str, billed: int) -> Outcome:
        """Gives the hold back except the billed input, which is charged."""
        hold = self.holds[rid]
        outcome = Outcome(
            billed, max(0, hold.hold - billed), max(0, billed - hold.hold)
        )
        self._close(hold, outcome)
        return outcome

    def late_settle(self, rid: str, used: int) -> int:
        """Charges usage beyond what expiry charged as an overrun (12.2)."""
        hold = self.expired.pop(rid)
        extra = max(0, used - hold.hold)
        if extra:
            self._overrun(hold.pool, extra)
            self._charge_day(hold.tenant, extra)
            totals = self.tally(hold.tenant)
            totals.charged += extra
            totals.overrun += extra
        return extra

    def grow(self, rid: str, draws: list[tuple[str, int]]) -> None:
        """Adds an Extend's extra draws to a hold."""
        hold = self.holds[rid]
        for name, amount in draws:
            self.levels[name] -= amount
            hold.sources[name] = hold.sources.get(name, 0) + amount
            hold.hold += amount

    def shrink(self, rid: str, tokens: int) -> None:
        """Gives part of a hold back, lenders first, then burst, then own."""
        hold = self.holds[rid]
        for name, amount in self._refund_plan(hold, tokens):
            self._give(name, amount)
            hold.sources[name] -= amount
            if not hold.sources[name]:
                del hold.sources[name]
        hold.hold -= tokens

    def resize(self, capacity: int, shares: dict[str, int]) -> None:
        """Moves each pool's level by the change in its capacity (SPEC 12.3)."""
        caps = split(capacity, shares)
        for pool in POOLS:
            self.levels[pool] += caps[pool] - self.caps[pool]
        self.capacity, self.shares, self.caps = capacity, dict(shares), caps

    # Helpers.

    def _refund_plan(self, hold: Hold, tokens: int) -> list[tuple[str, int]]:
        plan: list[tuple[str, int]] = []
        left = tokens
        for name in (lender_of(hold.pool), "burst", hold.pool):
            back = min(left, hold.sources.get(name, 0))
            if back:
                plan.append((name, back))
                left -= back
        return plan

    def _give(self, pool: str, tokens: int) -> None:
        # A refund never lifts a level above capacity (SPEC 2): the part of a
        # token that refill had carried is dropped with the rest.
        cap = Fraction(self.caps[pool])
        self.levels[pool] = min(cap, self.levels[pool] + tokens)

    def _close(self, hold: Hold, outcome: Outcome) -> None:
        del self.holds[hold.rid]
        refund = self._refund_plan(hold, outcome.refunded)
        for name, amount in hold.sources.items():
            self.charged[name] += amount
        for name, amount in refund:
            self._give(name, amount)
            self.charged[name] -= amount
        if outcome.overrun:
            self._overrun(hold.pool, outcome.overrun)
        self._charge_day(hold.tenant, outcome.charged)
        totals = self.tally(hold.tenant)
        totals.charged += outcome.charged
        totals.refunded += outcome.refunded
        totals.overrun += outcome.overrun

    def _overrun(self, pool: str, tokens: int) -> None:
        """Charges the own pool, then burst's free tokens, then own-pool debt.

        Debt never takes the own pool's level below max_debt_windows times
        its capacity; usage beyond that is charged in the ledger only.
        """
        from_own = min(tokens, self.available(pool))
        from_burst = min(tokens - from_own, self.available("burst"))
        floor = -self.caps[pool] * self.rules.max_debt_windows
        debt_room = max(0, self.level(pool) - from_own - floor)
        debt = min(tokens - from_own - from_burst, debt_room)
        self.levels[pool] -= from_own + debt
        self.levels["burst"] -= from_burst
        self.charged[pool] += from_own + debt
        self.charged["burst"] += from_burst
