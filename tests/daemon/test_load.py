"""The crash test's load clients and joins: daemon faults are never retried away."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._crash import joined
from tests.daemon._load import Client


class _Faulty(pb_grpc.TokenPoolServicer):
    """Answers every Reserve with one code, and stops the client after it."""

    def __init__(self, code: grpc.StatusCode, stop: threading.Event) -> None:
        self.code = code
        self.stop = stop
        self.calls = 0

    def Reserve(self, request: pb.ReserveRequest, context: Any) -> pb.ReserveResponse:
        self.calls += 1
        if self.calls >= 3:
            self.stop.set()
        context.abort(self.code, "boom inside the daemon")
        raise AssertionError("abort returned")  # pragma: no cover


@pytest.fixture
def faulty() -> Iterator[tuple[str, _Faulty, threading.Event]]:
    """A server whose every Reserve fails (INTERNAL unless a test says)."""
    stop = threading.Event()
    servicer = _Faulty(grpc.StatusCode.INTERNAL, stop)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_TokenPoolServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer, stop
    finally:
        server.stop(None)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
def test_daemon_faults_are_counted_as_unexpected(
    faulty: tuple[str, _Faulty, threading.Event], code: grpc.StatusCode
) -> None:
    address, servicer, stop = faulty
    servicer.code = code
    gate = threading.Event()
    gate.set()
    client = Client(0, address, [(10, 10)], gate, stop, seed=1)

    client.start()
    client.join(30)

    assert not client.is_alive()
    # Each fault is recorded once, and not retried as if it were transient:
    # three calls, three faults, then the client stopped.
    assert client.retries == 0
    assert servicer.calls == 3
    assert (
        client.unexpected
        == [f"Reserve answered {code.name}: boom inside the daemon"] * 3
    )


def test_a_worker_alive_after_its_join_is_a_mismatch() -> None:
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="client-stuck", daemon=True)
    done = threading.Thread(target=lambda: None, name="client-done")
    stuck.start()
    done.start()

    try:
        mismatches = joined([stuck, done], timeout_s=0.1)
    finally:
        release.set()
        stuck.join(5)

    assert mismatches == ["client-stuck still running 0.1 s after it was told to stop"]
