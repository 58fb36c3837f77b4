"""Python client of the tokenpool daemon: reserve tokens before, settle after.

`Client` is blocking and `AsyncClient` runs on asyncio; both have the same
methods. Failures raise subclasses of `TokenPoolError`. `metered` wraps an
OpenAI or Anthropic SDK call in a reservation; `openai_usage`,
`anthropic_usage` and `ReservationScope.meter` turn the SDKs' usage into
settle fields; `estimate_tokens` sizes a call with no token count.
"""

from __future__ import annotations

from ._aio import AsyncClient
from ._codec import tls_credentials
from ._errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidRequestError,
    LocalAllowanceExhaustedError,
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
from ._estimate import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    TokenEstimator,
    estimate_tokens,
)
from ._fallback import ClientCounters, LocalAllowance, WhenUnreachable
from ._meter import AsyncMeteredStream, MeteredStream, UsageMeter
from ._retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy
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
from ._usage import anthropic_usage, openai_usage, usage_of
from ._wrap import metered

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_RETRY",
    "MESSAGE_OVERHEAD_TOKENS",
    "NO_RETRY",
    "AsyncClient",
    "AsyncMeteredStream",
    "BudgetStatus",
    "Client",
    "ClientCounters",
    "ConflictError",
    "DeadlineExceededError",
    "Extension",
    "InvalidRequestError",
    "LocalAllowance",
    "LocalAllowanceExhaustedError",
    "MeteredStream",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolDraw",
    "PoolStatus",
    "RefusedError",
    "Release",
    "Reservation",
    "ReservationScope",
    "ReserveOptions",
    "RetryPolicy",
    "Settlement",
    "TenantStatus",
    "TokenEstimator",
    "TokenPoolError",
    "TooLargeError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
    "Usage",
    "UsageMeter",
    "WhenUnreachable",
    "anthropic_usage",
    "error_from_rpc",
    "estimate_tokens",
    "metered",
    "openai_usage",
    "tls_credentials",
    "usage_of",
]
