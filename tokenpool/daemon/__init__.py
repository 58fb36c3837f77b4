"""The daemon process: configuration, wiring and lifecycle."""

from __future__ import annotations

from tokenpool.daemon._access import AuthSettings, TenantKey, TlsSettings
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
    "AuthSettings",
    "Daemon",
    "LedgerSettings",
    "Reloaded",
    "Running",
    "ServerSettings",
    "Settings",
    "TenantKey",
    "TlsSettings",
    "load_settings",
]
