"""otel-resilience: resilient, observable calls to external dependencies in one line.

>>> from otel_resilience import resilient_call
>>> resilient_call("external_api", "data", lambda: {"ok": True}, timeout_sec=30, max_retries=3)
{'ok': True}
"""

import inspect
import logging
import sys
import typing

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
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._health import HealthServer, health_report, health_report_from_prometheus
from ._mapping import (
    Classification,
    map_external_error,
    parse_retry_after,
    register_classifier,
)
from ._setup import TelemetryHandle, configure_telemetry
from ._telemetry import set_telemetry_providers
from ._timeout import (
    AttemptTimeout,
    deadline_scope,
    remaining_time,
    shutdown_workers,
    with_timeout,
)
from ._version import __version__

# A library never decides where logs go: without the application's logging setup, stay quiet.
logging.getLogger("otel_resilience").addHandler(logging.NullHandler())

__all__ = [
    "AttemptTimeout",
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
    "TelemetryHandle",
    "ThrottledError",
    "__version__",
    "configure",
    "configure_telemetry",
    "create_retry_decorator",
    "deadline_scope",
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
    "with_timeout",
]


def reset() -> None:
    """Restore every piece of global state: config, breakers, budgets, telemetry providers,
    and stop idle timeout worker threads.

    For tests and for applications that reconfigure at run time.
    """
    from ._budget import reset_budgets
    from ._config import reset_config
    from ._ratelimit import reset_rate_limiters
    from ._telemetry import get_telemetry

    reset_config()
    get_circuit_breaker_manager().reset()
    reset_budgets()
    reset_rate_limiters()
    get_telemetry().reset()
    shutdown_workers(timeout=0)
    redis_stores = sys.modules.get("otel_resilience._redis")  # only if Redis was ever used
    if redis_stores is not None:
        redis_stores.close_stores()


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
