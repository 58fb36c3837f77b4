"""gRPC servicers: decode the request, call the engine, encode the answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tokenpool._errors import TokenPoolError
from tokenpool.core import check_name, check_range
from tokenpool.engine import BudgetView, Engine
from tokenpool.ledger import Ledger
from tokenpool.service import _convert as convert
from tokenpool.service._status import internal_status, status_code, to_status

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


async def _answer(
    rpc: str,
    context: grpc.aio.ServicerContext[object, object],
    work: Callable[[], Awaitable[_T]],
) -> _T:
    """Decodes and runs the engine call; turns our errors into their status."""
    try:
        return await work()
    except TokenPoolError as exc:
        logger.debug("rpc refused rpc=%s code=%s error=%s", rpc, status_code(exc), exc)
        await context.abort_with_status(to_status(exc))
    except Exception:
        logger.exception("rpc failed rpc=%s", rpc)
        await context.abort_with_status(
            internal_status(f"{rpc} failed inside tokenpool; the daemon logged why.")
        )
    raise AssertionError("abort_with_status returned")  # pragma: no cover


async def _answer_now(
    rpc: str, context: grpc.aio.ServicerContext[object, object], read: Callable[[], _T]
) -> _T:
    """Runs a synchronous engine read with the same error mapping."""

    async def run() -> _T:
        return read()

    return await _answer(rpc, context, run)


# ListReservations answers this many when the request says 0, at most the max.
_LISTED = 100
_MAX_LISTED = 10_000


def _deadline(context: grpc.aio.ServicerContext[object, object]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


class TokenPoolServicer(pb_grpc.TokenPoolServicer):
    """Reserve, Settle, Release, Extend and the read-only status calls."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def Reserve(
        self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveResponse:
        deadline_s = _deadline(context)
        granted = await _answer(
            "Reserve",
            context,
            lambda: self._engine.reserve(
                convert.reserve_command(request), deadline_s=deadline_s
            ),
        )
        return convert.reserve_response(granted)

    async def Settle(
        self, request: pb.SettleRequest, context: grpc.aio.ServicerContext
    ) -> pb.SettleResponse:
        settled = await _answer(
            "Settle",
            context,
            lambda: self._engine.settle(convert.settle_command(request)),
        )
        return pb.SettleResponse(
            charged_tokens=settled.charged,
            refunded_tokens=settled.refunded,
            overrun_tokens=settled.overrun,
        )

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        released = await _answer(
            "Release",
            context,
            lambda: self._engine.release(
                request.reservation_id, request.tenant, request.billed_input_tokens
            ),
        )
        return pb.ReleaseResponse(
            charged_tokens=released.charged, refunded_tokens=released.refunded
        )

    async def Extend(
        self, request: pb.ExtendRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendResponse:
        extended = await _answer(
            "Extend",
            context,
            lambda: self._engine.extend(convert.extend_command(request)),
        )
        return convert.extend_response(extended)

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        view = await _answer_now(
            "GetBudget", context, lambda: self._engine.budget_status(request.budget)
        )
        return convert.budget_status(view)

    async def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBudgetsResponse:
        views = [
            self._engine.budget_status(name) for name in self._engine.budget_names()
        ]
        return pb.ListBudgetsResponse(budgets=[convert.budget_status(v) for v in views])

    async def GetTenant(
        self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.TenantStatus:
        view = await _answer_now(
            "GetTenant", context, lambda: self._engine.tenant_status(request.tenant)
        )
        return convert.tenant_status(view)

    async def GetTeam(
        self, request: pb.GetTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.TeamStatus:
        view = await _answer_now(
            "GetTeam", context, lambda: self._engine.team_status(request.team)
        )
        return convert.team_status(view)


class AdminServicer(pb_grpc.AdminServicer):
    """Operator calls; those of later milestones answer UNIMPLEMENTED."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        self._engine = engine
        self._ledger = ledger

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReservationsResponse:
        async def listing() -> list[pb.ReservationInfo]:
            if request.budget:
                self._engine.budget_status(request.budget)
            if request.tenant:
                check_name("tenant", request.tenant)
            limit = check_range("limit", request.limit, 0, _MAX_LISTED) or _LISTED
            found = self._engine.reservations(
                budget=request.budget, tenant=request.tenant, limit=limit
            )
            return [convert.reservation_info(r) for r in found]

        rows = await _answer("ListReservations", context, listing)
        return pb.ListReservationsResponse(reservations=rows)

    async def Report(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResponse:
        async def totals() -> list[pb.ReportRow]:
            if request.budget:
                self._engine.budget_status(request.budget)
            rows = await self._ledger.totals(budget=request.budget or None)
            return [convert.report_row(row) for row in rows]

        return pb.ReportResponse(rows=await _answer("Report", context, totals))

    async def Rebalance(
        self, request: pb.RebalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        async def rebalance() -> BudgetView:
            await self._engine.rebalance(request.budget, dict(request.shares))
            return self._engine.budget_status(request.budget)

        return convert.budget_status(await _answer("Rebalance", context, rebalance))

    async def SetCapacity(
        self, request: pb.SetCapacityRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        async def set_capacity() -> BudgetView:
            await self._engine.set_capacity(request.budget, request.capacity_tokens)
            return self._engine.budget_status(request.budget)

        return convert.budget_status(
            await _answer("SetCapacity", context, set_capacity)
        )

    async def Estimates(
        self, request: pb.EstimatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimatesResponse:
        rows = await _answer_now(
            "Estimates",
            context,
            lambda: self._engine.estimates(
                budget=request.budget, tenant=request.tenant
            ),
        )
        return pb.EstimatesResponse(
            rows=[convert.estimate_row(budget, row) for budget, row in rows],
            unknown_task_types=self._engine.unknown_task_types(),
        )

    async def UpsertTenant(
        self, request: pb.UpsertTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.TenantStatus:
        await _not_yet(context, "UpsertTenant")

    async def ReloadConfig(
        self, request: pb.ReloadConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadConfigResponse:
        await _not_yet(context, "ReloadConfig")


async def _not_yet(
    context: grpc.aio.ServicerContext[object, object], rpc: str
) -> NoReturn:
    """Answers UNIMPLEMENTED for an admin call of a later release."""
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{rpc} is not implemented in this version of tokenpool; change the "
        "configuration file and restart the daemon instead.",
    )
    raise AssertionError("abort returned")  # pragma: no cover
