"""Log lines of key=value context whose fields also reach structured handlers."""

from __future__ import annotations

import logging
from collections.abc import Mapping


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
