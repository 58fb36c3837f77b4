"""A daemon killed with SIGKILL restarts with the same reservations and levels."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._process import DaemonProcess, free_port, write_config

# 60,000 tokens per minute all in basic: refill is 1,000 tokens per second.
BUDGET = """
[[budgets]]
name = "b"
capacity_tokens = 60000
[budgets.shares]
basic = 100
priority = 0
burst = 0
"""


def _basic(stub: pb_grpc.TokenPoolStub) -> pb.PoolStatus:
    status = stub.GetBudget(pb.GetBudgetRequest(budget="b"))
    return {pool.name: pool for pool in status.pools}["basic"]


def test_sigkill_keeps_reservations_and_levels(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, BUDGET)
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, port, log)
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.TokenPoolStub(channel)
        held = [
            stub.Reserve(
                pb.ReserveRequest(
                    budget="b", tenant=f"t{i}", tokens=10_000, lease_ms=600_000
                )
            )
            for i in range(4)
        ]
        stub.Settle(
            pb.SettleRequest(
                reservation_id=held[3].reservation_id, tenant="t3", output_tokens=9000
            )
        )
        read_at = time.monotonic()
        before = _basic(stub)
        daemon.kill()

    assert before.in_flight_tokens == 30_000
    assert 21_000 <= before.available_tokens < 22_000
    daemon = DaemonProcess(config, port, log)
    try:
        with grpc.insecure_channel(daemon.address) as channel:
            stub = pb_grpc.TokenPoolStub(channel)
            admin = pb_grpc.AdminStub(channel)
            after = _basic(stub)
            elapsed = time.monotonic() - read_at
            listed = admin.ListReservations(pb.ListReservationsRequest(budget="b"))

            assert {r.reservation_id for r in listed.reservations} == {
                r.reservation_id for r in held[:3]
            }
            assert after.in_flight_tokens == 30_000
            # Same level, plus refill for the time it was down (1,000 per second).
            level = before.available_tokens
            assert level <= after.available_tokens <= level + 1000 * elapsed + 2
            settled = stub.Settle(
                pb.SettleRequest(
                    reservation_id=held[0].reservation_id,
                    tenant="t0",
                    output_tokens=4000,
                )
            )
            assert (settled.charged_tokens, settled.refunded_tokens) == (4000, 6000)
            lease_before = held[1].lease_expires_at.ToNanoseconds()
            info = {r.reservation_id: r for r in listed.reservations}
            assert info[held[1].reservation_id].lease_expires_at.ToNanoseconds() == (
                lease_before
            )
            repeat = stub.Settle(
                pb.SettleRequest(
                    reservation_id=held[3].reservation_id,
                    tenant="t3",
                    output_tokens=9000,
                )
            )
            assert repeat.charged_tokens == 9000
    finally:
        assert daemon.terminate() == 0
