"""otel-resilience: resilient, observable calls to external dependencies in one line.

>>> from otel_resilience import resilient_call
>>> resilient_call("external_api", "data", lambda: {"ok": True}, timeout_sec=30, max_retries=3)
{'ok': True}
"""

import inspect
import logging
import typing

from ._breakers import (
    BreakerOverride,
    BreakerStatus,
    CircuitBreaker,
    CircuitBreakerManager,
    CircuitBreakerState,
)
from ._budget import RetryBudget
from ._call import create_retry_decorator, resilient, resilient_call, resilient_call_async
from ._classify import Classification, Classifiers, parse_retry_after
from ._config import ConfigError, ReliabilityConfig
from ._errors import (
    CallTimeoutError,
    CircuitOpenError,
    ConcurrencyLimitedError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._health import HealthServer, health_report, health_report_from_prometheus
from ._retry import TENACITY_AVAILABLE
from ._runtime import (
    Runtime,
    configure,
    default_runtime,
    get_circuit_breaker_manager,
    get_config,
    map_external_error,
    register_classifier,
    reset,
    set_telemetry_providers,
    use_runtime,
)
from ._setup import TelemetryHandle, configure_telemetry
from ._timeout import AttemptTimeout, deadline_scope, remaining_time, shutdown_workers
from ._version import __version__
from ._with_timeout import with_timeout

# A library never decides where logs go: without the application's logging setup, stay quiet.
logging.getLogger("otel_resilience").addHandler(logging.NullHandler())

__all__ = [  # noqa: RUF022 - plainly sorted (tests/test_public_api.py)
    "AttemptTimeout",
    "BreakerOverride",
    "BreakerStatus",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitBreakerManager",
    "CircuitBreakerState",
    "CircuitOpenError",
    "Classification",
    "Classifiers",
    "ConcurrencyLimitedError",
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
    "deadline_scope",
    "default_runtime",
    "get_circuit_breaker_manager",
    "get_config",
    "health_report",
    "health_report_from_prometheus",
    "map_external_error",
    "parse_retry_after",
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


def _publish() -> None:
    """Show the public names as ``otel_resilience.X`` in tracebacks, reprs and pickles.

    As httpx does: the classes and functions live in private modules, but users import (and
    pickle, and read in tracebacks) ``otel_resilience.ReliabilityError``, not
    ``otel_resilience._errors.ReliabilityError``. Pickling by reference keeps working because
    every rewritten name is an attribute of this module.

    ``typing.get_type_hints(cls)`` evaluates a class's (string) annotations in the module named
    by ``cls.__module__``, which would now be this one; so a class's own annotations are
    evaluated first, in the module that wrote them (dataclass tools such as cattrs rely on it).
    """
    namespace = globals()
    for name in __all__:
        obj = namespace[name]
        if isinstance(obj, type):
            own = inspect.get_annotations(obj)
            if own:
                obj.__annotations__ = {**own, **_own_hints(obj, own)}
            obj.__module__ = __name__
        elif inspect.isfunction(obj):
            obj.__module__ = __name__


def _own_hints(cls: type, own: dict[str, object]) -> dict[str, object]:
    """``cls``'s own annotations evaluated; none when one cannot be (a name imported only for
    type checkers): ``get_type_hints`` fails on those as it did before, and importing the
    package never does."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:
        return {}
    return {key: hints[key] for key in own}


_publish()
