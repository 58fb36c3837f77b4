"""Refusals by a limit: which limit refused a request, and what to do about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from decimal import Decimal

from tokenpool.core._caps import Subject
from tokenpool.core._pools import Pool

_NS_PER_S = 1_000_000_000


class LimitReason(enum.StrEnum):
    """Which limit refused a request; stable names for ErrorInfo and metrics."""

    TENANT_IN_FLIGHT_CAP = "TENANT_IN_FLIGHT_CAP"
    TENANT_POOL_SHARE_CAP = "TENANT_POOL_SHARE_CAP"
    TENANT_DAILY_TOKENS = "TENANT_DAILY_TOKENS"
    TENANT_MONTHLY_TOKENS = "TENANT_MONTHLY_TOKENS"
    TENANT_DAILY_COST = "TENANT_DAILY_COST"
    TENANT_MONTHLY_COST = "TENANT_MONTHLY_COST"
    TEAM_IN_FLIGHT_CAP = "TEAM_IN_FLIGHT_CAP"
    TEAM_POOL_SHARE_CAP = "TEAM_POOL_SHARE_CAP"
    TEAM_DAILY_TOKENS = "TEAM_DAILY_TOKENS"
    TEAM_MONTHLY_TOKENS = "TEAM_MONTHLY_TOKENS"
    TEAM_DAILY_COST = "TEAM_DAILY_COST"
    TEAM_MONTHLY_COST = "TEAM_MONTHLY_COST"
    BUDGET_RATE_LIMIT = "BUDGET_RATE_LIMIT"
    BUDGET_CONCURRENCY = "BUDGET_CONCURRENCY"
    MODEL_UNPRICED = "MODEL_UNPRICED"


@dataclass(frozen=True, slots=True)
class Breach:
    """Why a limit refused a request, and what the caller can do about it."""

    reason: LimitReason
    subject: str
    """The tenant, team or budget whose limit refused, or the model."""
    limit: int
    current: int
    """What the limit counts now, without the request."""
    requested: int
    """What the request adds to it (the growth, for a change)."""
    unit: str
    """What `limit`, `current` and `requested` count."""
    retry_after_ns: int | None
    """When to retry: None once a reservation ends, or never."""
    waitable: bool
    """The request may wait in a queue for this limit (calendar ones: no)."""
    never: bool
    """The request can never pass: OUT_OF_RANGE, not retryable."""
    largest_grantable: int
    """The largest hold every limit of the book allows now, pools aside."""
    message: str
    pool: Pool | None = None


# A limit's verdict: the largest hold it allows now (None: any), and a refusal.
_Verdict = tuple[int | None, Breach | None]


@dataclass(frozen=True, slots=True)
class _Limit:
    """One limit as a check meets it, with what its message needs."""

    reason: LimitReason
    subject: Subject | str
    """A tenant or team, or a budget's name."""
    setting: str
    """The configuration key, as the message names it."""
    cap: int
    unit: str = "tokens"
    retry_after_ns: int | None = None
    """Set for calendar budgets and the rate limit; None: wait for an end."""
    waitable: bool = True
    pool: Pool | None = None

    @property
    def who(self) -> str:
        """The subject as a message names it."""
        if isinstance(self.subject, Subject):
            return str(self.subject)
        return f"Budget {self.subject!r}"

    def room(self, others: int) -> int:
        """The largest amount one request may hold beside `others`."""
        return max(0, self.cap - others)

    def judge(
        self,
        others: int,
        new: int,
        old: int,
        status: str,
        room: int | None,
        *,
        never: bool | None = None,
    ) -> _Verdict:
        """Refuses growth from `old` to `new` past the cap, beside `others`.

        `room` is the largest hold this limit allows (None: any, but none
        when it refuses). `never` overrides "the cap is 0, or the request
        alone is over it".
        """
        if new <= old:
            return (room, None)
        never = self.cap == 0 or new > self.cap if never is None else never
        if not never and others + new <= self.cap:
            return (room, None)

        if never and self.cap == 0:
            what = f"{self.who} has {self.setting} = 0"
        elif never:
            what = (
                f"{self.who} needs {self._amount(new)}, more than its "
                f"{self.setting} allows: {self._amount(self.cap)}"
            )
        else:
            what = f"{status}, and its {self.setting} allows {self._amount(self.cap)}"
        breach = Breach(
            self.reason,
            self.subject if isinstance(self.subject, str) else self.subject.name,
            self.cap,
            others + old,
            new - old,
            self.unit,
            None if never else self.retry_after_ns,
            self.waitable and not never,
            never,
            0,
            what,
            self.pool,
        )
        return (0 if room is None else room, breach)

    def _amount(self, value: int) -> str:
        if self.unit == "micro-dollars":
            return _usd(value)
        return f"{value} {self.unit}"


def _usd(micros: int) -> str:
    return f"${Decimal(micros).scaleb(-6).normalize():f}"


def _decisive(verdicts: list[_Verdict]) -> Breach | None:
    """The refusal to report: never first, then calendar, then waitable ones."""
    breaches = [breach for _, breach in verdicts if breach is not None]
    if not breaches:
        return None
    largest = min((room for room, _ in verdicts if room is not None), default=0)
    breach = min(breaches, key=lambda b: (not b.never, b.waitable))
    return replace(
        breach,
        largest_grantable=largest,
        message=f"{breach.message}; {_advice(breach, largest)}.",
    )


def _advice(breach: Breach, largest: int) -> str:
    """What the caller can do about a refusal."""
    if breach.reason is LimitReason.MODEL_UNPRICED:
        return "add the model, or a 'default' entry, to the [[prices]] table"
    if breach.never:
        first = "raise the limit in the configuration"
    elif breach.retry_after_ns is not None:
        first = f"retry in {-(-breach.retry_after_ns // _NS_PER_S)} s"
    else:
        first = "wait for a reservation to end"
    return f"{first}, or ask for at most {largest} tokens" if largest else first
