"""Circuit breakers: a pure state machine (:mod:`._machine`) plus a backend (memory, Redis).

* :mod:`._machine`: states, windows, transitions, probe accounting; no lock, no I/O, no clock.
* :mod:`._memory`: the in-process backend (a lock around the machine).
* :mod:`._redis`: the Redis backend (the same machine as Lua scripts, shared by processes).
* :mod:`._breaker`: :class:`CircuitBreaker`, a machine plus a backend.
* :mod:`._manager`: :class:`CircuitBreakerManager`, the registry.
"""

from ._breaker import Backend, BackendFactory, BreakerStatus, CircuitBreaker, TransitionListener
from ._machine import (
    ADMITTED,
    REJECTED,
    BreakerOverride,
    CircuitBreakerState,
    Permit,
    probe_permit,
)
from ._manager import (
    BreakerFactory,
    CircuitBreakerManager,
    default_factory,
    get_circuit_breaker_manager,
)
from ._memory import Clock, MemoryBackend

__all__ = [
    "ADMITTED",
    "REJECTED",
    "Backend",
    "BackendFactory",
    "BreakerFactory",
    "BreakerOverride",
    "BreakerStatus",
    "CircuitBreaker",
    "CircuitBreakerManager",
    "CircuitBreakerState",
    "Clock",
    "MemoryBackend",
    "Permit",
    "TransitionListener",
    "default_factory",
    "get_circuit_breaker_manager",
    "probe_permit",
]
