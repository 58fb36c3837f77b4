"""Replay plan: a tenant per trace row, and each call's modelled length."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from tokenpool.core import TenantPolicy, Tier
from tokenpool.replay._trace import TraceRow

# Modelled length of an API call: a fixed overhead, prefill of the input at
# PREFILL_TOKENS_PER_S, then decoding the output at DECODE_TOKENS_PER_S.
# Rough figures for a hosted chat model; they only shape how long tokens
# stay held.
CALL_OVERHEAD_NS = 300_000_000
PREFILL_TOKENS_PER_S = 8_000
DECODE_TOKENS_PER_S = 40

# A lease lasts twice the modelled call plus this slack, so that it never
# runs out before the replay settles (within the budget's longest lease).
LEASE_SLACK_MS = 30_000

# Skew s of the tenant draw (tenant of rank r is drawn with weight 1/r^s)
# and the seed of the draw, when the command line does not set them.
DEFAULT_SKEW = 1.1
DEFAULT_SEED = 7

# Tenants drawn from when neither --tenants nor the configuration names any:
# big basic tenants first, two priority ones (weight 2) at ranks 2 and 5,
# so that with the default skew about a quarter of the rows are priority.
DEFAULT_TENANTS: tuple[TenantPolicy, ...] = (
    TenantPolicy(name="chat-web"),
    TenantPolicy(name="search-svc", tier=Tier.PRIORITY, weight=2),
    TenantPolicy(name="support-bot"),
    TenantPolicy(name="docs-summarizer"),
    TenantPolicy(name="fraud-review", tier=Tier.PRIORITY, weight=2),
    TenantPolicy(name="code-assist"),
    TenantPolicy(name="batch-etl"),
    TenantPolicy(name="analytics"),
)

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Call:
    """One trace row as the replay sends it: tenant, tokens, timing."""

    index: int
    """The row's position in the trace, from 0."""
    tenant: TenantPolicy
    """Who makes the call, drawn for this row."""
    arrival_ns: int
    """Arrival, in nanoseconds after the trace's first row."""
    input_tokens: int
    """Prompt tokens: reserved, then settled."""
    output_tokens: int
    """Generated tokens: settled (the hold uses --max-output)."""
    duration_ns: int
    """Modelled length of the API call, in trace nanoseconds."""
    lease_ms: int
    """Lease asked for: long enough to outlast the call."""
    idempotency_key: str
    """Unique per row and run."""

    @property
    def used_tokens(self) -> int:
        """Tokens the call really used, as Settle reports them."""
        return self.input_tokens + self.output_tokens


def parse_tenants(text: str) -> tuple[TenantPolicy, ...]:
    """Reads a tenant list written as "name:tier[:weight],...".

    Raises:
        ValueError: an entry is malformed, names a tier other than basic or
            priority, has a weight below 1, or repeats a name.
    """
    tenants: list[TenantPolicy] = []
    for entry in (part.strip() for part in text.split(",")):
        parts = entry.split(":")
        if not entry or len(parts) not in (2, 3):
            raise ValueError(
                f"tenant {entry!r} is not name:tier or name:tier:weight, "
                "e.g. 'search:priority:2'"
            )
        try:
            tenant = TenantPolicy(
                name=parts[0],
                tier=parts[1],
                weight=int(parts[2]) if len(parts) == 3 else 1,
            )
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"tenant {entry!r}: {_first_problem(exc)}") from None
        if any(known.name == tenant.name for known in tenants):
            raise ValueError(f"tenant {tenant.name!r} is listed twice")
        tenants.append(tenant)
    return tuple(tenants)


def _first_problem(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
    return "the weight must be a whole number"


def draw_tenants(
    count: int, tenants: Sequence[TenantPolicy], *, skew: float, seed: int
) -> list[TenantPolicy]:
    """Draws a tenant for each of `count` rows, Zipf-like and seeded.

    The tenant at rank r (1-based, in list order) is drawn with weight
    1 / r**skew, so the first tenant gets the most rows; skew 0 draws
    uniformly. A row's tenant does not depend on how many rows are drawn.
    """
    if not tenants:
        raise ValueError("there must be at least one tenant to draw from")
    weights = [1 / rank**skew for rank in range(1, len(tenants) + 1)]
    return random.Random(seed).choices(list(tenants), weights=weights, k=count)


def call_duration_ns(input_tokens: int, output_tokens: int) -> int:
    """Models how long an API call takes from its token counts."""
    return (
        CALL_OVERHEAD_NS
        + input_tokens * 1_000_000_000 // PREFILL_TOKENS_PER_S
        + output_tokens * 1_000_000_000 // DECODE_TOKENS_PER_S
    )


def plan_calls(
    rows: Sequence[TraceRow],
    tenants: Sequence[TenantPolicy],
    *,
    skew: float,
    seed: int,
    max_lease_ms: int,
    run_id: str,
) -> list[Call]:
    """Turns trace rows into calls: tenant, timing, lease and key."""
    drawn = draw_tenants(len(rows), tenants, skew=skew, seed=seed)
    start = rows[0].arrival_wall_ns if rows else 0

    calls: list[Call] = []
    for row, tenant in zip(rows, drawn, strict=True):
        duration = call_duration_ns(row.input_tokens, row.output_tokens)
        lease_ms = 2 * duration // _NS_PER_MS + LEASE_SLACK_MS
        calls.append(
            Call(
                index=row.index,
                tenant=tenant,
                arrival_ns=row.arrival_wall_ns - start,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                duration_ns=duration,
                lease_ms=max(1, min(lease_ms, max_lease_ms)),
                idempotency_key=f"replay-{run_id}-{row.index}",
            )
        )
    return calls
