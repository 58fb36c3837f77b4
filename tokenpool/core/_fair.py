"""Waiting lines of a pool: weighted fair queuing over tenants, counted in tokens.

Each waiting request gets a virtual finish tag (self-clocked fair queuing):
its start is the later of the queue's virtual time and its tenant's previous
finish, and its finish adds its tokens divided by its weight. Requests are
served in finish-tag order, so backlogged tenants share tokens in
proportion to their weights, while a tenant that asks little starts at the
current virtual time and goes ahead of heavy tenants (max-min fairness).
In FIFO mode the tag is the arrival order, for comparison.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")

# Tags are integers: tokens scaled by this before the division by a weight,
# so that weights up to millions still give distinct, exact-enough tags.
TAG_SCALE = 1 << 20

# Idle tenants remembered beyond twice the waiting ones before a clean-up.
_PRUNE_SLACK = 1000


@dataclass(eq=False, slots=True)
class Ticket(Generic[Item]):
    """One waiting request's place in a fair queue."""

    item: Item
    tenant: str
    tokens: int
    weight: int
    arrived_ns: int
    start: int = 0
    finish: int = 0
    seq: int = 0
    queued: bool = field(default=True)


class FairQueue(Generic[Item]):
    """The requests waiting on one pool, in the order they are to be served."""

    def __init__(self, *, fifo: bool = False) -> None:
        self._fifo = fifo
        self._lines: dict[str, deque[Ticket[Item]]] = {}
        self._last_finish: dict[str, int] = {}
        self._virtual = 0
        self._seq = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def remembered_tenants(self) -> int:
        """Tenants whose last finish tag is kept (bounded; for tests and status)."""
        return len(self._last_finish)

    @property
    def fifo(self) -> bool:
        """Whether requests are served in arrival order instead of fairly."""
        return self._fifo

    def push(
        self, item: Item, *, tenant: str, tokens: int, weight: int, arrived_ns: int
    ) -> Ticket[Item]:
        """Queues a request at the place its tenant's share gives it."""
        self._seq += 1
        ticket = Ticket(item, tenant, tokens, max(1, weight), arrived_ns)
        ticket.seq = self._seq
        if self._fifo:
            ticket.start = ticket.finish = self._seq
        else:
            ticket.start = max(self._virtual, self._last_finish.get(tenant, 0))
            ticket.finish = ticket.start + -(-tokens * TAG_SCALE // ticket.weight)
            self._last_finish[tenant] = ticket.finish
        self._lines.setdefault(tenant, deque()).append(ticket)
        self._size += 1
        return ticket

    def in_order(self) -> Iterator[Ticket[Item]]:
        """Each tenant's first waiting request, earliest finish tag first.

        A tenant's later requests always come after its first, so the heads
        are the only candidates for service.
        """
        heads = [line[0] for line in self._lines.values()]
        heads.sort(key=lambda ticket: (ticket.finish, ticket.seq))
        return iter(heads)

    def first(self) -> Ticket[Item] | None:
        """The request to be served next, if any waits."""
        return next(self.in_order(), None)

    def served(self, ticket: Ticket[Item], *, in_order: bool = True) -> None:
        """Takes a request out because it was granted; virtual time moves on.

        A request granted out of its fair order (at its deadline, while the
        head still waits for its tokens) is charged to its tenant, whose
        later requests keep their places, but does not move virtual time:
        its tag lies ahead of requests still waiting, and moving there
        would put every newcomer behind them.
        """
        self._take_out(ticket)
        if in_order and not self._fifo:
            self._virtual = max(self._virtual, ticket.finish)

    def remove(self, ticket: Ticket[Item]) -> None:
        """Takes out a request that left without being served.

        Its tenant is not charged for it: the tenant's later requests move
        up by its cost, as if it had never been queued. (Otherwise a tenant
        whose requests time out would fall ever further behind.)
        """
        if not ticket.queued:
            return
        line = self._lines[ticket.tenant]
        self._take_out(ticket)
        if self._fifo:
            return
        cost = ticket.finish - ticket.start
        if ticket.tenant in self._lines:
            for later in line:
                if later.seq > ticket.seq:
                    later.start -= cost
                    later.finish -= cost
        if ticket.tenant in self._last_finish:
            self._last_finish[ticket.tenant] -= cost

    def drain(self) -> list[Item]:
        """Empties the queue (shutdown, recovery) and returns what waited."""
        items = [ticket.item for ticket in self.tickets()]
        for line in self._lines.values():
            for ticket in line:
                ticket.queued = False
        self._lines.clear()
        self._last_finish.clear()
        self._size = 0
        return items

    def tickets(self) -> Iterator[Ticket[Item]]:
        """Every waiting request, in no particular order."""
        for line in self._lines.values():
            yield from line

    def _take_out(self, ticket: Ticket[Item]) -> None:
        line = self._lines[ticket.tenant]
        if line[0] is ticket:
            line.popleft()
        else:
            line.remove(ticket)
        ticket.queued = False
        self._size -= 1
        if not line:
            del self._lines[ticket.tenant]
        if len(self._last_finish) > 2 * len(self._lines) + _PRUNE_SLACK:
            self._prune()

    def _prune(self) -> None:
        """Forgets idle tenants whose last finish virtual time has passed.

        Their next request would start at virtual time anyway, so nothing
        changes for them; memory stays bounded by the tenants that wait.
        """
        self._last_finish = {
            tenant: finish
            for tenant, finish in self._last_finish.items()
            if tenant in self._lines or finish > self._virtual
        }
