"""The one table from tokenpool's exceptions to gRPC status codes and details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tokenpool._errors import (
    AccessDeniedError,
    ConfigError,
    ConflictError,
    InsufficientTokensError,
    InvalidFieldError,
    LedgerError,
    NotFoundError,
    NotOwnerError,
    RefusalError,
    RequestTooLargeError,
    ShuttingDownError,
    TenantRefusedError,
    TokenPoolError,
    UnauthenticatedError,
)

# ErrorInfo.domain for every refusal the daemon sends.
ERROR_DOMAIN = "tokenpool"

_CODES: dict[type[TokenPoolError], grpc.StatusCode] = {
    InvalidFieldError: grpc.StatusCode.INVALID_ARGUMENT,
    ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    ConflictError: grpc.StatusCode.FAILED_PRECONDITION,
    TenantRefusedError: grpc.StatusCode.PERMISSION_DENIED,
    NotOwnerError: grpc.StatusCode.PERMISSION_DENIED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    AccessDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    InsufficientTokensError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    RequestTooLargeError: grpc.StatusCode.OUT_OF_RANGE,
    LedgerError: grpc.StatusCode.UNAVAILABLE,
    ShuttingDownError: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: TokenPoolError) -> grpc.StatusCode:
    """The gRPC code for an error: its nearest class in the table."""
    for cls in type(error).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: TokenPoolError) -> grpc.Status:
    """A rich status: the code, the message and, for refusals, the details."""
    code = status_code(error)
    status = status_pb2.Status(code=code.value[0], message=str(error))
    if isinstance(error, InvalidFieldError):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.reason
        )
        bad = error_details_pb2.BadRequest(field_violations=[violation])
        status.details.append(_packed(bad))
    if isinstance(error, RefusalError):
        retry_ms = (
            0 if error.retry_after_ns is None else -(-error.retry_after_ns // 10**6)
        )
        if error.retry_after_ns is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(error.retry_after_ns)
            status.details.append(
                _packed(error_details_pb2.RetryInfo(retry_delay=delay))
            )
        info = error_details_pb2.ErrorInfo(
            reason=error.reason,
            domain=ERROR_DOMAIN,
            metadata={
                "budget": error.budget,
                "pool": str(error.pool),
                "largest_grantable_tokens": str(error.largest_grantable),
            },
        )
        status.details.append(_packed(info))
        detail = pb.RefusalDetail(
            reason=error.reason,
            pool=str(error.pool),
            largest_grantable_tokens=error.largest_grantable,
            retry_after_ms=retry_ms,
            requested_tokens=error.requested,
        )
        status.details.append(_packed(detail))
    return rpc_status.to_status(status)


def internal_status(message: str) -> grpc.Status:
    """A plain INTERNAL status for a failure that is tokenpool's own bug."""
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=message)
    return rpc_status.to_status(status)
