"""Online backup of the ledger file with SQLite's backup API."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from tokenpool._errors import InvalidFieldError

# The request field a backup's target comes from, named in every refusal.
_FIELD = "path"


def new_backup_file(where: str) -> sqlite3.Connection:
    """Opens the backup's file, which must not exist yet, in a folder that does.

    Raises:
        InvalidFieldError: the path exists already, is not a valid path, its
            folder is missing, or the file cannot be created there.
    """
    shown = repr(where[:200])
    try:
        if os.path.lexists(where):
            raise InvalidFieldError(_FIELD, f"{shown} exists already; name a new file")
        folder = os.path.dirname(os.path.abspath(where))
        if not os.path.isdir(folder):
            raise InvalidFieldError(
                _FIELD,
                f"the folder of {shown} does not exist; name a file in an "
                "existing folder",
            )
        return sqlite3.connect(where, check_same_thread=False)
    except (OSError, ValueError, sqlite3.Error) as exc:
        raise InvalidFieldError(
            _FIELD,
            f"{shown} cannot be created ({exc}); name a new file in a folder the "
            "daemon can write",
        ) from exc


def remove_quietly(where: str) -> None:
    """Removes a copy that failed half-way; one that is not there is fine."""
    with contextlib.suppress(OSError):
        os.remove(where)


def backup_file(source: str, where: str) -> None:
    """Copies a ledger file through a read-only connection of its own.

    The copy is one step (`pages=-1`): it reads one snapshot under a read
    transaction, which in WAL mode does not hold writers back. A copy that
    fails leaves no file behind.

    Raises:
        InvalidFieldError: `where` cannot be used (see `new_backup_file`).
    """
    dest = new_backup_file(where)
    try:
        uri = Path(source).absolute().as_uri() + "?mode=ro"
        src = sqlite3.connect(uri, uri=True)
        try:
            src.backup(dest)
        finally:
            src.close()
    except BaseException:
        dest.close()
        remove_quietly(where)
        raise
    dest.close()
