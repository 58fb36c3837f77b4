"""Access control on every call: bearer credentials and who may do what (SPEC 8).

Health checks and reflection are left open, so that probes and `grpcurl
list` work without a key. Every other method of the TokenPool and Admin
services needs the admin token or a tenant API key in the `authorization`
metadata; what a tenant key may do:

- Reserve, Settle, Release, Extend, GetTenant: act only as its own tenant
  (the request's `tenant` must be the key's), and so touch only its own
  reservations;
- GetTeam: read only its own team;
- GetBudget, ListBudgets: read budget status;
- Session: open a stream with any known credential; each operation on it is
  checked as its unary RPC would be (`op_layer`);
- anything else (every Admin call, and any method not classified below):
  nothing; it needs the admin token.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from tokenpool._errors import AccessDeniedError, AccessError
from tokenpool.core import Credentials, Identity
from tokenpool.service._actor import CALLER
from tokenpool.service._status import status_code, to_status

logger = logging.getLogger(__name__)

_Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]

# The metadata key of bearer credentials (gRPC keys are lower case).
_AUTHORIZATION = "authorization"


class Rule(enum.Enum):
    """What a tenant key may do with one RPC; the admin token may do all."""

    READ = "read"
    """Any known credential."""
    AS_TENANT = "as_tenant"
    """Only with the request's `tenant` set to the key's tenant."""
    OWN_TEAM = "own_team"
    """Only for the team the key's tenant belongs to."""
    ADMIN = "admin"
    """The admin token only."""
    PER_OP = "per_op"
    """A stream any known credential may open; each operation is checked."""


# Methods of the TokenPool service that a tenant key may call, and how.
_TENANT_RULES = {
    "Reserve": Rule.AS_TENANT,
    "Settle": Rule.AS_TENANT,
    "Release": Rule.AS_TENANT,
    "Extend": Rule.AS_TENANT,
    "GetTenant": Rule.AS_TENANT,
    "GetTeam": Rule.OWN_TEAM,
    "GetBudget": Rule.READ,
    "ListBudgets": Rule.READ,
    "Session": Rule.PER_OP,
}


def method_rules(
    tenant_service: ServiceDescriptor, admin_service: ServiceDescriptor
) -> dict[str, Rule]:
    """The rule of every method of both services, by full method path."""
    rules = {}
    for service in (tenant_service, admin_service):
        for method in service.methods:
            rule = Rule.ADMIN
            if service is tenant_service:
                rule = _TENANT_RULES.get(method.name, Rule.ADMIN)
            rules[f"/{service.full_name}/{method.name}"] = rule
    return rules


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks each call's credentials against its method's rule.

    Args:
        credentials: The admin token's and tenant keys' digests.
        rules: The rule per full method path (`method_rules`); methods not
            listed (health, reflection) pass unchecked.
        team_of: The team a configured tenant belongs to now, for GetTeam
            (tenants and teams change at run time).
    """

    def __init__(
        self,
        credentials: Credentials,
        rules: Mapping[str, Rule],
        team_of: Callable[[str], str | None],
    ) -> None:
        self._credentials = credentials
        self._rules = dict(rules)
        self._team_of = team_of

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        rule = self._rules.get(handler_call_details.method)
        if handler is None or rule is None:
            return handler
        if rule is Rule.PER_OP and handler.stream_stream is not None:
            return self._stream_guarded(handler_call_details, handler)
        if handler.unary_unary is None:
            # Only unary calls are guarded here; a streaming method of our
            # services would pass unchecked, so it is not served at all.
            logger.error(
                "streaming rpc not guarded rpc=%s", handler_call_details.method
            )
            return None

        rpc = handler_call_details.method.rpartition("/")[2]
        authorization = _bearer(handler_call_details.invocation_metadata or ())
        guarded = self._guarded(rpc, rule, authorization, handler.unary_unary)
        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def op_layer(
        self,
        method: str,
        metadata: Sequence[tuple[str, str | bytes]],
        behavior: _Behavior,
    ) -> _Behavior:
        """Checks one operation of a Session stream as its unary RPC is checked."""
        rule = self._rules.get(method, Rule.ADMIN)
        rpc = method.rpartition("/")[2]
        return self._guarded(rpc, rule, _bearer(metadata), behavior)

    def _stream_guarded(
        self,
        handler_call_details: grpc.HandlerCallDetails,
        handler: grpc.RpcMethodHandler,
    ) -> grpc.RpcMethodHandler:
        """A stream that only a known credential may open."""
        rpc = handler_call_details.method.rpartition("/")[2]
        authorization = _bearer(handler_call_details.invocation_metadata or ())
        behavior = handler.stream_stream

        async def guarded(
            requests: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            try:
                self._credentials.identify(authorization)
            except AccessError as exc:
                await self._refuse(rpc, exc, context)
            return await behavior(requests, context)

        return grpc.stream_stream_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _refuse(
        self,
        rpc: str,
        refused: AccessError,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Ends the call with the refusal's status, logging whose it was."""
        code = status_code(refused)
        # The credential itself is never logged, only whose it was.
        logger.warning(
            "rpc refused by access control rpc=%s code=%s peer=%s tenant=%s",
            rpc,
            code.name,
            context.peer(),
            getattr(refused, "tenant", None) or "-",
            extra={"rpc": rpc, "code": code.name, "peer": context.peer()},
        )
        await context.abort_with_status(to_status(refused))
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    def _guarded(
        self, rpc: str, rule: Rule, authorization: str | None, behavior: _Behavior
    ) -> _Behavior:
        async def guarded(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            try:
                identity = self._credentials.identify(authorization)
                self._check(rpc, rule, identity, request)
            except AccessError as exc:
                refused = exc
            else:
                # Who the ledger names for an admin change made by this call.
                caller = "admin" if identity.admin else f"tenant:{identity.tenant}"
                token = CALLER.set(caller)
                try:
                    return await behavior(request, context)
                finally:
                    CALLER.reset(token)

            await self._refuse(rpc, refused, context)

        return guarded

    def _check(self, rpc: str, rule: Rule, identity: Identity, request: Any) -> None:
        """Raises AccessDeniedError when the identity may not make this call."""
        if identity.admin or rule is Rule.READ:
            return
        if rule is Rule.ADMIN:
            identity.require_admin(rpc)
        # A request whose bytes did not parse has no fields; the servicer
        # refuses it as INVALID_ARGUMENT, and nothing is read from it.
        if rule is Rule.AS_TENANT and hasattr(request, "tenant"):
            identity.require_tenant(rpc, request.tenant)
        if rule is Rule.OWN_TEAM and hasattr(request, "team"):
            team = self._team_of(identity.tenant or "")
            if team != request.team:
                raise AccessDeniedError(
                    f"The API key of tenant {identity.tenant!r} may read only its "
                    f"own team, not {request.team[:64]!r}.",
                    rpc=rpc,
                    tenant=identity.tenant,
                )


def _bearer(metadata: Any) -> str | None:
    """The first `authorization` metadata value, if the call sent one."""
    for key, value in metadata:
        if key == _AUTHORIZATION:
            return value if isinstance(value, str) else None
    return None
