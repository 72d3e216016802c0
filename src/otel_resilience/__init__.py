"""otel-resilience: resilient, observable calls to external dependencies in one line.

>>> from otel_resilience import resilient_call
>>> resilient_call("external_api", "data", lambda: {"ok": True}, timeout_sec=30, max_retries=3)
{'ok': True}
"""

import logging

from ._breaker import (
    BreakerOverride,
    BreakerStatus,
    CircuitBreaker,
    CircuitBreakerManager,
    CircuitBreakerState,
)
from ._budget import RetryBudget
from ._call import create_retry_decorator, resilient, resilient_call, resilient_call_async
from ._config import ConfigError, ReliabilityConfig
from ._errors import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._health import HealthServer, health_report
from ._mapping import Classification, map_external_error, register_classifier
from ._retry import TENACITY_AVAILABLE
from ._runtime import (
    Runtime,
    configure,
    default_runtime,
    get_circuit_breaker_manager,
    get_config,
    reset,
    use_runtime,
)
from ._setup import TelemetryHandle, configure_telemetry
from ._telemetry import set_telemetry_providers
from ._timeout import remaining_time, shutdown_workers, with_timeout
from ._version import __version__

# A library never decides where logs go: without the application's logging setup, stay quiet.
logging.getLogger("otel_resilience").addHandler(logging.NullHandler())

__all__ = [  # noqa: RUF022 - plainly sorted (tests/test_public_api.py)
    "BreakerOverride",
    "BreakerStatus",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitBreakerManager",
    "CircuitBreakerState",
    "CircuitOpenError",
    "Classification",
    "ConfigError",
    "ExternalServiceError",
    "HealthServer",
    "ReliabilityConfig",
    "ReliabilityError",
    "RetryBudget",
    "Runtime",
    "TENACITY_AVAILABLE",
    "TelemetryHandle",
    "ThrottledError",
    "__version__",
    "configure",
    "configure_telemetry",
    "create_retry_decorator",
    "default_runtime",
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
    "use_runtime",
    "with_timeout",
]
