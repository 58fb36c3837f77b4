import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("name", "share_percent", "capacity_tokens", "available_tokens", "in_flight_tokens", "debt_tokens", "waiting", "lent_tokens", "borrowed_tokens", "utilization", "charged_tokens")
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
    def __init__(self, name: _Optional[str] = ..., share_percent: _Optional[int] = ..., capacity_tokens: _Optional[int] = ..., available_tokens: _Optional[int] = ..., in_flight_tokens: _Optional[int] = ..., debt_tokens: _Optional[int] = ..., waiting: _Optional[int] = ..., lent_tokens: _Optional[int] = ..., borrowed_tokens: _Optional[int] = ..., utilization: _Optional[float] = ..., charged_tokens: _Optional[int] = ...) -> None: ...

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

class UpsertTenantRequest(_message.Message):
    __slots__ = ("name", "tier", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tier: str
    weight: int
    def __init__(self, name: _Optional[str] = ..., tier: _Optional[str] = ..., weight: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: str
    def __init__(self, budget: _Optional[str] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("budget", "tenant", "reservations", "tokens_reserved", "tokens_charged", "tokens_refunded", "tokens_overrun", "refusals")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_RESERVED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_CHARGED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_OVERRUN_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    budget: str
    tenant: str
    reservations: int
    tokens_reserved: int
    tokens_charged: int
    tokens_refunded: int
    tokens_overrun: int
    refusals: int
    def __init__(self, budget: _Optional[str] = ..., tenant: _Optional[str] = ..., reservations: _Optional[int] = ..., tokens_reserved: _Optional[int] = ..., tokens_charged: _Optional[int] = ..., tokens_refunded: _Optional[int] = ..., tokens_overrun: _Optional[int] = ..., refusals: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("applied", "message")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    message: str
    def __init__(self, applied: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

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
