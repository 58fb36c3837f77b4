"""SIGTERM during load: calls finish or fail cleanly, nothing is left held."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._audit import Acks, Budget, audit
from tests.daemon._process import DaemonProcess, WriteLock, free_port, write_config

BUDGETS = """
[[budgets]]
name = "b"
capacity_tokens = 100000000
window_seconds = 86400
[budgets.shares]
basic = 100
priority = 0
burst = 0

[[budgets]]
name = "small"
capacity_tokens = 1000
"""

# Codes a call cut by the shutdown may end with; anything else is unclean.
CLEAN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


class Caller(threading.Thread):
    """Reserves and settles on "b" until the daemon goes away."""

    def __init__(self, index: int, address: str) -> None:
        super().__init__(daemon=True)
        self.tenant = f"t{index}"
        self.address = address
        self.acks = Acks()
        self.failures: list[grpc.StatusCode] = []

    def run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.TokenPoolStub(channel)
            step = 0
            while not self.failures:
                step += 1
                key = f"{self.tenant}-{step}"
                try:
                    held = stub.Reserve(
                        pb.ReserveRequest(
                            budget="b",
                            tenant=self.tenant,
                            tokens=500,
                            idempotency_key=key,
                        ),
                        timeout=10,
                    )
                    self.acks.reserved[held.reservation_id] = (self.tenant, key, 500)
                    settled = stub.Settle(
                        pb.SettleRequest(
                            reservation_id=held.reservation_id,
                            tenant=self.tenant,
                            output_tokens=300,
                        ),
                        timeout=10,
                    )
                    self.acks.settled[held.reservation_id] = settled.charged_tokens
                except grpc.RpcError as exc:
                    self.failures.append(exc.code())


def _reserve_code(
    stub: pb_grpc.TokenPoolStub,
    request: pb.ReserveRequest,
    timeout: float,
    codes: list[grpc.StatusCode],
) -> None:
    try:
        stub.Reserve(request, timeout=timeout)
        codes.append(grpc.StatusCode.OK)
    except grpc.RpcError as exc:
        codes.append(exc.code())


def test_sigterm_under_load_finishes_cleanly_and_leaves_nothing_held(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(write_config(tmp_path, port, BUDGETS), port, log)
    db_path = tmp_path / "ledger.db"
    waiters: list[grpc.StatusCode] = []
    gave_up: list[grpc.StatusCode] = []
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.TokenPoolStub(channel)
        stub.Reserve(pb.ReserveRequest(budget="small", tenant="w", tokens=650))
        callers = [Caller(i, daemon.address) for i in range(4)]
        for caller in callers:
            caller.start()
        # Reserves waiting for tokens in the full basic pool of "small".
        waiting = [
            threading.Thread(
                target=_reserve_code,
                args=(
                    stub,
                    pb.ReserveRequest(
                        budget="small", tenant=f"w{i}", tokens=600, max_wait_ms=30_000
                    ),
                    40,
                    waiters,
                ),
            )
            for i in range(3)
        ]
        for thread in waiting:
            thread.start()
        time.sleep(1.0)

        # Commits now wait on the lock: callers with a short deadline give
        # up after their grant was decided, before it could be answered.
        lock = WriteLock(db_path)
        try:
            quitters = [
                threading.Thread(
                    target=_reserve_code,
                    args=(
                        stub,
                        pb.ReserveRequest(budget="b", tenant=f"q{i}", tokens=1000),
                        0.3,
                        gave_up,
                    ),
                )
                for i in range(5)
            ]
            for thread in quitters:
                thread.start()
            for thread in quitters:
                thread.join(10)
            stopping = time.monotonic()
            daemon.process.send_signal(signal.SIGTERM)
            time.sleep(0.7)
        finally:
            lock.release()
        code = daemon.wait(20)
        stopped_s = time.monotonic() - stopping
        for thread in (*callers, *waiting):
            thread.join(20)

    assert code == 0
    # Within the 5 s grace, with the ledger flushed.
    assert stopped_s < 5 + 3
    text = log.read_text(encoding="utf-8")
    assert "shutdown started grace_seconds=5.0" in text
    assert "ledger closed" in text
    assert waiters == [grpc.StatusCode.UNAVAILABLE] * 3
    assert gave_up == [grpc.StatusCode.DEADLINE_EXCEEDED] * 5
    for caller in callers:
        assert set(caller.failures) <= CLEAN, caller.failures
    acks = Acks()
    for caller in callers:
        acks.merge(caller.acks)
    assert acks.count() > 20
    report = audit(db_path, acks, Budget("b", 100_000_000, 86_400), slack_tokens=None)
    assert report.mismatches == []

    with sqlite3.connect(db_path) as db:
        states = dict(
            db.execute(
                "SELECT state, COUNT(*) FROM reservations WHERE tenant LIKE 'q%' "
                "GROUP BY state"
            ).fetchall()
        )
        open_ids = {
            row[0]
            for row in db.execute(
                "SELECT reservation_id FROM reservations "
                "WHERE state = 'open' AND budget = 'b'"
            )
        }
    # The quitters' grants were undone, not left held.
    assert states == {"undone": 5}
    # Every hold still open belongs to a caller that was told of it.
    assert open_ids <= set(acks.reserved) - set(acks.settled)
