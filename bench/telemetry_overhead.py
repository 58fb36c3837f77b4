"""Benchmark: RPC latency with the trace collector up, dead and black-holed.

Starts `tokenpool serve` as a child process once per scenario and times
Reserve/Settle pairs made one after the other through the blocking client:

- off: telemetry not configured (the reference);
- up: spans exported over OTLP gRPC to a real receiver, which runs in a
  child process of its own (so its work does not slow the measuring client);
- dead: spans exported to a loopback port nobody listens on;
- black-holed: spans exported to a port that accepts and never answers.

Every telemetry scenario also serves the Prometheus endpoint. Scenarios
run in rounds, interleaved, and the median of the rounds' p99 is reported,
with its ratio to "up". Usage:

    .venv/bin/python bench/telemetry_overhead.py [--pairs 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from tokenpool_client import Client

SCENARIOS = ("off", "up", "dead", "black-holed")

# Pairs made before timing starts: connection set-up, first ledger writes.
WARMUP_PAIRS = 200


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        count = sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        with self._lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_receiver() -> None:
    """The receiver's own process: prints its port, then spans received at EOF."""
    receiver = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(None)
    print(receiver.spans, flush=True)


@contextmanager
def _collectors() -> Iterator[tuple[dict[str, int], list[int]]]:
    """A real receiver, a dead port and a black hole, by scenario name.

    The receiver runs in a process of its own, so that its work does not
    slow the client that measures.
    """
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-receiver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    up = int(child.stdout.readline())
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    received: list[int] = []
    try:
        yield (
            {"up": up, "dead": _free_port(), "black-holed": hole.getsockname()[1]},
            received,
        )
    finally:
        hole.close()
        child.stdin.close()
        received.append(int(child.stdout.readline() or 0))
        child.wait(10)


def _wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"daemon exited with {process.returncode}")
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                return
            except grpc.RpcError:
                time.sleep(0.05)
    raise TimeoutError(f"daemon at {address} did not start")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_scenario(
    scenario: str, collector_port: int | None, pairs: int, folder: Path
) -> dict[str, float]:
    """Times `pairs` Reserve/Settle pairs against a fresh daemon."""
    port = _free_port()
    config = folder / f"{scenario}.toml"
    config.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\n\n'
        f'[ledger]\npath = "{folder / (scenario + str(port) + ".db")}"\n\n'
        '[[budgets]]\nname = "b"\ncapacity_tokens = 1000000000\n',
        encoding="utf-8",
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    args = [sys.executable, "-m", "tokenpool", "serve", "--config", str(config)]
    if collector_port is not None:
        env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_port}",
            # Export often, so that the exporter works while we measure.
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        args += ["--metrics-address", f"127.0.0.1:{_free_port()}"]
    log = (folder / f"{scenario}.log").open("ab")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    address = f"127.0.0.1:{port}"
    try:
        _wait_serving(address, process)
        latencies: list[float] = []
        with Client(address, timeout_s=10) as client:
            for index in range(WARMUP_PAIRS + pairs):
                started = time.perf_counter()
                granted = client.reserve("b", "t", tokens=100)
                reserved = time.perf_counter()
                client.settle(granted.reservation_id, "t", output_tokens=50)
                settled = time.perf_counter()
                if index >= WARMUP_PAIRS:
                    latencies += [reserved - started, settled - reserved]
        stop_started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        stop_s = time.monotonic() - stop_started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    return {
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "stop_s": stop_s,
    }


def main() -> None:
    """Runs every scenario in interleaved rounds and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_receiver:
        _serve_receiver()
        return

    results: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}
    with _collectors() as (ports, received), tempfile.TemporaryDirectory() as tmp:
        for round_index in range(options.rounds):
            for scenario in SCENARIOS:
                figures = run_scenario(
                    scenario, ports.get(scenario), options.pairs, Path(tmp)
                )
                results[scenario].append(figures)
                print(
                    f"round {round_index + 1} {scenario:>11}: "
                    f"p50 {figures['p50_ms']:.3f} ms, p99 {figures['p99_ms']:.3f} ms, "
                    f"stopped in {figures['stop_s']:.2f} s",
                    flush=True,
                )

    summary = {
        name: {
            key: statistics.median(run[key] for run in runs)
            for key in ("p50_ms", "p99_ms", "stop_s")
        }
        for name, runs in results.items()
    }
    up = summary["up"]["p99_ms"]
    print(
        f"\nmedian of {options.rounds} rounds, {options.pairs} pairs each "
        f"({2 * options.pairs} RPCs); spans received while up: {received[0]}"
    )
    print(
        f"{'scenario':>11}  {'p50 ms':>8}  {'p99 ms':>8}  "
        f"{'p99 / up':>8}  {'stop s':>6}"
    )
    for name, figures in summary.items():
        print(
            f"{name:>11}  {figures['p50_ms']:8.3f}  {figures['p99_ms']:8.3f}  "
            f"{figures['p99_ms'] / up:8.2f}  {figures['stop_s']:6.2f}"
        )
    if options.json:
        options.json.write_text(
            json.dumps({"summary": summary, "runs": results}, indent=2)
        )


if __name__ == "__main__":
    main()
