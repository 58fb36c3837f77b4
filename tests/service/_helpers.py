"""Small helpers for tests that speak the wire protocol directly."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._process import LOCK_HOLDER

BUDGET_1000 = {
    "budgets": [
        {
            "name": "b",
            "capacity_tokens": 1000,
            "shares": {"basic": 100, "priority": 0, "burst": 0},
        }
    ]
}


@dataclass
class Refusal:
    """A failed call's code, message and decoded details."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    retry_after_s: float | None = None
    detail: pb.RefusalDetail | None = None
    bad_fields: list[str] = field(default_factory=list)


async def refusal(call: Awaitable[Any]) -> Refusal:
    """Awaits a call that must fail; returns what the failure said."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        found = Refusal(exc.code(), exc.details() or "")
        status = rpc_status.from_call(exc)
        for packed in status.details if status else ():
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                found.reason = info.reason
            elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                packed.Unpack(retry)
                found.retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
            elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                found.bad_fields = [v.field for v in bad.field_violations]
            elif packed.Is(pb.RefusalDetail.DESCRIPTOR):
                found.detail = pb.RefusalDetail()
                packed.Unpack(found.detail)
        return found
    raise AssertionError("the call succeeded but was expected to fail")


def pools(status: pb.BudgetStatus) -> dict[str, pb.PoolStatus]:
    """A budget status's pools by name."""
    return {pool.name: pool for pool in status.pools}


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 5
) -> None:
    """Polls an async condition until it holds; the daemon gives no event."""
    with anyio.fail_after(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls over gRPC, not in-process
            await anyio.sleep(0.01)


async def waiting(api: pb_grpc.TokenPoolStub, budget: str = "b") -> int:
    """Requests queued in a budget's basic pool."""
    status = await api.GetBudget(pb.GetBudgetRequest(budget=budget))
    return pools(status)["basic"].waiting


async def pool_status(
    api: pb_grpc.TokenPoolStub, budget: str = "b"
) -> dict[str, pb.PoolStatus]:
    """A budget's pools by name, as GetBudget reports them now."""
    return pools(await api.GetBudget(pb.GetBudgetRequest(budget=budget)))


def drawn(answer: pb.ReserveResponse) -> list[tuple[str, int]]:
    """Where a grant's tokens came from, in drawing order."""
    return [(draw.pool, draw.tokens) for draw in answer.sources]


@dataclass
class Pending:
    """A Reserve sent from a task of its own, and how it ended.

    Start it with `tasks.start_soon(pending.send, api, request)`; `cancel()`
    cancels the call the way a client gives up on it.
    """

    answer: pb.ReserveResponse | None = None
    code: grpc.StatusCode | None = None
    call: Any = None
    ended: anyio.Event = field(default_factory=anyio.Event)
    """Set once the answer or failure is in."""
    cancelled: bool = False
    """Whether `cancel()` ended the call."""

    async def send(
        self, api: pb_grpc.TokenPoolStub, request: pb.ReserveRequest
    ) -> None:
        """Sends the Reserve and keeps its answer or failure code."""
        self.call = api.Reserve(request)
        try:
            self.answer = await self.call
        except grpc.aio.AioRpcError as exc:
            self.code = exc.code()
        except anyio.get_cancelled_exc_class():
            # grpc raises this in the awaiting task when the call itself was
            # cancelled; a cancellation of the task is not ours to swallow.
            if not self.cancelled:
                raise
            self.code = grpc.StatusCode.CANCELLED
        self.ended.set()

    async def answered(self, timeout_s: float = 5) -> pb.ReserveResponse:
        """Waits for the call to end; returns its answer, which it must have."""
        with anyio.fail_after(timeout_s):
            await self.ended.wait()
        assert self.answer is not None, f"the Reserve failed: {self.code}"
        return self.answer

    def cancel(self) -> None:
        """Cancels the call; the daemon sees its caller go away."""
        self.cancelled = True
        self.call.cancel()


@asynccontextmanager
async def write_lock_held(db_path: Path) -> AsyncIterator[None]:
    """Another process holds the database's write lock while the block runs."""
    async with await anyio.open_process(
        [sys.executable, "-c", LOCK_HOLDER, str(db_path)]
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        with anyio.fail_after(10):
            assert b"locked" in await holder.stdout.receive()
        try:
            yield
        finally:
            await holder.stdin.aclose()
            with anyio.fail_after(10):
                await holder.wait()
