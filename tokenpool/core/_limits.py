"""Calendar budgets and request limits, and the book that counts them.

Pools hold tokens; every other limit a reservation meets is counted here:
tenant and team caps per budget, their calendar budgets across budgets
(SPEC 12.4), and a budget's request rate and concurrency. A caller checks a
request against all of them first and applies it only when none refused,
so a refusal changes no counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, field, replace
from typing import NamedTuple

from tokenpool.core._breach import (
    Breach,
    LimitReason,
    _decisive,
    _Limit,
    _usd,
    _Verdict,
)
from tokenpool.core._bucket import TokenBucket
from tokenpool.core._calendar import CalendarPeriods, Periods
from tokenpool.core._caps import Caps, Subject, SubjectKind
from tokenpool.core._pools import Pool

# A requests-per-minute bucket refills its capacity once a minute.
_MINUTE_NS = 60 * 1_000_000_000

# Charge targets cached beyond the open holds before the cache is emptied.
_SPARE_TARGETS = 10_000


@dataclass(frozen=True, slots=True)
class Ask:
    """One reservation as the limits see it: whose, where, and how much."""

    budget: str
    tenant: str
    tokens: int
    """The whole hold; `draws`, when given, add up to it."""
    draws: tuple[tuple[Pool, int], ...] = ()
    """Where the allocator takes the tokens from, in draw order."""
    tenant_caps: Caps = field(default_factory=Caps)
    team: str | None = None
    team_caps: Caps | None = None
    cost_micros: int | None = 0
    """The hold's estimated cost; None when the model has no price."""
    model: str = ""
    pool_capacities: Mapping[Pool, int] = field(default_factory=dict)
    peak_pool_capacities: Mapping[Pool, int] | None = None
    """Pool capacities at the budget's largest capacity, to decide "never"."""
    requests_per_minute: int | None = None
    max_concurrent_reservations: int | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0 or any(tokens < 0 for _, tokens in self.draws):
            raise ValueError(f"Token counts must not be negative: {self.draws!r}.")
        if self.draws and sum(tokens for _, tokens in self.draws) != self.tokens:
            raise ValueError(
                f"The draws {self.draws!r} must add up to tokens ({self.tokens})."
            )


class RestoredHold(NamedTuple):
    """An open reservation as a restart reopens it in the limit book."""

    budget: str
    tenant: str
    team: str | None
    draws: tuple[tuple[Pool, int], ...]
    tokens: int
    micros: int
    granted_wall_ns: int


class ChargeTarget(NamedTuple):
    """Where a reservation's usage is charged: its subjects, its grant's periods."""

    subjects: tuple[Subject, ...]
    day: str
    month: str


class ChargedRow(NamedTuple):
    """Usage charged to one period, as the ledger totals it at start."""

    kind: SubjectKind
    name: str
    period: str
    tokens: int
    micros: int


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """One subject's calendar counters for one period."""

    period: str
    end_ns: int
    charged_tokens: int = 0
    charged_micros: int = 0
    held_tokens: int = 0
    held_micros: int = 0


@dataclass(frozen=True, slots=True)
class SubjectUsage:
    """What a tenant or team holds, and has used this day and month."""

    subject: Subject
    in_flight: Mapping[str, tuple[int, Mapping[Pool, int]]]
    """Per budget: tokens held in total, and per pool."""
    day: PeriodUsage
    month: PeriodUsage


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget's open reservations and its request-rate bucket."""

    open_reservations: int
    rate_available: int | None
    """Requests the rate limit lets through now; None without a limit."""


@dataclass(slots=True)
class _Flight:
    tokens: int = 0
    pools: dict[Pool, int] = field(default_factory=dict)
    holds: int = 0
    """Open reservations counted here."""


@dataclass(slots=True)
class _Period:
    charged_tokens: int = 0
    charged_micros: int = 0
    held_tokens: int = 0
    held_micros: int = 0


@dataclass(slots=True)
class _BudgetCounters:
    open: int = 0
    rate: TokenBucket | None = None


@dataclass(slots=True)
class _Held:
    """One open reservation's counts; one per open reservation, so kept small."""

    budget: str
    target: ChargeTarget
    """Shared by the holds of one tenant (and team) granted in one period."""
    draws: tuple[tuple[Pool, int], ...]
    """As the allocator drew them: often the very tuple the reservation keeps."""
    tokens: int
    micros: int


@dataclass(frozen=True, slots=True)
class _Growth:
    """A request as a check counts it: its new size, and what it holds already."""

    ask: Ask
    old_draws: Mapping[Pool, int]
    old_tokens: int
    old_micros: int
    windows: tuple[tuple[str, str, int], ...]
    """(daily or monthly, period key, ns until the period ends) to check."""


class LimitBook:
    """Every counter besides the pools' levels, for one daemon.

    Memory stays bounded: counters that hold and have charged nothing are
    dropped, and so are periods other than the current day and month once
    nothing is held in them.
    """

    def __init__(self, calendar: CalendarPeriods | None = None) -> None:
        """Counts calendar budgets in `calendar`'s timezone (UTC by default)."""
        self.calendar = calendar or CalendarPeriods()
        # Per subject, then per budget: a subject's reads touch only its own.
        self._flights: dict[Subject, dict[str, _Flight]] = {}
        self._usage: dict[Subject, dict[str, _Period]] = {}
        self._budgets: dict[str, _BudgetCounters] = {}
        self._held: dict[str, _Held] = {}
        self._targets: dict[tuple[str, str | None, str, str], ChargeTarget] = {}
        self._current = ("", "")

    def check(self, ask: Ask, now_ns: int, wall_ns: int) -> Breach | None:
        """The most decisive limit a new reservation breaks, or None.

        Changes no counter. A limit the request can never pass comes first,
        then calendar budgets (waiting does not help), then waitable limits.
        """
        periods = self.calendar.at(wall_ns)
        wall_ns = self.calendar.latest_wall_ns
        windows = (
            ("daily", periods.day, periods.day_end_ns - wall_ns),
            ("monthly", periods.month, periods.month_end_ns - wall_ns),
        )
        growth = _Growth(ask, {}, 0, 0, windows)
        return _decisive([*self._budget_verdicts(ask, now_ns), *self._verdicts(growth)])

    def hold(
        self,
        key: str,
        ask: Ask,
        now_ns: int,
        wall_ns: int,
        *,
        restoring: bool = False,
        granted_wall_ns: int | None = None,
    ) -> ChargeTarget:
        """Counts a granted reservation until it ends; returns where it charges.

        Args:
            key: The reservation id.
            ask: The request, as checked.
            now_ns: Monotonic clock reading, for the request rate.
            wall_ns: Wall clock reading, for the calendar.
            restoring: The reservation was reopened at start: the request
                rate is not charged again.
            granted_wall_ns: When it was granted, if not now (on restore):
                its usage belongs to the grant's periods.

        Raises:
            ValueError: the key is already held.
        """
        if key in self._held:
            raise ValueError(f"Reservation {key!r} is already held.")
        periods = self._roll(wall_ns)
        if granted_wall_ns is not None:
            periods = self.calendar.of(granted_wall_ns)

        target = self._target(ask.tenant, ask.team, periods)
        held = self._held[key] = _Held(ask.budget, target, (), 0, 0)
        self._resize(held, ask.draws, ask.tokens, ask.cost_micros or 0, holds=1)

        counters = self._budgets.setdefault(ask.budget, _BudgetCounters())
        counters.open += 1
        if ask.requests_per_minute is None:
            counters.rate = None
        elif not restoring:
            counters.rate = _rate(counters.rate, ask.requests_per_minute, now_ns)
            counters.rate.take(1)
        return held.target

    def restore_hold(
        self,
        key: str,
        held: RestoredHold,
        wall_ns: int,
    ) -> None:
        """Counts a reservation reopened at start, as `hold` with `restoring`.

        A restart reopens every open reservation, so this takes what the
        ledger stored as it is, without an `Ask`: the request was checked
        when it was granted, and the request rate is not charged again.

        Raises:
            ValueError: the key is already held.
        """
        if key in self._held:
            raise ValueError(f"Reservation {key!r} is already held.")
        self._roll(wall_ns)

        periods = self.calendar.of(held.granted_wall_ns)
        target = self._target(held.tenant, held.team, periods)
        counted = self._held[key] = _Held(held.budget, target, (), 0, 0)
        self._resize(counted, held.draws, held.tokens, held.micros, holds=1)
        self._budgets.setdefault(held.budget, _BudgetCounters()).open += 1

    def check_change(self, key: str, ask: Ask, wall_ns: int) -> Breach | None:
        """The limit an Extend to `ask`'s new totals breaks, or None.

        Only growth counts: the reservation's own hold is counted already.
        Its subjects and budget are the grant's; calendar budgets are those
        of the grant's periods while they are current. Request rate and
        concurrency are not checked again.

        Raises:
            KeyError: the key is not held.
        """
        held = self._held[key]
        periods = self.calendar.at(wall_ns)
        wall_ns = self.calendar.latest_wall_ns
        windows = (
            ("daily", held.target.day, periods.day_end_ns - wall_ns),
            ("monthly", held.target.month, periods.month_end_ns - wall_ns),
        )
        team = next((s.name for s in held.target.subjects[1:]), None)
        ask = replace(
            ask,
            budget=held.budget,
            tenant=held.target.subjects[0].name,
            team=team,
            team_caps=ask.team_caps if ask.team == team else None,
        )
        current = (periods.day, periods.month)
        growth = _Growth(
            ask,
            dict(held.draws),
            held.tokens,
            held.micros,
            tuple(window for window in windows if window[1] in current),
        )
        return _decisive(self._verdicts(growth))

    def change(self, key: str, ask: Ask, wall_ns: int) -> None:
        """Sets a held reservation's draws, tokens and cost to `ask`'s.

        Raises:
            KeyError: the key is not held.
        """
        self._roll(wall_ns)
        held = self._held[key]
        self._resize(held, ask.draws, ask.tokens, ask.cost_micros or 0)

    def end(
        self, key: str, charged_tokens: int, charged_micros: int, wall_ns: int
    ) -> ChargeTarget:
        """Stops counting a reservation and charges its grant's periods.

        The charge may exceed the hold (an overrun counts too). Returns where
        it was charged, for `add_charge` when a late settle reports more.

        Raises:
            KeyError: the key is not held.
        """
        self._roll(wall_ns)
        held = self._held.pop(key)
        self._resize(held, (), 0, 0, holds=-1)

        counters = self._budgets[held.budget]
        counters.open -= 1
        if counters.open == 0 and counters.rate is None:
            del self._budgets[held.budget]
        self.add_charge(held.target, charged_tokens, charged_micros, wall_ns)
        return held.target

    def add_charge(
        self, target: ChargeTarget, tokens: int, micros: int, wall_ns: int
    ) -> None:
        """Charges usage to a grant's periods; ended periods are not kept."""
        self._roll(wall_ns)
        for subject in target.subjects:
            for key in (target.day, target.month):
                self._add(subject, key, tokens, micros, 0, 0)

    def restore_charged(self, rows: Iterable[ChargedRow], wall_ns: int) -> None:
        """Seeds calendar usage from the ledger's totals at start.

        Rows of periods other than the current ones are skipped. Reopened
        reservations are then held again, with `restoring=True`.
        """
        self._roll(wall_ns)
        for row in rows:
            if row.period in self._current:
                subject = Subject(row.kind, row.name)
                self._add(subject, row.period, row.tokens, row.micros, 0, 0)

    def target_of(self, key: str) -> ChargeTarget:
        """Where a held reservation will be charged.

        Raises:
            KeyError: the key is not held.
        """
        return self._held[key].target

    def usage(self, subject: Subject, wall_ns: int) -> SubjectUsage:
        """What a subject holds per budget and has used this day and month."""
        periods = self.calendar.at(wall_ns)
        in_flight = {
            budget: (flight.tokens, dict(flight.pools))
            for budget, flight in self._flights.get(subject, {}).items()
        }
        counted = self._usage.get(subject, {})
        day = counted.get(periods.day, _Period())
        month = counted.get(periods.month, _Period())
        return SubjectUsage(
            subject,
            in_flight,
            PeriodUsage(periods.day, periods.day_end_ns, *astuple(day)),
            PeriodUsage(periods.month, periods.month_end_ns, *astuple(month)),
        )

    def holding(self, subject: Subject) -> tuple[int, int]:
        """A subject's open reservations and tokens they hold, over all budgets."""
        flights = self._flights.get(subject, {}).values()
        return sum(f.holds for f in flights), sum(f.tokens for f in flights)

    def budget_usage(
        self, budget: str, requests_per_minute: int | None, now_ns: int
    ) -> BudgetUsage:
        """A budget's open reservations and the requests its rate allows now."""
        counters = self._budgets.get(budget, _BudgetCounters())
        if requests_per_minute is None:
            return BudgetUsage(counters.open, None)
        bucket = _rate(_copy(counters.rate), requests_per_minute, now_ns)
        return BudgetUsage(counters.open, bucket.available)

    def snapshot(self) -> dict[str, object]:
        """Every counter as plain values: equal snapshots mean nothing changed."""
        return {
            "in_flight": {
                (subject, budget): (flight.tokens, dict(flight.pools), flight.holds)
                for subject, flights in self._flights.items()
                for budget, flight in flights.items()
            },
            "calendar": {
                subject: {key: astuple(period) for key, period in periods.items()}
                for subject, periods in self._usage.items()
            },
            "budgets": {
                name: (counters.open, counters.rate and astuple(counters.rate))
                for name, counters in self._budgets.items()
            },
            "held": {
                key: (held.budget, held.target, dict(held.draws), held.tokens)
                for key, held in self._held.items()
            },
        }

    def counter_count(self) -> int:
        """How many counters the book keeps; for memory checks and a gauge."""
        return (
            sum(len(flights) for flights in self._flights.values())
            + sum(len(periods) for periods in self._usage.values())
            + len(self._budgets)
            + len(self._held)
        )

    def _budget_verdicts(self, ask: Ask, now_ns: int) -> list[_Verdict]:
        counters = self._budgets.get(ask.budget, _BudgetCounters())
        who = f"Budget {ask.budget!r}"
        verdicts: list[_Verdict] = []

        cap = ask.max_concurrent_reservations
        if cap is not None:
            reason = LimitReason.BUDGET_CONCURRENCY
            limit = _Limit(
                reason, ask.budget, "max_concurrent_reservations", cap, "reservations"
            )
            status = f"{who} has {counters.open} open reservations"
            verdicts.append(limit.judge(counters.open, 1, 0, status, room=None))

        rpm = ask.requests_per_minute
        if rpm is not None:
            bucket = _rate(_copy(counters.rate), rpm, now_ns)
            limit = _Limit(
                LimitReason.BUDGET_RATE_LIMIT,
                ask.budget,
                "requests_per_minute",
                rpm,
                "requests",
                retry_after_ns=bucket.ns_until(1),
            )
            status = f"{who} has no request left in its rate bucket"
            used = rpm - bucket.available
            verdicts.append(limit.judge(used, 1, 0, status, room=None))
        return verdicts

    def _verdicts(self, growth: _Growth) -> list[_Verdict]:
        ask = growth.ask
        subjects = [(Subject(SubjectKind.TENANT, ask.tenant), ask.tenant_caps)]
        if ask.team is not None and ask.team_caps is not None:
            subjects.append((Subject(SubjectKind.TEAM, ask.team), ask.team_caps))

        verdicts: list[_Verdict] = []
        for subject, caps in subjects:
            verdicts.extend(self._in_flight_verdicts(subject, caps, growth))
            verdicts.extend(self._calendar_verdicts(subject, caps, growth))
        return verdicts

    def _in_flight_verdicts(
        self, subject: Subject, caps: Caps, growth: _Growth
    ) -> list[_Verdict]:
        ask, prefix = growth.ask, subject.kind.value.upper()
        flight = self._flights.get(subject, {}).get(ask.budget, _Flight())
        verdicts: list[_Verdict] = []

        cap = caps.max_in_flight_tokens
        if cap is not None:
            reason = LimitReason(f"{prefix}_IN_FLIGHT_CAP")
            limit = _Limit(reason, subject, "max_in_flight_tokens", cap)
            others = flight.tokens - growth.old_tokens
            status = f"{subject} has {flight.tokens} tokens in flight in {ask.budget!r}"
            room = limit.room(others)
            verdicts.append(
                limit.judge(others, ask.tokens, growth.old_tokens, status, room)
            )

        percent = caps.max_pool_percent
        if percent is None:
            return verdicts
        reason = LimitReason(f"{prefix}_POOL_SHARE_CAP")
        caps_now = {
            pool: ask.pool_capacities.get(pool, 0) * percent // 100
            for pool, _ in ask.draws
        }
        others_in = {
            pool: flight.pools.get(pool, 0) - growth.old_draws.get(pool, 0)
            for pool, _ in ask.draws
        }

        # Draws shrink from the last pool first: a smaller request fits when
        # the pools before the first one over its cap do.
        largest: int | None = None
        if ask.draws:
            largest = 0
            for pool, tokens in ask.draws:
                room = max(0, caps_now[pool] - others_in[pool])
                largest += min(tokens, room)
                if tokens > room:
                    break

        # Over all pools together it decides "never"; then pool by pool.
        peaks = ask.peak_pool_capacities or ask.pool_capacities
        total = sum(capacity * percent // 100 for capacity in peaks.values())
        setting = f"max_pool_percent ({percent} %) over all pools" if percent else ""
        limit = _Limit(reason, subject, setting or "max_pool_percent", total)
        verdicts.append(limit.judge(0, ask.tokens, growth.old_tokens, "", largest))
        for pool, tokens in ask.draws:
            setting = f"max_pool_percent ({percent} %)"
            limit = _Limit(reason, subject, setting, caps_now[pool], pool=pool)
            old, others = growth.old_draws.get(pool, 0), others_in[pool]
            status = (
                f"{subject} holds {others + old} tokens in pool {pool} "
                f"of {ask.budget!r}"
            )
            verdicts.append(
                limit.judge(others, tokens, old, status, largest, never=False)
            )
        return verdicts

    def _calendar_verdicts(
        self, subject: Subject, caps: Caps, growth: _Growth
    ) -> list[_Verdict]:
        ask, prefix = growth.ask, subject.kind.value.upper()
        old_tokens, old_micros = growth.old_tokens, growth.old_micros
        verdicts: list[_Verdict] = []
        unpriced = False

        for label, key, retry_ns in growth.windows:
            period = self._usage.get(subject, {}).get(key, _Period())
            name = label.upper()
            cap = caps.daily_tokens if label == "daily" else caps.monthly_tokens
            if cap is not None:
                limit = _Limit(
                    LimitReason(f"{prefix}_{name}_TOKENS"),
                    subject,
                    f"{label}_tokens",
                    cap,
                    retry_after_ns=retry_ns,
                    waitable=False,
                )
                used = period.charged_tokens + period.held_tokens
                status = f"{subject} has used {used} tokens in {key}, holds included"
                room = limit.room(used - old_tokens)
                verdicts.append(
                    limit.judge(used - old_tokens, ask.tokens, old_tokens, status, room)
                )

            cap = (
                caps.daily_cost_micros if label == "daily" else caps.monthly_cost_micros
            )
            if cap is None or ask.tokens <= old_tokens:
                continue
            if ask.cost_micros is None:
                unpriced = True
                continue
            limit = _Limit(
                LimitReason(f"{prefix}_{name}_COST"),
                subject,
                f"{label}_cost_usd",
                cap,
                "micro-dollars",
                retry_after_ns=retry_ns,
                waitable=False,
            )
            used = period.charged_micros + period.held_micros
            status = f"{subject} has spent {_usd(used)} in {key}, holds included"
            # What the money allows, told in tokens at this request's price.
            room = limit.room(used - old_micros)
            largest = ask.tokens
            if ask.cost_micros > room:
                largest = ask.tokens * room // ask.cost_micros
            verdicts.append(
                limit.judge(
                    used - old_micros, ask.cost_micros, old_micros, status, largest
                )
            )

        if unpriced:
            what = f"Model {ask.model!r} has no price, and {subject} has a money budget"
            refusal = Breach(
                reason=LimitReason.MODEL_UNPRICED,
                subject=ask.model,
                limit=0,
                current=0,
                requested=0,
                unit="",
                retry_after_ns=None,
                waitable=False,
                never=True,
                largest_grantable=0,
                message=what,
            )
            verdicts.append((0, refusal))
        return verdicts

    def _roll(self, wall_ns: int) -> Periods:
        periods = self.calendar.at(wall_ns)
        current = (periods.day, periods.month)
        if current != self._current:
            self._current = current
            for subject in list(self._usage):
                for key in list(self._usage[subject]):
                    self._add(subject, key, 0, 0, 0, 0)
        return periods

    def _target(self, tenant: str, team: str | None, periods: Periods) -> ChargeTarget:
        """Where a grant charges, shared by the grants alike (memory per hold).

        The cache is emptied when it grows past the holds it serves: a
        target is a small tuple, and its holds keep their own reference.
        """
        key = (tenant, team, periods.day, periods.month)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) > len(self._held) + _SPARE_TARGETS:
                self._targets.clear()
            subjects = [Subject(SubjectKind.TENANT, tenant)]
            if team is not None:
                subjects.append(Subject(SubjectKind.TEAM, team))
            target = ChargeTarget(tuple(subjects), periods.day, periods.month)
            self._targets[key] = target
        return target

    def _resize(
        self,
        held: _Held,
        new_draws: tuple[tuple[Pool, int], ...],
        tokens: int,
        micros: int,
        *,
        holds: int = 0,
    ) -> None:
        """Moves every counter of a hold from its old size to the new one.

        `holds` is 1 when the hold begins, -1 when it ends.
        """
        draws, old_draws = dict(new_draws), dict(held.draws)
        for subject in held.target.subjects:
            flights = self._flights.setdefault(subject, {})
            flight = flights.setdefault(held.budget, _Flight())
            flight.holds += holds
            flight.tokens += tokens - held.tokens
            for pool in old_draws.keys() | draws.keys():
                change = draws.get(pool, 0) - old_draws.get(pool, 0)
                flight.pools[pool] = flight.pools.get(pool, 0) + change
                if not flight.pools[pool]:
                    del flight.pools[pool]
            if not (flight.tokens or flight.pools or flight.holds):
                del flights[held.budget]
                if not flights:
                    del self._flights[subject]

            for key in (held.target.day, held.target.month):
                self._add(
                    subject, key, 0, 0, tokens - held.tokens, micros - held.micros
                )
        held.draws, held.tokens, held.micros = new_draws, tokens, micros

    def _add(
        self,
        subject: Subject,
        key: str,
        charged_tokens: int,
        charged_micros: int,
        held_tokens: int,
        held_micros: int,
    ) -> None:
        """Adds to one period's counters, then drops it if it is not needed.

        A period is needed while something is held in it, or while it is
        current and something was charged to it.
        """
        periods = self._usage.setdefault(subject, {})
        period = periods.setdefault(key, _Period())
        period.charged_tokens += charged_tokens
        period.charged_micros += charged_micros
        period.held_tokens += held_tokens
        period.held_micros += held_micros

        if period.held_tokens or period.held_micros:
            return
        if key in self._current and (period.charged_tokens or period.charged_micros):
            return
        del periods[key]
        if not periods:
            del self._usage[subject]


def _copy(bucket: TokenBucket | None) -> TokenBucket | None:
    return None if bucket is None else replace(bucket)


def _rate(bucket: TokenBucket | None, rpm: int, now_ns: int) -> TokenBucket:
    """A budget's request bucket brought up to date; a new one starts full."""
    if bucket is None:
        return TokenBucket.full(rpm, _MINUTE_NS, now_ns)
    if bucket.capacity != rpm:
        bucket.resize(rpm)
    bucket.refill(now_ns)
    return bucket
