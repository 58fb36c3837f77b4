"""A ledger that cannot be written: new work refused UNAVAILABLE, then resumed.

The daemon runs in its own process, whose file-size limit is dropped to 0
(`prlimit`, RLIMIT_FSIZE): every write it makes to a file fails, as on a
full or read-only disk, while reads still work. Its own log lines of that
time are lost the same way; the test reads what the RPCs and the database say.
"""

from __future__ import annotations

import resource
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._process import DaemonProcess, free_port, write_config

BUDGET = """
[[budgets]]
name = "b"
capacity_tokens = 1000000
[budgets.shares]
basic = 100
priority = 0
burst = 0
"""


@contextmanager
def _unwritable(pid: int) -> Iterator[None]:
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)


def _ledger(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(path) as db:
        entries = db.execute("SELECT id, kind, reservation_id FROM entries").fetchall()
        held = db.execute(
            "SELECT reservation_id, state, hold FROM reservations ORDER BY 1"
        ).fetchall()
    return entries, held


def _held(stub: pb_grpc.TokenPoolStub) -> tuple[int, int]:
    """Open reservations and tokens in flight (levels refill, so they are left out)."""
    status = stub.GetBudget(pb.GetBudgetRequest(budget="b"), timeout=5)
    return status.open_reservations, status.pools[0].in_flight_tokens


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The code and message a call ended with; OK when it succeeded."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_unwritable_ledger_refuses_new_work_then_resumes(tmp_path: Path) -> None:
    port = free_port()
    daemon = DaemonProcess(write_config(tmp_path, port, BUDGET), port, tmp_path / "log")
    db_path = tmp_path / "ledger.db"
    try:
        with grpc.insecure_channel(daemon.address) as channel:
            stub = pb_grpc.TokenPoolStub(channel)
            held = stub.Reserve(pb.ReserveRequest(budget="b", tenant="t", tokens=500))
            before = _ledger(db_path)
            status_before = _held(stub)

            with _unwritable(daemon.process.pid):
                answers = [
                    _code(
                        partial(
                            stub.Reserve,
                            pb.ReserveRequest(budget="b", tenant=f"u{i}", tokens=100),
                            timeout=10,
                        )
                    )
                    for i in range(10)
                ]
                answers.append(
                    _code(
                        lambda: stub.Settle(
                            pb.SettleRequest(
                                reservation_id=held.reservation_id,
                                tenant="t",
                                output_tokens=50,
                            ),
                            timeout=10,
                        )
                    )
                )
                during = _ledger(db_path)
                # Memory is rebuilt from the database once the failure is seen.
                deadline = time.monotonic() + 10
                while _held(stub) != status_before and time.monotonic() < deadline:
                    time.sleep(0.05)
                status_during = _held(stub)

            assert {code for code, _ in answers} == {grpc.StatusCode.UNAVAILABLE}
            for _, message in answers:
                assert "ledger" in message.lower()
                assert "retry" in message.lower()
            # Nothing was granted or settled without an entry.
            assert during == before
            assert status_during == status_before == (1, 500)

            # Writable again: service resumes by itself.
            deadline = time.monotonic() + 15
            resumed = _code(
                lambda: stub.Reserve(
                    pb.ReserveRequest(budget="b", tenant="v", tokens=100), timeout=5
                )
            )
            while resumed[0] != grpc.StatusCode.OK and time.monotonic() < deadline:
                assert resumed[0] == grpc.StatusCode.UNAVAILABLE
                time.sleep(0.1)
                resumed = _code(
                    lambda: stub.Reserve(
                        pb.ReserveRequest(budget="b", tenant="v", tokens=100),
                        timeout=5,
                    )
                )
            assert resumed[0] == grpc.StatusCode.OK
            settled = stub.Settle(
                pb.SettleRequest(
                    reservation_id=held.reservation_id, tenant="t", output_tokens=50
                )
            )
            assert settled.charged_tokens == 50
            entries, _ = _ledger(db_path)
            assert [kind for _, kind, _ in entries] == ["reserve", "reserve", "settle"]
            assert _held(stub) == (1, 100)
    finally:
        assert daemon.terminate() == 0
