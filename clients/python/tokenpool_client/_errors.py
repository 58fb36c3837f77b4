"""Exceptions of the tokenpool client, decoded from gRPC statuses.

Every failed call raises a subclass of one root, chosen by the status code::

    TokenPoolError
    ├── InvalidRequestError     INVALID_ARGUMENT; RESOURCE_EXHAUSTED without a
    │                           tokenpool refusal (gRPC's message size limit)
    ├── NotFoundError           NOT_FOUND
    ├── ConflictError           FAILED_PRECONDITION
    ├── RefusedError            RESOURCE_EXHAUSTED (retryable)
    ├── TooLargeError           OUT_OF_RANGE (never grantable; do not retry)
    ├── PermissionDeniedError   PERMISSION_DENIED
    ├── UnauthenticatedError    UNAUTHENTICATED
    ├── UnavailableError        UNAVAILABLE
    │   └── LocalAllowanceExhaustedError  unreachable, local allowance spent
    ├── DeadlineExceededError   DEADLINE_EXCEEDED
    └── UnexpectedStatusError   any other code
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .v1 import tokenpool_pb2 as pb

logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Message)

# ErrorInfo.domain of the daemon's refusals (tokenpool.service._status).
_TOKENPOOL_DOMAIN = "tokenpool"

# gRPC's text when a message passes its size limit: "Received message larger
# than max (5000050 vs. 4194304)"; the figures are bytes.
_SIZE_LIMIT = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")


class TokenPoolError(Exception):
    """Raised when a call to the daemon fails; the root of all client errors.

    Attributes:
        code: The gRPC status code.
        message: The daemon's error text (the status details).
        reason: The google.rpc.ErrorInfo reason, or "" when none was sent.
        metadata: The google.rpc.ErrorInfo metadata (empty when none was sent).
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not message:
            message = (
                f"The daemon answered {code.name} without a message; "
                "check its log for the cause."
            )
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidRequestError(TokenPoolError):
    """Raised when the daemon rejects a request's arguments (INVALID_ARGUMENT)."""


class NotFoundError(TokenPoolError):
    """Raised when a named budget, tenant or reservation does not exist."""


class ConflictError(TokenPoolError):
    """Raised when the request conflicts with the reservation's state.

    The status is FAILED_PRECONDITION: for example a settle after expiry or
    release, or an idempotency key reused with different arguments.
    """


class _RefusalError(TokenPoolError):
    """Base of the two refusals; never raised itself.

    Attributes:
        pool: The pool the request was for, or "" when not sent.
        retry_after_s: Suggested wait before retrying, in seconds, or None.
        largest_grantable_tokens: Largest request grantable now, or None.
        requested_tokens: Tokens the request asked for, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        pool: str = "",
        retry_after_s: float | None = None,
        largest_grantable_tokens: int | None = None,
        requested_tokens: int | None = None,
    ) -> None:
        super().__init__(message, code=code, reason=reason, metadata=metadata)
        self.pool = pool
        self.retry_after_s = retry_after_s
        self.largest_grantable_tokens = largest_grantable_tokens
        self.requested_tokens = requested_tokens


class RefusedError(_RefusalError):
    """Raised when too few tokens are free now (RESOURCE_EXHAUSTED).

    Retry after `retry_after_s`, or ask for at most
    `largest_grantable_tokens`.
    """


class TooLargeError(_RefusalError):
    """Raised when a request exceeds what could ever be granted (OUT_OF_RANGE).

    Retrying cannot help: ask for at most `largest_grantable_tokens`, or
    raise the budget's capacity.
    """


class PermissionDeniedError(TokenPoolError):
    """Raised when the daemon refuses this caller or tenant (PERMISSION_DENIED)."""


class UnauthenticatedError(TokenPoolError):
    """Raised when the call carries no valid credentials (UNAUTHENTICATED)."""


class UnavailableError(TokenPoolError):
    """Raised when the daemon cannot be reached or cannot serve (UNAVAILABLE)."""


class LocalAllowanceExhaustedError(UnavailableError):
    """Raised when the daemon is unreachable and the local allowance is spent.

    Only a client configured with `when_unreachable=LocalAllowance(...)`
    raises it, in place of the `UnavailableError` it chains to.

    Attributes:
        requested_tokens: Tokens the reserve needed.
        available_tokens: Tokens the local allowance had left.
        retry_after_s: Seconds until the allowance holds requested_tokens.
    """

    def __init__(
        self,
        requested_tokens: int,
        available_tokens: int,
        retry_after_s: float,
        *,
        capacity: int,
    ) -> None:
        super().__init__(
            f"The daemon is unreachable and the local allowance has "
            f"{available_tokens} tokens of the {requested_tokens} needed; retry "
            f"in {retry_after_s:.1f} s or ask for at most {capacity} tokens.",
            code=grpc.StatusCode.UNAVAILABLE,
            reason="LOCAL_ALLOWANCE_EXHAUSTED",
        )
        self.requested_tokens = requested_tokens
        self.available_tokens = available_tokens
        self.retry_after_s = retry_after_s


class DeadlineExceededError(TokenPoolError):
    """Raised when the call's deadline passes before an answer arrives."""


class UnexpectedStatusError(TokenPoolError):
    """Raised when the daemon answers with a status this client does not map."""


# The one place where status codes turn into exception classes.
_ERRORS_BY_CODE: dict[grpc.StatusCode, type[TokenPoolError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: ConflictError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RefusedError,
    grpc.StatusCode.OUT_OF_RANGE: TooLargeError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def _status_details(exc: grpc.RpcError) -> list[any_pb2.Any]:
    """Return the google.rpc status details of a failed call, if any."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        # The rich status disagrees with the call's own code or message: trust
        # the call and ignore details that may belong to something else.
        logger.debug("status details do not match the call; ignored", exc_info=True)
        return []
    return list(status.details) if status is not None else []


def _find(details: list[any_pb2.Any], message_type: type[_M]) -> _M | None:
    """Unpack the first detail of message_type, or return None."""
    for detail in details:
        message: _M = message_type()
        if detail.Unpack(message):
            return message
    return None


def _retry_after_s(
    details: list[any_pb2.Any], refusal: pb.RefusalDetail | None
) -> float | None:
    """Return the suggested retry delay: RetryInfo's, else RefusalDetail's."""
    retry_info = _find(details, error_details_pb2.RetryInfo)
    if retry_info is not None and retry_info.HasField("retry_delay"):
        delay_s: float = retry_info.retry_delay.ToTimedelta().total_seconds()
        return delay_s
    if refusal is not None:
        return refusal.retry_after_ms / 1000
    return None


def _is_refusal(
    error_info: error_details_pb2.ErrorInfo | None, refusal: pb.RefusalDetail | None
) -> bool:
    """Whether a status carries the details the daemon sends with a refusal."""
    if refusal is not None:
        return True
    return error_info is not None and error_info.domain == _TOKENPOOL_DOMAIN


def _too_large_message(grpc_message: str) -> str:
    """Say that gRPC refused an oversized message, and what to do about it."""
    found = _SIZE_LIMIT.search(grpc_message)
    size = (
        f" ({found[1]} bytes; gRPC accepts at most {found[2]} bytes)"
        if found
        else " (gRPC's default limit is 4 MiB)"
    )
    return (
        f"The request is too large{size}: shorten its idempotency key, labels "
        f"or model name; retrying as it is cannot help. gRPC said: {grpc_message}"
    )


def error_from_rpc(exc: grpc.RpcError) -> TokenPoolError:
    """Translate a failed gRPC call into the matching client exception.

    Reads google.rpc RetryInfo and ErrorInfo and the tokenpool.v1
    RefusalDetail from the status details; attributes of details that were
    not sent are None or "". A RESOURCE_EXHAUSTED without the daemon's
    refusal details comes from gRPC itself (a message over its size limit,
    4 MiB by default) and is an InvalidRequestError, not a RefusedError:
    waiting does not make the request smaller.

    Args:
        exc: The error raised by a sync or asyncio gRPC call.

    Returns:
        The exception to raise; chain it with `raise ... from exc`.
    """
    if isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        code, message = exc.code(), exc.details() or ""
        details = _status_details(exc)
    else:
        code, message, details = grpc.StatusCode.UNKNOWN, str(exc), []

    error_info = _find(details, error_details_pb2.ErrorInfo)
    reason = error_info.reason if error_info else ""
    metadata = dict(error_info.metadata) if error_info else {}

    refusal = _find(details, pb.RefusalDetail)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not _is_refusal(
        error_info, refusal
    ):
        return InvalidRequestError(
            _too_large_message(message), code=code, reason=reason, metadata=metadata
        )

    cls = _ERRORS_BY_CODE.get(code, UnexpectedStatusError)
    if not issubclass(cls, _RefusalError):
        return cls(message, code=code, reason=reason, metadata=metadata)

    return cls(
        message,
        code=code,
        reason=reason or (refusal.reason if refusal else ""),
        metadata=metadata,
        pool=(refusal.pool if refusal else "") or metadata.get("pool", ""),
        retry_after_s=_retry_after_s(details, refusal),
        largest_grantable_tokens=refusal.largest_grantable_tokens if refusal else None,
        requested_tokens=refusal.requested_tokens if refusal else None,
    )
