"""Who makes an admin change, as the ledger names it."""

from __future__ import annotations

import re
from contextvars import ContextVar

import grpc

# Set by access control for the call being served: "admin", or
# "tenant:<name>" for a tenant key; unset on a daemon that runs open.
CALLER: ContextVar[str] = ContextVar("tokenpool_caller", default="")

# Metadata the CLI sends with the operator's login name. It is a claim, not
# a credential: the ledger keeps it beside the credential that was checked.
OPERATOR_METADATA = "tokenpool-operator"

# What an operator name may hold in the ledger: short and printable.
_OPERATOR = re.compile(r"^[\w.@+-]{1,64}$")


def actor_of(context: grpc.aio.ServicerContext[object, object]) -> str:
    """The caller of an admin RPC: its credential, the operator it names, its peer.

    For example `admin:alice@ipv4:127.0.0.1:51234`, or `open@...` on a
    daemon without credentials.
    """
    who = CALLER.get() or "open"
    operator = ""
    for key, value in context.invocation_metadata() or ():
        if key == OPERATOR_METADATA and isinstance(value, str):
            if _OPERATOR.fullmatch(value):
                operator = value
            break
    peer = context.peer() or "unknown"
    return f"{who}:{operator}@{peer}" if operator else f"{who}@{peer}"
