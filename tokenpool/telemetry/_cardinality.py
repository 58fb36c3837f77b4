"""Bounded attribute values, so that metrics keep a bounded number of series."""

from __future__ import annotations

# What a value beyond a metric's limit is counted as.
OTHER = "other"


class BoundedValues:
    """Passes the first `limit` distinct values through, folds later ones.

    Not locked: it is used on the event loop only.
    """

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER

    @property
    def folding(self) -> bool:
        """Whether the limit is reached, so new values become "other"."""
        return len(self._seen) >= self._limit
