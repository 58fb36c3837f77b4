"""gRPC servicers that translate between the wire and the engine."""

from __future__ import annotations

from tokenpool.service._auth import AuthInterceptor, Rule, method_rules
from tokenpool.service._registration import add_service
from tokenpool.service._servicer import AdminServicer, TokenPoolServicer
from tokenpool.service._status import ERROR_DOMAIN, status_code, to_status

__all__ = [
    "ERROR_DOMAIN",
    "AdminServicer",
    "AuthInterceptor",
    "Rule",
    "TokenPoolServicer",
    "add_service",
    "method_rules",
    "status_code",
    "to_status",
]
