"""A commit group: the rows of batches that share one transaction, and its outcome."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import anyio

from tokenpool._errors import LedgerUnavailableError
from tokenpool.ledger._records import LedgerBatch
from tokenpool.ledger._schema import (
    SET_FILE_VALUE,
    SET_OVERRIDE,
    Row,
    entry_values,
    pool_values,
    refusal_key,
    reservation_values,
)


class Outcome:
    """Result of one commit group, awaitable by every batch in it.

    Awaiting it gives the number of batches committed together.
    """

    __slots__ = ("_cause", "_done", "_message", "_size")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._message: str | None = None
        self._cause: BaseException | None = None
        self._size = 0

    def __await__(self) -> Generator[Any, None, int]:
        return self._wait().__await__()

    def resolve(
        self,
        message: str | None = None,
        cause: BaseException | None = None,
        *,
        size: int = 0,
    ) -> None:
        """Wake every waiter: with success, or with the failure message."""
        self._message = message
        self._cause = cause
        self._size = size
        self._done.set()

    async def _wait(self) -> int:
        await self._done.wait()

        # A fresh exception per waiter, so tracebacks do not pile up on one.
        if self._message is not None:
            raise LedgerUnavailableError(self._message) from self._cause
        return self._size


class Resolved:
    """An outcome that is already successful, for batches with nothing in them."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, int]:
        yield from ()
        return 0


RESOLVED = Resolved()


class Group:
    """Rows of every batch submitted since the last commit began."""

    __slots__ = (
        "entries",
        "keys",
        "opened_at",
        "outcome",
        "pools",
        "refusals",
        "reservations",
        "settings",
        "size",
    )

    def __init__(self) -> None:
        self.size = 0
        self.opened_at = 0.0
        """When the first batch came (time.monotonic); its wait counts from there."""
        self.entries: list[Row] = []
        self.reservations: dict[str, Row] = {}
        self.pools: dict[tuple[str, str], Row] = {}
        self.refusals: dict[tuple[str, str, int, str], int] = {}
        # Configuration fields in submission order: a reload's file values
        # and a run-time change of the same field must land in that order.
        self.settings: list[tuple[str, dict[str, object]]] = []
        self.keys: dict[str, Row] = {}
        self.outcome = Outcome()

    def add(self, batch: LedgerBatch) -> None:
        """Merge one batch; a batch that cannot be encoded leaves no trace."""
        entries = [entry_values(entry) for entry in batch.entries]
        reservations = [reservation_values(row) for row in batch.reservations]

        if self.size == 0:
            self.opened_at = time.monotonic()
        self.size += 1
        self.entries.extend(entries)
        for values in reservations:
            self.reservations[values[0]] = values
        for pool in batch.pools:
            self.pools[pool.budget, pool.pool] = pool_values(pool)
        for refusal in batch.refusals:
            key = refusal_key(refusal)
            self.refusals[key] = self.refusals.get(key, 0) + refusal.count
        for api_key in batch.keys:
            self.keys[api_key.key_id] = (
                api_key.key_id,
                api_key.tenant,
                api_key.sha256,
                api_key.label,
                api_key.created_wall_ns,
                api_key.revoked_wall_ns,
                api_key.actor,
                api_key.source,
            )
        for file_value in batch.file_values:
            self.settings.append(
                (
                    SET_FILE_VALUE,
                    {
                        "key": file_value.key,
                        "value": file_value.value,
                        "at": file_value.at_wall_ns,
                        "drop": int(file_value.drop_override),
                    },
                )
            )
        for override in batch.overrides:
            self.settings.append(
                (
                    SET_OVERRIDE,
                    {
                        "key": override.key,
                        "value": override.value,
                        "has_override": int(override.value is not None),
                        "actor": override.actor,
                        "at": override.at_wall_ns,
                    },
                )
            )

    def refusal_values(self) -> list[Row]:
        """Summed refusal counts as upsert parameters."""
        return [(*key, count) for key, count in self.refusals.items()]
