"""tokenpool: a token budget scheduler for services that call paid LLM APIs."""

from __future__ import annotations

from tokenpool._errors import (
    AccessDeniedError,
    AccessError,
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
    UnauthenticatedError,
    UnknownBudgetError,
    UnknownReservationError,
    UnknownTeamError,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AccessError",
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
    "UnauthenticatedError",
    "UnknownBudgetError",
    "UnknownReservationError",
    "UnknownTeamError",
    "__version__",
]
