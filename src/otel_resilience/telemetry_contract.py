"""The telemetry contract of otel-resilience, as data: every metric, attribute, span and event.

The library's instrumentation builds its instruments from :data:`METRICS`; the Grafana dashboards,
the Prometheus alert and recording rules and the tests read their names from this module, so a
name changes here and everywhere at once. Everything is immutable (frozen dataclasses, tuples).

>>> from otel_resilience import telemetry_contract as tc
>>> tc.METRICS.call_duration.prometheus
'resilience_call_duration_seconds'
>>> tc.ATTRIBUTES.service.label
'resilience_service'
>>> [m.name for m in tc.METRICS if not m.emitted]
[]

Entries with ``emitted=False`` are part of the contract (dashboards already query them) but the
library does not record them yet; they are kept here so that the feature that emits them only
flips the flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple

__all__ = [
    "ATTRIBUTES",
    "DURATION_BUCKETS_S",
    "ERROR_TYPES",
    "METRICS",
    "OVERFLOW_ENDPOINT",
    "SCOPE",
    "SPANS",
    "Attribute",
    "Attributes",
    "Event",
    "Instrument",
    "Metric",
    "Metrics",
    "Span",
    "Spans",
]

#: the instrumentation scope (meter and tracer name); its version is the package version
SCOPE: Final = "otel_resilience"

#: value of ``resilience.endpoint`` on metrics once the cap on distinct (service, endpoint)
#: pairs is reached (spans keep the real endpoint)
OVERFLOW_ENDPOINT: Final = "_other"

#: second-scale histogram boundaries (the SDK's defaults are millisecond-scale)
DURATION_BUCKETS_S: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
)  # fmt: skip


def _prometheus_label(key: str) -> str:
    """The Prometheus label an OTel attribute becomes: dots turn into underscores."""
    return key.replace(".", "_")


class Instrument(Enum):
    """The kind of OpenTelemetry instrument a metric is recorded with."""

    COUNTER = "counter"
    UP_DOWN_COUNTER = "up_down_counter"
    HISTOGRAM = "histogram"
    OBSERVABLE_GAUGE = "observable_gauge"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute key: where it appears and which values it takes.

    ``values`` empty means the values are the application's (service and endpoint names) or a
    number; otherwise every value the library records is one of them. ``reserved`` values are
    allowed by the contract but not recorded yet.
    """

    key: str
    description: str
    values: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()
    emitted: bool = True

    def __post_init__(self) -> None:
        both = set(self.values) & set(self.reserved)
        if both:
            raise ValueError(f"{self.key}: {sorted(both)} are both values and reserved values")

    @property
    def label(self) -> str:
        """The Prometheus label name (``resilience.service`` -> ``resilience_service``)."""
        return _prometheus_label(self.key)


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: its OTel instrument, unit, attributes and Prometheus name.

    ``unit`` is ``""`` for a dimensionless gauge (never ``1``: Prometheus would suffix it).
    ``prometheus`` is the series family name on both export paths (the Python Prometheus
    exporter and the Collector): histograms add ``_bucket``, ``_sum`` and ``_count`` to it.
    """

    name: str
    instrument: Instrument
    unit: str
    description: str
    attributes: tuple[str, ...]
    prometheus: str
    buckets: tuple[float, ...] | None = None
    emitted: bool = True

    def __post_init__(self) -> None:
        histogram = self.instrument is Instrument.HISTOGRAM
        if histogram != (self.buckets is not None):
            raise ValueError(
                f"{self.name}: buckets are given for histograms, and only for them"
                f" (instrument {self.instrument.value}, buckets {self.buckets!r})"
            )
        if self.unit == "1":
            raise ValueError(f"{self.name}: unit '1' is not accepted; use '' for a plain number")
        expected = self.name.replace(".", "_") + ("_seconds" if self.unit == "s" else "")
        if self.instrument is Instrument.COUNTER:
            expected += "_total"
        if self.prometheus != expected:
            raise ValueError(
                f"{self.name}: Prometheus name {self.prometheus!r} is not what the exporters"
                f" write; expected {expected!r}"
            )

    @property
    def series(self) -> tuple[str, ...]:
        """Every Prometheus series name of the metric."""
        if self.instrument is Instrument.HISTOGRAM:
            return tuple(f"{self.prometheus}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.prometheus,)

    @property
    def labels(self) -> tuple[str, ...]:
        """The Prometheus labels of the metric's attributes."""
        return tuple(_prometheus_label(key) for key in self.attributes)


@dataclass(frozen=True, slots=True)
class Event:
    """A span event: its name and attribute keys."""

    name: str
    attributes: tuple[str, ...]
    description: str
    emitted: bool = True


@dataclass(frozen=True, slots=True)
class Span:
    """A span the library starts: name template (``str.format`` with service and endpoint),
    kind, attribute keys and events."""

    name: str
    kind: str
    attributes: tuple[str, ...]
    events: tuple[Event, ...]
    description: str

    def span_name(self, service: str, endpoint: str) -> str:
        """The span name of one (service, endpoint)."""
        return self.name.format(service=service, endpoint=endpoint)


#: every ``error.type`` value the library records: the ``ExternalServiceError`` values
ERROR_TYPES: Final = (
    "timeout",
    "connection_error",
    "rate_limit",
    "authentication_error",
    "permission_denied",
    "not_found",
    "bad_request",
    "server_error",
    "unknown_error",
    "circuit_open",
    "throttled",
    "concurrency_limited",
)


class Attributes(NamedTuple):
    """Every attribute key of the contract (iterate it, or pick one by field)."""

    service: Attribute
    endpoint: Attribute
    error_type: Attribute
    breaker_state: Attribute
    breaker_override: Attribute
    state_store_backend: Attribute
    attempt: Attribute
    attempts: Attribute
    retry_delay_s: Attribute
    fallback: Attribute
    chaos_kind: Attribute
    attempt_kind: Attribute
    hedge_winner: Attribute
    http_resend_count: Attribute


ATTRIBUTES: Final = Attributes(
    service=Attribute("resilience.service", "The service called (service_name)."),
    endpoint=Attribute(
        "resilience.endpoint",
        f"The endpoint called; {OVERFLOW_ENDPOINT!r} on metrics past the cap on pairs.",
    ),
    error_type=Attribute(
        "error.type",
        "The ExternalServiceError of a failure (absent on success).",
        values=ERROR_TYPES,
    ),
    breaker_state=Attribute(
        "resilience.circuit_breaker.state",
        "Circuit breaker state (breaker metrics, call span).",
        values=("closed", "open", "half_open"),
    ),
    breaker_override=Attribute(
        "resilience.circuit_breaker.override",
        "Manual override of a breaker (override gauge); none is normal operation.",
        values=("none", "forced_open", "disabled", "metrics_only"),
    ),
    state_store_backend=Attribute(
        "resilience.state_store.backend",
        "The shared state store that failed (state store errors).",
        values=("redis",),
    ),
    attempt=Attribute(
        "resilience.attempt", "1-based attempt number (attempt spans, retry events; no metric)."
    ),
    attempts=Attribute("resilience.attempts", "How many attempts ran (call span)."),
    retry_delay_s=Attribute("resilience.retry.delay_s", "Backoff slept, seconds (retry event)."),
    fallback=Attribute("resilience.fallback", "True when a fallback served the call (call span)."),
    chaos_kind=Attribute(
        "resilience.chaos.kind",
        "Kind of injected chaos (chaos counter, chaos event).",
        values=("fault", "latency"),
        reserved=("outcome",),
    ),
    attempt_kind=Attribute(
        "resilience.attempt.kind",
        "Why an attempt ran (attempt spans).",
        values=("primary", "retry", "hedge"),
    ),
    hedge_winner=Attribute("resilience.hedge.winner", "True on the winning hedge (attempt spans)."),
    http_resend_count=Attribute(
        "http.request.resend_count",
        "Attempt number minus one, from the second attempt (HTTP integrations' attempt spans).",
        emitted=False,
    ),
)

_A = ATTRIBUTES
_PAIR = (_A.service.key, _A.endpoint.key)
_PAIR_ERROR = (*_PAIR, _A.error_type.key)


class Metrics(NamedTuple):
    """Every metric of the contract (iterate it, or pick one by field)."""

    call_duration: Metric
    attempt_duration: Metric
    retries: Metric
    retry_delay: Metric
    retries_exhausted: Metric
    timeouts: Metric
    breaker_state: Metric
    breaker_transitions: Metric
    breaker_rejections: Metric
    breaker_override: Metric
    retry_budget_rejections: Metric
    fallbacks: Metric
    rate_limiter_rejections: Metric
    state_store_errors: Metric
    concurrency_limit: Metric
    concurrency_in_flight: Metric
    concurrency_rejections: Metric
    concurrency_wait: Metric
    hedges: Metric
    chaos_injections: Metric


_I = Instrument
_S = DURATION_BUCKETS_S

METRICS: Final = Metrics(
    call_duration=Metric(
        "resilience.call.duration", _I.HISTOGRAM, "s",
        "Duration of resilient calls, retries and backoff included.",
        _PAIR_ERROR, "resilience_call_duration_seconds", buckets=_S,
    ),
    attempt_duration=Metric(
        "resilience.attempt.duration", _I.HISTOGRAM, "s",
        "Duration of single attempts of resilient calls.",
        _PAIR_ERROR, "resilience_attempt_duration_seconds", buckets=_S,
    ),
    retries=Metric(
        "resilience.retries", _I.COUNTER, "{retry}",
        "Retries scheduled, by the retried error type.",
        _PAIR_ERROR, "resilience_retries_total",
    ),
    retry_delay=Metric(
        "resilience.retry.delay", _I.HISTOGRAM, "s",
        "Backoff slept before a retry.",
        _PAIR, "resilience_retry_delay_seconds", buckets=_S,
    ),
    retries_exhausted=Metric(
        "resilience.retries.exhausted", _I.COUNTER, "{call}",
        "Calls that failed after using up their attempts or deadline.",
        _PAIR_ERROR, "resilience_retries_exhausted_total",
    ),
    timeouts=Metric(
        "resilience.timeouts", _I.COUNTER, "{timeout}",
        "Attempts that ended in a timeout.",
        _PAIR, "resilience_timeouts_total",
    ),
    breaker_state=Metric(
        "resilience.circuit_breaker.state", _I.OBSERVABLE_GAUGE, "",
        "Circuit breaker state: 1 for the current state, 0 for the others.",
        (*_PAIR, _A.breaker_state.key), "resilience_circuit_breaker_state",
    ),
    breaker_transitions=Metric(
        "resilience.circuit_breaker.transitions", _I.COUNTER, "{transition}",
        "Circuit breaker state transitions, by the new state.",
        (*_PAIR, _A.breaker_state.key), "resilience_circuit_breaker_transitions_total",
    ),
    breaker_rejections=Metric(
        "resilience.circuit_breaker.rejections", _I.COUNTER, "{call}",
        "Calls or attempts an open circuit breaker rejected.",
        _PAIR, "resilience_circuit_breaker_rejections_total",
    ),
    breaker_override=Metric(
        "resilience.circuit_breaker.override", _I.OBSERVABLE_GAUGE, "",
        "Circuit breaker manual override (CB_MANUAL_STATE, force_open, disable, metrics_only):"
        " 1 for the active one (none: normal operation), 0 for the others.",
        (*_PAIR, _A.breaker_override.key), "resilience_circuit_breaker_override",
    ),
    retry_budget_rejections=Metric(
        "resilience.retry_budget.rejections", _I.COUNTER, "{retry}",
        "Retries the retry budget refused.",
        _PAIR_ERROR, "resilience_retry_budget_rejections_total",
    ),
    fallbacks=Metric(
        "resilience.fallbacks", _I.COUNTER, "{call}",
        "Failed calls served by a fallback.",
        _PAIR_ERROR, "resilience_fallbacks_total",
    ),
    rate_limiter_rejections=Metric(
        "resilience.rate_limiter.rejections", _I.COUNTER, "{call}",
        "Calls the library's own rate limiter refused.",
        _PAIR, "resilience_rate_limiter_rejections_total",
    ),
    state_store_errors=Metric(
        "resilience.state_store.errors", _I.COUNTER, "{error}",
        "Errors talking to the shared breaker state store.",
        (_A.state_store_backend.key,), "resilience_state_store_errors_total",
    ),
    concurrency_limit=Metric(
        "resilience.concurrency_limit.limit", _I.OBSERVABLE_GAUGE, "{call}",
        "The concurrency limit in force (calls in flight allowed).",
        _PAIR, "resilience_concurrency_limit_limit",
    ),
    concurrency_in_flight=Metric(
        "resilience.concurrency_limit.in_flight", _I.UP_DOWN_COUNTER, "{call}",
        "Calls holding a concurrency-limit permit.",
        _PAIR, "resilience_concurrency_limit_in_flight",
    ),
    concurrency_rejections=Metric(
        "resilience.concurrency_limit.rejections", _I.COUNTER, "{call}",
        "Calls a concurrency limit refused.",
        _PAIR, "resilience_concurrency_limit_rejections_total",
    ),
    concurrency_wait=Metric(
        "resilience.concurrency_limit.wait.duration", _I.HISTOGRAM, "s",
        "Time waited for a concurrency-limit permit.",
        _PAIR, "resilience_concurrency_limit_wait_duration_seconds", buckets=_S,
    ),
    hedges=Metric(
        "resilience.hedges", _I.COUNTER, "{attempt}",
        "Hedged attempts started.",
        _PAIR, "resilience_hedges_total",
    ),
    chaos_injections=Metric(
        "resilience.chaos.injections", _I.COUNTER, "{injection}",
        "Chaos faults, latencies and outcomes injected.",
        (*_PAIR, _A.chaos_kind.key), "resilience_chaos_injections_total",
    ),
)  # fmt: skip


class Spans(NamedTuple):
    """The spans the library starts."""

    call: Span
    attempt: Span


SPANS: Final = Spans(
    call=Span(
        "{service} {endpoint}",
        "INTERNAL",
        (*_PAIR, _A.breaker_state.key, _A.attempts.key, _A.error_type.key, _A.fallback.key),
        (
            Event(
                "retry",
                (_A.attempt.key, _A.retry_delay_s.key, _A.error_type.key),
                "One per backoff, before the retry.",
            ),
        ),
        "One per resilient call; status ERROR and error.type on final failure.",
    ),
    attempt=Span(
        "{service} {endpoint} attempt",
        "INTERNAL",
        (
            *_PAIR,
            _A.attempt.key,
            _A.error_type.key,
            _A.attempt_kind.key,
            _A.hedge_winner.key,
            _A.http_resend_count.key,
        ),
        (
            Event("exception", (), "The failure, message and stack trace redacted."),
            Event("cancelled", (), "A losing hedge, cancelled (not a failure)."),
            Event("chaos", (_A.chaos_kind.key,), "An injected fault or latency."),
        ),
        "One per attempt, child of the call span; a failed one has status ERROR.",
    ),
)
