"""An exclusive lock that keeps a second daemon off a ledger file."""

from __future__ import annotations

import fcntl
import os

from tokenpool._errors import LedgerInUseError


class LedgerLock:
    """Holds `<ledger>.lock` with flock while one process owns the ledger.

    Two daemons writing one ledger would each grant from their own memory
    and overspend the budget, so the second one is refused at start. The
    lock is the kernel's: it is released when the process dies, even by
    SIGKILL, so no stale lock survives a crash.
    """

    def __init__(self, ledger_path: str) -> None:
        self.path = f"{ledger_path}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises LedgerInUseError naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LedgerInUseError(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise

        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Lets another process take the ledger; safe to call twice."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
