"""Chaos injection: faults and latency injected into attempts (issue 16, docs/chaos.md).

An attempt wrapper, not an engine edit: a service's context holds an :class:`Injector` when
chaos is on for it (``CHAOS_*`` settings for staging, or a test's ``faults.inject(...)``), and the
drivers then run ``injector.wrap(func, call)`` instead of ``func``. The wrapper sleeps the
injected latency inside the attempt (on the runtime's clock, under the attempt timeout, so it can
time out like real latency) and raises the injected exception, which then goes through
classification, retries and the breaker exactly as a real one. Each injection is counted on
``resilience.chaos.injections`` and adds the ``chaos`` event to the attempt span.

A service without chaos has no injector: its calls pay one attribute check per attempt.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeGuard, TypeVar

from . import telemetry_contract as contract
from ._config import _CHAOS_ERRORS, ConfigError, ReliabilityConfig
from ._errors import ERROR_CLASSES, ExternalServiceError, ReliabilityError
from ._timeout import AttemptTimeout, remaining_time

if TYPE_CHECKING:
    from ._engine import Call
    from ._telemetry import Telemetry

T = TypeVar("T")

#: the attribute key of the kind of an injection (counter and span event)
_KIND: Final = contract.ATTRIBUTES.chaos_kind.key
_EVENT: Final = "chaos"

#: resource attribute keys that name the deployment environment (old and new semconv)
_ENVIRONMENT_KEYS: Final = ("deployment.environment", "deployment.environment.name")


class Rule:
    """One injection rule: on a matching attempt, with probability ``rate``, add ``latency``
    seconds and raise ``error`` (either may be absent); at most ``times`` times."""

    __slots__ = ("endpoint", "error", "injected", "latency", "rate", "times")

    def __init__(
        self,
        endpoint: str | None,
        error: str | BaseException | None,
        rate: float,
        latency: float,
        times: int | None,
    ) -> None:
        self.endpoint = endpoint
        self.error = error
        self.rate = rate
        self.latency = latency
        self.times = times
        #: attempts this rule has fired on so far
        self.injected = 0

    def __repr__(self) -> str:
        where = "*" if self.endpoint is None else self.endpoint
        return (
            f"<chaos rule {where}: error={self.error!r} rate={self.rate:g}"
            f" latency={self.latency:g} times={self.times} injected={self.injected}>"
        )


def check_error(error: object) -> str | BaseException | None:
    """An injected error: an error type name, an exception instance, or None (latency only)."""
    if error is None or isinstance(error, BaseException):
        return error
    name = _error_name(error)
    if isinstance(name, str) and name in _CHAOS_ERRORS:
        return name
    raise ValueError(
        f"error must be an error type ({', '.join(_CHAOS_ERRORS)}), an exception instance or"
        f" None, got {error!r}"
    )


def _is_finite(value: object) -> TypeGuard[float]:
    """A finite int or float (bools refused)."""
    return _is_number(value) and math.isfinite(value)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _error_name(error: object) -> object:
    return error.value if isinstance(error, ExternalServiceError) else error


def check_rate(name: str, rate: object) -> float:
    if not (_is_finite(rate) and 0 <= rate <= 1):
        raise ValueError(f"{name} must be a number from 0 to 1, got {rate!r}")
    return float(rate)


def check_latency(latency: object) -> float:
    if not (_is_finite(latency) and latency >= 0):
        raise ValueError(f"latency must be a number of seconds >= 0, got {latency!r}")
    return float(latency)


def check_times(times: object) -> int | None:
    if times is None or (_is_int(times) and times >= 1):
        return times
    raise ValueError(f"times must be an integer >= 1 or None (no limit), got {times!r}")


class Faults:
    """The faults a test injects, per service (the runtime's ``faults``).

    Rules are drawn from one seeded random generator, so a test's injections are the same at
    every run. Adding or clearing rules remakes the services' contexts (``on_change``).
    """

    __slots__ = ("_lock", "_on_change", "_random", "_rules")

    def __init__(self, seed: int | None = 0, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: dict[str, list[Rule]] = {}
        self._on_change = on_change

    def inject(
        self,
        service: str,
        endpoint: str | None = None,
        *,
        error: str | ExternalServiceError | BaseException | None = "connection_error",
        rate: float = 1.0,
        latency: float = 0.0,
        times: int | None = None,
    ) -> Rule:
        """Inject into the attempts of ``service`` (``endpoint`` None or ``"*"``: all of them).

        Args:
            error: the error type an attempt fails with (``"connection_error"``,
                ``"timeout"``, ...), an exception instance to raise, or None (latency only).
            rate: the share of attempts (0-1) the rule fires on.
            latency: seconds added inside each attempt the rule fires on.
            times: fire at most this many times (None: no limit).

        Returns the rule; its ``injected`` says how often it fired.
        """
        _check_target(service, endpoint)
        rule = _new_rule(endpoint, error, rate, latency, times)
        with self._lock:
            self._rules.setdefault(service, []).append(rule)
        self._changed()
        return rule

    def clear(self, service: str | None = None) -> None:
        """Remove the rules of ``service`` (of every service when None)."""
        with self._lock:
            if service is None:
                self._rules.clear()
            else:
                self._rules.pop(service, None)
        self._changed()

    def rules(self, service: str) -> tuple[Rule, ...]:
        with self._lock:
            return tuple(self._rules.get(service, ()))

    def fire(self, service: str, endpoint: str) -> list[Rule]:
        """The rules of ``service`` that fire on one attempt of ``endpoint`` (counted)."""
        with self._lock:
            return _fired(self._rules.get(service, ()), endpoint, self._random)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _check_target(service: object, endpoint: object) -> None:
    """Refuse a bad ``service`` or ``endpoint`` of :meth:`Faults.inject`."""
    if not _is_name(service):
        raise TypeError(f"service must be a non-empty string, got {service!r}")
    if endpoint is not None and not _is_name(endpoint):
        raise TypeError(f"endpoint must be a non-empty string or None, got {endpoint!r}")


def _new_rule(
    endpoint: str | None, error: object, rate: object, latency: object, times: object
) -> Rule:
    """The checked rule of :meth:`Faults.inject` (``endpoint`` ``"*"``: all of them)."""
    rule = Rule(
        None if endpoint == "*" else endpoint,
        check_error(error),
        check_rate("rate", rate),
        check_latency(latency),
        check_times(times),
    )
    if rule.error is None and rule.latency == 0:
        raise ValueError("inject needs an error or a latency > 0 (both are off)")
    return rule


def production(environ: Mapping[str, str]) -> bool:
    """Whether ``OTEL_RESOURCE_ATTRIBUTES`` says ``deployment.environment=production``."""
    items = environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    return any(_is_production(item) for item in items)


def _is_production(item: str) -> bool:
    """Whether one ``key=value`` resource attribute is ``deployment.environment=production``."""
    key, _, value = item.partition("=")
    return key.strip() in _ENVIRONMENT_KEYS and value.strip().lower() == "production"


def _config_rules(name: str, config: ReliabilityConfig, environ: Mapping[str, str]) -> list[Rule]:
    """The rules of the ``CHAOS_*`` settings (none when chaos is off for the service)."""
    if not config.CHAOS_ENABLED:
        return []
    _refuse_production(name, config, environ)
    return _latency_rules(config) + _fault_rules(config)


def _refuse_production(name: str, config: ReliabilityConfig, environ: Mapping[str, str]) -> None:
    if not config.CHAOS_FORCE and production(environ):
        raise ConfigError(
            f"CHAOS_ENABLED=true for service {name!r} is refused: OTEL_RESOURCE_ATTRIBUTES says"
            " deployment.environment=production; set CHAOS_FORCE=true to inject chaos there"
            " anyway"
        )


def _latency_rules(config: ReliabilityConfig) -> list[Rule]:
    if config.CHAOS_LATENCY_SEC > 0 and config.CHAOS_LATENCY_RATE > 0:
        return [Rule(None, None, config.CHAOS_LATENCY_RATE, config.CHAOS_LATENCY_SEC, None)]
    return []


def _fault_rules(config: ReliabilityConfig) -> list[Rule]:
    if config.CHAOS_FAULT_RATE > 0:
        return [Rule(None, config.CHAOS_FAULT_ERROR, config.CHAOS_FAULT_RATE, 0.0, None)]
    return []


def injector_for(
    name: str,
    config: ReliabilityConfig,
    faults: Faults | None,
    environ: Mapping[str, str] | None,
) -> Injector | None:
    """The injector of a service's context, or None when nothing is injected into it."""
    rules = _config_rules(name, config, os.environ if environ is None else environ)
    tests = _test_rules(faults, name)
    if not rules and not tests:
        return None
    return Injector(rules, faults if tests else None)


def _test_rules(faults: Faults | None, name: str) -> tuple[Rule, ...]:
    return faults.rules(name) if faults is not None else ()


class Injector:
    """Wraps the attempts of one service: decides, records and applies injections."""

    __slots__ = ("_faults", "_lock", "_random", "_rules")

    def __init__(self, rules: list[Rule], faults: Faults | None) -> None:
        self._rules = rules
        self._faults = faults
        self._random = random.Random()
        self._lock = threading.Lock()

    def decide(self, service: str, endpoint: str) -> tuple[float, BaseException | str | None]:
        """The latency to add and the error to raise (or None) for one attempt."""
        fired = self._fired(service, endpoint)
        latency = 0.0
        error: BaseException | str | None = None
        for rule in fired:
            latency += rule.latency
            if error is None:
                error = rule.error
        return latency, error

    def _fired(self, service: str, endpoint: str) -> list[Rule]:
        """The configured rules, then the test's, that fire on this attempt (counted)."""
        with self._lock:
            fired = _fired(self._rules, endpoint, self._random)
        faults = self._faults
        if faults is not None:
            fired += faults.fire(service, endpoint)
        return fired

    def wrap(self, func: Callable[[], T], call: Call) -> Callable[[], T]:
        """``func`` with this attempt's injections (sync driver)."""
        latency, error = self.decide(call.service, call.endpoint)
        if not latency and error is None:
            return func
        sleep = call.context.runtime.clock.sleep

        def attempt() -> T:
            if latency:
                _record(call, "latency")
                seconds, cut = _capped(latency)
                sleep(seconds)
                if cut:
                    raise _timed_out(latency, call)
            _raise(error, call)
            return func()

        return attempt

    def wrap_async(
        self, func: Callable[[], Awaitable[T]], call: Call
    ) -> Callable[[], Awaitable[T]]:
        """``func`` with this attempt's injections (asyncio driver)."""
        latency, error = self.decide(call.service, call.endpoint)
        if not latency and error is None:
            return func
        sleep = call.context.runtime.clock.sleep_async

        async def attempt() -> T:
            if latency:
                _record(call, "latency")
                seconds, cut = _capped(latency)
                await sleep(seconds)
                if cut:
                    raise _timed_out(latency, call)
            _raise(error, call)
            return await func()

        return attempt


def _capped(latency: float) -> tuple[float, bool]:
    """The latency to sleep, cut to what is left of the attempt's time, and whether it was cut:
    the library's own frames are never interrupted (docs/timeouts.md), so the wrapper ends a
    latency that outlasts the attempt itself."""
    left = remaining_time()
    return (latency, False) if left is None else _cut(latency, left)


def _cut(latency: float, left: float) -> tuple[float, bool]:
    return (latency, False) if latency < left else (left, True)


def _timed_out(latency: float, call: Call) -> AttemptTimeout:
    timeout = call.settings.timeout
    return AttemptTimeout(
        f"attempt timed out: {latency:g} s of injected latency", timeout or latency
    )


def _raise(error: BaseException | str | None, call: Call) -> None:
    """Raise the injected fault, if there is one (recorded first)."""
    if error is not None:
        _record(call, "fault")
        raise _exception(error, call)


def _fired(rules: Iterable[Rule], endpoint: str, rng: random.Random) -> list[Rule]:
    """The rules that fire on one attempt of ``endpoint`` (their count raised; lock held)."""
    fired = []
    for rule in rules:
        if _applies(rule, endpoint) and _draws(rule, rng):
            rule.injected += 1
            fired.append(rule)
    return fired


def _applies(rule: Rule, endpoint: str) -> bool:
    """Whether ``rule`` is for ``endpoint`` and has fires left."""
    return _for_endpoint(rule, endpoint) and not _used_up(rule)


def _for_endpoint(rule: Rule, endpoint: str) -> bool:
    return rule.endpoint is None or rule.endpoint == endpoint


def _used_up(rule: Rule) -> bool:
    return rule.times is not None and rule.injected >= rule.times


def _draws(rule: Rule, rng: random.Random) -> bool:
    """Whether the rule's rate lets it fire this time (one draw of ``rng`` unless 1)."""
    return rule.rate >= 1 or rng.random() < rule.rate


def _exception(error: BaseException | str, call: Call) -> BaseException:
    if isinstance(error, BaseException):
        return error.with_traceback(None)
    kind = ExternalServiceError(error)
    cls = ERROR_CLASSES.get(kind, ReliabilityError)
    return cls(
        kind,
        call.service,
        call.endpoint,
        f"{kind.value} calling {call.service} ({call.endpoint}): injected by chaos",
        attempts=call.attempt,
    )


def _record(call: Call, kind: str) -> None:
    """Count the injection and add the ``chaos`` event to the attempt span."""
    telemetry: Telemetry = call.context.runtime.telemetry
    try:
        _count(telemetry, call, kind)
        _add_event(call.handle, kind)
    except Exception:
        telemetry.warn_once("chaos", "recording a chaos injection failed")


def _count(telemetry: Telemetry, call: Call, kind: str) -> None:
    instruments = telemetry.instruments()
    if instruments is not None:
        pair = telemetry.pair(call.service, call.endpoint)
        instruments.chaos_injections.add(1, {**pair.metric_attrs, _KIND: kind})


def _add_event(handle: Any, kind: str) -> None:
    """The ``chaos`` event on the attempt span (``handle[0]``) when it is recording."""
    if handle is not None and handle[0].is_recording():
        handle[0].add_event(_EVENT, {_KIND: kind})
