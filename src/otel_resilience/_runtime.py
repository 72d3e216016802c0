"""The runtime: the one object that owns the library's state.

A :class:`Runtime` holds the configuration, the circuit breakers, the retry budgets and rate
limiters, the telemetry and the clock. Everything a call needs about its service is gathered
once in a :class:`ServiceContext`, cached in one place (``Runtime._services``) and invalidated at
one point (:meth:`Runtime._config_changed`): nothing registers itself at import time.

The process has one default runtime; :func:`configure`, :func:`get_config`,
:func:`get_circuit_breaker_manager` and :func:`reset` are thin wrappers over it. Tests (and the
``otel_resilience.testing`` kit) install an isolated one with :func:`use_runtime`::

    >>> from otel_resilience import Runtime, resilient_call, use_runtime
    >>> with use_runtime(Runtime()) as runtime:
    ...     resilient_call("inventory", "lookup", lambda: 42)
    ...     runtime.get_config("inventory").HTTP_RETRIES
    42
    3
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from ._breakers import CircuitBreakerManager
from ._budget import RetryBudget, budget_settings
from ._chaos import Faults, injector_for
from ._classify import Classifier, Classifiers
from ._classify import map_external_error as _map_external_error
from ._clock import Clock, SystemClock
from ._config import ConfigRegistry, ReliabilityConfig
from ._errors import ReliabilityError
from ._hedging import HedgePolicy, hedging_settings
from ._load import Gate, LoadControl
from ._ratelimit import RateLimiter, build_rate_limiter, rate_limiter_settings
from ._telemetry import Telemetry
from ._timeout import MODES, validate_timeout

#: the most attempts one call may make (the bound of ``HTTP_RETRIES`` too)
MAX_ATTEMPTS: Final = 100

#: service contexts kept before idle ones (empty budget and limiter windows) are dropped; a
#: dropped one is made afresh at its service's next call, so endless distinct service names
#: cost bounded memory
MAX_IDLE_SERVICES: Final = 1000


def check_attempts(max_retries: object) -> int:
    """Attempts in all from a ``max_retries`` argument (0 and 1 both mean one attempt)."""
    if (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= MAX_ATTEMPTS
    ):
        raise ValueError(
            f"max_retries must be an integer from 0 to {MAX_ATTEMPTS} (attempts in all; 0 and 1"
            f" mean a single attempt), got {max_retries!r}"
        )
    return max(1, max_retries)


def check_mode(timeout_mode: object) -> str:
    """A per-call ``timeout_mode``: one of ``TIMEOUT_MODE``'s values."""
    if timeout_mode not in MODES:
        raise ValueError(
            f"timeout_mode must be one of {', '.join(MODES)} (or None: the service's"
            f" TIMEOUT_MODE), got {timeout_mode!r}"
        )
    return str(timeout_mode)


def check_deadline(deadline_sec: object) -> float:
    import math

    if (
        isinstance(deadline_sec, bool)
        or not isinstance(deadline_sec, int | float)
        or not math.isfinite(deadline_sec)
        or deadline_sec <= 0
    ):
        raise ValueError(f"deadline_sec must be a number of seconds > 0, got {deadline_sec!r}")
    return float(deadline_sec)


class CallSettings:
    """The validated options of one call (a service's defaults are shared by its calls)."""

    __slots__ = ("attempts", "config", "deadline", "mode", "timeout")

    def __init__(
        self,
        config: ReliabilityConfig,
        timeout_sec: float | None = None,
        max_retries: int | None = None,
        deadline_sec: float | None = None,
        timeout_mode: str | None = None,
        cap: int | None = None,
    ) -> None:
        self.config = config
        self.timeout = (
            config.HTTP_TIMEOUT_SEC
            if timeout_sec is None
            else validate_timeout("timeout_sec", timeout_sec)
        )
        self.attempts = config.max_attempts if max_retries is None else check_attempts(max_retries)
        if cap is not None and self.attempts > cap:
            self.attempts = cap
        self.deadline = (
            config.DEADLINE_SEC if deadline_sec is None else check_deadline(deadline_sec)
        )
        self.mode = config.TIMEOUT_MODE if timeout_mode is None else check_mode(timeout_mode)


class ServiceContext:
    """What every call of one service shares: its config, default settings, budget, limiter."""

    __slots__ = (
        "budget",
        "config",
        "defaults",
        "gate",
        "generation",
        "hedging",
        "injector",
        "limiter",
        "name",
        "runtime",
    )

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        config: ReliabilityConfig,
        generation: int,
        previous: ServiceContext | None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.config = config
        self.generation = generation
        self.defaults = CallSettings(config, cap=runtime.max_attempts)
        self.budget = _carry_budget(config, previous, runtime.clock)
        self.limiter = _carry_limiter(name, config, previous, runtime.clock)
        self.hedging = _carry_hedging(config, previous, runtime.clock)
        #: concurrency limit and adaptive rate (None: both off); unchanged parts keep their state
        self.gate: Gate | None = runtime.load.gate(name, config)
        self.injector = injector_for(name, config, runtime.faults, runtime.environ)

    def settings(
        self,
        timeout_sec: float | None,
        max_retries: int | None,
        deadline_sec: float | None,
        timeout_mode: str | None = None,
    ) -> CallSettings:
        if timeout_sec is None and max_retries is None and deadline_sec is None is timeout_mode:
            return self.defaults
        cap = self.runtime.max_attempts
        return CallSettings(self.config, timeout_sec, max_retries, deadline_sec, timeout_mode, cap)

    def idle(self) -> bool:
        return (
            (self.budget is None or self.budget.idle())
            and (self.limiter is None or self.limiter.idle())
            and (self.hedging is None or self.hedging.idle())
        )


def _carry_budget(
    config: ReliabilityConfig, previous: ServiceContext | None, clock: Clock
) -> RetryBudget | None:
    """The service's budget: the previous one when its settings did not change (keeps history)."""
    settings = budget_settings(config)
    if settings is None:
        return None
    old = previous.budget if previous is not None else None
    if old is not None and budget_settings(previous.config) == settings:  # type: ignore[union-attr]
        return old
    return RetryBudget(*settings, clock=clock.monotonic)


def _carry_limiter(
    name: str, config: ReliabilityConfig, previous: ServiceContext | None, clock: Clock
) -> RateLimiter | None:
    settings = rate_limiter_settings(config)
    if settings is None:
        return None
    old = previous.limiter if previous is not None else None
    if old is not None and rate_limiter_settings(previous.config) == settings:  # type: ignore[union-attr]
        return old
    return build_rate_limiter(name, config, clock)


def _carry_hedging(
    config: ReliabilityConfig, previous: ServiceContext | None, clock: Clock
) -> HedgePolicy | None:
    settings = hedging_settings(config)
    if settings is None:
        return None
    if (
        previous is not None
        and previous.hedging is not None
        and hedging_settings(previous.config) == settings
    ):
        return previous.hedging
    return HedgePolicy(config, clock.monotonic)


class Runtime:
    """The library's state: config, breakers, budgets, limiters, telemetry and clock.

    Args:
        clock: what backoff sleeps, rate-limit waits, breakers and budgets read time from
            (default: real time).
        environ: the environment the config is read from (default ``os.environ``).
        telemetry: the instrumentation to use (default: a new one on the global providers);
            pass another runtime's to share its providers and caches.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: test mode's cap on the attempts of every call (``otel_resilience.testing``)
        self.max_attempts: int | None = None
        #: the faults a test injects (``otel_resilience.testing``), read by the contexts
        self.faults: Faults | None = None
        self.environ = environ  # OTEL_RESOURCE_ATTRIBUTES's production check
        self.config = ConfigRegistry(environ, on_change=self._config_changed)
        self.breakers = CircuitBreakerManager(
            clock=self.clock.monotonic, config_source=self.config.get
        )
        #: the user classifiers (``register_classifier``) consulted before the built-in rules
        self.classifiers = Classifiers()
        # a shared telemetry counts this runtime's transitions; it reports this runtime's
        # breakers and reads its settings only while use_runtime() has it installed
        self.load = LoadControl(  # the gates of the services
            clock=self.clock.monotonic, sleep=self.clock.sleep, sleep_async=self.clock.sleep_async
        )
        if telemetry is None:
            telemetry = Telemetry(config_source=self.config.get)
            telemetry.watch_breakers(self.breakers)
            telemetry.load_control = self.load  # its gauges read our limits
        else:
            telemetry.watch_breakers(self.breakers, report=False)
        self.telemetry = telemetry
        self._lock = threading.Lock()
        self._services: dict[str, ServiceContext] = {}
        self._generation = 0
        self._sweep_at = MAX_IDLE_SERVICES

    def __repr__(self) -> str:
        return f"<Runtime clock={self.clock!r} services={len(self._services)}>"

    # --- the per-service context (the one cache) ------------------------------------------

    def service(self, name: str) -> ServiceContext:
        """The context of a service, made at first use and after each config change."""
        found = self._services.get(name)
        if found is not None and found.generation == self._generation:
            return found
        return self._make_service(name)

    def _make_service(self, name: str) -> ServiceContext:
        with self._lock:
            generation = self._generation
            found = self._services.get(name)
            if found is not None and found.generation == generation:
                return found
            if found is None and len(self._services) >= self._sweep_at:
                self._drop_idle()
            context = ServiceContext(
                self, name, self.config.resolve(name), generation, previous=found
            )
            self._services[name] = context
            return context

    def _drop_idle(self) -> None:
        """Drop idle contexts (lock held); sweep again once the count has doubled (amortised)."""
        services = self._services
        for key in [key for key, ctx in services.items() if ctx.idle()]:
            del services[key]
        self._sweep_at = max(MAX_IDLE_SERVICES, 2 * len(services))

    def _config_changed(self) -> None:
        """The one invalidation point: contexts are remade (keeping unchanged budgets and
        limiters) and breakers whose settings changed are dropped."""
        with self._lock:
            self._generation += 1
        self.breakers.drop_changed()

    # --- configuration -----------------------------------------------------------------------

    def get_config(self, service_name: str | None = None) -> ReliabilityConfig:
        """The config in force for ``service_name`` (the default config when None)."""
        return self.config.get(service_name)

    def configure(
        self,
        default: ReliabilityConfig | None = None,
        *,
        services: Mapping[str, ReliabilityConfig | Mapping[str, Any]] | None = None,
    ) -> None:
        """Set the default config and/or per-service configs (see :func:`configure`)."""
        self.config.configure(default, services=services)

    def reset(self) -> None:
        """Forget all state: config, classifiers, breakers, budgets, limiters, telemetry
        providers."""
        self.config.reset()
        self.classifiers.clear()
        self.breakers.reset()
        with self._lock:
            self._services.clear()
            self._generation += 1
            self._sweep_at = MAX_IDLE_SERVICES
        self.load.reset()
        self.telemetry.reset()


class _Default:
    """Holds the default runtime (the one module-level object of the package's state)."""

    __slots__ = ("runtime",)

    def __init__(self) -> None:
        self.runtime = Runtime()
        _report_store_errors(self.runtime)


def default_runtime() -> Runtime:
    """The runtime in use (the process's default, or the one :func:`use_runtime` installed)."""
    return _default.runtime


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Make ``runtime`` the one every call uses for the block, then restore the previous one.

    For tests: an isolated runtime with its own config, breakers, clock and telemetry. The
    swap is process-wide (not per thread or task): do not nest it across concurrent tests.
    """
    if not isinstance(runtime, Runtime):
        raise TypeError(f"use_runtime needs a Runtime, got {type(runtime).__name__}")
    previous = _default.runtime
    _default.runtime = runtime
    load_control = runtime.telemetry.load_control
    runtime.telemetry.load_control = runtime.load
    # a telemetry shared with another runtime reports this one's breakers and reads this one's
    # settings meanwhile
    bound = runtime.telemetry.bind(runtime.breakers, runtime.config.get)
    _report_store_errors(runtime)
    try:
        yield runtime
    finally:
        _default.runtime = previous
        runtime.telemetry.load_control = load_control
        runtime.telemetry.bind(*bound)
        _report_store_errors(previous)


def _report_store_errors(runtime: Runtime) -> None:
    """Failed Redis commands count on the telemetry of the runtime in use (the stores are the
    process's: connection pools are not per runtime)."""
    from ._redis import default_stores  # not at import: Redis is optional

    default_stores().on_error = runtime.telemetry.count_state_store_error


_default: Final = _Default()


# --- the public wrappers over the runtime in use -------------------------------------------------


def get_config(service_name: str | None = None) -> ReliabilityConfig:
    """The config in force for ``service_name`` (the default config when None).

    The environment is read once, at first use; :func:`configure` and :func:`reset` change it
    at run time.
    """
    return _default.runtime.config.get(service_name)


def configure(
    default: ReliabilityConfig | None = None,
    *,
    services: Mapping[str, ReliabilityConfig | Mapping[str, Any]] | None = None,
) -> None:
    """Set the default config and/or per-service configs in code.

    A service maps to a whole :class:`ReliabilityConfig` or to a mapping of fields that
    override the default. The breakers of a service whose settings changed are made afresh
    with the new ones at their next call; every other breaker, retry budget and rate limiter
    keeps its state.

    >>> from otel_resilience import ReliabilityConfig, configure, get_config
    >>> configure(services={"clamav": {"CB_FAIL_THRESHOLD": 3}})
    >>> get_config("clamav").CB_FAIL_THRESHOLD, get_config("gcs").CB_FAIL_THRESHOLD
    (3, 5)
    >>> configure(services={"openai": {"HTTP_RETRY": 5}})
    Traceback (most recent call last):
    ...
    otel_resilience.ConfigError: unknown setting(s) HTTP_RETRY; accepted: ...
    >>> from otel_resilience import reset
    >>> reset()
    """
    _default.runtime.config.configure(default, services=services)


def get_circuit_breaker_manager() -> CircuitBreakerManager:
    """The circuit breakers of the runtime in use."""
    return _default.runtime.breakers


def reset() -> None:
    """Restore every piece of state of the runtime in use: config, breakers, budgets, rate
    limiters, telemetry providers; stop idle timeout worker threads and close Redis stores.

    For tests and for applications that reconfigure at run time.
    """
    import sys

    from ._timeout import shutdown_workers

    _default.runtime.reset()
    shutdown_workers(timeout=0)
    redis_stores = sys.modules.get("otel_resilience._redis")  # only if Redis was ever used
    if redis_stores is not None:
        redis_stores.close_stores()


def register_classifier(classifier: Classifier) -> Callable[[], None]:
    """Add a classifier consulted before the built-in rules; returns a function that removes it.

    ``classifier(exc)`` returns a :class:`Classification` for the exceptions it knows and None
    for the others. :func:`reset` forgets every registered classifier.

    >>> from otel_resilience import (
    ...     Classification, ExternalServiceError, map_external_error, register_classifier
    ... )
    >>> class QuotaExceeded(Exception): ...
    >>> remove = register_classifier(
    ...     lambda exc: Classification(ExternalServiceError.RATE_LIMIT, retry_after=2.0)
    ...     if isinstance(exc, QuotaExceeded) else None
    ... )
    >>> error = map_external_error("billing", "charge", QuotaExceeded("over quota"))
    >>> error.error_type.value, error.retry_after
    ('rate_limit', 2.0)
    >>> remove()
    """
    return _default.runtime.classifiers.register(classifier)


def map_external_error(
    service_name: str,
    endpoint: str,
    error: BaseException,
    *,
    attempts: int = 1,
    classifiers: Classifiers | None = None,
) -> ReliabilityError:
    """Map an external service error to a standardized :class:`ReliabilityError`.

    ``classifiers`` is a registry of your own classifiers to consult (by default the one
    :func:`register_classifier` adds to). The returned error is not raised:
    ``raise mapped from error`` keeps the original as ``__cause__``.

    >>> from otel_resilience import ExternalServiceError, map_external_error
    >>> err = map_external_error("gcs", "upload", ConnectionResetError("reset by peer"))
    >>> err.error_type is ExternalServiceError.CONNECTION_ERROR
    True
    >>> map_external_error("openai", "chat", Exception("Request timed out")).error_type.value
    'timeout'
    """
    runtime = _default.runtime
    try:
        config: ReliabilityConfig | None = runtime.config.get(service_name)
    except Exception:  # a broken environment: the safe defaults (redaction included)
        config = None
    return _map_external_error(
        service_name,
        endpoint,
        error,
        attempts=attempts,
        classifiers=runtime.classifiers if classifiers is None else classifiers,
        config=config,
    )


def get_telemetry() -> Telemetry:
    """The instrumentation of the runtime in use."""
    return _default.runtime.telemetry


def set_telemetry_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Use these providers instead of the global ones (None: back to the global provider).

    For tests (an ``InMemorySpanExporter`` and ``InMemoryMetricReader`` without touching the
    globals) and for applications that keep several providers.
    """
    _default.runtime.telemetry.set_providers(tracer_provider, meter_provider)
