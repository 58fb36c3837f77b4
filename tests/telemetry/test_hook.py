"""The operator hook: bounded, non-blocking, every outcome counted."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from tokenpool.telemetry import HookSettings, OperatorHook

pytestmark = pytest.mark.anyio


class _Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, event: str, outcome: str) -> None:
        self.seen.append((event, outcome))

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.seen) < count:  # noqa: ASYNC110 - a callback, no event
                await anyio.sleep(0.01)


def _command(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def test_command_gets_the_event_as_json(tmp_path: Path) -> None:
    out = tmp_path / "event.json"
    code = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    outcomes = _Outcomes()
    async with OperatorHook(
        HookSettings(command=_command(code)), service="svc", on_outcome=outcomes
    ) as hook:
        hook.notify("budget_alert", {"subject": "t", "percent": 80})
        await outcomes.wait_for(1)

    event = json.loads(out.read_text())
    assert (event["event"], event["service"], event["percent"]) == (
        "budget_alert",
        "svc",
        80,
    )
    assert outcomes.seen == [("budget_alert", "ok")]


async def test_failing_and_slow_commands_are_counted() -> None:
    outcomes = _Outcomes()
    failing = HookSettings(command=_command("raise SystemExit(3)"))
    async with OperatorHook(failing, on_outcome=outcomes) as hook:
        hook.notify("budget_alert", {})
        await outcomes.wait_for(1)

    slow = HookSettings(
        command=_command("import time; time.sleep(30)"), timeout_seconds=0.3
    )
    with anyio.fail_after(5):
        async with OperatorHook(slow, on_outcome=outcomes) as hook:
            hook.notify("budget_alert", {})
            await outcomes.wait_for(2)

    assert [outcome for _, outcome in outcomes.seen] == ["failed", "timeout"]


async def test_a_timed_out_command_is_killed_with_its_children(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    # A shell that starts a long child and waits for it, as scripts do.
    command = ("/bin/sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait")
    outcomes = _Outcomes()
    hook_settings = HookSettings(command=command, timeout_seconds=0.5)
    with anyio.fail_after(5):
        async with OperatorHook(hook_settings, on_outcome=outcomes) as hook:
            hook.notify("budget_alert", {})
            await outcomes.wait_for(1)

    child = int(pid_file.read_text())
    with anyio.fail_after(5):
        while _alive(child):  # noqa: ASYNC110 - another process, no event
            await anyio.sleep(0.05)
    assert outcomes.seen == [("budget_alert", "timeout")]


def _alive(pid: int) -> bool:
    """Whether a process is running (not gone, not a zombie awaiting reaping)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_events_left_queued_at_shutdown_are_counted_as_dropped() -> None:
    outcomes = _Outcomes()
    slow = HookSettings(
        command=_command("import time; time.sleep(30)"), timeout_seconds=0.3
    )
    with anyio.fail_after(5):
        async with OperatorHook(slow, on_outcome=outcomes) as hook:
            for _ in range(4):
                hook.notify("budget_changed", {})

    # One delivery is cut off by its timeout or by the close; the rest were
    # never tried. Each of them is still accounted for.
    seen = [outcome for _, outcome in outcomes.seen]
    assert len(seen) == 4
    assert seen.count("dropped") >= 3
    assert set(seen) <= {"timeout", "dropped"}


async def test_full_queue_drops_without_blocking() -> None:
    outcomes = _Outcomes()
    slow = HookSettings(
        command=_command("import time; time.sleep(30)"),
        timeout_seconds=0.2,
        max_pending=2,
    )
    async with OperatorHook(slow, on_outcome=outcomes) as hook:
        for _ in range(6):
            hook.notify("budget_changed", {})
        dropped = [o for o in outcomes.seen if o[1] == "dropped"]
        # One is being delivered, two wait, the other three are dropped at once.
        assert len(dropped) >= 3


async def test_events_not_listed_are_not_delivered() -> None:
    outcomes = _Outcomes()
    settings = HookSettings(command=_command("pass"), events=("budget_alert",))
    async with OperatorHook(settings, on_outcome=outcomes) as hook:
        hook.notify("budget_changed", {})
        hook.notify("budget_alert", {})
        await outcomes.wait_for(1)

    assert outcomes.seen == [("budget_alert", "ok")]


@asynccontextmanager
async def _http_server(status: int) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server answering every request with `status`."""
    bodies: list[bytes] = []

    async def handle(stream: SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            while len(body) < length:
                body += await stream.receive()
            bodies.append(body)
            await stream.send(
                f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode()
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}/hook", bodies
        tasks.cancel_scope.cancel()


async def test_url_gets_a_json_post() -> None:
    outcomes = _Outcomes()
    async with _http_server(204) as (url, bodies), _http_server(500) as (bad, _):
        async with OperatorHook(HookSettings(url=url), on_outcome=outcomes) as hook:
            hook.notify("budget_alert", {"percent": 100})
            await outcomes.wait_for(1)
        async with OperatorHook(HookSettings(url=bad), on_outcome=outcomes) as hook:
            hook.notify("budget_alert", {"percent": 100})
            await outcomes.wait_for(2)

    assert json.loads(bodies[0])["percent"] == 100
    assert [outcome for _, outcome in outcomes.seen] == ["ok", "failed"]


def test_unknown_event_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown hook events \['budget_alrt'\]"):
        HookSettings(command=("true",), events=("budget_alrt",))
