"""The operator hook: events handed to a command or a URL, off the request path."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType

import anyio
import anyio.to_thread
import httpx
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tokenpool.telemetry._settings import HookSettings

logger = logging.getLogger(__name__)

# What became of one event, as the hook-deliveries metric counts it.
DELIVERED = "ok"
FAILED = "failed"
TIMED_OUT = "timeout"
DROPPED = "dropped"

# Characters of a failed command's stderr kept in the log line.
_STDERR_SHOWN = 300

Outcome = Callable[[str, str], None]


class OperatorHook:
    """Delivers events, one at a time, to the configured command and/or URL.

    `notify` never blocks and never raises: it queues the event, or drops it
    when `max_pending` events already wait. Used as an async context manager,
    it delivers them from a task of its own, each delivery bounded by
    `timeout_seconds` (a command is killed when it overruns); leaving waits
    up to one timeout for what is queued. Every outcome is logged and
    reported to `on_outcome`.
    """

    def __init__(
        self,
        settings: HookSettings,
        *,
        service: str = "tokenpool",
        on_outcome: Outcome | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._on_outcome = on_outcome or (lambda event, outcome: None)
        self._send: MemoryObjectSendStream[dict[str, object]]
        self._receive: MemoryObjectReceiveStream[dict[str, object]]
        self._send, self._receive = anyio.create_memory_object_stream[
            dict[str, object]
        ](settings.max_pending)
        self._client: httpx.AsyncClient | None = None
        self._idle = anyio.Event()
        self._idle.set()
        self._tasks: TaskGroup | None = None

    async def __aenter__(self) -> OperatorHook:
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._tasks = tasks
        try:
            await tasks.start(self._run)
        except BaseException:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return None
        with anyio.CancelScope(shield=True):
            await self.drain(self._settings.timeout_seconds)
        self._send.close()
        tasks.cancel_scope.cancel()
        try:
            return await tasks.__aexit__(exc_type, exc, traceback)
        finally:
            self._drop_undelivered()
            self._receive.close()

    def _drop_undelivered(self) -> None:
        """Counts the events still queued when the hook closed as dropped."""
        while True:
            try:
                payload = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            event = str(payload["event"])
            logger.warning(
                "operator hook event dropped at shutdown event=%s",
                event,
                extra={"event": event},
            )
            self._on_outcome(event, DROPPED)

    def notify(self, event: str, fields: Mapping[str, object]) -> None:
        """Queues one event for delivery; drops it when the queue is full."""
        if self._settings.events and event not in self._settings.events:
            return

        payload: dict[str, object] = {
            "event": event,
            "time": datetime.now(UTC).isoformat(),
            "service": self._service,
            **fields,
        }
        try:
            self._send.send_nowait(payload)
            if self._idle.is_set():
                self._idle = anyio.Event()
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.warning(
                "operator hook event dropped event=%s pending=%d",
                event,
                self._settings.max_pending,
                extra={"event": event, "pending": self._settings.max_pending},
            )
            self._on_outcome(event, DROPPED)

    async def _run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Delivers queued events until the hook is closed or cancelled."""
        if self._settings.url is not None:
            # Building a client reads the CA bundle: not on the event loop.
            make = functools.partial(
                httpx.AsyncClient, timeout=self._settings.timeout_seconds
            )
            self._client = await anyio.to_thread.run_sync(make)
        task_status.started()

        try:
            # Ends when the hook is closed and nothing is left to deliver.
            async for payload in self._receive:
                try:
                    await self._deliver(payload)
                except anyio.get_cancelled_exc_class():
                    # Closed in the middle of a delivery: counted, not lost.
                    self._on_outcome(str(payload["event"]), DROPPED)
                    raise
                if not self._receive.statistics().current_buffer_used:
                    self._idle.set()
        finally:
            if self._client is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await self._client.aclose()

    async def drain(self, timeout_s: float) -> None:
        """Waits, at most `timeout_s`, for queued events to be delivered."""
        with anyio.move_on_after(timeout_s):
            await self._idle.wait()

    async def _deliver(self, payload: dict[str, object]) -> None:
        event = str(payload["event"])
        body = json.dumps(payload, default=str).encode()
        outcome = DELIVERED
        with anyio.move_on_after(self._settings.timeout_seconds) as scope:
            try:
                if self._settings.command:
                    outcome = await self._run_command(event, body)
                if self._settings.url is not None and self._client is not None:
                    outcome = min(outcome, await self._post(event, body), key=_rank)
            except (OSError, httpx.HTTPError) as exc:
                logger.warning(
                    "operator hook failed event=%s error=%r",
                    event,
                    exc,
                    extra={"event": event, "error": repr(exc)},
                )
                outcome = FAILED
        if scope.cancelled_caught:
            logger.warning(
                "operator hook timed out event=%s timeout_seconds=%s",
                event,
                self._settings.timeout_seconds,
                extra={
                    "event": event,
                    "timeout_seconds": self._settings.timeout_seconds,
                },
            )
            outcome = TIMED_OUT
        elif outcome == DELIVERED:
            logger.debug(
                "operator hook delivered event=%s", event, extra={"event": event}
            )
        self._on_outcome(event, outcome)

    async def _run_command(self, event: str, body: bytes) -> str:
        """Runs the command with the event on stdin, in a process group of its own.

        A command cut off by the timeout is killed with everything it
        started (a shell's children too), not just the process itself.
        """
        process = await anyio.open_process(
            self._settings.command,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert process.stdin is not None and process.stderr is not None
            # A command that does not read its input is still run to the end.
            with contextlib.suppress(anyio.BrokenResourceError):
                async with process.stdin:
                    await process.stdin.send(body)
            output = b"".join([chunk async for chunk in process.stderr])
            returncode = await process.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with anyio.CancelScope(shield=True):
                await process.aclose()
            raise
        await process.aclose()
        if returncode == 0:
            return DELIVERED

        stderr = output.decode(errors="replace")[-_STDERR_SHOWN:].strip()
        logger.warning(
            "operator hook command failed event=%s returncode=%d stderr=%r",
            event,
            returncode,
            stderr,
            extra={"event": event, "returncode": returncode, "stderr": stderr},
        )
        return FAILED

    async def _post(self, event: str, body: bytes) -> str:
        assert self._client is not None
        answer = await self._client.post(
            str(self._settings.url),
            content=body,
            headers={"content-type": "application/json"},
        )
        if answer.is_success:
            return DELIVERED

        logger.warning(
            "operator hook POST refused event=%s status=%d",
            event,
            answer.status_code,
            extra={"event": event, "status": answer.status_code},
        )
        return FAILED


def _rank(outcome: str) -> int:
    """Worst first: a delivery is only as good as its worst target."""
    return 0 if outcome == FAILED else 1
