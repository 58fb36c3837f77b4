"""The durable ledger: SQLite records of every token change, group-committed."""

from __future__ import annotations

from tokenpool.ledger._ledger import Ledger
from tokenpool.ledger._records import (
    CHARGE_SLOT_NS,
    ChargedSlot,
    Entry,
    EntryKind,
    FileValueRow,
    KeyRow,
    LedgerBatch,
    OverrideRow,
    PoolRow,
    RefusalCount,
    ReservationRow,
    ReservationState,
    StoredOverride,
    StoredState,
)
from tokenpool.ledger._reports import ReportQuery, ReportRow, read_replay_rows
from tokenpool.ledger._retention import RollUp, run_retention

__all__ = [
    "CHARGE_SLOT_NS",
    "ChargedSlot",
    "Entry",
    "EntryKind",
    "FileValueRow",
    "KeyRow",
    "Ledger",
    "LedgerBatch",
    "OverrideRow",
    "PoolRow",
    "RefusalCount",
    "ReportQuery",
    "ReportRow",
    "ReservationRow",
    "ReservationState",
    "RollUp",
    "StoredOverride",
    "StoredState",
    "read_replay_rows",
    "run_retention",
]
