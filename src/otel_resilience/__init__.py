"""otel-resilience: resilient, observable calls to external dependencies in one line.

>>> from otel_resilience import resilient_call
>>> resilient_call("external_api", "data", lambda: {"ok": True}, timeout_sec=30, max_retries=3)
{'ok': True}
"""

import logging
import sys

from ._breaker import (
    BreakerOverride,
    BreakerStatus,
    CircuitBreaker,
    CircuitBreakerManager,
    CircuitBreakerState,
    get_circuit_breaker_manager,
)
from ._budget import RetryBudget
from ._call import create_retry_decorator, resilient, resilient_call, resilient_call_async
from ._config import ConfigError, ReliabilityConfig, configure, get_config
from ._errors import (
    CallTimeoutError,
    CircuitOpenError,
    ConcurrencyLimitedError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._health import HealthServer, health_report
from ._mapping import Classification, map_external_error, register_classifier
from ._setup import TelemetryHandle, configure_telemetry
from ._telemetry import set_telemetry_providers
from ._timeout import remaining_time, shutdown_workers, with_timeout
from ._version import __version__

# A library never decides where logs go: without the application's logging setup, stay quiet.
logging.getLogger("otel_resilience").addHandler(logging.NullHandler())

__all__ = [
    "BreakerOverride",
    "BreakerStatus",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitBreakerManager",
    "CircuitBreakerState",
    "CircuitOpenError",
    "Classification",
    "ConcurrencyLimitedError",
    "ConfigError",
    "ExternalServiceError",
    "HealthServer",
    "ReliabilityConfig",
    "ReliabilityError",
    "RetryBudget",
    "TelemetryHandle",
    "ThrottledError",
    "__version__",
    "configure",
    "configure_telemetry",
    "create_retry_decorator",
    "get_circuit_breaker_manager",
    "get_config",
    "health_report",
    "map_external_error",
    "register_classifier",
    "remaining_time",
    "reset",
    "resilient",
    "resilient_call",
    "resilient_call_async",
    "set_telemetry_providers",
    "shutdown_workers",
    "with_timeout",
]


def reset() -> None:
    """Restore every piece of global state: config, breakers, budgets, telemetry providers,
    and stop idle timeout worker threads.

    For tests and for applications that reconfigure at run time.
    """
    from ._budget import reset_budgets
    from ._call import _load  # WIRE(load control)
    from ._config import reset_config
    from ._ratelimit import reset_rate_limiters
    from ._telemetry import get_telemetry

    reset_config()
    get_circuit_breaker_manager().reset()
    reset_budgets()
    reset_rate_limiters()
    _load.reset()  # WIRE(load control)
    get_telemetry().reset()
    shutdown_workers(timeout=0)
    redis_stores = sys.modules.get("otel_resilience._redis")  # only if Redis was ever used
    if redis_stores is not None:
        redis_stores.close_stores()
