from __future__ import annotations

from collections import Counter

import pytest

from tokenpool.core import FairQueue


def _serve_all(queue: FairQueue[str]) -> list[str]:
    order = []
    while (ticket := queue.first()) is not None:
        queue.served(ticket)
        order.append(ticket.item)
    return order


def test_backlogged_tenants_alternate_by_tokens() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(12):
        queue.push(f"a{n}", tenant="a", tokens=100, weight=1, arrived_ns=n)
    for n in range(3):
        queue.push(f"b{n}", tenant="b", tokens=100, weight=1, arrived_ns=100 + n)

    order = _serve_all(queue)

    # Each of b's three requests is served among the first six, one in two.
    assert order[:6] == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_weights_share_in_proportion() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(40):
        queue.push("heavy", tenant="heavy", tokens=10, weight=3, arrived_ns=n)
        queue.push("light", tenant="light", tokens=10, weight=1, arrived_ns=n)

    first_twenty = Counter(_serve_all(queue)[:20])

    assert first_twenty == {"heavy": 15, "light": 5}


def test_a_tenant_asking_little_goes_ahead_of_a_backlog() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(5):
        queue.push("big", tenant="big", tokens=1000, weight=1, arrived_ns=n)
    served = queue.first()
    assert served is not None
    queue.served(served)

    queue.push("small", tenant="small", tokens=10, weight=1, arrived_ns=9)

    assert _serve_all(queue)[0] == "small"


def test_fifo_serves_in_arrival_order() -> None:
    queue: FairQueue[str] = FairQueue(fifo=True)
    for n, tenant in enumerate("aaab"):
        queue.push(f"{tenant}{n}", tenant=tenant, tokens=1, weight=1, arrived_ns=n)

    assert _serve_all(queue) == ["a0", "a1", "a2", "b3"]


def test_a_request_that_leaves_gives_its_place_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a0", tenant="a", tokens=100, weight=1, arrived_ns=0)
    leaving = queue.push("a1", tenant="a", tokens=100, weight=1, arrived_ns=1)
    queue.push("b0", tenant="b", tokens=150, weight=1, arrived_ns=2)

    queue.remove(leaving)
    queue.push("a2", tenant="a", tokens=100, weight=1, arrived_ns=3)

    assert len(queue) == 3
    # a2 takes a1's place: its finish is 200, after b0's 150.
    assert _serve_all(queue) == ["a0", "b0", "a2"]


def test_idle_tenants_are_forgotten() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(5000):
        ticket = queue.push("x", tenant=f"t{n}", tokens=1, weight=1, arrived_ns=n)
        queue.served(ticket)

    assert len(queue) == 0
    assert queue.remembered_tenants <= 1001


def test_a_request_that_leaves_is_not_charged_to_its_tenant() -> None:
    queue: FairQueue[str] = FairQueue()
    gone = queue.push("a0", tenant="a", tokens=100, weight=1, arrived_ns=0)
    queue.push("a1", tenant="a", tokens=100, weight=1, arrived_ns=1)
    queue.push("a2", tenant="a", tokens=100, weight=1, arrived_ns=2)
    queue.push("b0", tenant="b", tokens=100, weight=1, arrived_ns=3)
    queue.push("b1", tenant="b", tokens=100, weight=1, arrived_ns=4)

    # a's first request times out: a's others move up, level with b's.
    queue.remove(gone)

    assert _serve_all(queue) == ["a1", "b0", "a2", "b1"]


@pytest.mark.parametrize(
    ("in_order", "after"),
    [(True, ["a0", "b1", "c0", "a1"]), (False, ["a0", "c0", "b1", "a1"])],
    ids=["in-order", "out-of-order"],
)
def test_serving_out_of_order_charges_the_tenant_not_the_clock(
    in_order: bool, after: list[str]
) -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a0", tenant="a", tokens=100, weight=1, arrived_ns=0)
    queue.push("a1", tenant="a", tokens=800, weight=1, arrived_ns=1)
    late = queue.push("b0", tenant="b", tokens=500, weight=1, arrived_ns=2)
    queue.push("b1", tenant="b", tokens=100, weight=1, arrived_ns=3)

    # Tags (finish): a0 100, a1 900, b0 500, b1 600. Granting b0 in order
    # moves virtual time to 500, so a newcomer c0 finishes at 600, after b1;
    # granted ahead of a0 (its deadline came), virtual time stays at 0 and
    # c0 finishes at 100, before b1. Either way b1 keeps its tag.
    queue.served(late, in_order=in_order)
    queue.push("c0", tenant="c", tokens=100, weight=1, arrived_ns=4)

    assert _serve_all(queue) == after
