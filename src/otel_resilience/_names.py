"""Flat string constants derived from :mod:`otel_resilience.telemetry_contract`.

The contract module is the one source of the names (new code reads it directly); this module only
spells the ones the library's modules, its benchmark and its demo tests use as plain constants.
"""

from __future__ import annotations

from typing import Final

from . import telemetry_contract as _tc

_A, _M = _tc.ATTRIBUTES, _tc.METRICS

SCOPE: Final = _tc.SCOPE
OVERFLOW_ENDPOINT: Final = _tc.OVERFLOW_ENDPOINT
DURATION_BUCKETS_S: Final = _tc.DURATION_BUCKETS_S

# --- attributes ------------------------------------------------------------------------------
ATTR_SERVICE: Final = _A.service.key
ATTR_ENDPOINT: Final = _A.endpoint.key
ATTR_ERROR_TYPE: Final = _A.error_type.key
ATTR_BREAKER_STATE: Final = _A.breaker_state.key
ATTR_ATTEMPT: Final = _A.attempt.key
ATTR_ATTEMPTS: Final = _A.attempts.key
ATTR_RETRY_DELAY_S: Final = _A.retry_delay_s.key
ATTR_FALLBACK: Final = _A.fallback.key
ATTR_STATE_STORE_BACKEND: Final = _A.state_store_backend.key
ATTR_BREAKER_OVERRIDE: Final = _A.breaker_override.key
ATTR_ATTEMPT_KIND: Final = _A.attempt_kind.key
ATTR_HEDGE_WINNER: Final = _A.hedge_winner.key

#: value of ``resilience.circuit_breaker.override`` in normal operation
OVERRIDE_NONE: Final = _A.breaker_override.values[0]

EVENT_RETRY: Final = _tc.SPANS.call.events[0].name
EVENT_CANCELLED: Final = _tc.SPANS.attempt.events[1].name

#: Prometheus label names
PROM_SERVICE: Final = _A.service.label
PROM_ENDPOINT: Final = _A.endpoint.label
PROM_BREAKER_STATE_LABEL: Final = _A.breaker_state.label

#: Prometheus series names, as both the Python Prometheus exporter and the Collector write them
PROM_CALL_DURATION: Final = _M.call_duration.prometheus
PROM_ATTEMPT_DURATION: Final = _M.attempt_duration.prometheus
PROM_RETRIES: Final = _M.retries.prometheus
PROM_RETRY_DELAY: Final = _M.retry_delay.prometheus
PROM_TIMEOUTS: Final = _M.timeouts.prometheus
PROM_BREAKER_STATE: Final = _M.breaker_state.prometheus
PROM_BREAKER_TRANSITIONS: Final = _M.breaker_transitions.prometheus
PROM_BREAKER_REJECTIONS: Final = _M.breaker_rejections.prometheus
