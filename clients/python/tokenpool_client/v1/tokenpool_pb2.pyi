import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PoolState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOL_STATE_UNSPECIFIED: _ClassVar[PoolState]
    POOL_STATE_ACTIVE: _ClassVar[PoolState]
    POOL_STATE_PAUSED: _ClassVar[PoolState]
    POOL_STATE_DRAINING: _ClassVar[PoolState]
POOL_STATE_UNSPECIFIED: PoolState
POOL_STATE_ACTIVE: PoolState
POOL_STATE_PAUSED: PoolState
POOL_STATE_DRAINING: PoolState

class ReserveRequest(_message.Message):
    __slots__ = ("budget", "tenant", "tokens", "input_tokens", "max_output_tokens", "model", "task_type", "output_detail", "structured_output", "context_items", "urgency", "max_wait_ms", "lease_ms", "idempotency_key", "fallback_budgets", "labels", "input_chars")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DETAIL_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_BUDGETS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_CHARS_FIELD_NUMBER: _ClassVar[int]
    budget: str
    tenant: str
    tokens: int
    input_tokens: int
    max_output_tokens: int
    model: str
    task_type: str
    output_detail: int
    structured_output: bool
    context_items: int
    urgency: int
    max_wait_ms: int
    lease_ms: int
    idempotency_key: str
    fallback_budgets: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    input_chars: int
    def __init__(self, budget: _Optional[str] = ..., tenant: _Optional[str] = ..., tokens: _Optional[int] = ..., input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., model: _Optional[str] = ..., task_type: _Optional[str] = ..., output_detail: _Optional[int] = ..., structured_output: _Optional[bool] = ..., context_items: _Optional[int] = ..., urgency: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., lease_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., fallback_budgets: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., input_chars: _Optional[int] = ...) -> None: ...

class PoolDraw(_message.Message):
    __slots__ = ("pool", "tokens")
    POOL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    pool: str
    tokens: int
    def __init__(self, pool: _Optional[str] = ..., tokens: _Optional[int] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation_id", "granted_tokens", "pool", "budget", "sources", "complexity_score", "multiplier", "lease_expires_at", "waited_ms")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    WAITED_MS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    granted_tokens: int
    pool: str
    budget: str
    sources: _containers.RepeatedCompositeFieldContainer[PoolDraw]
    complexity_score: int
    multiplier: float
    lease_expires_at: _timestamp_pb2.Timestamp
    waited_ms: int
    def __init__(self, reservation_id: _Optional[str] = ..., granted_tokens: _Optional[int] = ..., pool: _Optional[str] = ..., budget: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[PoolDraw, _Mapping]]] = ..., complexity_score: _Optional[int] = ..., multiplier: _Optional[float] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., waited_ms: _Optional[int] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("reservation_id", "tenant", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "incomplete", "response_cache_hit", "model", "provider_rate_limited", "provider_remaining_tokens", "provider_limit_tokens")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_RATE_LIMITED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_REMAINING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_LIMIT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    tenant: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    incomplete: bool
    response_cache_hit: bool
    model: str
    provider_rate_limited: bool
    provider_remaining_tokens: int
    provider_limit_tokens: int
    def __init__(self, reservation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., incomplete: _Optional[bool] = ..., response_cache_hit: _Optional[bool] = ..., model: _Optional[str] = ..., provider_rate_limited: _Optional[bool] = ..., provider_remaining_tokens: _Optional[int] = ..., provider_limit_tokens: _Optional[int] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ("charged_tokens", "refunded_tokens", "overrun_tokens")
    CHARGED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    charged_tokens: int
    refunded_tokens: int
    overrun_tokens: int
    def __init__(self, charged_tokens: _Optional[int] = ..., refunded_tokens: _Optional[int] = ..., overrun_tokens: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("reservation_id", "tenant", "billed_input_tokens")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BILLED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    tenant: str
    billed_input_tokens: int
    def __init__(self, reservation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., billed_input_tokens: _Optional[int] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("charged_tokens", "refunded_tokens")
    CHARGED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    charged_tokens: int
    refunded_tokens: int
    def __init__(self, charged_tokens: _Optional[int] = ..., refunded_tokens: _Optional[int] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("reservation_id", "tenant", "total_tokens", "lease_expires_at")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    tenant: str
    total_tokens: int
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., total_tokens: _Optional[int] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExtendResponse(_message.Message):
    __slots__ = ("granted_tokens", "sources", "lease_expires_at")
    GRANTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    granted_tokens: int
    sources: _containers.RepeatedCompositeFieldContainer[PoolDraw]
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, granted_tokens: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[PoolDraw, _Mapping]]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: str
    def __init__(self, budget: _Optional[str] = ...) -> None: ...

class PoolStatus(_message.Message):
    __slots__ = ("name", "share_percent", "capacity_tokens", "available_tokens", "in_flight_tokens", "debt_tokens", "waiting", "lent_tokens", "borrowed_tokens", "utilization", "charged_tokens", "state", "open_reservations")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEBT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    LENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BORROWED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    CHARGED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    share_percent: int
    capacity_tokens: int
    available_tokens: int
    in_flight_tokens: int
    debt_tokens: int
    waiting: int
    lent_tokens: int
    borrowed_tokens: int
    utilization: float
    charged_tokens: int
    state: PoolState
    open_reservations: int
    def __init__(self, name: _Optional[str] = ..., share_percent: _Optional[int] = ..., capacity_tokens: _Optional[int] = ..., available_tokens: _Optional[int] = ..., in_flight_tokens: _Optional[int] = ..., debt_tokens: _Optional[int] = ..., waiting: _Optional[int] = ..., lent_tokens: _Optional[int] = ..., borrowed_tokens: _Optional[int] = ..., utilization: _Optional[float] = ..., charged_tokens: _Optional[int] = ..., state: _Optional[_Union[PoolState, str]] = ..., open_reservations: _Optional[int] = ...) -> None: ...

class BudgetStatus(_message.Message):
    __slots__ = ("name", "capacity_tokens", "window_seconds", "pools", "open_reservations")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    OPEN_RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity_tokens: int
    window_seconds: int
    pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    open_reservations: int
    def __init__(self, name: _Optional[str] = ..., capacity_tokens: _Optional[int] = ..., window_seconds: _Optional[int] = ..., pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ..., open_reservations: _Optional[int] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetStatus]
    def __init__(self, budgets: _Optional[_Iterable[_Union[BudgetStatus, _Mapping]]] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class TenantStatus(_message.Message):
    __slots__ = ("name", "tier", "weight", "configured", "open_reservations", "in_flight_tokens", "team", "day", "month")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    OPEN_RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: str
    weight: int
    configured: bool
    open_reservations: int
    in_flight_tokens: int
    team: str
    day: CalendarUsage
    month: CalendarUsage
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[str] = ..., weight: _Optional[int] = ..., configured: _Optional[bool] = ..., open_reservations: _Optional[int] = ..., in_flight_tokens: _Optional[int] = ..., team: _Optional[str] = ..., day: _Optional[_Union[CalendarUsage, _Mapping]] = ..., month: _Optional[_Union[CalendarUsage, _Mapping]] = ...) -> None: ...

class CalendarUsage(_message.Message):
    __slots__ = ("period", "charged_tokens", "held_tokens", "charged_micros", "held_micros", "ends_at")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    CHARGED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HELD_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CHARGED_MICROS_FIELD_NUMBER: _ClassVar[int]
    HELD_MICROS_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    period: str
    charged_tokens: int
    held_tokens: int
    charged_micros: int
    held_micros: int
    ends_at: _timestamp_pb2.Timestamp
    def __init__(self, period: _Optional[str] = ..., charged_tokens: _Optional[int] = ..., held_tokens: _Optional[int] = ..., charged_micros: _Optional[int] = ..., held_micros: _Optional[int] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTeamRequest(_message.Message):
    __slots__ = ("team",)
    TEAM_FIELD_NUMBER: _ClassVar[int]
    team: str
    def __init__(self, team: _Optional[str] = ...) -> None: ...

class TeamStatus(_message.Message):
    __slots__ = ("name", "members", "in_flight_tokens", "day", "month")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    members: _containers.RepeatedScalarFieldContainer[str]
    in_flight_tokens: int
    day: CalendarUsage
    month: CalendarUsage
    def __init__(self, name: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., in_flight_tokens: _Optional[int] = ..., day: _Optional[_Union[CalendarUsage, _Mapping]] = ..., month: _Optional[_Union[CalendarUsage, _Mapping]] = ...) -> None: ...

class RebalanceRequest(_message.Message):
    __slots__ = ("budget", "shares")
    class SharesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    budget: str
    shares: _containers.ScalarMap[str, int]
    def __init__(self, budget: _Optional[str] = ..., shares: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SetCapacityRequest(_message.Message):
    __slots__ = ("budget", "capacity_tokens")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    budget: str
    capacity_tokens: int
    def __init__(self, budget: _Optional[str] = ..., capacity_tokens: _Optional[int] = ...) -> None: ...

class SetPoolStateRequest(_message.Message):
    __slots__ = ("budget", "pool", "state")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    budget: str
    pool: str
    state: PoolState
    def __init__(self, budget: _Optional[str] = ..., pool: _Optional[str] = ..., state: _Optional[_Union[PoolState, str]] = ...) -> None: ...

class UpsertTenantRequest(_message.Message):
    __slots__ = ("name", "tier", "weight", "team", "caps", "clear")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: str
    weight: int
    team: str
    caps: Caps
    clear: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[str] = ..., weight: _Optional[int] = ..., team: _Optional[str] = ..., caps: _Optional[_Union[Caps, _Mapping]] = ..., clear: _Optional[_Iterable[str]] = ...) -> None: ...

class Caps(_message.Message):
    __slots__ = ("max_pool_percent", "max_in_flight_tokens", "daily_tokens", "monthly_tokens", "daily_cost_usd", "monthly_cost_usd", "alert_percent")
    MAX_POOL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DAILY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DAILY_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_COST_USD_FIELD_NUMBER: _ClassVar[int]
    ALERT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    max_pool_percent: int
    max_in_flight_tokens: int
    daily_tokens: int
    monthly_tokens: int
    daily_cost_usd: str
    monthly_cost_usd: str
    alert_percent: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, max_pool_percent: _Optional[int] = ..., max_in_flight_tokens: _Optional[int] = ..., daily_tokens: _Optional[int] = ..., monthly_tokens: _Optional[int] = ..., daily_cost_usd: _Optional[str] = ..., monthly_cost_usd: _Optional[str] = ..., alert_percent: _Optional[_Iterable[int]] = ...) -> None: ...

class TenantInfo(_message.Message):
    __slots__ = ("name", "tier", "weight", "team", "caps", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: str
    weight: int
    team: str
    caps: Caps
    source: str
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[str] = ..., weight: _Optional[int] = ..., team: _Optional[str] = ..., caps: _Optional[_Union[Caps, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantInfo]
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantInfo, _Mapping]]] = ...) -> None: ...

class RemoveTenantRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveTeamRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class UpsertTeamRequest(_message.Message):
    __slots__ = ("name", "caps", "clear")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    caps: Caps
    clear: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., caps: _Optional[_Union[Caps, _Mapping]] = ..., clear: _Optional[_Iterable[str]] = ...) -> None: ...

class TeamInfo(_message.Message):
    __slots__ = ("name", "caps", "members", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    caps: Caps
    members: _containers.RepeatedScalarFieldContainer[str]
    source: str
    def __init__(self, name: _Optional[str] = ..., caps: _Optional[_Union[Caps, _Mapping]] = ..., members: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ...) -> None: ...

class ListTeamsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTeamsResponse(_message.Message):
    __slots__ = ("teams",)
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    teams: _containers.RepeatedCompositeFieldContainer[TeamInfo]
    def __init__(self, teams: _Optional[_Iterable[_Union[TeamInfo, _Mapping]]] = ...) -> None: ...

class ReleaseReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "billed_input_tokens")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    BILLED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    billed_input_tokens: int
    def __init__(self, reservation_id: _Optional[str] = ..., billed_input_tokens: _Optional[int] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("after_id", "limit", "kinds", "since", "until")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    limit: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, after_id: _Optional[int] = ..., limit: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("id", "at", "kind", "budget", "tenant", "reservation_id", "pool", "tokens", "charged", "refunded", "overrun", "actor", "detail_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: _timestamp_pb2.Timestamp
    kind: str
    budget: str
    tenant: str
    reservation_id: str
    pool: str
    tokens: int
    charged: int
    refunded: int
    overrun: int
    actor: str
    detail_json: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., budget: _Optional[str] = ..., tenant: _Optional[str] = ..., reservation_id: _Optional[str] = ..., pool: _Optional[str] = ..., tokens: _Optional[int] = ..., charged: _Optional[int] = ..., refunded: _Optional[int] = ..., overrun: _Optional[int] = ..., actor: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries", "last_id", "more")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    last_id: int
    more: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., last_id: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class BackupLedgerRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class BackupLedgerResponse(_message.Message):
    __slots__ = ("path", "bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    bytes: int
    def __init__(self, path: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class GetAutoscaleRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: str
    def __init__(self, budget: _Optional[str] = ...) -> None: ...

class SetAutoscaleRequest(_message.Message):
    __slots__ = ("budget", "mode")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    budget: str
    mode: str
    def __init__(self, budget: _Optional[str] = ..., mode: _Optional[str] = ...) -> None: ...

class AutoscaleStatus(_message.Message):
    __slots__ = ("budget", "enabled", "mode", "interval_seconds", "readings", "capacity_tokens", "min_capacity_tokens", "max_capacity_tokens", "restore_to_tokens", "utilization", "wait_p95_ms", "waiting", "refusals")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    READINGS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MIN_CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESTORE_TO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    WAIT_P95_MS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    budget: str
    enabled: bool
    mode: str
    interval_seconds: int
    readings: int
    capacity_tokens: int
    min_capacity_tokens: int
    max_capacity_tokens: int
    restore_to_tokens: int
    utilization: float
    wait_p95_ms: int
    waiting: int
    refusals: int
    def __init__(self, budget: _Optional[str] = ..., enabled: _Optional[bool] = ..., mode: _Optional[str] = ..., interval_seconds: _Optional[int] = ..., readings: _Optional[int] = ..., capacity_tokens: _Optional[int] = ..., min_capacity_tokens: _Optional[int] = ..., max_capacity_tokens: _Optional[int] = ..., restore_to_tokens: _Optional[int] = ..., utilization: _Optional[float] = ..., wait_p95_ms: _Optional[int] = ..., waiting: _Optional[int] = ..., refusals: _Optional[int] = ...) -> None: ...

class ListReservationsRequest(_message.Message):
    __slots__ = ("budget", "tenant", "limit")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    budget: str
    tenant: str
    limit: int
    def __init__(self, budget: _Optional[str] = ..., tenant: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ReservationInfo(_message.Message):
    __slots__ = ("reservation_id", "budget", "tenant", "pool", "state", "granted_tokens", "sources", "lease_expires_at")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    budget: str
    tenant: str
    pool: str
    state: str
    granted_tokens: int
    sources: _containers.RepeatedCompositeFieldContainer[PoolDraw]
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., budget: _Optional[str] = ..., tenant: _Optional[str] = ..., pool: _Optional[str] = ..., state: _Optional[str] = ..., granted_tokens: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[PoolDraw, _Mapping]]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("reservations",)
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[ReservationInfo]
    def __init__(self, reservations: _Optional[_Iterable[_Union[ReservationInfo, _Mapping]]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("budget", "group_by", "period", "since", "until", "tenant")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    budget: str
    group_by: _containers.RepeatedScalarFieldContainer[str]
    period: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    tenant: str
    def __init__(self, budget: _Optional[str] = ..., group_by: _Optional[_Iterable[str]] = ..., period: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("budget", "tenant", "reservations", "tokens_reserved", "tokens_charged", "tokens_refunded", "tokens_overrun", "refusals", "keys", "tokens_used", "cost_micros", "open", "settled", "released", "expired", "overruns", "waited", "wait_ms_total", "wait_ms_max", "cache_hits", "saved_tokens", "saved_micros", "estimate_used", "estimate_held", "estimate_settles", "shadow_refusals", "refusals_known")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_RESERVED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_CHARGED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_OVERRUN_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_USED_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    OVERRUNS_FIELD_NUMBER: _ClassVar[int]
    WAITED_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_MAX_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_USED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_HELD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_SETTLES_FIELD_NUMBER: _ClassVar[int]
    SHADOW_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    budget: str
    tenant: str
    reservations: int
    tokens_reserved: int
    tokens_charged: int
    tokens_refunded: int
    tokens_overrun: int
    refusals: int
    keys: _containers.ScalarMap[str, str]
    tokens_used: int
    cost_micros: int
    open: int
    settled: int
    released: int
    expired: int
    overruns: int
    waited: int
    wait_ms_total: int
    wait_ms_max: int
    cache_hits: int
    saved_tokens: int
    saved_micros: int
    estimate_used: int
    estimate_held: int
    estimate_settles: int
    shadow_refusals: int
    refusals_known: bool
    def __init__(self, budget: _Optional[str] = ..., tenant: _Optional[str] = ..., reservations: _Optional[int] = ..., tokens_reserved: _Optional[int] = ..., tokens_charged: _Optional[int] = ..., tokens_refunded: _Optional[int] = ..., tokens_overrun: _Optional[int] = ..., refusals: _Optional[int] = ..., keys: _Optional[_Mapping[str, str]] = ..., tokens_used: _Optional[int] = ..., cost_micros: _Optional[int] = ..., open: _Optional[int] = ..., settled: _Optional[int] = ..., released: _Optional[int] = ..., expired: _Optional[int] = ..., overruns: _Optional[int] = ..., waited: _Optional[int] = ..., wait_ms_total: _Optional[int] = ..., wait_ms_max: _Optional[int] = ..., cache_hits: _Optional[int] = ..., saved_tokens: _Optional[int] = ..., saved_micros: _Optional[int] = ..., estimate_used: _Optional[int] = ..., estimate_held: _Optional[int] = ..., estimate_settles: _Optional[int] = ..., shadow_refusals: _Optional[int] = ..., refusals_known: _Optional[bool] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ReportRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[ReportRow, _Mapping]]] = ...) -> None: ...

class EstimatesRequest(_message.Message):
    __slots__ = ("budget", "tenant")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    budget: str
    tenant: str
    def __init__(self, budget: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class EstimateRow(_message.Message):
    __slots__ = ("budget", "tenant", "task_type", "samples", "window_samples", "used_to_held_p50", "used_to_held_p90", "used_to_held_p99", "overrun_rate", "unused_tokens", "overrun_tokens", "output_factor", "incomplete")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    USED_TO_HELD_P50_FIELD_NUMBER: _ClassVar[int]
    USED_TO_HELD_P90_FIELD_NUMBER: _ClassVar[int]
    USED_TO_HELD_P99_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_RATE_FIELD_NUMBER: _ClassVar[int]
    UNUSED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FACTOR_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    budget: str
    tenant: str
    task_type: str
    samples: int
    window_samples: int
    used_to_held_p50: float
    used_to_held_p90: float
    used_to_held_p99: float
    overrun_rate: float
    unused_tokens: int
    overrun_tokens: int
    output_factor: float
    incomplete: int
    def __init__(self, budget: _Optional[str] = ..., tenant: _Optional[str] = ..., task_type: _Optional[str] = ..., samples: _Optional[int] = ..., window_samples: _Optional[int] = ..., used_to_held_p50: _Optional[float] = ..., used_to_held_p90: _Optional[float] = ..., used_to_held_p99: _Optional[float] = ..., overrun_rate: _Optional[float] = ..., unused_tokens: _Optional[int] = ..., overrun_tokens: _Optional[int] = ..., output_factor: _Optional[float] = ..., incomplete: _Optional[int] = ...) -> None: ...

class EstimatesResponse(_message.Message):
    __slots__ = ("rows", "unknown_task_types")
    class UnknownTaskTypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ROWS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_TASK_TYPES_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[EstimateRow]
    unknown_task_types: _containers.ScalarMap[str, int]
    def __init__(self, rows: _Optional[_Iterable[_Union[EstimateRow, _Mapping]]] = ..., unknown_task_types: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ReloadConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadConfigResponse(_message.Message):
    __slots__ = ("applied", "message", "changes")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    message: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, applied: _Optional[bool] = ..., message: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ...) -> None: ...

class RefusalDetail(_message.Message):
    __slots__ = ("reason", "pool", "largest_grantable_tokens", "retry_after_ms", "requested_tokens")
    REASON_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    LARGEST_GRANTABLE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    pool: str
    largest_grantable_tokens: int
    retry_after_ms: int
    requested_tokens: int
    def __init__(self, reason: _Optional[str] = ..., pool: _Optional[str] = ..., largest_grantable_tokens: _Optional[int] = ..., retry_after_ms: _Optional[int] = ..., requested_tokens: _Optional[int] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("tenant", "label")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    label: str
    def __init__(self, tenant: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_id", "keep_old", "label")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_OLD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    keep_old: bool
    label: str
    def __init__(self, key_id: _Optional[str] = ..., keep_old: _Optional[bool] = ..., label: _Optional[str] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "tenant", "label", "fingerprint", "source", "created_at", "revoked_at", "active")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tenant: str
    label: str
    fingerprint: str
    source: str
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    active: bool
    def __init__(self, key_id: _Optional[str] = ..., tenant: _Optional[str] = ..., label: _Optional[str] = ..., fingerprint: _Optional[str] = ..., source: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active: _Optional[bool] = ...) -> None: ...

class CreatedKey(_message.Message):
    __slots__ = ("info", "key", "replaced")
    INFO_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    info: KeyInfo
    key: str
    replaced: KeyInfo
    def __init__(self, info: _Optional[_Union[KeyInfo, _Mapping]] = ..., key: _Optional[str] = ..., replaced: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[SessionOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[SessionOp, _Mapping]]] = ...) -> None: ...

class SessionOp(_message.Message):
    __slots__ = ("tag", "reserve", "settle", "release", "cancel", "timeout_ms", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAG_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    tag: int
    reserve: ReserveRequest
    settle: SettleRequest
    release: ReleaseRequest
    cancel: int
    timeout_ms: int
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, tag: _Optional[int] = ..., reserve: _Optional[_Union[ReserveRequest, _Mapping]] = ..., settle: _Optional[_Union[SettleRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ..., cancel: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SessionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SessionResult, _Mapping]]] = ...) -> None: ...

class SessionResult(_message.Message):
    __slots__ = ("tag", "reserve", "settle", "release", "error")
    TAG_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    tag: int
    reserve: ReserveResponse
    settle: SettleResponse
    release: ReleaseResponse
    error: OpStatus
    def __init__(self, tag: _Optional[int] = ..., reserve: _Optional[_Union[ReserveResponse, _Mapping]] = ..., settle: _Optional[_Union[SettleResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., error: _Optional[_Union[OpStatus, _Mapping]] = ...) -> None: ...

class OpStatus(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...
