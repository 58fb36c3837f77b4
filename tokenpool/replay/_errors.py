"""Exceptions a replay raises, under the package's one root.

TokenPoolError
└── ReplayError             the replay cannot go on
    └── TraceError          the trace file is missing or malformed
"""

from __future__ import annotations

from tokenpool._errors import TokenPoolError


class ReplayError(TokenPoolError):
    """Raised when a replay cannot start or cannot go on."""


class TraceError(ReplayError):
    """Raised when a trace file is unreadable or has a malformed row.

    Attributes:
        path: The trace file.
        line: The file's line number at fault, or None for the whole file.
    """

    def __init__(self, path: str, reason: str, *, line: int | None = None) -> None:
        where = f"{path!r}" if line is None else f"{path!r}, line {line}"
        super().__init__(f"Cannot replay trace {where}: {reason}")
        self.path = path
        self.line = line
