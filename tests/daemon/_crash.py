"""The crash test: replayed load, SIGKILL at random moments, audits after each.

Client threads replay rows of the bundled Azure trace against a daemon in
its own process: Reserve with an idempotency key, then Settle (most), Release
or Extend-then-Settle, each retried with the same key and figures until it
is answered. A killer SIGKILLs the daemon at seeded random moments, restarts
it on the same database, and before letting the clients go on audits the
ledger against everything they were told (`_audit.audit`).

Bounded in `make test` (tests/daemon/test_crash.py); longer on demand:

    .venv/bin/python -m tests.daemon._crash --kills 20 --seconds 5
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._audit import Acks, Budget, Report, audit, channel
from tests.daemon._load import Client, trace_rows
from tests.daemon._process import DaemonProcess, free_port, write_config

# One pool refilling once a day: refill stays small beside what clients spend,
# and a ballast reservation keeps the pool from ever filling up again, so the
# ledger predicts its level (see `_audit._check_level`).
BUDGET = Budget(name="b", capacity=200_000_000, window_seconds=86_400)
BALLAST_TOKENS = BUDGET.capacity // 5


def _config(directory: Path, port: int) -> Path:
    return write_config(
        directory,
        port,
        f'[[budgets]]\nname = "{BUDGET.name}"\n'
        f"capacity_tokens = {BUDGET.capacity}\n"
        f"window_seconds = {BUDGET.window_seconds}\n"
        "[budgets.shares]\nbasic = 100\npriority = 0\nburst = 0\n",
    )


@dataclass
class Figures:
    """What a run did and found."""

    seed: int
    kills: int = 0
    acknowledged: int = 0
    refused: int = 0
    retries: int = 0
    audits: int = 0
    entries_checked: int = 0
    reservations_checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """The figures on one line, as the crash test prints them."""
        return (
            f"crash test seeds {self.seed}..{self.seed + self.kills}: operations "
            "acknowledged "
            f"{self.acknowledged}, kills {self.kills}, audits {self.audits}, "
            f"entries checked {self.entries_checked}, reservations checked "
            f"{self.reservations_checked}, refused {self.refused}, retries "
            f"{self.retries}, mismatches: {len(self.mismatches)} "
            f"({self.seconds:.1f} s)"
        )


def joined(workers: Sequence[threading.Thread], *, timeout_s: float) -> list[str]:
    """Joins every worker; one still running after its timeout is a mismatch.

    A worker stuck in a call would otherwise be audited as if it had ended,
    and its last acknowledgement could arrive after the final audit.
    """
    for worker in workers:
        worker.join(timeout_s)
    return [
        f"{worker.name} still running {timeout_s:g} s after it was told to stop"
        for worker in workers
        if worker.is_alive()
    ]


def run(
    directory: Path,
    *,
    kills: int,
    seconds: float,
    clients: int,
    seed: int,
) -> Figures:
    """Runs the whole crash test in `directory`; see the module docstring."""
    started = time.monotonic()
    figures = Figures(seed)
    port = free_port()
    config = _config(directory, port)
    log = directory / "daemon.log"
    db_path = directory / "ledger.db"
    rows = trace_rows(2000)
    gate, stop = threading.Event(), threading.Event()
    daemon = DaemonProcess(config, port, log)
    address = daemon.address

    with channel(address) as control:
        stub = pb_grpc.TokenPoolStub(control)
        admin = pb_grpc.AdminStub(control)
        ballast = stub.Reserve(
            pb.ReserveRequest(
                budget=BUDGET.name,
                tenant="ballast",
                tokens=BALLAST_TOKENS,
                lease_ms=3_600_000,
            )
        )
        ballast_acks = Acks(
            reserved={ballast.reservation_id: ("ballast", "", BALLAST_TOKENS)}
        )
        workers = [
            Client(i, address, rows[i::clients], gate, stop, seed)
            for i in range(clients)
        ]
        gate.set()
        for worker in workers:
            worker.start()

        def check(final: bool) -> None:
            acks = Acks()
            acks.merge(ballast_acks)
            for worker in workers:
                acks.merge(worker.snapshot())
            slack = 2 * (figures.kills + 1) + BUDGET.capacity * int(
                time.monotonic() - started + 1
            ) // (BUDGET.window_seconds * 10_000)
            report: Report = audit(
                db_path,
                acks,
                BUDGET,
                stub=stub,
                admin=admin,
                final=final,
                slack_tokens=slack,
            )
            figures.audits += 1
            figures.entries_checked += report.entries
            figures.reservations_checked += report.reservations
            figures.mismatches += report.mismatches
            figures.acknowledged = acks.count()
            figures.refused = len(acks.refused_keys)

        for kill in range(kills):
            # Each kill's moment comes from a seed of its own.
            time.sleep(random.Random(seed + kill).uniform(0.3, seconds))
            gate.clear()
            daemon.kill()
            figures.kills += 1
            daemon = DaemonProcess(config, port, log)
            check(final=False)
            gate.set()

        time.sleep(random.Random(seed + kills).uniform(0.3, seconds))
        stop.set()
        figures.mismatches += joined(workers, timeout_s=60)
        for worker in workers:
            figures.retries += worker.retries
            figures.mismatches += worker.unexpected
        check(final=True)
    if daemon.terminate() != 0:
        figures.mismatches.append("the daemon did not exit 0 on SIGTERM")
    figures.seconds = time.monotonic() - started
    return figures


def main() -> None:
    """Runs the long form and prints its figures; exits 1 on any mismatch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="most load between kills"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with TemporaryDirectory(prefix="tokenpool-crash-") as directory:
        figures = run(
            Path(directory),
            kills=args.kills,
            seconds=args.seconds,
            clients=args.clients,
            seed=args.seed,
        )
    print(figures.line())
    for mismatch in figures.mismatches[:20]:
        print("  mismatch:", mismatch)
    sys.exit(1 if figures.mismatches else 0)


if __name__ == "__main__":
    main()
