"""tokenpool: a token budget scheduler for services that call paid LLM APIs."""

from __future__ import annotations

from tokenpool._errors import (
    ConfigError,
    ConflictError,
    IdempotencyConflictError,
    InsufficientTokensError,
    InvalidFieldError,
    LedgerError,
    LedgerInUseError,
    LedgerSchemaError,
    LedgerUnavailableError,
    NotFoundError,
    NotOwnerError,
    RefusalError,
    RequestTooLargeError,
    ReservationEndedError,
    ShuttingDownError,
    TenantRefusedError,
    TokenPoolError,
    UnknownBudgetError,
    UnknownReservationError,
    UnknownTeamError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConflictError",
    "IdempotencyConflictError",
    "InsufficientTokensError",
    "InvalidFieldError",
    "LedgerError",
    "LedgerInUseError",
    "LedgerSchemaError",
    "LedgerUnavailableError",
    "NotFoundError",
    "NotOwnerError",
    "RefusalError",
    "RequestTooLargeError",
    "ReservationEndedError",
    "ShuttingDownError",
    "TenantRefusedError",
    "TokenPoolError",
    "UnknownBudgetError",
    "UnknownReservationError",
    "UnknownTeamError",
    "__version__",
]
