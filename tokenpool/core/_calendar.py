"""Calendar days and months in one timezone, for calendar budgets (SPEC 12.4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NS_PER_S = 1_000_000_000
# Before the first reading, the latest wall time seen is this far past.
_DAWN_NS = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Periods:
    """The calendar day and month a wall-clock reading falls in."""

    day: str
    """The local date, as "2026-05-09"."""
    month: str
    """The local month, as "2026-05"."""
    day_start_ns: int
    day_end_ns: int
    month_end_ns: int


class CalendarPeriods:
    """Day and month periods in one timezone, never going backwards.

    The latest wall reading seen is kept, and an earlier one (the wall clock
    stepped back) counts as that latest: a period that ended is never
    reopened (SPEC 12.8).
    """

    def __init__(self, timezone: str = "UTC") -> None:
        """Uses an IANA timezone name, such as "UTC" or "Asia/Kolkata".

        Raises:
            ValueError: the name is not a known timezone.
        """
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"Unknown timezone {timezone!r}; use an IANA name such as "
                "'UTC' or 'Europe/Berlin'."
            ) from exc
        self.timezone = timezone
        self.latest_wall_ns = _DAWN_NS
        self._current: Periods | None = None
        self._last_of: Periods | None = None

    def at(self, wall_ns: int) -> Periods:
        """The current periods; never earlier than for a previous reading."""
        wall_ns = self.latest_wall_ns = max(wall_ns, self.latest_wall_ns)

        current = self._current
        if current is None or not current.day_start_ns <= wall_ns < current.day_end_ns:
            current = self._current = self.of(wall_ns)
        return current

    def of(self, wall_ns: int) -> Periods:
        """The periods a past reading fell in, such as a restored grant's."""
        # A restart asks this for every open reservation, mostly of one day.
        last = self._last_of
        if last is not None and last.day_start_ns <= wall_ns < last.day_end_ns:
            return last

        self._last_of = self._periods(wall_ns)
        return self._last_of

    def _periods(self, wall_ns: int) -> Periods:
        today = datetime.fromtimestamp(wall_ns // _NS_PER_S, self._zone).date()
        next_month = date(today.year + today.month // 12, today.month % 12 + 1, 1)
        return Periods(
            day=today.isoformat(),
            month=today.isoformat()[:7],
            day_start_ns=self._midnight_ns(today),
            day_end_ns=self._midnight_ns(today + timedelta(days=1)),
            month_end_ns=self._midnight_ns(next_month),
        )

    def _midnight_ns(self, day: date) -> int:
        # A midnight skipped by a DST change maps to the moment of the change.
        local = datetime(day.year, day.month, day.day, tzinfo=self._zone)
        return (local - _EPOCH) // timedelta(microseconds=1) * 1000
