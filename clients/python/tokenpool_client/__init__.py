"""Python client of the tokenpool daemon: reserve tokens before, settle after.

`Client` is blocking and `AsyncClient` runs on asyncio; both have the same
methods. Failures raise subclasses of `TokenPoolError`.
"""

from __future__ import annotations

from ._aio import AsyncClient
from ._codec import tls_credentials
from ._errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RefusedError,
    TokenPoolError,
    TooLargeError,
    UnauthenticatedError,
    UnavailableError,
    UnexpectedStatusError,
    error_from_rpc,
)
from ._sync import Client
from ._types import (
    BudgetStatus,
    Extension,
    PoolDraw,
    PoolStatus,
    Release,
    Reservation,
    ReservationScope,
    ReserveOptions,
    Settlement,
    TenantStatus,
    Usage,
)

__all__ = [
    "AsyncClient",
    "BudgetStatus",
    "Client",
    "ConflictError",
    "DeadlineExceededError",
    "Extension",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolDraw",
    "PoolStatus",
    "RefusedError",
    "Release",
    "Reservation",
    "ReservationScope",
    "ReserveOptions",
    "Settlement",
    "TenantStatus",
    "TokenPoolError",
    "TooLargeError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
    "Usage",
    "error_from_rpc",
    "tls_credentials",
]
