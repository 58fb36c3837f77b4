"""Calls to replay from a ledger's own reservations over a period.

Each reservation granted in the period becomes one call: it arrives when its
request arrived (grant time less its wait), asks what its reserve entry
recorded (`request` in the entry's detail; older entries without it are
rebuilt from the hold and its output allowance), and ends as it ended:
a settle with the usage its settle entry reported, after as long as the
call really took, a release, or an expiry. Refused requests are only
counted in the ledger (SPEC 5), not described, so they are not replayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenpool.core import State, TaskType, TenantPolicy, Tier
from tokenpool.ledger import ReservationRow, read_replay_rows
from tokenpool.replay._errors import ReplayError
from tokenpool.replay._plan import LEASE_SLACK_MS, Call, ReplayTenant

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class LedgerCalls:
    """What a ledger gives a replay: calls, their tenants, where time starts."""

    calls: list[Call]
    tenants: tuple[ReplayTenant, ...]
    start_wall_ns: int


def _int(detail: Mapping[str, Any], name: str) -> int:
    value = detail.get(name, 0)
    return int(value) if isinstance(value, int | float) else 0


def _task(name: str) -> TaskType:
    try:
        return TaskType(name)
    except ValueError:
        return TaskType.OTHER


def _call(
    index: int,
    row: ReservationRow,
    reserve: Mapping[str, Any],
    end: Mapping[str, Any],
    tenant: TenantPolicy,
    start_wall_ns: int,
) -> Call:
    """One reservation as a call to replay."""
    request = reserve.get("request")
    arrival = row.created_wall_ns - row.waited_ms * _NS_PER_MS
    explicit = 0
    input_tokens = 0
    max_output: int | None = None
    max_wait: int | None = None
    if isinstance(request, dict):
        explicit = _int(request, "tokens")
        input_tokens = _int(request, "input_tokens")
        max_output = _int(request, "max_output_tokens") or None
        max_wait = _int(request, "max_wait_ms")
    elif row.output_allowance:
        # Before requests were recorded: the hold less its output allowance,
        # with that allowance as the cap, so the same sizing holds the same.
        input_tokens = max(0, row.requested - row.output_allowance)
        max_output = row.output_allowance
    else:
        explicit = row.requested

    ending = {State.RELEASED: "release", State.EXPIRED: "expire"}.get(
        row.state, "settle"
    )
    ended = row.ended_wall_ns or row.lease_expires_wall_ns
    duration = max(0, ended - row.created_wall_ns)
    lease_ms = max(1, (row.lease_expires_wall_ns - row.created_wall_ns) // _NS_PER_MS)
    if ending != "expire":
        lease_ms = max(lease_ms, 2 * duration // _NS_PER_MS + LEASE_SLACK_MS)
    used_input = _int(end, "input_tokens") if end else row.used
    return Call(
        index=index,
        tenant=tenant,
        task_type=_task(row.task_type),
        arrival_ns=arrival - start_wall_ns,
        input_tokens=used_input if ending == "settle" else 0,
        output_tokens=_int(end, "output_tokens"),
        duration_ns=duration,
        lease_ms=lease_ms,
        idempotency_key=f"ledger-{row.reservation_id}",
        tokens=explicit,
        request_input_tokens=input_tokens,
        max_output_tokens=max_output,
        max_wait_ms=max_wait,
        model=row.model,
        labels=tuple(sorted(row.labels.items())),
        cached_input_tokens=_int(end, "cached_input_tokens"),
        cache_write_tokens=_int(end, "cache_write_tokens"),
        ending=ending,
        billed_input_tokens=_int(end, "billed_input_tokens"),
    )


async def ledger_calls(
    path: str,
    *,
    since_wall_ns: int,
    until_wall_ns: int,
    budget: str,
    tenants: Sequence[TenantPolicy],
) -> LedgerCalls:
    """The reservations of `budget` granted in [since, until), as calls.

    Tenants keep the policy `tenants` gives them (the configuration being
    replayed); others keep the tier their reservations drew on, weight 1.

    Raises:
        ReplayError: the period holds no reservation of that budget.
        LedgerError: the file is not a readable ledger.
    """
    rows = await read_replay_rows(
        path, since_wall_ns=since_wall_ns, until_wall_ns=until_wall_ns, budget=budget
    )
    if not rows:
        raise ReplayError(
            f"Ledger {path!r} holds no reservation of budget {budget!r} granted in "
            "that period; widen --since/--until or name another --budget."
        )
    known = {tenant.name: tenant for tenant in tenants}
    for row, _, _ in rows:
        if row.tenant not in known:
            # Not in the configuration: the tier its reservations drew on.
            tier = Tier.PRIORITY if row.pool == Tier.PRIORITY.value else Tier.BASIC
            known[row.tenant] = TenantPolicy(name=row.tenant, tier=tier)
    ordered = sorted(rows, key=lambda item: item[0].created_wall_ns - item[0].waited_ms)
    start = ordered[0][0].created_wall_ns - ordered[0][0].waited_ms * _NS_PER_MS
    calls = []
    tasks: dict[str, Counter[TaskType]] = {}
    for index, (row, reserve, end) in enumerate(ordered):
        call = _call(index, row, reserve, end, known[row.tenant], start)
        calls.append(call)
        tasks.setdefault(row.tenant, Counter())[call.task_type] += 1
    replay_tenants = tuple(
        ReplayTenant(known[name], counts.most_common(1)[0][0])
        for name, counts in tasks.items()
    )
    return LedgerCalls(calls, replay_tenants, start)
