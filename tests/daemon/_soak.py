"""The soak: client processes load one daemon, then ledger, status and clients agree.

Several client processes, each with a few `_load.Client` threads, send
Reserve (waiting up to 300 ms), Settle, Release and Extend for a fixed time,
some attempts with a 5 ms deadline so that they time out and are retried
with the same idempotency key and figures. At the end the parent compares,
exactly: the reservations and charges the clients were told of, the ledger
(read directly), the daemon's status, and its Report. Run on demand:

    make soak        # 4 processes x 4 threads, 60 s
    .venv/bin/python -m tests.daemon._soak --clients 4 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._audit import Acks, Budget, audit, channel
from tests.daemon._load import Client, trace_rows
from tests.daemon._process import DaemonProcess, free_port, write_config

# A budget small enough for contention: waits, refusals and a busy queue.
BUDGET = Budget(name="b", capacity=3_000_000, window_seconds=60)

# Threads per client process.
_THREADS = 4


def _client_main(args: argparse.Namespace) -> None:
    """One client process: threads for `seconds`, then its answers as JSON."""
    rows = trace_rows(4000)
    gate, stop = threading.Event(), threading.Event()
    gate.set()
    threads = [
        Client(
            args.index * _THREADS + j,
            args.address,
            rows[j::_THREADS],
            gate,
            stop,
            seed=args.index,
            budget=BUDGET.name,
            max_wait_ms=300,
            short_deadline_rate=0.05,
            leave_open_rate=0.02,
        )
        for j in range(_THREADS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(120)

    acks = Acks()
    codes: Counter[str] = Counter()
    for thread in threads:
        acks.merge(thread.acks)
        codes.update(thread.codes)
    result = {
        "reserved": acks.reserved,
        "settled": acks.settled,
        "released": acks.released,
        "extended": acks.extended,
        "extend_sent": acks.extend_sent,
        "refused_keys": sorted(acks.refused_keys),
        "codes": codes,
        "unexpected": [u for thread in threads for u in thread.unexpected],
    }
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


def _read(path: Path) -> tuple[Acks, Counter[str], list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    acks = Acks(
        reserved={rid: tuple(v) for rid, v in data["reserved"].items()},
        settled=data["settled"],
        released=data["released"],
        extended=data["extended"],
        extend_sent=data["extend_sent"],
        refused_keys={tuple(k) for k in data["refused_keys"]},
    )
    return acks, Counter(data["codes"]), data["unexpected"]


def soak(directory: Path, *, clients: int, seconds: float) -> tuple[bool, str]:
    """Runs the soak in `directory`; returns whether all agreed, and the figures."""
    started = time.monotonic()
    port = free_port()
    config = write_config(
        directory,
        port,
        f'[[budgets]]\nname = "{BUDGET.name}"\ncapacity_tokens = {BUDGET.capacity}\n'
        f"window_seconds = {BUDGET.window_seconds}\nmax_wait_ms = 1000\n"
        "[budgets.shares]\nbasic = 100\npriority = 0\nburst = 0\n",
    )
    daemon = DaemonProcess(config, port, directory / "daemon.log")
    outs = [directory / f"client-{i}.json" for i in range(clients)]
    command = [sys.executable, "-m", "tests.daemon._soak", "--client"]
    command += ["--address", daemon.address, "--seconds", str(seconds)]
    processes = [
        subprocess.Popen([*command, "--index", str(i), "--out", str(out)])
        for i, out in enumerate(outs)
    ]
    failed = [p.wait(seconds + 300) for p in processes]
    load_s = time.monotonic() - started

    acks, codes, problems = Acks(), Counter[str](), []
    for out in outs:
        one, one_codes, unexpected = _read(out)
        acks.merge(one)
        codes.update(one_codes)
        problems += unexpected
    problems += [f"client process exited {code}" for code in failed if code]
    with channel(daemon.address) as control:
        stub = pb_grpc.TokenPoolStub(control)
        admin = pb_grpc.AdminStub(control)
        report = audit(
            directory / "ledger.db", acks, BUDGET, stub=stub, admin=admin,
            final=True, slack_tokens=None,
        )  # fmt: skip
        problems += report.mismatches
        problems += _exact_totals(directory / "ledger.db", acks, stub, admin)
    with sqlite3.connect(directory / "ledger.db") as db:
        undone = db.execute(
            "SELECT COUNT(*) FROM reservations WHERE state = 'undone'"
        ).fetchone()[0]
    if daemon.terminate() != 0:
        problems.append("the daemon did not exit 0 on SIGTERM")

    attempts = sum(codes.values())
    errors = {code: n for code, n in sorted(codes.items()) if not code.endswith(" OK")}
    figures = (
        f"soak: {clients} processes x {_THREADS} threads, {load_s:.0f} s; "
        f"operations acknowledged {acks.count()} (attempts {attempts}, "
        f"{attempts / load_s:.0f}/s); ledger entries {report.entries}, "
        f"reservations {report.reservations} ({undone} undone: their callers "
        f"gave up); errors by code {errors}; "
        f"mismatches: {len(problems)}"
    )
    return not problems, figures + "".join(f"\n  mismatch: {p}" for p in problems[:20])


def _exact_totals(
    db_path: Path, acks: Acks, stub: pb_grpc.TokenPoolStub, admin: pb_grpc.AdminStub
) -> list[str]:
    """Clients, ledger, status and Report count the same, to the token."""
    problems = []
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT reservation_id, state, hold, charged FROM reservations "
            "WHERE state != 'undone'"
        ).fetchall()
    live = {rid for rid, *_ in rows}
    if live != set(acks.reserved):
        problems.append(
            f"{len(live)} live reservations in the ledger, {len(acks.reserved)} "
            f"acknowledged ({len(live ^ set(acks.reserved))} differ)"
        )
    charged = sum(c for _, state, _, c in rows if state != "open")
    told = sum(acks.settled.values()) + sum(acks.released.values())
    if charged != told:
        problems.append(f"ledger charged {charged}, clients were told {told}")
    totals = admin.Report(pb.ReportRequest(budget=BUDGET.name), timeout=30)
    reported = sum(row.tokens_charged for row in totals.rows)
    if reported != told:
        problems.append(f"Report says {reported} charged, clients were told {told}")
    ended = set(acks.settled) | set(acks.released)
    still_open = [rid for rid in acks.reserved if rid not in ended]
    holds = sum(acks.extended.get(rid, acks.reserved[rid][2]) for rid in still_open)
    status = stub.GetBudget(pb.GetBudgetRequest(budget=BUDGET.name), timeout=10)
    shown = (status.open_reservations, status.pools[0].in_flight_tokens)
    if shown != (len(still_open), holds):
        problems.append(
            f"status shows {shown[0]} open holding {shown[1]}; clients hold "
            f"{len(still_open)} with {holds}"
        )
    return problems


def main() -> None:
    """The soak's command line (and its client processes')."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--address", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        _client_main(args)
        return
    with TemporaryDirectory(prefix="tokenpool-soak-") as directory:
        agreed, figures = soak(
            Path(directory), clients=args.clients, seconds=args.seconds
        )
    print(figures)
    sys.exit(0 if agreed else 1)


if __name__ == "__main__":
    main()
