"""Circuit breakers: a pure state machine (:mod:`._machine`) plus a backend (memory, Redis).

* :mod:`._machine`: states, windows, transitions, probe accounting; no lock, no I/O, no clock.
* :mod:`._memory`: the in-process backend (a lock around the machine).
* :mod:`._redis`: the Redis backend (the same machine as Lua scripts, shared by processes).
* :mod:`._breaker`: :class:`CircuitBreaker`, a machine plus a backend.
* :mod:`._manager`: :class:`CircuitBreakerManager`, the registry.
"""

from ._breaker import Backend as Backend
from ._breaker import BackendFactory as BackendFactory
from ._breaker import BreakerStatus as BreakerStatus
from ._breaker import CircuitBreaker as CircuitBreaker
from ._breaker import TransitionListener as TransitionListener
from ._machine import ADMITTED as ADMITTED
from ._machine import REJECTED as REJECTED
from ._machine import BreakerOverride as BreakerOverride
from ._machine import CircuitBreakerState as CircuitBreakerState
from ._machine import Permit as Permit
from ._machine import probe_permit as probe_permit
from ._manager import BreakerFactory as BreakerFactory
from ._manager import CircuitBreakerManager as CircuitBreakerManager
from ._manager import default_factory as default_factory
from ._memory import Clock as Clock
from ._memory import MemoryBackend as MemoryBackend
