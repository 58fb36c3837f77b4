"""A collector that is down or never answers slows nothing and stops nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tokenpool_client import Client

from tests.daemon._process import DaemonProcess, free_port, write_config
from tests.telemetry._collector import black_hole, dead_port

_BUDGET = """
[[budgets]]
name = "b"
capacity_tokens = 10000000
"""

# Spans the daemon may queue: small, so that the test sees drops quickly.
_QUEUE = 64

# The daemon must be gone this soon after SIGTERM (the figure).
_STOP_WITHIN_S = 5.0

# Telemetry's own shutdown bound in the test, and what its stop may take, as
# the daemon's log times it: traces and metrics stopped one after the other
# would take twice the bound; side by side, the bound and a busy machine's
# lag. (Interpreter exit after it varies too much on a shared machine.)
_TELEMETRY_STOP_S = 2.0
_TELEMETRY_STOPPED_WITHIN_S = 1.5 * _TELEMETRY_STOP_S


@contextmanager
def _collector(kind: str) -> Iterator[int]:
    if kind == "dead":
        yield dead_port()
    else:
        with black_hole() as port:
            yield port


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dead", "black-holed"])
def test_pairs_complete_and_daemon_stops_in_time(tmp_path: Path, kind: str) -> None:
    port, metrics_port = free_port(), free_port()
    with _collector(kind) as collector_port:
        telemetry = (
            "[telemetry]\n"
            'traces_exporter = "otlp"\n'
            'metrics_exporter = "otlp"\n'
            f"shutdown_timeout_seconds = {_TELEMETRY_STOP_S}\n"
            f'otlp_endpoint = "http://127.0.0.1:{collector_port}"\n'
            f"max_queue_size = {_QUEUE}\n"
            "schedule_delay_ms = 100\n"
        )
        config = write_config(tmp_path, port, _BUDGET + telemetry)
        daemon = DaemonProcess(
            config,
            port,
            tmp_path / "daemon.log",
            args=["--metrics-address", f"127.0.0.1:{metrics_port}"],
        )
        try:
            with Client(daemon.address, timeout_s=5) as client:
                for _ in range(200):
                    granted = client.reserve("b", "t", tokens=100)
                    client.settle(granted.reservation_id, "t", output_tokens=50)
            dropped = _spans_dropped(metrics_port)

            started = time.monotonic()
            code = daemon.terminate(_STOP_WITHIN_S + 5)
            stopped_in_s = time.monotonic() - started
        finally:
            if daemon.process.poll() is None:
                daemon.kill()

    log = (tmp_path / "daemon.log").read_text()
    assert code == 0, log
    assert stopped_in_s < _STOP_WITHIN_S, log
    # Traces and metrics stop side by side, within one shutdown timeout.
    telemetry_s = _logged_at(log, "telemetry stopped") - _logged_at(
        log, "daemon stopped"
    )
    assert telemetry_s < _TELEMETRY_STOPPED_WITHIN_S, log
    # 400 server spans and their ledger spans: far more than the queue holds.
    assert dropped > 0, log


def _logged_at(log: str, event: str) -> float:
    """Seconds since midnight of the text line logging this event."""
    [line] = [line for line in log.splitlines() if f": {event} " in line]
    clock = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return (clock - clock.replace(hour=0, minute=0, second=0, microsecond=0)) / (
        timedelta(seconds=1)
    )


def _spans_dropped(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tokenpool_telemetry_spans_dropped_total"
    )
