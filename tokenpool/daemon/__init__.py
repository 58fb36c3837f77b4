"""The daemon process: configuration, wiring and lifecycle."""

from __future__ import annotations

from tokenpool.daemon._config import (
    DEFAULT_ADDRESS,
    DEFAULT_LEDGER_PATH,
    LedgerSettings,
    ServerSettings,
    Settings,
    load_settings,
)
from tokenpool.daemon._daemon import Daemon, Reloaded, Running

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_LEDGER_PATH",
    "Daemon",
    "LedgerSettings",
    "Reloaded",
    "Running",
    "ServerSettings",
    "Settings",
    "load_settings",
]
