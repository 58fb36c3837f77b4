"""Benchmark: Reserve+Settle pairs beside the gRPC limit and Redis, one invocation.

Every server runs in a process of its own (so its CPU time is read from
/proc), the load generator in this one, with uvloop when installed:

- echo: a bare grpc.aio unary echo built as the daemon's server is (uvloop,
  generic handlers, protobuf messages of a Reserve's size); a "pair" is two
  echo calls. This is the limit of a unary Reserve+Settle.
- daemon: `tokenpool serve` with its durable ledger (WAL, group commit),
  telemetry off; a pair is a unary Reserve then Settle.
- daemon+telemetry: the same with OTLP tracing (to a receiver in a process
  of its own) and the Prometheus endpoint on.
- redis: reserve and settle as two Lua scripts (EVALSHA) on a redis-server
  this benchmark starts on a free loopback port (no persistence), from
  Python's asyncio Redis client.
- session: the daemon (telemetry off) through `AsyncClient(session=True)`,
  every pair's two operations on the one shared Session stream.

Each runs at every concurrency (calls in flight) for --seconds after a
warm-up. Printed per run: pairs per second, pair latency p50/p95/p99 and
server CPU per pair; then the ratios (daemon time per pair over two echo
calls; session pairs per second over Redis). Usage:

    make bench-env   # once: the asyncio Redis client; plus Debian's redis-server
    .venv/bin/python bench/pairs.py [--seconds 5] [--concurrency 1 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenpool_client import AsyncClient
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

SCENARIOS = ("echo", "daemon", "daemon+telemetry", "redis", "session")

# Seconds of load before timing starts: connections, first commits, caches.
WARMUP_S = 1.0

# The echo service's one method, registered like the daemon's.
ECHO_SERVICE = "tokenpool.bench.Echo"

_RESERVE_LUA = """
local level = tonumber(redis.call('GET', KEYS[1]) or ARGV[3])
local tokens = tonumber(ARGV[1])
if level < tokens then return 0 end
redis.call('SET', KEYS[1], level - tokens)
redis.call('HSET', KEYS[2], 'tokens', tokens, 'tenant', ARGV[2])
return 1
"""

_SETTLE_LUA = """
local held = tonumber(redis.call('HGET', KEYS[2], 'tokens'))
if not held then return -1 end
local refund = held - tonumber(ARGV[1])
redis.call('INCRBY', KEYS[1], refund)
redis.call('DEL', KEYS[2])
return refund
"""

_CONFIG = """[server]
address = "127.0.0.1:{port}"

[ledger]
path = "{db}"

[[budgets]]
name = "b"
capacity_tokens = 1000000000000
"""


@dataclass
class Figures:
    """One scenario at one concurrency."""

    scenario: str
    concurrency: int
    pairs_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_cpu_ms_per_pair: float
    pairs: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _serve_echo(port: int) -> None:
    """The echo server's own process."""
    _install_uvloop()

    async def echo(request: pb.ReserveRequest, context: Any) -> pb.ReserveResponse:
        return _ECHO_ANSWER

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(
            echo,
            request_deserializer=pb.ReserveRequest.FromString,
            response_serializer=pb.ReserveResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ECHO_SERVICE, {"Call": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


# What the echo answers: the size of a real grant.
_ECHO_ANSWER = pb.ReserveResponse(
    reservation_id=uuid.uuid4().hex,
    granted_tokens=100,
    pool="basic",
    budget="b",
    sources=[pb.PoolDraw(pool="basic", tokens=100)],
    complexity_score=3,
    multiplier=1.0,
)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _wait_grpc(address: str, process: subprocess.Popen[bytes], health: bool) -> None:
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if health:
                    stub = health_pb2_grpc.HealthStub(channel)
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                else:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except (grpc.RpcError, grpc.FutureTimeoutError):
                time.sleep(0.05)
    raise TimeoutError(f"server at {address} did not start")


@contextmanager
def _process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ)
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def _receiver() -> Iterator[int]:
    """The OTLP trace receiver of telemetry_overhead.py, in its own process."""
    script = Path(__file__).with_name("telemetry_overhead.py")
    child = subprocess.Popen(
        [sys.executable, str(script), "--serve-receiver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        yield int(child.stdout.readline())
    finally:
        child.stdin.close()
        child.stdout.readline()
        child.wait(10)


@contextmanager
def _daemon(
    folder: Path, name: str, otlp_port: int | None
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    config = folder / f"{name}.toml"
    db = folder / f"{name}-{port}.db"
    config.write_text(_CONFIG.format(port=port, db=db), encoding="utf-8")
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    args = [sys.executable, "-m", "tokenpool", "serve", "--config", str(config)]
    if otlp_port is not None:
        env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
        )
        args += ["--metrics-address", f"127.0.0.1:{_free_port()}"]
    address = f"127.0.0.1:{port}"
    with _process(args, folder / f"{name}.log", env) as process:
        _wait_grpc(address, process, health=True)
        yield address, process.pid


async def _drive(
    pair: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> tuple[list[float], float]:
    """Runs pairs from `concurrency` tasks; returns timed latencies and span."""
    latencies: list[float] = []
    timing = False
    stop_at = time.perf_counter() + WARMUP_S + seconds

    async def worker() -> None:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            await pair()
            if timing:
                latencies.append(time.perf_counter() - started)

    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(WARMUP_S)
    timing = True
    begun = time.perf_counter()
    await asyncio.gather(*workers)
    return latencies, time.perf_counter() - begun


def _figures(
    scenario: str,
    concurrency: int,
    latencies: list[float],
    span_s: float,
    cpu_s: float,
) -> Figures:
    ordered = sorted(latencies)
    count = max(1, len(ordered))
    return Figures(
        scenario=scenario,
        concurrency=concurrency,
        pairs_per_s=len(ordered) / span_s,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p95_ms=_percentile(ordered, 0.95) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        server_cpu_ms_per_pair=cpu_s / count * 1000,
        pairs=len(ordered),
    )


async def _measure(
    scenario: str,
    pid: int,
    pair: Callable[[], Awaitable[None]],
    concurrency: int,
    seconds: float,
) -> Figures:
    # CPU is read across the warm-up too, then scaled to the timed pairs'
    # share of the whole run; the warm-up's pairs are counted alike.
    before = _cpu_s(pid)
    started = time.perf_counter()
    latencies, span_s = await _drive(pair, concurrency, seconds)
    whole_s = time.perf_counter() - started
    cpu_s = (_cpu_s(pid) - before) * (span_s / whole_s)
    return _figures(scenario, concurrency, latencies, span_s, cpu_s)


async def _echo_runs(folder: Path, levels: list[int], seconds: float) -> list[Figures]:
    port = _free_port()
    args = [sys.executable, __file__, "--serve-echo", str(port)]
    address = f"127.0.0.1:{port}"
    with _process(args, folder / "echo.log") as process:
        _wait_grpc(address, process, health=False)
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(
                f"/{ECHO_SERVICE}/Call",
                request_serializer=pb.ReserveRequest.SerializeToString,
                response_deserializer=pb.ReserveResponse.FromString,
            )
            request = pb.ReserveRequest(budget="b", tenant="t", tokens=100)

            async def pair() -> None:
                await call(request, timeout=10)
                await call(request, timeout=10)

            return [
                await _measure("echo", process.pid, pair, level, seconds)
                for level in levels
            ]


async def _daemon_runs(
    scenario: str, address: str, pid: int, levels: list[int], seconds: float
) -> list[Figures]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TokenPoolStub(channel)  # type: ignore[no-untyped-call]
        request = pb.ReserveRequest(budget="b", tenant="t", tokens=100)

        async def pair() -> None:
            granted = await stub.Reserve(request, timeout=10)
            await stub.Settle(
                pb.SettleRequest(
                    reservation_id=granted.reservation_id, tenant="t", output_tokens=50
                ),
                timeout=10,
            )

        return [await _measure(scenario, pid, pair, level, seconds) for level in levels]


async def _session_runs(
    address: str, pid: int, levels: list[int], seconds: float
) -> list[Figures]:
    async with AsyncClient(address, session=True, timeout_s=10) as client:

        async def pair() -> None:
            granted = await client.reserve("b", "t", tokens=100)
            await client.settle(granted.reservation_id, "t", output_tokens=50)

        return [
            await _measure("session", pid, pair, level, seconds) for level in levels
        ]


def _redis_missing() -> str | None:
    """Why the Redis scenario cannot run, or None when it can."""
    if shutil.which("redis-server") is None:
        return (
            "redis-server not found: scenario (c) is skipped. Install Debian's "
            "redis-server (`apt-get install -y redis-server`) to run it."
        )
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return (
            "the Python redis client is not installed: scenario (c) is skipped. "
            "Install it with `make bench-env`."
        )
    return None


async def _redis_runs(folder: Path, levels: list[int], seconds: float) -> list[Figures]:
    import redis.asyncio as aioredis

    port = _free_port()
    args = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    with _process(args, folder / "redis.log") as process:
        client = aioredis.Redis(host="127.0.0.1", port=port, max_connections=256)
        deadline = time.monotonic() + 10
        while True:
            try:
                await client.ping()
                break
            except aioredis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        reserve = client.register_script(_RESERVE_LUA)
        settle = client.register_script(_SETTLE_LUA)
        pool_key = "pool:b:basic"

        async def pair() -> None:
            reservation = f"r:{uuid.uuid4().hex}"
            granted = await reserve(
                keys=[pool_key, reservation], args=[100, "t", 10**12]
            )
            if granted != 1:
                raise RuntimeError("the Redis pool ran out")
            await settle(keys=[pool_key, reservation], args=[50])

        try:
            return [
                await _measure("redis", process.pid, pair, level, seconds)
                for level in levels
            ]
        finally:
            await client.aclose()


async def run(levels: list[int], seconds: float) -> list[Figures]:
    """Every scenario at every concurrency, in one invocation."""
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="tokenpool-bench-") as tmp:
        folder = Path(tmp)
        _say("(a) echo")
        results += await _echo_runs(folder, levels, seconds)
        _say("(b) daemon, telemetry off")
        with _daemon(folder, "daemon", None) as (address, pid):
            results += await _daemon_runs("daemon", address, pid, levels, seconds)
        _say("(b) daemon, tracing and metrics on")
        with (
            _receiver() as otlp_port,
            _daemon(folder, "telemetry", otlp_port) as (address, pid),
        ):
            results += await _daemon_runs(
                "daemon+telemetry", address, pid, levels, seconds
            )
        missing = _redis_missing()
        if missing is None:
            _say("(c) redis")
            results += await _redis_runs(folder, levels, seconds)
        else:
            print(f"NOTE: {missing}", file=sys.stderr, flush=True)
        _say("(d) session")
        with _daemon(folder, "session", None) as (address, pid):
            results += await _session_runs(address, pid, levels, seconds)
    return results


def _say(text: str) -> None:
    print(f"running {text} ...", file=sys.stderr, flush=True)


def _table(results: list[Figures]) -> str:
    lines = [
        "| scenario | in flight | pairs/s | p50 ms | p95 ms | p99 ms "
        "| server CPU ms/pair |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in results:
        lines.append(
            f"| {f.scenario} | {f.concurrency} | {f.pairs_per_s:,.0f} "
            f"| {f.p50_ms:.2f} | {f.p95_ms:.2f} | {f.p99_ms:.2f} "
            f"| {f.server_cpu_ms_per_pair:.3f} |"
        )
    return "\n".join(lines)


def _ratios(results: list[Figures], levels: list[int]) -> str:
    by = {(f.scenario, f.concurrency): f for f in results}
    lines = [
        "| in flight | daemon pair / 2 echo calls (time) | with telemetry "
        "| server CPU daemon / echo | session / redis (pairs/s) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in levels:
        echo = by[("echo", level)]
        daemon = by[("daemon", level)]
        traced = by[("daemon+telemetry", level)]
        redis = by.get(("redis", level))
        session = by[("session", level)]
        vs_redis = (
            "redis not run"
            if redis is None
            else f"{session.pairs_per_s / redis.pairs_per_s:.2f}"
        )
        lines.append(
            f"| {level} | {echo.pairs_per_s / daemon.pairs_per_s:.2f} "
            f"| {echo.pairs_per_s / traced.pairs_per_s:.2f} "
            f"| {daemon.server_cpu_ms_per_pair / echo.server_cpu_ms_per_pair:.2f} "
            f"| {vs_redis} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parses the options, runs everything, prints the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_echo is not None:
        _serve_echo(options.serve_echo)
        return

    _install_uvloop()
    results = asyncio.run(run(options.concurrency, options.seconds))
    print(_table(results))
    print()
    print(_ratios(results, options.concurrency))
    if options.json is not None:
        options.json.write_text(
            json.dumps([asdict(f) for f in results], indent=2), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
