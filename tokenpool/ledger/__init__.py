"""The durable ledger: SQLite records of every token change, group-committed."""

from __future__ import annotations

from tokenpool.ledger._ledger import Ledger
from tokenpool.ledger._records import (
    CHARGE_SLOT_NS,
    ChargedSlot,
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
    "CHARGE_SLOT_NS",
    "ChargedSlot",
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
