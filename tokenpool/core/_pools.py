"""Pool names and how a budget's capacity splits into pools."""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Pool(enum.StrEnum):
    """The three pools every budget has."""

    BASIC = "basic"
    PRIORITY = "priority"
    BURST = "burst"


class PoolState(enum.StrEnum):
    """Whether a pool grants: an operator may pause or drain it (SPEC 8).

    A pool that is not active grants nothing new: not to its own tenants,
    not as a loan, not as burst. Open reservations end as usual and refill
    goes on. A paused pool's tenants wait, up to their wait limit; a
    draining pool's are refused at once, its waiters included.
    """

    ACTIVE = "active"
    PAUSED = "paused"
    DRAINING = "draining"


class Tier(enum.StrEnum):
    """A tenant's tier, which names its own pool."""

    BASIC = "basic"
    PRIORITY = "priority"

    @property
    def pool(self) -> Pool:
        """The pool this tier draws on first."""
        return Pool(self.value)


# The order pools are listed in, everywhere.
POOL_ORDER: tuple[Pool, ...] = (Pool.BASIC, Pool.PRIORITY, Pool.BURST)

# Percent of capacity per pool when the configuration says nothing.
DEFAULT_SHARES: Mapping[Pool, int] = {Pool.BASIC: 65, Pool.PRIORITY: 22, Pool.BURST: 13}


def split_capacity(capacity: int, shares: Mapping[Pool, int]) -> dict[Pool, int]:
    """Splits capacity by whole-percent shares; the remainder goes to basic."""
    parts = {pool: capacity * shares[pool] // 100 for pool in POOL_ORDER}
    parts[Pool.BASIC] += capacity - sum(parts.values())
    return parts
