"""The daemon's metrics: every instrument, and what each event adds to them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_METHOD,
    RPC_RESPONSE_STATUS_CODE,
    RPC_SYSTEM_NAME,
)
from opentelemetry.semconv._incubating.metrics.rpc_metrics import (
    RPC_SERVER_CALL_DURATION,
)

from tokenpool.core import BudgetAlert, Reservation
from tokenpool.engine import Ending, EndKind
from tokenpool.telemetry._cardinality import BoundedValues
from tokenpool.telemetry._readings import Readings

# Bucket bounds of the duration histograms, in seconds: from half a
# millisecond (a granted Reserve) to a minute (the longest default wait).
_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

# Micro-dollars per dollar: money metrics are in USD.
_MICROS_PER_USD = 1_000_000


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One instrument: its name, kind, unit and meaning (listed in the docs)."""

    name: str
    kind: str
    """counter, histogram or gauge."""
    unit: str
    description: str


def _spec(name: str, kind: str, unit: str, description: str) -> MetricSpec:
    return MetricSpec(name, kind, unit, description)


# Every metric the daemon exports, in the order docs/observability.md lists them.
METRICS = (
    _spec("tokenpool.tokens.reserved", "counter", "{token}",
          "Tokens held by granted reservations, and Extend growth."),
    _spec("tokenpool.tokens.used", "counter", "{token}",
          "Usage reported by settles, as the budget counts it."),
    _spec("tokenpool.tokens.charged", "counter", "{token}",
          "Tokens charged when holds end (settle, release, expiry)."),
    _spec("tokenpool.tokens.refunded", "counter", "{token}",
          "Held tokens given back (settle, release, expiry refunds, Extend)."),
    _spec("tokenpool.tokens.overrun", "counter", "{token}",
          "Usage beyond the hold, late settles included."),
    _spec("tokenpool.tokens.borrowed", "counter", "{token}",
          "Tokens granted from burst or another pool (lender) to a pool's tenant."),
    _spec("tokenpool.reservations", "counter", "{reservation}",
          "Reservations by outcome: granted, settled, released, expired, undone."),
    _spec("tokenpool.refusals", "counter", "{request}",
          "Reserves refused, by reason."),
    _spec("tokenpool.overrun.violations", "counter", "{settle}",
          "Settles whose usage passed the hold by more than the overrun limit."),
    _spec("tokenpool.cost", "counter", "USD",
          "Money charged, priced by the price table."),
    _spec("tokenpool.cache.hits", "counter", "{settle}",
          "Settles helped by a cache: response (no call made) or prompt."),
    _spec("tokenpool.cache.saved_tokens", "counter", "{token}",
          "Tokens the budget did not count thanks to a cache."),
    _spec("tokenpool.cache.saved_cost", "counter", "USD",
          "Money not spent thanks to a cache."),
    _spec("tokenpool.budget.changes", "counter", "{change}",
          "Capacity changes, rebalances and pool state changes of a budget."),
    _spec("tokenpool.autoscale.decisions", "counter", "{decision}",
          "Autoscaler decisions by action and whether they were applied."),
    _spec("tokenpool.shadow.refusals", "counter", "{request}",
          "Shadow mode: requests granted that an enforcing daemon would not have."),
    _spec("tokenpool.budget.alerts", "counter", "{alert}",
          "Soft calendar-budget thresholds reached (each once per period)."),
    _spec("tokenpool.hook.deliveries", "counter", "{event}",
          "Operator-hook deliveries by outcome: ok, failed, timeout, dropped."),
    _spec("tokenpool.telemetry.spans_dropped", "counter", "{span}",
          "Spans that never reached the collector, by reason."),
    _spec("tokenpool.reserve.wait_time", "histogram", "s",
          "Time a Reserve waited for tokens, granted or refused."),
    _spec(RPC_SERVER_CALL_DURATION, "histogram", "s",
          "Duration of each RPC the daemon served (OpenTelemetry RPC semantics)."),
    _spec("tokenpool.pool.capacity", "gauge", "{token}",
          "A pool's capacity per window."),
    _spec("tokenpool.pool.available", "gauge", "{token}",
          "A pool's level: tokens it can grant now."),
    _spec("tokenpool.pool.debt", "gauge", "{token}",
          "A pool's debt: usage beyond holds not yet paid back by refill."),
    _spec("tokenpool.pool.in_flight", "gauge", "{token}",
          "Tokens open reservations drew from a pool."),
    _spec("tokenpool.pool.lent", "gauge", "{token}",
          "Drawn from a pool by other pools' tenants, outstanding now."),
    _spec("tokenpool.pool.borrowed", "gauge", "{token}",
          "Drawn by a pool's tenants from other pools, outstanding now."),
    _spec("tokenpool.pool.utilization", "gauge", "1",
          "Live utilisation: (capacity - available) / capacity."),
    _spec("tokenpool.queue.length", "gauge", "{request}",
          "Reserves waiting in a pool's queue."),
    _spec("tokenpool.reservations.open", "gauge", "{reservation}",
          "Open reservations of a budget."),
    _spec("tokenpool.calendar.used_tokens", "gauge", "{token}",
          "Tokens charged this day or month to a tenant or team with a budget."),
    _spec("tokenpool.calendar.limit_tokens", "gauge", "{token}",
          "The tenant's or team's daily or monthly token budget."),
    _spec("tokenpool.calendar.used_cost", "gauge", "USD",
          "Money charged this day or month to a tenant or team with a budget."),
    _spec("tokenpool.calendar.limit_cost", "gauge", "USD",
          "The tenant's or team's daily or monthly money budget."),
    _spec("tokenpool.provider.remaining_tokens", "gauge", "{token}",
          "Remaining tokens the provider last reported at settle."),
    _spec("tokenpool.provider.limit_tokens", "gauge", "{token}",
          "Token limit the provider last reported at settle."),
)  # fmt: skip


Attributes = dict[str, str | int]


class Metrics:
    """Records the engine's events on OpenTelemetry instruments.

    Tenant, model and label values are bounded per metric: past the limit
    they are counted as "other", so a flood of names cannot flood Prometheus.
    Event methods run on the event loop; `spans_dropped` may come from any
    thread (the SDK's instruments are thread-safe).
    """

    def __init__(
        self,
        meter: Meter,
        readings: Callable[[], Readings],
        *,
        max_values: int,
        label_keys: Iterable[str] = (),
    ) -> None:
        self._readings = readings
        self._label_keys = tuple(label_keys)
        self._bounded: defaultdict[tuple[str, str], BoundedValues] = defaultdict(
            lambda: BoundedValues(max_values)
        )
        self._provider: dict[str, tuple[int, int]] = {}

        counter = meter.create_counter
        self._counters = {
            spec.name: counter(spec.name, unit=spec.unit, description=spec.description)
            for spec in METRICS
            if spec.kind == "counter"
        }
        self._histograms = {
            spec.name: meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
            )
            for spec in METRICS
            if spec.kind == "histogram"
        }
        for spec in METRICS:
            if spec.kind == "gauge":
                meter.create_observable_gauge(
                    spec.name,
                    callbacks=[self._gauge(spec.name)],
                    unit=spec.unit,
                    description=spec.description,
                )

    def _add(self, name: str, amount: float, attributes: Attributes) -> None:
        if amount:
            self._counters[name].add(amount, self._fold(name, attributes))

    def _fold(self, name: str, attributes: Attributes) -> Attributes:
        """Bounds the free-form values (tenant, subject, model, labels)."""
        for key, value in attributes.items():
            if key in ("tenant", "subject", "model") or key.startswith("label_"):
                attributes[key] = self._bounded[name, key](str(value))
        return attributes

    def _whose(
        self, reservation: Reservation, *, with_labels: bool = True
    ) -> Attributes:
        attributes: Attributes = {
            "budget": reservation.budget,
            "pool": reservation.pool.value,
            "tenant": reservation.tenant,
        }
        if with_labels:
            attributes.update(self._labels(reservation))
        return attributes

    def _labels(self, reservation: Reservation) -> Attributes:
        """The request labels the settings copy onto metrics, as label_<key>."""
        return {
            f"label_{key}": reservation.labels[key]
            for key in self._label_keys
            if key in reservation.labels
        }

    def granted(self, reservation: Reservation) -> None:
        """A Reserve got its tokens."""
        self._add(
            "tokenpool.tokens.reserved", reservation.hold, self._whose(reservation)
        )
        self._add(
            "tokenpool.reservations",
            1,
            {**self._whose(reservation, with_labels=False), "outcome": "granted"},
        )
        self._histograms["tokenpool.reserve.wait_time"].record(
            reservation.waited_ms / 1000,
            {
                "budget": reservation.budget,
                "pool": reservation.pool.value,
                "outcome": "granted",
            },
        )
        for lender, tokens in reservation.sources:
            if lender is not reservation.pool:
                attributes = self._whose(reservation, with_labels=False)
                attributes["lender"] = lender.value
                self._add("tokenpool.tokens.borrowed", tokens, attributes)
        if reservation.shadow:
            attributes = self._whose(reservation, with_labels=False)
            attributes["reason"] = reservation.shadow
            self._add("tokenpool.shadow.refusals", 1, attributes)

    def refused(
        self, budget: str, pool: str, tenant: str, reason: str, waited_ms: int
    ) -> None:
        """A Reserve was refused by every budget it named."""
        attributes: Attributes = {
            "budget": budget,
            "pool": pool,
            "tenant": tenant,
            "reason": reason,
        }
        self._add("tokenpool.refusals", 1, attributes)
        self._histograms["tokenpool.reserve.wait_time"].record(
            waited_ms / 1000, {"budget": budget, "pool": pool, "outcome": "refused"}
        )

    def extended(self, reservation: Reservation, delta: int) -> None:
        """An Extend grew or shrank a hold."""
        name = "tokenpool.tokens.reserved" if delta > 0 else "tokenpool.tokens.refunded"
        self._add(name, abs(delta), self._whose(reservation))

    def ended(self, ending: Ending) -> None:
        """A hold ended, or a late settle charged its overrun."""
        reservation = ending.reservation
        whose = self._whose(reservation)
        if ending.kind is not EndKind.LATE_SETTLE:
            self._add(
                "tokenpool.reservations",
                1,
                {
                    **self._whose(reservation, with_labels=False),
                    "outcome": ending.kind.value,
                },
            )
        if ending.kind is EndKind.UNDONE:
            # Never counted as reserved: its grant was not answered.
            return

        if ending.kind is EndKind.SETTLED:
            self._add("tokenpool.tokens.used", ending.used, dict(whose))
        self._add("tokenpool.tokens.charged", ending.charged, dict(whose))
        self._add("tokenpool.tokens.refunded", ending.refunded, dict(whose))
        self._add("tokenpool.tokens.overrun", ending.overrun, dict(whose))
        money: Attributes = {
            "budget": reservation.budget,
            "tenant": reservation.tenant,
            "model": reservation.model or "-",
            **self._labels(reservation),
        }
        self._add("tokenpool.cost", ending.cost_micros / _MICROS_PER_USD, money)
        if ending.violation:
            attributes = self._whose(reservation, with_labels=False)
            self._add("tokenpool.overrun.violations", 1, attributes)
        for saved in ending.savings:
            cache: Attributes = {
                "budget": reservation.budget,
                "tenant": reservation.tenant,
                "cache": saved.kind.value,
            }
            self._add("tokenpool.cache.hits", 1, dict(cache))
            self._add("tokenpool.cache.saved_tokens", saved.tokens, dict(cache))
            self._add(
                "tokenpool.cache.saved_cost", saved.micros / _MICROS_PER_USD, cache
            )
        if ending.provider_remaining_tokens or ending.provider_limit_tokens:
            self._provider[reservation.budget] = (
                ending.provider_remaining_tokens,
                ending.provider_limit_tokens,
            )

    def budget_changed(self, budget: str, kind: str) -> None:
        """An operator changed a budget's capacity or shares."""
        self._add("tokenpool.budget.changes", 1, {"budget": budget, "kind": kind})

    def autoscaled(self, budget: str, action: str, applied: bool) -> None:
        """The autoscaler decided something."""
        self._add(
            "tokenpool.autoscale.decisions",
            1,
            {"budget": budget, "action": action, "applied": str(applied).lower()},
        )

    def alert(self, alert: BudgetAlert) -> None:
        """A soft threshold was reached."""
        self._add(
            "tokenpool.budget.alerts",
            1,
            {
                "subject_kind": alert.subject.kind.value,
                "subject": alert.subject.name,
                "window": alert.window.value,
                "measure": alert.measure.value,
                "percent": alert.percent,
            },
        )

    def hook_delivery(self, event: str, outcome: str) -> None:
        """An operator-hook delivery ended (or was dropped)."""
        self._counters["tokenpool.hook.deliveries"].add(
            1, {"event": event, "outcome": outcome}
        )

    def spans_dropped(self, count: int, reason: str) -> None:
        """Spans were lost on their way to the collector (any thread)."""
        self._counters["tokenpool.telemetry.spans_dropped"].add(
            count, {"reason": reason}
        )

    def rpc_finished(self, method: str, code: str, seconds: float) -> None:
        """An RPC was answered."""
        self._histograms[RPC_SERVER_CALL_DURATION].record(
            seconds,
            {
                RPC_SYSTEM_NAME: "grpc",
                RPC_METHOD: method,
                RPC_RESPONSE_STATUS_CODE: code,
            },
        )

    def _gauge(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The callback of one gauge: it reads the engine's latest state."""

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, a) for v, a in self._gauge_values(name)]

        return observe

    def _gauge_values(self, name: str) -> list[tuple[float, Mapping[str, str]]]:
        if name.startswith("tokenpool.provider."):
            index = 0 if name.endswith("remaining_tokens") else 1
            return [
                (float(figures[index]), {"budget": budget})
                for budget, figures in list(self._provider.items())
            ]

        readings = self._readings()
        if name.startswith("tokenpool.calendar."):
            measure = "tokens" if name.endswith("_tokens") else "cost"
            used = ".used_" in name
            return [
                (
                    (spend.used if used else spend.limit)
                    / (1 if measure == "tokens" else _MICROS_PER_USD),
                    {
                        "subject_kind": spend.subject_kind,
                        "subject": spend.subject,
                        "window": spend.window,
                    },
                )
                for spend in readings.spend
                if spend.measure == measure
            ]
        if name == "tokenpool.reservations.open":
            return [
                (float(view.open_reservations), {"budget": view.name})
                for view in readings.budgets
            ]

        found: list[tuple[float, Mapping[str, str]]] = []
        for view in readings.budgets:
            for pool in view.pools:
                where = {"budget": view.name, "pool": pool.name.value}
                found.append((_pool_value(name, pool), where))
        return found


def _pool_value(name: str, pool: object) -> float:
    """One pool figure by gauge name."""
    field = {
        "tokenpool.pool.capacity": "capacity_tokens",
        "tokenpool.pool.available": "available_tokens",
        "tokenpool.pool.debt": "debt_tokens",
        "tokenpool.pool.in_flight": "in_flight_tokens",
        "tokenpool.pool.lent": "lent_tokens",
        "tokenpool.pool.borrowed": "borrowed_tokens",
        "tokenpool.pool.utilization": "utilization",
        "tokenpool.queue.length": "waiting",
    }[name]
    return float(getattr(pool, field))
