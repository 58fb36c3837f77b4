"""Request building, answer reading and call options of both clients.

The sync and asyncio clients share these, so that each request is built, and
each answer read, in one place.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import propagate

from ._types import (
    BudgetStatus,
    Extension,
    PoolDraw,
    PoolStatus,
    Release,
    Reservation,
    ReserveOptions,
    Settlement,
    TenantStatus,
    Usage,
    check_usage_fields,
)
from .v1 import tokenpool_pb2 as pb

# Address of a daemon running with its default configuration.
DEFAULT_ADDRESS = "127.0.0.1:50051"

# Seconds a call may take before the client gives up, waiting for tokens aside.
DEFAULT_TIMEOUT_S = 30.0


class CallOptions:
    """The deadline and metadata each call of one client carries."""

    __slots__ = ("metadata", "timeout_s")

    def __init__(
        self,
        timeout_s: float,
        metadata: Sequence[tuple[str, str]],
        token: str | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(
                f"timeout_s must be a positive number of seconds, got {timeout_s!r}."
            )
        if token is not None and (not token.strip() or "\n" in token):
            raise ValueError(
                "token must be a non-empty API key or admin token on one line."
            )
        self.timeout_s = timeout_s
        self.metadata = tuple(metadata)
        if token is not None:
            self.metadata += (("authorization", f"Bearer {token.strip()}"),)

    def kwargs(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Return a stub call's timeout and metadata keyword arguments.

        The metadata carries the caller's trace context (W3C `traceparent`
        and `tracestate`, through OpenTelemetry's configured propagator)
        when a span is current, so the daemon's spans join the caller's
        trace. Without OpenTelemetry set up, nothing is added.
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        metadata = self.metadata
        if carrier:
            metadata = metadata + tuple(carrier.items())
        return {"timeout": timeout, "metadata": metadata}

    def reserve_timeout_s(
        self, timeout_s: float | None, options: ReserveOptions
    ) -> float:
        """Return Reserve's deadline: the timeout on top of max_wait_ms.

        The daemon waits for tokens up to max_wait_ms but no longer than the
        call's deadline, so the deadline must not cut that wait short.
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return timeout + max(options.get("max_wait_ms", 0), 0) / 1000


def open_channel(
    grpc_module: Any,
    address: str,
    credentials: Any | None,
    tls_server_name: str | None,
) -> Any:
    """Open a plaintext or TLS channel with `grpc` or `grpc.aio`."""
    if credentials is None:
        if tls_server_name is not None:
            raise ValueError("tls_server_name needs credentials (a TLS channel).")
        return grpc_module.insecure_channel(address)
    options = []
    if tls_server_name is not None:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return grpc_module.secure_channel(address, credentials, options=options)


def tls_credentials(
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials for a daemon serving TLS, from PEM files.

    Args:
        ca_file: CA certificates to trust; the system's roots when None.
        cert_file: This client's certificate chain, for mutual TLS.
        key_file: The private key of cert_file.

    Raises:
        ValueError: Only one of cert_file and key_file was given.
        OSError: A file cannot be read.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together, for mutual TLS.")

    def read(path: str | os.PathLike[str] | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca_file),
        private_key=read(key_file),
        certificate_chain=read(cert_file),
    )


def rpc_name(rpc: object) -> str:
    """Return a stub method's RPC name (e.g. "Reserve"), for logs."""
    method = getattr(rpc, "_method", b"")
    if isinstance(method, bytes):
        method = method.decode(errors="replace")
    return str(method).rsplit("/", 1)[-1] or "rpc"


def reserve_request(
    budget: str, tenant: str, options: ReserveOptions
) -> pb.ReserveRequest:
    """Build a ReserveRequest from reserve()'s arguments."""
    unknown = sorted(set(options) - ReserveOptions.__optional_keys__)
    if unknown:
        raise TypeError(
            f"reserve() got an unknown argument {unknown[0]!r}; use one of: "
            + ", ".join(ReserveOptions.__annotations__)
            + "."
        )
    fallback_budgets = options.get("fallback_budgets", ())
    if isinstance(fallback_budgets, str):
        raise TypeError(
            f"fallback_budgets must be a sequence of budget names, not the string "
            f"{fallback_budgets!r}; pass ({fallback_budgets!r},) for one budget."
        )

    fields: dict[str, Any] = {
        **options,
        "fallback_budgets": list(fallback_budgets),
        "labels": dict(options.get("labels") or {}),
    }
    return pb.ReserveRequest(budget=budget, tenant=tenant, **fields)


def with_idempotency_key(options: ReserveOptions) -> ReserveOptions:
    """Return options with a fresh idempotency key unless one is given."""
    if options.get("idempotency_key"):
        return options
    return {**options, "idempotency_key": str(uuid.uuid4())}


def merged_usage(usage: Usage | None, usage_fields: Mapping[str, Any]) -> Usage:
    """Return usage (or no usage) with the keyword fields put over it."""
    check_usage_fields(usage_fields)
    base = usage if usage is not None else Usage()
    return dataclasses.replace(base, **usage_fields)


def settle_request(
    reservation_id: str,
    tenant: str,
    usage: Usage | None,
    usage_fields: Mapping[str, Any],
) -> pb.SettleRequest:
    """Build a SettleRequest from a Usage overridden by keyword fields."""
    merged = merged_usage(usage, usage_fields)
    return pb.SettleRequest(
        reservation_id=reservation_id, tenant=tenant, **dataclasses.asdict(merged)
    )


def release_request(
    reservation_id: str, tenant: str, billed_input_tokens: int
) -> pb.ReleaseRequest:
    """Build a ReleaseRequest."""
    return pb.ReleaseRequest(
        reservation_id=reservation_id,
        tenant=tenant,
        billed_input_tokens=billed_input_tokens,
    )


def extend_request(
    reservation_id: str,
    tenant: str,
    total_tokens: int,
    lease_expires_at: datetime | None,
) -> pb.ExtendRequest:
    """Build an ExtendRequest; an unset lease end keeps the current one."""
    request = pb.ExtendRequest(
        reservation_id=reservation_id, tenant=tenant, total_tokens=total_tokens
    )
    if lease_expires_at is None:
        return request

    if lease_expires_at.tzinfo is None:
        raise ValueError(
            f"lease_expires_at must be timezone-aware, got {lease_expires_at!r}; "
            "pass e.g. datetime.now(UTC) + timedelta(minutes=5)."
        )
    request.lease_expires_at.FromDatetime(lease_expires_at)
    return request


def _datetime(timestamp: Timestamp) -> datetime:
    value: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return value


def _sources(draws: Iterable[pb.PoolDraw]) -> tuple[PoolDraw, ...]:
    return tuple(PoolDraw(pool=draw.pool, tokens=draw.tokens) for draw in draws)


def reservation(response: pb.ReserveResponse) -> Reservation:
    """Convert a ReserveResponse."""
    return Reservation(
        reservation_id=response.reservation_id,
        granted_tokens=response.granted_tokens,
        pool=response.pool,
        budget=response.budget,
        sources=_sources(response.sources),
        complexity_score=response.complexity_score,
        multiplier=response.multiplier,
        lease_expires_at=_datetime(response.lease_expires_at),
        waited_ms=response.waited_ms,
    )


def settlement(response: pb.SettleResponse) -> Settlement:
    """Convert a SettleResponse."""
    return Settlement(
        charged_tokens=response.charged_tokens,
        refunded_tokens=response.refunded_tokens,
        overrun_tokens=response.overrun_tokens,
    )


def release(response: pb.ReleaseResponse) -> Release:
    """Convert a ReleaseResponse."""
    return Release(
        charged_tokens=response.charged_tokens,
        refunded_tokens=response.refunded_tokens,
    )


def extension(response: pb.ExtendResponse) -> Extension:
    """Convert an ExtendResponse."""
    return Extension(
        granted_tokens=response.granted_tokens,
        sources=_sources(response.sources),
        lease_expires_at=_datetime(response.lease_expires_at),
    )


# PoolStatus.state as the client names it; UNSPECIFIED comes from a daemon
# older than pool states, whose pools all grant as usual.
_POOL_STATES = {
    pb.POOL_STATE_UNSPECIFIED: "active",
    pb.POOL_STATE_ACTIVE: "active",
    pb.POOL_STATE_PAUSED: "paused",
    pb.POOL_STATE_DRAINING: "draining",
}


def _pool_status(pool: pb.PoolStatus) -> PoolStatus:
    return PoolStatus(
        name=pool.name,
        share_percent=pool.share_percent,
        capacity_tokens=pool.capacity_tokens,
        available_tokens=pool.available_tokens,
        in_flight_tokens=pool.in_flight_tokens,
        debt_tokens=pool.debt_tokens,
        waiting=pool.waiting,
        lent_tokens=pool.lent_tokens,
        borrowed_tokens=pool.borrowed_tokens,
        utilization=pool.utilization,
        charged_tokens=pool.charged_tokens,
        state=_POOL_STATES.get(pool.state, "unknown"),
        open_reservations=pool.open_reservations,
    )


def budget_status(budget: pb.BudgetStatus) -> BudgetStatus:
    """Convert a BudgetStatus message."""
    return BudgetStatus(
        name=budget.name,
        capacity_tokens=budget.capacity_tokens,
        window_seconds=budget.window_seconds,
        pools=tuple(_pool_status(pool) for pool in budget.pools),
        open_reservations=budget.open_reservations,
    )


def budget_statuses(response: pb.ListBudgetsResponse) -> tuple[BudgetStatus, ...]:
    """Convert a ListBudgetsResponse."""
    return tuple(budget_status(budget) for budget in response.budgets)


def tenant_status(tenant: pb.TenantStatus) -> TenantStatus:
    """Convert a TenantStatus message."""
    return TenantStatus(
        name=tenant.name,
        tier=tenant.tier,
        weight=tenant.weight,
        configured=tenant.configured,
        open_reservations=tenant.open_reservations,
        in_flight_tokens=tenant.in_flight_tokens,
    )
