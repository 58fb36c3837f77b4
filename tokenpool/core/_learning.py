"""Learning from settlements: how far output allowances are from real use."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

from pydantic import Field, model_validator

from tokenpool.core._model import FrozenModel

# The row every (tenant, task type) beyond max_keys is folded into. Tenant
# names are never empty, so it cannot clash with a real tenant.
FOLDED_KEY = ("", "")

# Largest count one slot of a window's int64 arrays can hold.
_SLOT_MAX = 2**63 - 1

# Bits of a window slot's flags.
_INCOMPLETE = 1
_CORRECTED = 2


class LearningPolicy(FrozenModel):
    """Whether and how the daemon corrects its output allowances.

    Statistics are always collected; `enabled` only decides whether the
    learned factor is handed out to shrink allowances.
    """

    enabled: bool = False
    """Shrink output allowances by the learned factor (opt-in)."""
    overrun_target_percent: int = Field(5, ge=1, le=50)
    """Share of corrected reservations allowed to use more than their hold."""
    window: int = Field(200, ge=1, le=10_000)
    """Most recent settlements kept per (tenant, task type)."""
    min_samples: int = Field(20, ge=1, le=10_000)
    """Usable settlements a key needs in its window before any correction."""
    margin_percent: int = Field(10, ge=0, le=1000)
    """Safety margin put on top of the learned quantile."""
    min_factor: float = Field(0.05, gt=0, le=1)
    """Smallest correction: an allowance never shrinks below this share."""
    max_factor: float = Field(4.0, gt=0, le=100)
    """Largest correction: an allowance that overruns too often is raised up
    to this many times (never past the caller's max_output_tokens)."""
    max_keys: int = Field(10_000, ge=1, le=1_000_000)
    """(tenant, task type) pairs tracked; later ones share the folded row.

    Each tracked pair costs about 33 bytes per window slot (6.6 kB at 200).
    """

    @model_validator(mode="after")
    def _bounds(self) -> LearningPolicy:
        if self.min_samples > self.window:
            raise ValueError(
                f"min_samples ({self.min_samples}) must be at most "
                f"window ({self.window})"
            )
        if self.min_factor > self.max_factor:
            raise ValueError(
                f"min_factor ({self.min_factor}) must be at most "
                f"max_factor ({self.max_factor})"
            )
        return self

    @cached_property
    def factor_bounds(self) -> tuple[Fraction, Fraction]:
        """min_factor and max_factor as exact fractions (0.05 is 1/20)."""
        return Fraction(str(self.min_factor)), Fraction(str(self.max_factor))


def corrected_allowance(allowance: int, factor: Fraction | None) -> int:
    """The output allowance to hold once the learned factor is applied.

    Rounded up, so a positive allowance stays at least 1 token. The engine
    and `EstimateBook.observe` both use this, so they agree on the hold.

    Raises:
        ValueError: the factor is not above 0.
    """
    if factor is None:
        return allowance
    if factor <= 0:
        raise ValueError(f"factor {factor} must be above 0")

    return -(-allowance * factor.numerator // factor.denominator)


@dataclass(frozen=True, slots=True)
class EstimateRow:
    """How one tenant's estimates for one task type compared with use.

    Totals count every settlement ever observed; quantiles and the factor
    look at the window only. The row keyed FOLDED_KEY sums every key
    observed after max_keys were already tracked.
    """

    tenant: str
    task_type: str
    samples: int
    """Settlements observed, cut-off ones included."""
    incomplete: int
    """Of which cut off (counted here, never used for the correction)."""
    window_samples: int
    p50: float | None
    """Median of used / hold over the window (None: no hold above 0)."""
    p90: float | None
    p99: float | None
    overruns: int
    """Settlements whose usage exceeded their hold."""
    unused_tokens: int
    """Tokens held but not used, summed over settlements."""
    overrun_tokens: int
    """Tokens used beyond the hold, summed over settlements."""
    factor: Fraction | None
    """The output factor handed out now (None: correction off or too early)."""

    @property
    def overrun_rate(self) -> float:
        """Share of settlements that used more than their hold."""
        return self.overruns / self.samples if self.samples else 0.0


class _Window:
    """The last settlements of one key, in fixed-size int64 arrays.

    Slots fill from 0 and are then overwritten oldest first, so the filled
    ones are always 0 .. count - 1.
    """

    __slots__ = (
        "allowance",
        "corrected",
        "corrected_overruns",
        "count",
        "flags",
        "hold",
        "next",
        "output_used",
        "size",
        "used",
    )

    def __init__(self, size: int) -> None:
        # The arrays grow to `size` as settlements come: with many tenants,
        # most keys see a few settlements, and a full window each would
        # cost kilobytes per tenant.
        self.size = size
        self.hold = array("q")
        self.used = array("q")
        self.output_used = array("q")
        self.allowance = array("q")
        """The uncorrected output allowance."""
        self.flags = array("B")
        self.next = 0
        self.count = 0
        self.corrected = 0
        """Learnable slots settled under a correction (kept as slots change)."""
        self.corrected_overruns = 0
        """Of which the usage exceeded the hold."""

    def append(
        self, hold: int, used: int, output_used: int, allowance: int, flags: int
    ) -> None:
        slot = self.next
        if self.count == self.size:
            self._count_corrected(slot, -1)
        if slot == len(self.flags):
            # Still filling: slots are taken in order from 0.
            self.hold.append(hold)
            self.used.append(used)
            self.output_used.append(output_used)
            self.allowance.append(allowance)
            self.flags.append(flags)
        else:
            self.hold[slot] = hold
            self.used[slot] = used
            self.output_used[slot] = output_used
            self.allowance[slot] = allowance
            self.flags[slot] = flags
        self._count_corrected(slot, 1)

        self.next = (slot + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def _count_corrected(self, slot: int, sign: int) -> None:
        learnable = self.allowance[slot] > 0 and not self.flags[slot] & _INCOMPLETE
        if learnable and self.flags[slot] & _CORRECTED:
            self.corrected += sign
            self.corrected_overruns += sign * (self.used[slot] > self.hold[slot])

    def slots(self) -> Iterator[int]:
        """Slot numbers from the oldest settlement to the newest."""
        size = self.size
        start = self.next - self.count
        return ((start + k) % size for k in range(self.count))

    def resized(self, size: int) -> _Window:
        """A window of another size holding the newest settlements."""
        window = _Window(size)
        for slot in list(self.slots())[-size:]:
            window.append(
                self.hold[slot],
                self.used[slot],
                self.output_used[slot],
                self.allowance[slot],
                self.flags[slot],
            )
        return window


class _Tally:
    """Everything the book knows about one (tenant, task type)."""

    __slots__ = (
        "factor",
        "incomplete",
        "overrun_tokens",
        "overruns",
        "samples",
        "stale",
        "unused_tokens",
        "window",
    )

    def __init__(self, window: int) -> None:
        self.window = _Window(window)
        self.samples = 0
        self.incomplete = 0
        self.overruns = 0
        self.unused_tokens = 0
        self.overrun_tokens = 0
        self.factor: Fraction | None = None
        self.stale = True
        """The cached factor predates the last observation or policy change."""


class EstimateBook:
    """What settlements taught about output allowances, per tenant and task type.

    The engine keeps one book per budget. At Reserve it asks `output_factor`
    and holds `corrected_allowance(allowance, factor)`; at settle it passes
    the uncorrected allowance and that same factor to `observe`. The book has
    no clock and does no I/O: replaying the same settlements through
    `observe` in the same order rebuilds the same book, so a restarted daemon
    can rebuild it from its ledger.
    """

    def __init__(self, policy: LearningPolicy | None = None) -> None:
        self._policy = policy or LearningPolicy()
        self._tallies: dict[tuple[str, str], _Tally] = {}

    @property
    def policy(self) -> LearningPolicy:
        """The learning rules in force."""
        return self._policy

    def reconfigure(self, policy: LearningPolicy) -> None:
        """Applies new rules; windows keep their newest settlements.

        Keys already tracked stay when max_keys shrinks; only keys seen
        for the first time are folded.
        """
        if policy.window != self._policy.window:
            for tally in self._tallies.values():
                tally.window = tally.window.resized(policy.window)
        for tally in self._tallies.values():
            tally.stale = True

        self._policy = policy

    def observe(
        self,
        tenant: str,
        task_type: str,
        *,
        hold: int,
        output_allowance: int,
        used: int,
        incomplete: bool = False,
        applied_factor: Fraction | None = None,
    ) -> None:
        """Records one settled reservation.

        The ratio the correction learns from is measured against the
        uncorrected allowance, so it does not drift with the factor that
        was in force; the held allowance is recomputed from it.

        Args:
            tenant: The reservation's tenant (not empty).
            task_type: Its task type, as given at Reserve.
            hold: Tokens held when settled, extensions included. What lies
                beyond the held output allowance counts as the input part.
            output_allowance: The UNcorrected output allowance (0 when the
                caller gave an explicit token count: stats only).
            used: Tokens the call really used.
            incomplete: The call was cut off; counted, not learned from.
            applied_factor: The factor `output_factor` gave at Reserve, or
                None when no correction was in force.

        Raises:
            ValueError: a count is negative or above 2^63 - 1, the tenant is
                empty, the factor is outside (0, 1], or the hold is smaller
                than the output allowance held.
        """
        if not tenant:
            raise ValueError("tenant must not be empty; give the tenant's name")
        for name, value in (
            ("hold", hold),
            ("output_allowance", output_allowance),
            ("used", used),
        ):
            if not 0 <= value <= _SLOT_MAX:
                raise ValueError(f"{name} is {value}; give 0 to {_SLOT_MAX}")
        held_allowance = corrected_allowance(output_allowance, applied_factor)
        if hold < held_allowance:
            raise ValueError(
                f"hold ({hold}) is smaller than the output allowance it held "
                f"({held_allowance}); the hold must include that allowance"
            )

        output_used = max(0, used - (hold - held_allowance))
        flags = (_INCOMPLETE if incomplete else 0) | (
            _CORRECTED if applied_factor is not None else 0
        )
        tally = self._tally(tenant, task_type)
        tally.window.append(hold, used, output_used, output_allowance, flags)
        tally.stale = True

        tally.samples += 1
        tally.incomplete += int(incomplete)
        tally.overruns += int(used > hold)
        tally.unused_tokens += max(0, hold - used)
        tally.overrun_tokens += max(0, used - hold)

    def output_factor(self, tenant: str, task_type: str) -> Fraction | None:
        """The factor to multiply this key's output allowance by, or None.

        None while the correction is off, for folded keys, and until the
        window holds min_samples complete settlements with an allowance.
        Otherwise: r = output used / uncorrected allowance, its
        (100 - overrun_target_percent) quantile over the window, times
        (1 + margin), times the overrun boost, clamped to
        [min_factor, max_factor].

        The boost keeps the realised overrun rate in check: when more than
        the target share of the corrected settlements in the window overran
        their hold, the factor is multiplied by realised / target (10 %
        against a 5 % target doubles it) until those overruns leave the
        window. It needs min_samples corrected settlements, so a few unlucky
        calls do not swing it.
        """
        tally = self._tallies.get((tenant, task_type))
        if not self._policy.enabled or tally is None or not tenant:
            return None

        if tally.stale:
            tally.factor = _learned_factor(tally.window, self._policy)
            tally.stale = False
        return tally.factor

    def report(self) -> list[EstimateRow]:
        """One row per key, sorted by tenant then task type."""
        return [self._row(key) for key in sorted(self._tallies)]

    def _tally(self, tenant: str, task_type: str) -> _Tally:
        key = (tenant, task_type)
        tally = self._tallies.get(key)
        if tally is not None:
            return tally

        tracked = len(self._tallies) - (FOLDED_KEY in self._tallies)
        if tracked >= self._policy.max_keys:
            key = FOLDED_KEY
        return self._tallies.setdefault(key, _Tally(self._policy.window))

    def _row(self, key: tuple[str, str]) -> EstimateRow:
        tally = self._tallies[key]
        window = tally.window
        ratios = sorted(
            window.used[slot] / window.hold[slot]
            for slot in window.slots()
            if window.hold[slot] > 0
        )

        return EstimateRow(
            tenant=key[0],
            task_type=key[1],
            samples=tally.samples,
            incomplete=tally.incomplete,
            window_samples=window.count,
            p50=_quantile(ratios, 50),
            p90=_quantile(ratios, 90),
            p99=_quantile(ratios, 99),
            overruns=tally.overruns,
            unused_tokens=tally.unused_tokens,
            overrun_tokens=tally.overrun_tokens,
            factor=self.output_factor(*key),
        )


def _rank(count: int, percent: int) -> int:
    """Nearest-rank position (from 1) of a percent quantile among count values."""
    return max(1, -(-count * percent // 100))


def _quantile(ordered: list[float], percent: int) -> float | None:
    return ordered[_rank(len(ordered), percent) - 1] if ordered else None


def _learned_factor(window: _Window, policy: LearningPolicy) -> Fraction | None:
    # Runs once per settlement of a key while the correction is on: one
    # comprehension and one sort over the window.
    usable = [
        (output_used / allowance, slot)
        for slot, output_used, allowance, flags in zip(
            range(window.count),
            window.output_used,
            window.allowance,
            window.flags,
            strict=False,
        )
        if allowance and not flags & _INCOMPLETE
    ]
    if len(usable) < policy.min_samples:
        return None

    # Float keys only order the slots; the chosen ratio is then taken exactly.
    usable.sort()
    _, chosen = usable[_rank(len(usable), 100 - policy.overrun_target_percent) - 1]
    factor = Fraction(
        window.output_used[chosen] * (100 + policy.margin_percent),
        window.allowance[chosen] * 100,
    )
    factor *= _overrun_boost(window, policy)

    low, high = policy.factor_bounds
    return min(max(factor, low), high)


def _overrun_boost(window: _Window, policy: LearningPolicy) -> Fraction:
    """Corrected settlements' overrun rate over the target, at least 1."""
    if window.corrected < policy.min_samples:
        return Fraction(1)

    allowed = policy.overrun_target_percent * window.corrected
    return max(Fraction(1), Fraction(100 * window.corrected_overruns, allowed))
