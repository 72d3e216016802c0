"""Every telemetry name of the library, in one place (``TELEMETRY.md`` is the contract).

The instrumentation, the dashboards, the alert rules and the tests all read their names from this
module, so a rename happens here and everywhere at once.
"""

from __future__ import annotations

from typing import Final

SCOPE: Final = "otel_resilience"

# --- attributes ------------------------------------------------------------------------------
ATTR_SERVICE: Final = "resilience.service"
ATTR_ENDPOINT: Final = "resilience.endpoint"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_BREAKER_STATE: Final = "resilience.circuit_breaker.state"
ATTR_ATTEMPT: Final = "resilience.attempt"  # spans and span events only, never a metric attribute
ATTR_ATTEMPTS: Final = "resilience.attempts"  # on the call span: how many attempts ran
ATTR_RETRY_DELAY_S: Final = "resilience.retry.delay_s"  # on the ``retry`` span event
ATTR_FALLBACK: Final = "resilience.fallback"  # on the call span when a fallback served the result
ATTR_STATE_STORE_BACKEND: Final = "resilience.state_store.backend"
ATTR_BREAKER_OVERRIDE: Final = "resilience.circuit_breaker.override"

#: values of ``resilience.circuit_breaker.override``: ``none`` is normal operation
OVERRIDE_NONE: Final = "none"

EVENT_RETRY: Final = "retry"

#: value of ``resilience.endpoint`` once the cap on distinct (service, endpoint) pairs is reached
OVERFLOW_ENDPOINT: Final = "_other"

# --- metrics (OTel name, Prometheus name) ------------------------------------------------------
CALL_DURATION: Final = "resilience.call.duration"
ATTEMPT_DURATION: Final = "resilience.attempt.duration"
RETRIES: Final = "resilience.retries"
RETRY_DELAY: Final = "resilience.retry.delay"
RETRIES_EXHAUSTED: Final = "resilience.retries.exhausted"
TIMEOUTS: Final = "resilience.timeouts"
BREAKER_STATE: Final = "resilience.circuit_breaker.state"
BREAKER_TRANSITIONS: Final = "resilience.circuit_breaker.transitions"
BREAKER_REJECTIONS: Final = "resilience.circuit_breaker.rejections"
BREAKER_OVERRIDE: Final = "resilience.circuit_breaker.override"
RETRY_BUDGET_REJECTIONS: Final = "resilience.retry_budget.rejections"
FALLBACKS: Final = "resilience.fallbacks"
RATE_LIMITER_REJECTIONS: Final = "resilience.rate_limiter.rejections"
STATE_STORE_ERRORS: Final = "resilience.state_store.errors"
CONCURRENCY_LIMIT: Final = "resilience.concurrency_limit.limit"  # WIRE(load control)
CONCURRENCY_IN_FLIGHT: Final = "resilience.concurrency_limit.in_flight"  # WIRE(load control)
CONCURRENCY_REJECTIONS: Final = "resilience.concurrency_limit.rejections"  # WIRE(load control)
CONCURRENCY_WAIT: Final = "resilience.concurrency_limit.wait.duration"  # WIRE(load control)

#: second-scale histogram boundaries (the SDK's defaults are millisecond-scale)
DURATION_BUCKETS_S: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
)  # fmt: skip


def prometheus_label(attribute: str) -> str:
    """The Prometheus label an OTel attribute becomes: dots turn into underscores."""
    return attribute.replace(".", "_")


#: Prometheus label names
PROM_SERVICE: Final = prometheus_label(ATTR_SERVICE)
PROM_ENDPOINT: Final = prometheus_label(ATTR_ENDPOINT)
PROM_ERROR_TYPE: Final = prometheus_label(ATTR_ERROR_TYPE)
PROM_BREAKER_STATE_LABEL: Final = prometheus_label(ATTR_BREAKER_STATE)
PROM_STATE_STORE_BACKEND: Final = prometheus_label(ATTR_STATE_STORE_BACKEND)
PROM_BREAKER_OVERRIDE_LABEL: Final = prometheus_label(ATTR_BREAKER_OVERRIDE)

#: Prometheus series names, as both the Python Prometheus exporter and the Collector write them.
PROM_CALL_DURATION: Final = "resilience_call_duration_seconds"
PROM_ATTEMPT_DURATION: Final = "resilience_attempt_duration_seconds"
PROM_RETRIES: Final = "resilience_retries_total"
PROM_RETRY_DELAY: Final = "resilience_retry_delay_seconds"
PROM_RETRIES_EXHAUSTED: Final = "resilience_retries_exhausted_total"
PROM_TIMEOUTS: Final = "resilience_timeouts_total"
PROM_BREAKER_STATE: Final = "resilience_circuit_breaker_state"
PROM_BREAKER_TRANSITIONS: Final = "resilience_circuit_breaker_transitions_total"
PROM_BREAKER_REJECTIONS: Final = "resilience_circuit_breaker_rejections_total"
PROM_BREAKER_OVERRIDE: Final = "resilience_circuit_breaker_override"
PROM_RETRY_BUDGET_REJECTIONS: Final = "resilience_retry_budget_rejections_total"
PROM_FALLBACKS: Final = "resilience_fallbacks_total"
PROM_RATE_LIMITER_REJECTIONS: Final = "resilience_rate_limiter_rejections_total"
PROM_STATE_STORE_ERRORS: Final = "resilience_state_store_errors_total"
PROM_CONCURRENCY_LIMIT: Final = "resilience_concurrency_limit_limit"  # WIRE(load control)
PROM_CONCURRENCY_IN_FLIGHT: Final = "resilience_concurrency_limit_in_flight"  # WIRE(load control)
PROM_CONCURRENCY_REJECTIONS: Final = (
    "resilience_concurrency_limit_rejections_total"  # WIRE(load control)
)
PROM_CONCURRENCY_WAIT: Final = (
    "resilience_concurrency_limit_wait_duration_seconds"  # WIRE(load control)
)

#: Prometheus metric families (histograms without their ``_bucket``/``_sum``/``_count`` suffix)
PROM_METRICS: Final = (
    PROM_CALL_DURATION,
    PROM_ATTEMPT_DURATION,
    PROM_RETRIES,
    PROM_RETRY_DELAY,
    PROM_RETRIES_EXHAUSTED,
    PROM_TIMEOUTS,
    PROM_BREAKER_STATE,
    PROM_BREAKER_TRANSITIONS,
    PROM_BREAKER_REJECTIONS,
    PROM_BREAKER_OVERRIDE,
    PROM_RETRY_BUDGET_REJECTIONS,
    PROM_FALLBACKS,
    PROM_RATE_LIMITER_REJECTIONS,
    PROM_STATE_STORE_ERRORS,
    PROM_CONCURRENCY_LIMIT,  # WIRE(load control)
    PROM_CONCURRENCY_IN_FLIGHT,  # WIRE(load control)
    PROM_CONCURRENCY_REJECTIONS,  # WIRE(load control)
    PROM_CONCURRENCY_WAIT,  # WIRE(load control)
)
