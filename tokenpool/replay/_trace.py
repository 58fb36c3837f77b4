"""Rows of a recorded LLM request trace, read from a CSV file."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from tokenpool.core import MAX_TOKENS
from tokenpool.replay._errors import TraceError

logger = logging.getLogger(__name__)

# Column names of the Azure LLM inference traces (and of any trace we read).
TIMESTAMP_COLUMN = "TIMESTAMP"
INPUT_COLUMN = "ContextTokens"
OUTPUT_COLUMN = "GeneratedTokens"

# "2023-11-16 18:15:46.6805900": date and time, up to 9 fractional digits,
# and an optional UTC offset; a time without one is taken as UTC.
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?"
)

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One recorded request: when it arrived and how many tokens it used."""

    index: int
    """Position in the trace, from 0, after sorting by arrival."""
    arrival_wall_ns: int
    """Arrival time, UTC nanoseconds since the epoch."""
    input_tokens: int
    """Prompt tokens (the trace's ContextTokens)."""
    output_tokens: int
    """Generated tokens (the trace's GeneratedTokens)."""


def parse_timestamp(text: str) -> int:
    """Reads a trace timestamp as UTC nanoseconds since the epoch.

    Raises:
        ValueError: the text is not a date and time the trace format allows.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"timestamp {text!r} is not like '2023-11-16 18:15:46.6805900'"
        )

    moment, fraction, offset = match.groups()
    zone = "+00:00" if offset in (None, "Z") else offset
    seconds = int(datetime.fromisoformat(moment + zone).astimezone(UTC).timestamp())
    return seconds * _NS_PER_S + int((fraction or "").ljust(9, "0"))


def _count(value: str, column: str) -> int:
    try:
        count = int(value.strip())
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a whole number") from None
    if count < 0:
        raise ValueError(f"{column} {count} is negative")
    if count > MAX_TOKENS:
        raise ValueError(f"{column} {count} is above the maximum 2^62")
    return count


def read_trace(path: Path, *, limit: int | None = None) -> list[TraceRow]:
    """Reads the first `limit` rows (all when None), sorted by arrival.

    Raises:
        TraceError: the file cannot be read, lacks a column, has a
            malformed row, or has no rows.
    """
    name = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            raw = _read_rows(handle, name, limit)
    except OSError as exc:
        raise TraceError(name, f"{exc.strerror or exc}; check the path.") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(name, f"not a CSV text file ({exc}).") from exc

    if not raw:
        raise TraceError(name, "it has a header but no rows.")

    raw.sort(key=lambda row: row[0])
    rows = [
        TraceRow(index, arrival, input_tokens, output_tokens)
        for index, (arrival, input_tokens, output_tokens) in enumerate(raw)
    ]
    logger.debug("trace read path=%s rows=%d", name, len(rows))
    return rows


def _read_rows(
    handle: TextIO, name: str, limit: int | None
) -> list[tuple[int, int, int]]:
    reader = csv.reader(handle)
    header = [column.strip() for column in next(reader, [])]
    missing = [
        column
        for column in (TIMESTAMP_COLUMN, INPUT_COLUMN, OUTPUT_COLUMN)
        if column not in header
    ]
    if missing:
        raise TraceError(
            name,
            f"the header lacks column(s) {', '.join(missing)}; expected "
            f"{TIMESTAMP_COLUMN},{INPUT_COLUMN},{OUTPUT_COLUMN}.",
            line=1,
        )
    at = [header.index(c) for c in (TIMESTAMP_COLUMN, INPUT_COLUMN, OUTPUT_COLUMN)]

    rows: list[tuple[int, int, int]] = []
    for fields in reader:
        if limit is not None and len(rows) >= limit:
            break
        if not any(field.strip() for field in fields):
            continue
        try:
            if len(fields) < len(header):
                raise ValueError(
                    f"{len(fields)} fields where the header has {len(header)}"
                )
            rows.append(
                (
                    parse_timestamp(fields[at[0]]),
                    _count(fields[at[1]], INPUT_COLUMN),
                    _count(fields[at[2]], OUTPUT_COLUMN),
                )
            )
        except ValueError as exc:
            raise TraceError(name, f"{exc}.", line=reader.line_num) from None
    return rows
