"""The durable ledger: SQLite records of every token change, group-committed."""

from __future__ import annotations

from tokenpool.ledger._ledger import Ledger
from tokenpool.ledger._records import (
    Entry,
    EntryKind,
    LedgerBatch,
    PoolRow,
    RefusalCount,
    ReservationRow,
    ReservationState,
    StoredState,
)

__all__ = [
    "Entry",
    "EntryKind",
    "Ledger",
    "LedgerBatch",
    "PoolRow",
    "RefusalCount",
    "ReservationRow",
    "ReservationState",
    "StoredState",
]
