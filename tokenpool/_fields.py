"""Log lines of key=value context whose fields also reach structured handlers."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping


def log_event(
    logger: logging.Logger, level: int, event: str, fields: Mapping[str, object]
) -> None:
    """Logs `event key=value ...`, with the same fields in `extra` for JSON.

    Tuples are written comma-joined in the text (lenders=burst:10,basic:5) and
    kept as lists for structured handlers. Nothing is formatted when the
    level is off, so per-request DEBUG lines cost one check.
    """
    if not logger.isEnabledFor(level):
        return

    message = event + "".join(f" {key}=%s" for key in fields)
    shown = [
        ",".join(str(part) for part in value) if isinstance(value, tuple) else value
        for value in fields.values()
    ]
    extra = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in fields.items()
    }
    logger.log(level, message, *shown, extra=extra, stacklevel=2)


class RepeatedLines:
    """Which of many alike events get an INFO line: one per key and interval.

    The first event of a key (a budget and a refusal reason, say) is loud;
    alike events within the interval after it are quiet (DEBUG), and the
    next loud line says how many there were. A flood of refusals is then
    one INFO line per interval, never one per request. Keys must come from
    a bounded set (configured names, fixed reasons). Used on the event loop
    only, so not locked.
    """

    __slots__ = ("_interval_ns", "_last")

    def __init__(self, interval_ns: int) -> None:
        self._interval_ns = interval_ns
        # Per key: when its last loud line was, and quiet events since.
        self._last: dict[Hashable, tuple[int, int]] = {}

    def loud(self, key: Hashable, now_ns: int) -> int | None:
        """None when this event stays quiet, else the quiet ones since the last."""
        last = self._last.get(key)
        if last is not None and now_ns - last[0] < self._interval_ns:
            self._last[key] = (last[0], last[1] + 1)
            return None

        self._last[key] = (now_ns, 0)
        return 0 if last is None else last[1]
