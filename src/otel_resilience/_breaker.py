"""Compatibility re-exports: the breakers live in :mod:`otel_resilience._breakers`."""

from ._breakers import (
    ADMITTED,
    REJECTED,
    BreakerOverride,
    BreakerStatus,
    CircuitBreaker,
    CircuitBreakerManager,
    CircuitBreakerState,
    Clock,
    Permit,
    TransitionListener,
    get_circuit_breaker_manager,
    probe_permit,
)

__all__ = [
    "ADMITTED",
    "REJECTED",
    "BreakerOverride",
    "BreakerStatus",
    "CircuitBreaker",
    "CircuitBreakerManager",
    "CircuitBreakerState",
    "Clock",
    "Permit",
    "TransitionListener",
    "get_circuit_breaker_manager",
    "probe_permit",
]
