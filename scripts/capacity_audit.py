"""Where unused capacity went in a replay: refill lost at a full pool, and when.

An analysis aid for docs/scheduling.md, not part of the product. It runs
`tokenpool replay` in this process with the pools' buckets and the fair
queues instrumented, and prints, per pool, the tokens that refill or
refunds would have added to a pool already at its capacity (capacity that
went unused for good), how many of them were lost while any request
waited (a scheduler that is work-conserving loses none then), and the
minutes of trace time that lost the most.

    .venv/bin/python scripts/capacity_audit.py \\
        deploy/demo/azure-llm-2023-conv.csv \\
        --config deploy/demo/scheduling.toml --policy fair --learning off \\
        --speed max

Every argument but `--audit-csv PATH` (which writes the tokens lost per
pool and minute of trace time as CSV) is passed to `tokenpool replay`; use
one --policy and one --learning value, so that the figures belong to one
run.
"""

from __future__ import annotations

import atexit
import csv
import sys
from collections import Counter
from typing import Any

from tokenpool.cli import main
from tokenpool.core import FairQueue, TokenBucket
from tokenpool.engine import MemoryPoolStore

# Nanoseconds in a minute of trace time, for the per-minute breakdown.
_MINUTE_NS = 60_000_000_000

# How many of the minutes that lost most are printed per pool.
_TOP_MINUTES = 5

_waiting = 0
_lost: Counter[int] = Counter()
_lost_while_waiting: Counter[int] = Counter()
_lost_by_minute: Counter[tuple[int, int]] = Counter()
_names: dict[int, str] = {}


def _note_loss(bucket: TokenBucket, tokens: int, now_ns: int) -> None:
    if tokens <= 0:
        return
    key = id(bucket)
    _lost[key] += tokens
    _lost_by_minute[(key, now_ns // _MINUTE_NS)] += tokens
    if _waiting:
        _lost_while_waiting[key] += tokens


def _instrument() -> None:
    refill, give = TokenBucket.refill, TokenBucket.give
    push, take_out = FairQueue.push, FairQueue._take_out
    add_budget = MemoryPoolStore.add_budget

    def named_add_budget(self: MemoryPoolStore, budget: str, *args: Any) -> None:
        add_budget(self, budget, *args)
        for pool, bucket in self._buckets[budget].items():
            _names[id(bucket)] = f"{budget}/{pool.value}"

    def counted_refill(self: TokenBucket, now_ns: int) -> None:
        elapsed = now_ns - self.updated_ns
        if elapsed <= 0:
            refill(self, now_ns)
            return
        before = self.level
        would_add = (self.capacity * elapsed + self.carry) // self.window_ns
        refill(self, now_ns)
        _note_loss(self, would_add - (self.level - before), now_ns)

    def counted_give(self: TokenBucket, tokens: int) -> None:
        before = self.level
        give(self, tokens)
        _note_loss(self, tokens - (self.level - before), self.updated_ns)

    def counted_push(self: FairQueue[Any], *args: Any, **kwargs: Any) -> Any:
        global _waiting
        _waiting += 1
        return push(self, *args, **kwargs)

    def counted_take_out(self: FairQueue[Any], ticket: Any) -> None:
        global _waiting
        _waiting -= 1
        take_out(self, ticket)

    TokenBucket.refill = counted_refill  # type: ignore[method-assign]
    TokenBucket.give = counted_give  # type: ignore[method-assign]
    FairQueue.push = counted_push  # type: ignore[method-assign]
    FairQueue._take_out = counted_take_out  # type: ignore[method-assign]
    MemoryPoolStore.add_budget = named_add_budget  # type: ignore[method-assign,assignment]


def _print_audit(csv_path: str | None) -> None:
    if not _lost:
        return
    first_minute = min(minute for _, minute in _lost_by_minute)
    print("\nCapacity lost at a full pool (tokens):", file=sys.stderr)
    for key, lost in sorted(_lost.items(), key=lambda item: _names.get(item[0], "")):
        minutes = sorted(
            (
                (minute, tokens)
                for (k, minute), tokens in _lost_by_minute.items()
                if k == key
            ),
            key=lambda item: -item[1],
        )[:_TOP_MINUTES]
        top = ", ".join(
            f"min {minute - first_minute}: {tokens:,}" for minute, tokens in minutes
        )
        print(
            f"  {_names.get(key, 'a pool')}: {lost:,} lost, "
            f"{_lost_while_waiting[key]:,} of them while requests waited; "
            f"most in {top}",
            file=sys.stderr,
        )
    if csv_path is not None:
        _write_csv(csv_path)


def _write_csv(path: str) -> None:
    first_minute = min((minute for _, minute in _lost_by_minute), default=0)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["pool", "minute", "tokens_lost"])
        for (key, minute), tokens in sorted(
            _lost_by_minute.items(),
            key=lambda item: (_names.get(item[0][0], ""), item[0][1]),
        ):
            writer.writerow([_names.get(key, "?"), minute - first_minute, tokens])


if __name__ == "__main__":
    args = sys.argv[1:]
    csv_path = None
    if "--audit-csv" in args:
        at = args.index("--audit-csv")
        csv_path = args[at + 1]
        del args[at : at + 2]
    _instrument()
    atexit.register(_print_audit, csv_path)
    sys.argv = ["tokenpool", "replay", *args]
    main()
