"""Tenant API keys made, rotated and revoked at run time, kept hashed in the ledger.

A new key is shown once, in the answer that creates it; the ledger keeps its
SHA-256 digest, its tenant and label, and when it was revoked. Keys of the
configuration file (`auth.tenant_keys`) stay valid beside them; revoking one
at run time is stored too, so it stays revoked across restarts (until the
file no longer names it). Every change is a `key` ledger entry naming who
made it and the key's fingerprint (the first 12 hex digits of its digest),
never the key.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tokenpool._errors import UnknownKeyError
from tokenpool.core import Credentials, check_name, check_text, key_digest, new_key
from tokenpool.daemon._access import TenantKey
from tokenpool.engine import Clock
from tokenpool.ledger import Entry, EntryKind, KeyRow, Ledger, LedgerBatch

logger = logging.getLogger(__name__)

# Hex digits of a key's digest shown as its fingerprint.
FINGERPRINT_DIGITS = 12

# Where each key comes from, as listings say.
FILE = "file"
RUN_TIME = "run-time"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A tenant key without its secret: what listings show."""

    key_id: str
    tenant: str
    label: str
    fingerprint: str
    source: str
    created_wall_ns: int
    revoked_wall_ns: int

    @property
    def active(self) -> bool:
        """Whether calls made with the key are let through."""
        return self.revoked_wall_ns == 0


def _file_key_id(key: TenantKey) -> str:
    return f"file-{key.sha256.lower()[:FINGERPRINT_DIGITS]}"


def _info(row: KeyRow) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        tenant=row.tenant,
        label=row.label,
        fingerprint=row.sha256[:FINGERPRINT_DIGITS],
        source=row.source,
        created_wall_ns=row.created_wall_ns,
        revoked_wall_ns=row.revoked_wall_ns,
    )


class KeyRing:
    """The tenant keys in force: the file's and the run-time ones, kept in sync.

    Every change is committed to the ledger first; only then does the
    credentials object that access control checks calls against change.
    """

    def __init__(
        self,
        ledger: Ledger,
        credentials: Credentials,
        file_keys: Sequence[TenantKey],
        clock: Clock,
        stored: Sequence[KeyRow] = (),
    ) -> None:
        self._ledger = ledger
        self._credentials = credentials
        self._clock = clock
        self._file = {_file_key_id(key): key for key in file_keys}
        self._rows = {row.key_id: row for row in stored}
        self._apply()

    def reload(self, file_keys: Sequence[TenantKey]) -> None:
        """Takes the file's keys as a reload found them."""
        self._file = {_file_key_id(key): key for key in file_keys}
        self._apply()

    def keys(self, tenant: str = "") -> list[KeyInfo]:
        """Every key, file and run-time, by tenant then creation."""
        found = [_info(row) for row in self._rows.values() if row.source == RUN_TIME]
        for key_id, key in self._file.items():
            stored = self._rows.get(key_id)
            found.append(
                KeyInfo(
                    key_id=key_id,
                    tenant=key.tenant,
                    label=key.label,
                    fingerprint=key.sha256.lower()[:FINGERPRINT_DIGITS],
                    source=FILE,
                    created_wall_ns=0,
                    revoked_wall_ns=stored.revoked_wall_ns if stored else 0,
                )
            )
        found.sort(key=lambda info: (info.tenant, info.created_wall_ns, info.key_id))
        return [info for info in found if not tenant or info.tenant == tenant]

    async def create(
        self, tenant: str, label: str = "", *, actor: str = ""
    ) -> tuple[KeyInfo, str]:
        """A new key for a tenant; the key itself is returned once, here."""
        check_name("tenant", tenant)
        check_text("label", label, 256)
        row, key = self._new_row(tenant, label, actor)
        await self._commit([row], "created", row, actor)
        return _info(row), key

    async def rotate(
        self, key_id: str, *, keep_old: bool = False, label: str = "", actor: str = ""
    ) -> tuple[KeyInfo, str, KeyInfo]:
        """A new key for the tenant of `key_id`; the old one is revoked unless kept.

        Raises:
            UnknownKeyError: no active key has that id.
        """
        old = self._active(key_id)
        row, key = self._new_row(old.tenant, label or old.label, actor)
        rows = [row]
        if not keep_old:
            old = self._revoked(old, actor)
            rows.append(old)
        await self._commit(rows, "rotated", row, actor, replaced=old)
        return _info(row), key, _info(old)

    async def revoke(self, key_id: str, *, actor: str = "") -> KeyInfo:
        """Revokes a key at once.

        Raises:
            UnknownKeyError: no active key has that id.
        """
        row = self._revoked(self._active(key_id), actor)
        await self._commit([row], "revoked", row, actor)
        return _info(row)

    def _new_row(self, tenant: str, label: str, actor: str) -> tuple[KeyRow, str]:
        key = new_key()
        row = KeyRow(
            key_id=f"k-{secrets.token_hex(6)}",
            tenant=tenant,
            sha256=key_digest(key),
            label=label,
            created_wall_ns=self._clock.wall_ns(),
            actor=actor,
        )
        return row, key

    def _active(self, key_id: str) -> KeyRow:
        """The active key of that id, as a row (a file key as a would-be row)."""
        check_text("key_id", key_id, 64)
        row = self._rows.get(key_id)
        file_key = self._file.get(key_id)
        if file_key is not None and (row is None or row.revoked_wall_ns == 0):
            return KeyRow(
                key_id=key_id,
                tenant=file_key.tenant,
                sha256=file_key.sha256.lower(),
                label=file_key.label,
                created_wall_ns=0,
                source=FILE,
            )
        if row is None or row.revoked_wall_ns or row.source != RUN_TIME:
            raise UnknownKeyError(key_id)
        return row

    def _revoked(self, row: KeyRow, actor: str) -> KeyRow:
        return replace(row, revoked_wall_ns=self._clock.wall_ns(), actor=actor)

    async def _commit(
        self,
        rows: list[KeyRow],
        change: str,
        row: KeyRow,
        actor: str,
        replaced: KeyRow | None = None,
    ) -> None:
        detail: dict[str, object] = {
            "change": change,
            "key_id": row.key_id,
            "tenant": row.tenant,
            "label": row.label,
            "fingerprint": row.sha256[:FINGERPRINT_DIGITS],
        }
        if replaced is not None:
            detail["replaced"] = replaced.key_id
            detail["replaced_revoked"] = bool(replaced.revoked_wall_ns)
        entry = Entry(
            kind=EntryKind.KEY,
            at_wall_ns=self._clock.wall_ns(),
            budget="",
            actor=actor,
            detail=detail,
        )
        await self._ledger.commit(LedgerBatch(entries=[entry], keys=rows))
        for stored in rows:
            self._rows[stored.key_id] = stored
        self._apply()
        logger.info(
            "tenant key %s key_id=%s tenant=%s fingerprint=%s actor=%s",
            change,
            row.key_id,
            row.tenant,
            detail["fingerprint"],
            actor or "-",
        )

    def _apply(self) -> None:
        """Puts the keys in force: file keys not revoked, active run-time keys."""
        revoked = {row.sha256 for row in self._rows.values() if row.revoked_wall_ns}
        pairs = [
            (key.tenant, key.sha256.lower())
            for key in self._file.values()
            if key.sha256.lower() not in revoked
        ]
        pairs += [
            (row.tenant, row.sha256)
            for row in self._rows.values()
            if row.source == RUN_TIME and not row.revoked_wall_ns
        ]
        self._credentials.set_tenant_keys(pairs)
