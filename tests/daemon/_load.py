"""Client threads that replay trace rows against a daemon, retrying until answered.

Each thread reserves with an idempotency key, then settles (most), releases,
or extends and then settles, and keeps every answer it got (`Acks`). A call
that may not have been answered (a transient code) is sent again, as it was,
until it is: the crash test and the soak rely on that.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests.daemon._audit import Acks, channel
from tokenpool.replay import read_trace

TRACE = Path(__file__).resolve().parents[2] / "deploy/demo/azure-llm-2023-conv.csv"

# Codes that mean the call may not have been answered: retry it as it was.
# INTERNAL and UNKNOWN are not among them: they are the daemon's own faults
# (an exception it did not map), so each is counted as unexpected.
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}

# Refusals each call may meet in normal load: the pool is short of tokens.
_REFUSED = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})

# Seconds one attempt may take before a client gives up on it and retries.
_ATTEMPT_TIMEOUT_S = 5.0

# The deadline of an attempt meant to time out (seconds): the daemon may
# have granted it, and must take the grant back.
_SHORT_TIMEOUT_S = 0.005


def trace_rows(limit: int) -> list[tuple[int, int]]:
    """(input, output) tokens of the first rows of the bundled trace."""
    return [
        (row.input_tokens, row.output_tokens) for row in read_trace(TRACE, limit=limit)
    ]


class Client(threading.Thread):
    """One caller replaying its share of the trace until told to stop.

    Every attempt waits for `gate` first, so that a test can keep a daemon
    quiet (to audit it) while clients wait to retry.

    Args:
        index: Names the client's keys and, modulo 4, its tenant.
        address: The daemon.
        rows: (input, output) tokens of the calls to replay, in a loop.
        gate: Attempts wait for it to be set.
        stop: The client ends after its current call once it is set.
        seed: Seeds what the client picks (settle, release, extend, usage).
        budget: The budget to reserve on.
        max_wait_ms: How long each Reserve may wait for tokens.
        short_deadline_rate: Share of attempts sent with a 5 ms deadline,
            so that they time out and are retried.
        leave_open_rate: Share of reservations left open, never ended.
    """

    def __init__(
        self,
        index: int,
        address: str,
        rows: list[tuple[int, int]],
        gate: threading.Event,
        stop: threading.Event,
        seed: int,
        *,
        budget: str = "b",
        max_wait_ms: int = 0,
        short_deadline_rate: float = 0.0,
        leave_open_rate: float = 0.0,
    ) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.tenant = f"t{index % 4}"
        self.rows = rows
        self.gate = gate
        self.stop = stop
        self.budget = budget
        self.max_wait_ms = max_wait_ms
        self.short_deadline_rate = short_deadline_rate
        self.leave_open_rate = leave_open_rate
        self.rng = random.Random(seed * 1000 + index)
        self.acks = Acks()
        self.lock = threading.Lock()
        self.retries = 0
        self.codes: Counter[str] = Counter()
        """Every answer's code, OK included, retried attempts too."""
        self.unexpected: list[str] = []
        """Every answer that is neither success, transient nor an expected refusal."""
        self._channel = channel(address)
        self._stub = pb_grpc.TokenPoolStub(self._channel)

    def snapshot(self) -> Acks:
        """A copy of the acknowledgements so far."""
        with self.lock:
            copy = Acks()
            copy.merge(self.acks)
            return copy

    def run(self) -> None:
        try:
            step = 0
            while not self.stop.is_set():
                input_tokens, output_tokens = self.rows[step % len(self.rows)]
                self._one_call(step, input_tokens, output_tokens)
                step += 1
        finally:
            self._channel.close()

    def _attempt(
        self,
        method: str,
        request: object,
        expected: frozenset[grpc.StatusCode] = frozenset(),
    ) -> object:
        """Sends until answered; returns the answer or the final RpcError.

        A final error whose code is not `expected` (INTERNAL and UNKNOWN
        included) is recorded in `unexpected`, which fails the audit.
        """
        while True:
            self.gate.wait()
            timeout = _ATTEMPT_TIMEOUT_S
            if self.rng.random() < self.short_deadline_rate:
                timeout = _SHORT_TIMEOUT_S
            try:
                answer = getattr(self._stub, method)(request, timeout=timeout)
            except grpc.RpcError as exc:
                self.codes[f"{method} {exc.code().name}"] += 1
                if exc.code() not in TRANSIENT:
                    if exc.code() not in expected:
                        self.unexpected.append(
                            f"{method} answered {exc.code().name}: {exc.details()}"
                        )
                    return exc
                self.retries += 1
                time.sleep(0.02)
            else:
                self.codes[f"{method} OK"] += 1
                return answer

    def _one_call(self, step: int, input_tokens: int, output_tokens: int) -> None:
        key = f"c{self.index}-{step}"
        hold = 100 + input_tokens + 2 * output_tokens
        answer = self._attempt(
            "Reserve",
            pb.ReserveRequest(
                budget=self.budget,
                tenant=self.tenant,
                tokens=hold,
                lease_ms=3_600_000,
                max_wait_ms=self.max_wait_ms,
                idempotency_key=key,
            ),
            _REFUSED,
        )
        if isinstance(answer, grpc.RpcError):
            if answer.code() in _REFUSED:
                with self.lock:
                    self.acks.refused_keys.add((self.tenant, key))
            return
        assert isinstance(answer, pb.ReserveResponse)
        rid = answer.reservation_id
        with self.lock:
            self.acks.reserved[rid] = (self.tenant, key, answer.granted_tokens)

        if self.rng.random() < self.leave_open_rate:
            return
        choice = self.rng.random()
        if choice < 0.15:
            self._release(rid, input_tokens if choice < 0.05 else 0)
            return
        if choice < 0.25:
            hold += 50
            with self.lock:
                self.acks.extend_sent[rid] = hold
            extended = self._attempt(
                "Extend",
                pb.ExtendRequest(
                    reservation_id=rid, tenant=self.tenant, total_tokens=hold
                ),
                _REFUSED,
            )
            if isinstance(extended, pb.ExtendResponse):
                with self.lock:
                    self.acks.extended[rid] = extended.granted_tokens
        # Usage mostly within the hold, now and then a little above it.
        used_output = int(output_tokens * self.rng.uniform(0.2, 2.6))
        settled = self._attempt(
            "Settle",
            pb.SettleRequest(
                reservation_id=rid,
                tenant=self.tenant,
                input_tokens=input_tokens,
                output_tokens=used_output,
            ),
        )
        if isinstance(settled, pb.SettleResponse):
            with self.lock:
                self.acks.settled[rid] = settled.charged_tokens

    def _release(self, rid: str, billed: int) -> None:
        released = self._attempt(
            "Release",
            pb.ReleaseRequest(
                reservation_id=rid, tenant=self.tenant, billed_input_tokens=billed
            ),
        )
        if isinstance(released, pb.ReleaseResponse):
            with self.lock:
                self.acks.released[rid] = released.charged_tokens
