"""An exclusive lock that keeps a second daemon off a ledger file."""

from __future__ import annotations

import fcntl
import os

from tokenpool._errors import LedgerInUseError


class LedgerLock:
    """Holds an flock on the ledger database file while one process owns it.

    Two daemons writing one ledger would each grant from their own memory
    and overspend the budget, so the second one is refused at start. The
    lock sits on the database file itself, so a symlink or hard link to it
    is caught too. It is the kernel's: it goes away when the process dies,
    even by SIGKILL, so no stale lock survives a crash. (SQLite's own locks
    are POSIX record locks, which flock does not touch on Linux; the
    descriptor stays open until the connection is closed, so closing it
    never drops SQLite's locks early.)
    """

    def __init__(self, ledger_path: str) -> None:
        self.path = ledger_path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises LedgerInUseError."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LedgerInUseError(self.path) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Lets another process take the ledger; safe to call twice."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
