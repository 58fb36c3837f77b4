"""Live state: the engine that applies the core's rules, its clocks and store."""

from __future__ import annotations

from tokenpool.engine._autoscaling import AUTOSCALER_ACTOR
from tokenpool.engine._base import (
    POOL_EXHAUSTED,
    QUEUE_FULL,
    REQUEST_TOO_LARGE,
    Recorder,
)
from tokenpool.engine._clock import Alarm, Clock, ManualClock, ScaledClock, SystemClock
from tokenpool.engine._commands import (
    AutoscaleView,
    BudgetView,
    ExtendCommand,
    PoolView,
    ReserveCommand,
    SettleCommand,
    TeamView,
    TenantView,
)
from tokenpool.engine._engine import Engine
from tokenpool.engine._events import (
    AutoscaleNote,
    BudgetChange,
    CommitNote,
    Ending,
    EndKind,
    Observer,
    Queued,
    alert_fields,
    ending_fields,
    lenders,
    refusal_fields,
    reservation_fields,
)
from tokenpool.engine._reconfigure import EngineConfig
from tokenpool.engine._store import MemoryPoolStore, PoolLevel, PoolStore

__all__ = [
    "AUTOSCALER_ACTOR",
    "POOL_EXHAUSTED",
    "QUEUE_FULL",
    "REQUEST_TOO_LARGE",
    "Alarm",
    "AutoscaleNote",
    "AutoscaleView",
    "BudgetChange",
    "BudgetView",
    "Clock",
    "CommitNote",
    "EndKind",
    "Ending",
    "Engine",
    "EngineConfig",
    "ExtendCommand",
    "ManualClock",
    "MemoryPoolStore",
    "Observer",
    "PoolLevel",
    "PoolStore",
    "PoolView",
    "Queued",
    "Recorder",
    "ReserveCommand",
    "ScaledClock",
    "SettleCommand",
    "SystemClock",
    "TeamView",
    "TenantView",
    "alert_fields",
    "ending_fields",
    "lenders",
    "refusal_fields",
    "reservation_fields",
]
