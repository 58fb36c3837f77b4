"""Online backup of the ledger file with SQLite's backup API."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path


def new_backup_file(where: str) -> sqlite3.Connection:
    """Opens the backup's file, which must not exist yet.

    Raises:
        FileExistsError: something is at that path already.
    """
    if os.path.exists(where):
        raise FileExistsError(f"{where!r} exists already")
    return sqlite3.connect(where, check_same_thread=False)


def backup_file(source: str, where: str) -> None:
    """Copies a ledger file through a read-only connection of its own.

    The copy is one step (`pages=-1`): it reads one snapshot under a read
    transaction, which in WAL mode does not hold writers back. A copy that
    fails leaves no file behind.
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
        with contextlib.suppress(OSError):
            os.remove(where)
        raise
    dest.close()
