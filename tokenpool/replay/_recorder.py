"""A ledger kept in memory, for what-if replays: every batch committed at once."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

from tokenpool.ledger import (
    ChargedSlot,
    Entry,
    EntryKind,
    LedgerBatch,
    ReservationRow,
    StoredState,
)


class _Committed:
    """An awaitable that is already done: the batch is "durable" at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, int]:
        yield from ()
        return 1


_COMMITTED = _Committed()


class MemoryRecorder:
    """The engine's `Recorder` with nothing written to disk.

    A what-if replay runs the real engine on it, so no fsync or worker
    thread slows the simulation. It keeps the running sums a replay
    report reads (tokens charged per budget, as Admin `Report` sums the
    ledger's entries) and the autoscaler's entries; the rest is dropped.
    """

    def __init__(self) -> None:
        self.charged: dict[str, int] = {}
        """Tokens charged per budget by entries that name a tenant."""
        self.autoscale: list[Entry] = []
        """The autoscaler's entries (decisions and mode changes), in order."""
        self.entries = 0

    @property
    def failed_commits(self) -> int:
        """Commits never fail in memory."""
        return 0

    def submit(self, batch: LedgerBatch) -> Awaitable[int]:
        """Takes a batch's figures in; it is committed before this returns."""
        for entry in batch.entries:
            self.entries += 1
            if entry.tenant:
                self.charged[entry.budget] = (
                    self.charged.get(entry.budget, 0) + entry.charged
                )
            elif entry.kind is EntryKind.AUTOSCALE:
                self.autoscale.append(entry)
        return _COMMITTED

    async def load_state(self, *, keep_ended_after_wall_ns: int) -> StoredState:
        """Nothing to restore: a what-if run starts empty."""
        return StoredState(pools=(), reservations=())

    async def get_reservation(self, reservation_id: str) -> ReservationRow | None:
        """Nothing is stored beyond the engine's own memory."""
        return None

    async def charged_since(self, wall_ns: int) -> list[ChargedSlot]:
        """No calendar usage before the run."""
        return []
