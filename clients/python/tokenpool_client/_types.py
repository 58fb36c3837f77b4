"""Values the tokenpool client returns and the usage it reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict


class ReserveOptions(TypedDict, total=False):
    """Optional keyword arguments of `reserve`: the ReserveRequest fields.

    Each defaults to 0, "", False or empty, which the daemon reads as not
    given. Give `tokens` to hold an explicit count, or leave it out and give
    what the daemon sizes the hold from (input and output fields).

    Attributes:
        tokens: Explicit count to hold; 0 sizes the hold from the fields below.
        input_tokens: Input (prompt) tokens of the call, when known.
        input_chars: Input size in characters, for callers with no token count.
        max_output_tokens: The call's max output tokens, when known.
        model: Model the call goes to.
        task_type: classification, extraction, summarization, analysis,
            generation, code or other.
        output_detail: How detailed the output is meant to be, 0 (brief) to 3.
        structured_output: Whether the output is JSON or the like.
        context_items: Prior turns or documents the call references.
        urgency: 1 (the default when 0) upwards; weights priority sharing.
        max_wait_ms: How long to wait for tokens; 0 answers at once.
        lease_ms: Lease length; 0 takes the budget's default.
        idempotency_key: Makes a retried reserve return the original.
        fallback_budgets: Budgets to try, in order, when this one refuses.
        labels: Free labels (endpoint and the like) for metrics and reports.
    """

    tokens: int
    input_tokens: int
    input_chars: int
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
    fallback_budgets: Sequence[str]
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PoolDraw:
    """Tokens a reservation drew from one pool."""

    pool: str
    """basic, priority or burst."""
    tokens: int
    """Tokens drawn from that pool."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted reservation: tokens held for one API call."""

    reservation_id: str
    """Names the reservation to settle, release and extend."""
    granted_tokens: int
    """Tokens held for the call."""
    pool: str
    """The tenant's own pool (basic or priority)."""
    budget: str
    """The budget that granted it (a fallback budget when one did)."""
    sources: tuple[PoolDraw, ...]
    """Where the tokens came from, in drawing order."""
    complexity_score: int
    """Complexity score 1-10; 0 when the caller gave an explicit count."""
    multiplier: float
    """Allocation multiplier applied to the output allowance."""
    lease_expires_at: datetime
    """When the lease ends (timezone-aware, UTC)."""
    waited_ms: int
    """Time spent waiting for tokens, in milliseconds."""
    local: bool = False
    """Granted by this client while the daemon was unreachable (fail-open or
    the local allowance); its id starts with 'local-'."""


@dataclass(frozen=True, slots=True)
class Extension:
    """A reservation's hold and lease after an extend."""

    granted_tokens: int
    """Tokens held now."""
    sources: tuple[PoolDraw, ...]
    """Where the hold comes from now."""
    lease_expires_at: datetime
    """When the lease ends now (timezone-aware, UTC)."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """How the daemon accounted a settle."""

    charged_tokens: int
    """Tokens charged against the budget."""
    refunded_tokens: int
    """Tokens given back to the pools."""
    overrun_tokens: int
    """Tokens used beyond the hold."""


@dataclass(frozen=True, slots=True)
class Release:
    """How the daemon accounted a release."""

    charged_tokens: int
    """Tokens charged (the billed input tokens)."""
    refunded_tokens: int
    """Tokens given back to the pools."""


@dataclass(slots=True)
class Usage:
    """What an API call really used, as reported by settle."""

    input_tokens: int = 0
    """Input tokens that were not prompt-cache reads."""
    cached_input_tokens: int = 0
    """Input tokens read from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache."""
    output_tokens: int = 0
    """Output tokens."""
    incomplete: bool = False
    """The call was cut off; the larger of usage and hold is charged."""
    response_cache_hit: bool = False
    """The answer came from a response cache; everything is refunded."""
    model: str = ""
    """Model that served the call, when it differs from the reservation's."""
    provider_rate_limited: bool = False
    """The provider answered with a rate-limit error."""
    provider_remaining_tokens: int = 0
    """Remaining tokens the provider's headers reported, if any."""
    provider_limit_tokens: int = 0
    """Token limit the provider's headers reported, if any."""


# Names settle and ReservationScope.record accept as usage fields.
USAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Usage))


def check_usage_fields(fields: Mapping[str, object]) -> None:
    """Raise TypeError when fields names something Usage does not have."""
    unknown = sorted(set(fields) - set(USAGE_FIELDS))
    if unknown:
        raise TypeError(
            f"Unknown usage field {unknown[0]!r}; use one of: "
            + ", ".join(USAGE_FIELDS)
            + "."
        )


@dataclass(slots=True)
class ReservationScope:
    """A reservation open inside `reservation()`, and the usage to settle.

    Fill in `usage` (or call `record`, `record_openai`, `record_anthropic`,
    or iterate the API call's stream through `meter`) before the block ends.
    When the block raises, the reservation is released, charging
    `billed_input_tokens`, unless the usage says the call reached the
    provider (`usage.incomplete`, as a metered stream cut off sets, or
    `usage.provider_rate_limited`): then that usage is settled instead.
    """

    reservation: Reservation
    """The granted reservation."""
    usage: Usage = field(default_factory=Usage)
    """Usage settled when the block ends normally."""
    billed_input_tokens: int = 0
    """Input tokens the provider billed although the call failed."""
    _meter: Any = field(default=None, repr=False, compare=False)

    def record(self, **fields: int | bool | str) -> None:
        """Set usage fields, e.g. `scope.record(output_tokens=512)`.

        Raises:
            TypeError: A name is not a field of `Usage`.
        """
        check_usage_fields(fields)
        for name, value in fields.items():
            setattr(self.usage, name, value)

    def record_openai(self, response: object) -> None:
        """Record an OpenAI response's usage (see `openai_usage`)."""
        from ._usage import openai_usage

        self._record_tokens(openai_usage(response))

    def record_anthropic(self, message: object) -> None:
        """Record an Anthropic message's usage (see `anthropic_usage`)."""
        from ._usage import anthropic_usage

        self._record_tokens(anthropic_usage(message))

    def _record_tokens(self, usage: Usage) -> None:
        self.usage.input_tokens = usage.input_tokens
        self.usage.cached_input_tokens = usage.cached_input_tokens
        self.usage.cache_write_tokens = usage.cache_write_tokens
        self.usage.output_tokens = usage.output_tokens
        self.usage.incomplete = usage.incomplete
        if usage.model:
            self.usage.model = usage.model

    @property
    def metering(self) -> bool:
        """Whether a stream from `meter` is being read and has not ended."""
        return self._meter is not None

    def take_meter(self) -> None:
        """Record what a stream not yet ended used so far, marked incomplete."""
        if self._meter is not None:
            self._record_tokens(self._meter.usage())
            self._meter = None

    @property
    def reached_provider(self) -> bool:
        """Whether a failed block still settles: the provider saw the call."""
        return self.usage.incomplete or self.usage.provider_rate_limited

    def meter(self, stream: Any, *, input_tokens: int | None = None) -> Any:
        """Count a streamed response's usage into this scope as it arrives.

        Iterate what this returns (with `for` or `async for`, as the SDK's
        stream) instead of the stream. Until the provider's final usage
        arrives the usage is marked incomplete, so a stream cut off, broken
        out of or failing settles incomplete: the daemon charges the larger
        of what was measured and the hold (SPEC 12.6).

        Args:
            stream: An OpenAI or Anthropic stream, sync or async.
            input_tokens: Input tokens to settle if the stream is cut off
                before the provider counted them; `usage.input_tokens` (as
                recorded so far) when None.

        Returns:
            A `MeteredStream` or `AsyncMeteredStream` over it.
        """
        from ._meter import AsyncMeteredStream, MeteredStream, UsageMeter

        if input_tokens is None:
            input_tokens = self.usage.input_tokens
        meter = UsageMeter(input_tokens=input_tokens)
        self._meter = meter
        self.usage.incomplete = True

        def on_end(usage: Usage, failed: bool) -> None:
            self._meter = None
            self._record_tokens(usage)

        async def on_end_async(usage: Usage, failed: bool) -> None:
            on_end(usage, failed)

        if hasattr(stream, "__aiter__"):
            return AsyncMeteredStream(stream, meter, on_end_async)
        return MeteredStream(stream, meter, on_end)


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """One pool of a budget as it stands now."""

    name: str
    """basic, priority or burst."""
    share_percent: int
    """Whole percent of the budget's capacity."""
    capacity_tokens: int
    """Tokens per window."""
    available_tokens: int
    """Tokens that can be drawn now (never below zero)."""
    in_flight_tokens: int
    """Tokens open reservations drew from this pool, lent ones included."""
    debt_tokens: int
    """How far the pool's level is below zero."""
    waiting: int
    """Requests queued for this pool."""
    lent_tokens: int
    """Drawn from this pool by other pools' tenants, outstanding now."""
    borrowed_tokens: int
    """Drawn by this pool's tenants from other pools, outstanding now."""
    utilization: float
    """(capacity - available) / capacity; 0 at capacity 0."""
    charged_tokens: int = 0
    """Tokens charged to this pool since the daemon started."""
    state: str = "active"
    """active, paused or draining, as an operator set it (SetPoolState)."""
    open_reservations: int = 0
    """Open reservations holding this pool's tokens; a drain waits for 0."""


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget's capacity and pools as they stand now."""

    name: str
    """The budget's name."""
    capacity_tokens: int
    """Tokens per window."""
    window_seconds: int
    """Length of the refill window in seconds."""
    pools: tuple[PoolStatus, ...]
    """basic, priority and burst, in that order."""
    open_reservations: int
    """Reservations open now."""


@dataclass(frozen=True, slots=True)
class TenantStatus:
    """A tenant's tier, weight and what it holds now."""

    name: str
    """The tenant's name."""
    tier: str
    """basic or priority."""
    weight: int
    """Share weight in its pool."""
    configured: bool
    """Whether the configuration names it (False: admitted as unknown)."""
    open_reservations: int
    """Reservations it holds open now."""
    in_flight_tokens: int
    """Tokens it holds now, over all budgets."""
