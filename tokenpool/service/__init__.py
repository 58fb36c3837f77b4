"""gRPC servicers that translate between the wire and the engine."""

from __future__ import annotations

from tokenpool.service._admin import AdminServicer
from tokenpool.service._auth import AuthInterceptor, Rule, method_rules
from tokenpool.service._convert import budget_status as budget_status_message
from tokenpool.service._registration import add_service
from tokenpool.service._servicer import TokenPoolServicer
from tokenpool.service._session import OpLayer, SessionHandler
from tokenpool.service._status import ERROR_DOMAIN, status_code, to_status

__all__ = [
    "ERROR_DOMAIN",
    "AdminServicer",
    "AuthInterceptor",
    "OpLayer",
    "Rule",
    "SessionHandler",
    "TokenPoolServicer",
    "add_service",
    "budget_status_message",
    "method_rules",
    "status_code",
    "to_status",
]
