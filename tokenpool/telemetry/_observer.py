"""The engine's decisions as span attributes and events, metrics and hook events."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from tokenpool._errors import RefusalError
from tokenpool.core import BudgetAlert, Reservation
from tokenpool.engine import (
    AutoscaleNote,
    BudgetChange,
    CommitNote,
    Ending,
    EndKind,
    Observer,
    Queued,
    ReserveCommand,
    alert_fields,
    ending_fields,
    refusal_fields,
    reservation_fields,
)
from tokenpool.telemetry._metrics import Metrics

logger = logging.getLogger(__name__)

# Span attributes are the shared field names under this prefix.
PREFIX = "tokenpool."

_F = TypeVar("_F", bound=Callable[..., None])

Notify = Callable[[str, Mapping[str, object]], None]


def _never_raises(method: _F) -> _F:
    """Telemetry must not break the engine: a failure is logged, then dropped."""

    @functools.wraps(method)
    def guarded(self: TelemetryObserver, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            if method.__name__ not in self._failed:
                self._failed.add(method.__name__)
                logger.exception("telemetry failed event=%s", method.__name__)

    return guarded  # type: ignore[return-value]


def attributes(fields: Mapping[str, object]) -> dict[str, AttributeValue]:
    """Shared fields as span attributes: prefixed, None left out."""
    found: dict[str, AttributeValue] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, tuple):
            found[PREFIX + key] = [str(part) for part in value]
        elif isinstance(value, bool | int | float | str):
            found[PREFIX + key] = value
        else:
            found[PREFIX + key] = str(value)
    return found


class TelemetryObserver(Observer):
    """Turns the engine's events into telemetry.

    Events about a request go on the current span, which is the request's
    server span (the engine reports them in the request's own task). Expiry
    comes from the sweeper, with no span of its own: it gets a short one.
    """

    def __init__(
        self,
        tracer: Tracer | None,
        metrics: Metrics | None,
        notify: Notify | None,
    ) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._notify = notify
        self._failed: set[str] = set()

    @_never_raises
    def reserve_queued(self, queued: Queued) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "queued",
                {
                    PREFIX + "pool": queued.pool.value,
                    PREFIX + "tokens_requested": queued.tokens,
                    PREFIX + "queue_length": queued.queue_length,
                },
            )

    @_never_raises
    def reserve_granted(self, reservation: Reservation, *, repeated: bool) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            fields = reservation_fields(reservation)
            fields["outcome"] = "repeated" if repeated else "granted"
            span.set_attributes(attributes(fields))
            span.add_event(
                "granted",
                {
                    PREFIX + "tokens_granted": reservation.hold,
                    PREFIX + "waited_ms": reservation.waited_ms,
                },
            )
        if self._metrics is not None and not repeated:
            self._metrics.granted(reservation)

    @_never_raises
    def reserve_refused(
        self, command: ReserveCommand, error: RefusalError, waited_ms: int
    ) -> None:
        fields = refusal_fields(command.tenant, error, waited_ms)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(attributes(fields))
            span.add_event(
                "refused",
                attributes(
                    {
                        "reason": error.reason,
                        "retry_after_ms": fields["retry_after_ms"],
                        "largest_grantable": error.largest_grantable,
                    }
                ),
            )
        if self._metrics is not None:
            self._metrics.refused(
                error.budget, str(error.pool), command.tenant, error.reason, waited_ms
            )

    @_never_raises
    def reservation_extended(self, reservation: Reservation, delta: int) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            fields = reservation_fields(reservation)
            fields["tokens_delta"] = delta
            span.set_attributes(attributes(fields))
        if self._metrics is not None and delta:
            self._metrics.extended(reservation, delta)

    @_never_raises
    def reservation_ended(self, ending: Ending) -> None:
        if ending.kind is EndKind.EXPIRED and self._tracer is not None:
            # The sweeper's work belongs to no request: a span of its own.
            with self._tracer.start_as_current_span(
                "tokenpool.expire", kind=SpanKind.INTERNAL
            ):
                self._on_span(ending)
        else:
            self._on_span(ending)
        if self._metrics is not None and not ending.repeated:
            self._metrics.ended(ending)

    def _on_span(self, ending: Ending) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return

        fields = ending_fields(ending)
        if ending.kind is EndKind.SETTLED:
            fields["score"] = ending.reservation.complexity_score
            fields["multiplier"] = ending.reservation.multiplier
        span.set_attributes(attributes(fields))
        if ending.kind in (EndKind.EXPIRED, EndKind.LATE_SETTLE):
            span.add_event(
                "expired",
                attributes(
                    {
                        "tokens_charged": ending.reservation.charged,
                        "lease_expires_wall_ns": (
                            ending.reservation.lease_expires_wall_ns
                        ),
                    }
                ),
            )
        if ending.overrun and not ending.repeated:
            span.add_event(
                "overrun",
                attributes(
                    {
                        "tokens_overrun": ending.overrun,
                        "violation": ending.violation,
                    }
                ),
            )
        for saved in ending.savings:
            span.add_event(
                "cache_saved",
                attributes(
                    {
                        "cache": saved.kind.value,
                        "tokens_saved": saved.tokens,
                        "cost_saved_micros": saved.micros,
                    }
                ),
            )

    @_never_raises
    def budget_changed(self, change: BudgetChange) -> None:
        fields: dict[str, object] = {
            "budget": change.budget,
            "change": change.kind,
            "actor": change.actor or "-",
            "capacity_tokens": change.capacity_tokens,
            **{
                f"capacity_{pool.value}": tokens
                for pool, tokens in change.capacities.items()
            },
        }
        if self._tracer is not None and trace.get_current_span().is_recording():
            with self._tracer.start_as_current_span(
                f"tokenpool.budget.{change.kind}", attributes=attributes(fields)
            ):
                pass
        if self._metrics is not None:
            self._metrics.budget_changed(change.budget, change.kind)
        if self._notify is not None:
            self._notify("budget_changed", {**fields, **change.detail})

    @_never_raises
    def autoscale_decided(self, note: AutoscaleNote) -> None:
        decision = note.decision
        fields: dict[str, object] = {
            **decision.fields(),
            "mode": note.mode,
            "applied": note.applied,
        }
        if self._tracer is not None:
            # The controller's task belongs to no request (a provider cut
            # does: its settle's span is then the parent).
            with self._tracer.start_as_current_span(
                "tokenpool.autoscale",
                kind=SpanKind.INTERNAL,
                attributes=attributes(fields),
            ) as span:
                figures = {
                    key: value
                    for key, value in decision.figures.items()
                    if not isinstance(value, dict)
                }
                span.add_event(decision.action.value, attributes(figures))
        if self._metrics is not None:
            self._metrics.autoscaled(
                decision.budget, decision.action.value, note.applied
            )
        if self._notify is not None:
            self._notify(
                "autoscale",
                {
                    **fields,
                    "shares_from": {
                        p.value: v for p, v in decision.shares_from.items()
                    },
                    "shares_to": {p.value: v for p, v in decision.shares_to.items()},
                    "figures": dict(decision.figures),
                },
            )

    @_never_raises
    def budget_alert(self, alert: BudgetAlert) -> None:
        fields = alert_fields(alert)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("budget_alert", attributes(fields))
        if self._metrics is not None:
            self._metrics.alert(alert)
        if self._notify is not None:
            self._notify("budget_alert", fields)

    def ledger_commit(self) -> AbstractContextManager[CommitNote]:
        if self._tracer is None or not trace.get_current_span().is_recording():
            return nullcontext(CommitNote())
        try:
            span = self._tracer.start_span("tokenpool.ledger.commit")
        except Exception:
            logger.debug("ledger commit span failed", exc_info=True)
            return nullcontext(CommitNote())
        return self._commit_span(span)

    @contextmanager
    def _commit_span(self, span: Span) -> Iterator[CommitNote]:
        note = CommitNote()
        try:
            yield note
        finally:
            try:
                span.set_attribute(PREFIX + "ledger.batch_size", note.batches)
                if note.failed:
                    span.set_status(Status(StatusCode.ERROR, "ledger commit failed"))
                span.end()
            except Exception:
                logger.debug("ledger commit span failed", exc_info=True)
