"""gRPC servicers: decode the request, call the engine, encode the answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tokenpool._errors import TokenPoolError
from tokenpool.engine import Engine
from tokenpool.service import _convert as convert
from tokenpool.service._status import internal_status, status_code, to_status

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


async def answer(
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


async def answer_now(
    rpc: str, context: grpc.aio.ServicerContext[object, object], read: Callable[[], _T]
) -> _T:
    """Runs a synchronous engine read with the same error mapping."""

    async def run() -> _T:
        return read()

    return await answer(rpc, context, run)


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
        granted = await answer(
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
        settled = await answer(
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
        released = await answer(
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
        extended = await answer(
            "Extend",
            context,
            lambda: self._engine.extend(convert.extend_command(request)),
        )
        return convert.extend_response(extended)

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.BudgetStatus:
        view = await answer_now(
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
        view = await answer_now(
            "GetTenant", context, lambda: self._engine.tenant_status(request.tenant)
        )
        return convert.tenant_status(view)

    async def GetTeam(
        self, request: pb.GetTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.TeamStatus:
        view = await answer_now(
            "GetTeam", context, lambda: self._engine.team_status(request.team)
        )
        return convert.team_status(view)
