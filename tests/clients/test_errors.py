"""Tests of client errors decoded from the daemon's gRPC statuses."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NoReturn

import anyio.to_thread
import grpc
import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from tokenpool_client import (
    AsyncClient,
    Client,
    InvalidRequestError,
    RefusedError,
    TokenPoolError,
    TooLargeError,
    UnexpectedStatusError,
)
from tokenpool_client.v1 import tokenpool_pb2 as pb

if TYPE_CHECKING:
    from .conftest import Behaviour, FakeDaemon

pytestmark = pytest.mark.anyio


def _aborting_with(code: int, message: str, *details: Message) -> Behaviour:
    """Return an RPC that fails with a rich google.rpc status."""
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        status.details.add().Pack(detail)

    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returned")

    return behaviour


def _refusal_details(reason: str) -> tuple[Message, ...]:
    """Return the details the daemon sends with a refusal."""
    return (
        error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)
        ),
        error_details_pb2.ErrorInfo(
            reason=reason,
            domain="tokenpool",
            metadata={"pool": "basic", "budget": "default"},
        ),
        pb.RefusalDetail(
            reason=reason,
            pool="basic",
            largest_grantable_tokens=1200,
            retry_after_ms=2500,
            requested_tokens=5000,
        ),
    )


async def test_reserve_resource_exhausted_raises_refused_error(
    fake_daemon: FakeDaemon,
) -> None:
    refuse = _aborting_with(
        code_pb2.RESOURCE_EXHAUSTED,
        "Pool 'basic' has 1200 tokens free; retry in 2.5 s.",
        *_refusal_details("POOL_EXHAUSTED"),
    )

    async with fake_daemon(Reserve=refuse) as address, AsyncClient(address) as client:
        with pytest.raises(RefusedError, match=r"1200 tokens free") as caught:
            await client.reserve("default", "team-a", tokens=5000)

    error = caught.value
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "POOL_EXHAUSTED"
    assert error.pool == "basic"
    assert error.retry_after_s == 2.5
    assert error.largest_grantable_tokens == 1200
    assert error.requested_tokens == 5000
    assert error.metadata == {"pool": "basic", "budget": "default"}
    assert isinstance(error.__cause__, grpc.RpcError)


async def test_reserve_out_of_range_raises_too_large_error(
    fake_daemon: FakeDaemon,
) -> None:
    refuse = _aborting_with(
        code_pb2.OUT_OF_RANGE,
        "Asked for 9000000 tokens; at most 600000 can ever be granted.",
        *_refusal_details("BUDGET_CAPACITY"),
    )

    async with fake_daemon(Reserve=refuse) as address, AsyncClient(address) as client:
        with pytest.raises(TooLargeError, match=r"at most 600000") as caught:
            await client.reserve("default", "team-a", tokens=9_000_000)

    error = caught.value
    assert not isinstance(error, RefusedError)
    assert error.code is grpc.StatusCode.OUT_OF_RANGE
    assert error.reason == "BUDGET_CAPACITY"
    assert error.largest_grantable_tokens == 1200


async def test_reserve_invalid_argument_raises_invalid_request_error(
    fake_daemon: FakeDaemon,
) -> None:
    async def reject(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, "tokens must be >= 0, got -5."
        )
        raise AssertionError("abort returned")

    async with fake_daemon(Reserve=reject) as address, AsyncClient(address) as client:
        with pytest.raises(InvalidRequestError, match=r"tokens must be >= 0") as caught:
            await client.reserve("default", "team-a", tokens=-5)

    assert caught.value.message == "tokens must be >= 0, got -5."
    assert caught.value.reason == ""


async def test_refusal_with_only_error_info_leaves_attributes_unset(
    fake_daemon: FakeDaemon,
) -> None:
    info = error_details_pb2.ErrorInfo(reason="POOL_EXHAUSTED", domain="tokenpool")
    refuse = _aborting_with(code_pb2.RESOURCE_EXHAUSTED, "No tokens free now.", info)

    async with fake_daemon(Reserve=refuse) as address, AsyncClient(address) as client:
        with pytest.raises(RefusedError, match=r"No tokens free") as caught:
            await client.reserve("default", "team-a", tokens=10)

    error = caught.value
    assert (error.reason, error.pool) == ("POOL_EXHAUSTED", "")
    assert error.retry_after_s is None
    assert error.largest_grantable_tokens is None
    assert error.requested_tokens is None


async def test_resource_exhausted_without_refusal_is_an_invalid_request(
    fake_daemon: FakeDaemon,
) -> None:
    # What gRPC itself answers to a message over its size limit: no details.
    text = "Received message larger than max (5000050 vs. 4194304)"
    refuse = _aborting_with(code_pb2.RESOURCE_EXHAUSTED, text)

    async with fake_daemon(Reserve=refuse) as address, AsyncClient(address) as client:
        with pytest.raises(InvalidRequestError, match=r"too large") as caught:
            await client.reserve("default", "team-a", tokens=10)

    error = caught.value
    assert not isinstance(error, RefusedError)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "5000050 bytes; gRPC accepts at most 4194304 bytes" in error.message
    assert text in error.message


async def test_unmapped_status_raises_unexpected_status_error(
    fake_daemon: FakeDaemon,
) -> None:
    fail = _aborting_with(code_pb2.DATA_LOSS, "Ledger page lost.")

    async with fake_daemon(Reserve=fail) as address, AsyncClient(address) as client:
        with pytest.raises(UnexpectedStatusError, match=r"Ledger page lost"):
            await client.reserve("default", "team-a", tokens=10)


async def test_sync_client_decodes_refusal_too(fake_daemon: FakeDaemon) -> None:
    refuse = _aborting_with(
        code_pb2.RESOURCE_EXHAUSTED,
        "Pool 'basic' is exhausted.",
        *_refusal_details("POOL_EXHAUSTED"),
    )

    async with fake_daemon(Reserve=refuse) as address:
        with Client(address) as client:
            reserve = functools.partial(client.reserve, "default", "team-a", tokens=1)
            with pytest.raises(RefusedError, match=r"exhausted") as caught:
                # The fake daemon runs on this event loop: call from a thread.
                await anyio.to_thread.run_sync(reserve)

    assert caught.value.retry_after_s == 2.5
    assert isinstance(caught.value, TokenPoolError)
