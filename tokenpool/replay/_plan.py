"""Replay plan: a tenant and task type per trace row, and each call's length."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from tokenpool.core import TaskType, TenantPolicy, Tier
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

# Task types given by rank to tenants that name none: the tenant at rank r
# (from 1) gets TASKS_BY_RANK[(r - 1) % 6]. Classification is left out: the
# bundled trace is a chat service whose outputs (median 129 tokens) dwarf a
# label's typical 16, so a classification tenant would overrun on almost
# every call. Name it explicitly ("name:tier:weight:classification") to see
# that.
TASKS_BY_RANK: tuple[TaskType, ...] = (
    TaskType.GENERATION,
    TaskType.SUMMARIZATION,
    TaskType.ANALYSIS,
    TaskType.EXTRACTION,
    TaskType.CODE,
    TaskType.OTHER,
)


@dataclass(frozen=True, slots=True)
class ReplayTenant:
    """A tenant the replay draws rows for, and the task type its calls name."""

    policy: TenantPolicy
    """Name, tier and weight, as the in-process daemon is told them."""
    task_type: TaskType
    """Sent in every Reserve of this tenant; the trace itself has none."""

    @property
    def name(self) -> str:
        """The tenant's name."""
        return self.policy.name


def task_by_rank(rank: int) -> TaskType:
    """The task type of the tenant at `rank` (from 1) that names none."""
    return TASKS_BY_RANK[(rank - 1) % len(TASKS_BY_RANK)]


def with_tasks(tenants: Sequence[TenantPolicy]) -> tuple[ReplayTenant, ...]:
    """Gives each tenant, in rank order, its task type by rank."""
    return tuple(
        ReplayTenant(tenant, task_by_rank(rank))
        for rank, tenant in enumerate(tenants, start=1)
    )


# Tenants drawn from when neither --tenants nor the configuration names any:
# big basic tenants first, two priority ones (weight 2) at ranks 2 and 5,
# so that with the default skew about a quarter of the rows are priority.
# Their task types follow their names, not the rank rule.
DEFAULT_TENANTS: tuple[ReplayTenant, ...] = (
    ReplayTenant(TenantPolicy(name="chat-web"), TaskType.GENERATION),
    ReplayTenant(
        TenantPolicy(name="search-svc", tier=Tier.PRIORITY, weight=2),
        TaskType.EXTRACTION,
    ),
    ReplayTenant(TenantPolicy(name="support-bot"), TaskType.GENERATION),
    ReplayTenant(TenantPolicy(name="docs-summarizer"), TaskType.SUMMARIZATION),
    ReplayTenant(
        TenantPolicy(name="fraud-review", tier=Tier.PRIORITY, weight=2),
        TaskType.ANALYSIS,
    ),
    ReplayTenant(TenantPolicy(name="code-assist"), TaskType.CODE),
    ReplayTenant(TenantPolicy(name="batch-etl"), TaskType.EXTRACTION),
    ReplayTenant(TenantPolicy(name="analytics"), TaskType.ANALYSIS),
)

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Call:
    """One trace row as the replay sends it: tenant, tokens, timing."""

    index: int
    """The row's position in the trace, from 0."""
    tenant: TenantPolicy
    """Who makes the call, drawn for this row."""
    task_type: TaskType
    """The task type the Reserve names: the drawn tenant's."""
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
    tokens: int = 0
    """An explicit hold instead of sizing (ledger replays of such requests)."""
    request_input_tokens: int | None = None
    """The input the Reserve names, when not the settled input (ledger)."""
    max_output_tokens: int | None = None
    """The call's own max_output_tokens; None uses the replay's --max-output."""
    max_wait_ms: int | None = None
    """The call's own wait limit; None uses the replay's --max-wait-ms."""
    model: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    cached_input_tokens: int = 0
    """Prompt-cache reads its Settle reports (ledger replays)."""
    cache_write_tokens: int = 0
    ending: str = "settle"
    """How the call ends: settle, release or expire."""
    billed_input_tokens: int = 0
    """Input a Release reports as billed (ending "release")."""

    @property
    def used_tokens(self) -> int:
        """Tokens the call really used, as Settle reports them."""
        if self.ending == "expire":
            return 0
        if self.ending == "release":
            return self.billed_input_tokens
        return (
            self.input_tokens
            + self.cached_input_tokens
            + self.cache_write_tokens
            + self.output_tokens
        )


def parse_tenants(text: str) -> tuple[ReplayTenant, ...]:
    """Reads a tenant list written as "name:tier[:weight[:task]],...".

    A tenant without a task type gets the one its rank gives (`task_by_rank`).

    Raises:
        ValueError: an entry is malformed, names a tier other than basic or
            priority, has a weight below 1, names an unknown task type, or
            repeats a name.
    """
    tenants: list[ReplayTenant] = []
    for rank, entry in enumerate((part.strip() for part in text.split(",")), 1):
        parts = entry.split(":")
        if not entry or len(parts) not in (2, 3, 4):
            raise ValueError(
                f"tenant {entry!r} is not name:tier[:weight[:task]], "
                "e.g. 'search:priority:2:extraction'"
            )
        try:
            tenant = TenantPolicy(
                name=parts[0],
                tier=parts[1],
                weight=int(parts[2]) if len(parts) >= 3 else 1,
            )
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"tenant {entry!r}: {_first_problem(exc)}") from None
        if any(known.name == tenant.name for known in tenants):
            raise ValueError(f"tenant {tenant.name!r} is listed twice")
        task = task_by_rank(rank)
        if len(parts) == 4:
            task = _task_type(entry, parts[3])
        tenants.append(ReplayTenant(tenant, task))
    return tuple(tenants)


def _task_type(entry: str, name: str) -> TaskType:
    try:
        return TaskType(name.strip().lower())
    except ValueError:
        known = ", ".join(task.value for task in TaskType)
        raise ValueError(
            f"tenant {entry!r}: task type {name!r} is not one of {known}"
        ) from None


def _first_problem(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
    return "the weight must be a whole number"


def draw_tenants(
    count: int, tenants: Sequence[ReplayTenant], *, skew: float, seed: int
) -> list[ReplayTenant]:
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
    tenants: Sequence[ReplayTenant],
    *,
    skew: float,
    seed: int,
    max_lease_ms: int,
    run_id: str,
) -> list[Call]:
    """Turns trace rows into calls: tenant, task type, timing, lease and key."""
    drawn = draw_tenants(len(rows), tenants, skew=skew, seed=seed)
    start = rows[0].arrival_wall_ns if rows else 0

    calls: list[Call] = []
    for row, tenant in zip(rows, drawn, strict=True):
        duration = call_duration_ns(row.input_tokens, row.output_tokens)
        lease_ms = 2 * duration // _NS_PER_MS + LEASE_SLACK_MS
        calls.append(
            Call(
                index=row.index,
                tenant=tenant.policy,
                task_type=tenant.task_type,
                arrival_ns=row.arrival_wall_ns - start,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                duration_ns=duration,
                lease_ms=max(1, min(lease_ms, max_lease_ms)),
                idempotency_key=f"replay-{run_id}-{row.index}",
            )
        )
    return calls
