"""The calls: the one place that orders rate limit -> breaker -> retry -> attempt timeout.

One call of :func:`resilient_call`::

    call span "{service} {endpoint}"
    ├── breaker admits? no -> CircuitOpenError (no attempt)
    ├── attempt 1: span "{service} {endpoint} attempt", func() under the attempt timeout
    ├── failed and transient? backoff (Retry-After wins), event "retry", attempt 2 ...
    └── success -> func's value | final failure -> ReliabilityError (or the fallback's value)

The first attempt runs without building any retry state: a call that succeeds at once costs a
breaker check, a timeout and (with an SDK) the telemetry.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, Final, ParamSpec, TypeVar, cast, overload

from ._breaker import REJECTED, CircuitBreaker, get_circuit_breaker_manager
from ._budget import RetryBudget, get_retry_budget
from ._config import ReliabilityConfig, get_config
from ._config import _listeners as _config_listeners
from ._errors import (
    CLIENT_ERRORS,
    ERROR_CLASSES,
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._load import LoadControl  # WIRE(load control)
from ._mapping import _redact, _well_formed, map_external_error
from ._ratelimit import RateLimiter, get_rate_limiter
from ._retry import RetryPlan, StopRetrying, is_retryable, retry_async, retry_sync
from ._telemetry import CallObserver, get_telemetry
from ._timeout import (
    AttemptTimeout,
    _deadline_var,
    _Interrupted,
    deadline_scope,
    remaining_time,
    run_with_timeout,
    run_with_timeout_async,
    validate_timeout,
)

__all__ = ["create_retry_decorator", "resilient", "resilient_call", "resilient_call_async"]

T = TypeVar("T")
P = ParamSpec("P")


class _NoFallback:
    def __repr__(self) -> str:
        return "<no fallback>"


NO_FALLBACK: Final = _NoFallback()

_manager = get_circuit_breaker_manager()
_telemetry = get_telemetry()
#: the deadline in force (a ContextVar read: the whole cost of the check on calls without one)
_deadline = _deadline_var.get
_E_TIMEOUT = ExternalServiceError.TIMEOUT
_load = LoadControl()  # WIRE(load control): the runtime's limiters and learnt rates
_telemetry.load_control = _load  # WIRE(load control)

#: failures that say nothing about the service's health: the permit is given back, nothing is
#: recorded (the caller's own mistakes, and a nested call refused by the library's rate limiter)
_NEUTRAL: Final = CLIENT_ERRORS | {
    ExternalServiceError.THROTTLED,
    ExternalServiceError.CONCURRENCY_LIMITED,  # WIRE(load control)
}


class _Misuse(TypeError):
    """A programming error found while running an attempt: not the service's failure."""


def _name(name: str, value: object) -> str:
    """A service or endpoint name as a plain ``str`` (a ``str`` Enum member becomes its value)."""
    if isinstance(value, str) and value:
        return str.__str__(value)
    _check_name(name, value)
    raise AssertionError  # pragma: no cover - _check_name raised


# --- argument checks (programming errors: raised before anything is attempted or counted) ------


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")


#: the most attempts one call may make (the bound of ``HTTP_RETRIES`` too)
MAX_ATTEMPTS: Final = 100


def _check_attempts(max_retries: object) -> int:
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


def _check_deadline(deadline_sec: object) -> float:
    if (
        isinstance(deadline_sec, bool)
        or not isinstance(deadline_sec, int | float)
        or not math.isfinite(deadline_sec)
        or deadline_sec <= 0
    ):
        raise ValueError(f"deadline_sec must be a number of seconds > 0, got {deadline_sec!r}")
    return float(deadline_sec)


class _Settings:
    """The validated arguments of one call."""

    __slots__ = ("attempts", "config", "deadline", "mode", "timeout")

    def __init__(
        self,
        service_name: str,
        endpoint: str,
        timeout_sec: float | None,
        max_retries: int | None,
        deadline_sec: float | None,
    ) -> None:
        if not isinstance(service_name, str) or not service_name:
            _check_name("service_name", service_name)
        if not isinstance(endpoint, str) or not endpoint:
            _check_name("endpoint", endpoint)
        config = get_config(service_name)
        self.config = config
        self.timeout = (
            config.HTTP_TIMEOUT_SEC
            if timeout_sec is None
            else validate_timeout("timeout_sec", timeout_sec)
        )
        self.attempts = config.max_attempts if max_retries is None else _check_attempts(max_retries)
        self.deadline = (
            config.DEADLINE_SEC if deadline_sec is None else _check_deadline(deadline_sec)
        )
        self.mode = config.TIMEOUT_MODE


#: the settings of calls that pass no per-call option, by service (dropped on config changes)
_default_settings: dict[str, _Settings] = {}
_config_listeners.append(_default_settings.clear)


def _settings(
    service_name: str,
    endpoint: str,
    timeout_sec: float | None,
    max_retries: int | None,
    deadline_sec: float | None,
) -> _Settings:
    if (
        timeout_sec is None
        and max_retries is None
        and deadline_sec is None
        and type(service_name) is str
        and type(endpoint) is str
        and endpoint
    ):
        found = _default_settings.get(service_name)
        if found is None:
            found = _Settings(service_name, endpoint, None, None, None)
            _default_settings[service_name] = found
        return found
    return _Settings(service_name, endpoint, timeout_sec, max_retries, deadline_sec)


def _prepare(
    service_name: str,
    endpoint: str,
    func: object,
    timeout_sec: float | None,
    max_retries: int | None,
    deadline_sec: float | None,
) -> tuple[_Settings, CircuitBreaker, RetryBudget | None, CallObserver]:
    """Check the arguments and gather what one call needs (sync and async alike)."""
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}: {func!r}")
    settings = _settings(service_name, endpoint, timeout_sec, max_retries, deadline_sec)
    breaker = _manager.breaker_for(service_name, endpoint)
    budget = get_retry_budget(service_name, settings.config)
    return settings, breaker, budget, _telemetry.call(service_name, endpoint, breaker)


def _as_error(
    exc: BaseException, service_name: str, endpoint: str, attempt: int
) -> ReliabilityError:
    """The ReliabilityError of a failed attempt, labelled with *this* call's service.

    Types are tested on ``type(exc)``: ``isinstance`` would read an exception's own
    ``__class__``, which a hostile exception can make raise.
    """
    kind = type(exc)
    if issubclass(kind, AttemptTimeout):
        return CallTimeoutError(
            _E_TIMEOUT,
            service_name,
            endpoint,
            f"timeout calling {service_name} ({endpoint}): no answer within"
            f" {cast(AttemptTimeout, exc).timeout_sec:g} s",
            attempts=attempt,
        )
    if issubclass(kind, ReliabilityError) and _well_formed(exc):
        # a nested resilient_call (or the function's own ReliabilityError): keep its class
        nested = cast(ReliabilityError, exc)
        if nested.service_name == service_name and nested.endpoint == endpoint:
            nested.attempts = attempt
            return nested
        cls = ERROR_CLASSES.get(nested.error_type, ReliabilityError)
        detail = _redact(nested.message, service_name)
        return cls(
            nested.error_type,
            service_name,
            endpoint,
            f"{nested.error_type.value} calling {service_name} ({endpoint}): {detail}",
            attempts=attempt,
            retry_after=nested.retry_after,
        )
    return map_external_error(service_name, endpoint, exc, attempts=attempt)


def _settle(
    breaker: CircuitBreaker, permit: int, error: ReliabilityError, exc: Exception, duration: float
) -> None:
    if error.error_type in _NEUTRAL or _never_started(exc):
        breaker.release(permit)  # neither failure nor success
    else:
        breaker.record_failure(permit, duration)


async def _settle_async(
    breaker: CircuitBreaker, permit: int, error: ReliabilityError, exc: Exception, duration: float
) -> None:
    """:func:`_settle` on a breaker with asyncio round trips (the Redis backend)."""
    if error.error_type in _NEUTRAL or _never_started(exc):
        await breaker.release_async(permit)
    else:
        await breaker.record_failure_async(permit, duration)


def _never_started(exc: Exception) -> bool:
    """The attempt's deadline had passed before it could start: the service was not called."""
    return issubclass(type(exc), AttemptTimeout) and cast(AttemptTimeout, exc).timeout_sec <= 0.0


def _deadline_passed() -> bool:
    """Whether the deadline in force has passed (checked before taking a permit; the callers
    first test ``_deadline() is not None``, which is all a call without a deadline pays)."""
    return remaining_time() == 0.0


def _too_late(service_name: str, endpoint: str, number: int) -> CallTimeoutError:
    return CallTimeoutError(
        _E_TIMEOUT,
        service_name,
        endpoint,
        f"timeout calling {service_name} ({endpoint}): the deadline passed before attempt"
        f" {number} could start",
        attempts=number - 1,
    )


def _coroutine_misuse(result: Any) -> _Misuse:
    result.close()  # never awaited: close it, so no "was never awaited" warning follows
    return _Misuse(
        "func returned a coroutine: resilient_call runs sync functions; await"
        " resilient_call_async(...) for coroutine functions, or use @resilient on the async def"
    )


def _awaitable_func(func: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``func``, checked to return an awaitable (a sync function given to the async call)."""
    if inspect.iscoroutinefunction(func):
        return func

    def checked() -> Awaitable[T]:
        value = func()
        if not inspect.isawaitable(value):
            raise _Misuse(
                f"func returned {type(value).__name__}, not an awaitable: resilient_call_async"
                " needs a coroutine function (or a callable returning an awaitable); use"
                " resilient_call for sync functions"
            )
        return value

    return checked


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "resilient_call_async needs a running asyncio event loop; under trio (or anyio's"
            " trio backend) run resilient_call in a worker thread instead"
        ) from None


def _rejection(service_name: str, endpoint: str, breaker: CircuitBreaker) -> CircuitOpenError:
    status = breaker.status()
    return CircuitOpenError(
        ExternalServiceError.CIRCUIT_OPEN,
        service_name,
        endpoint,
        f"circuit breaker for {service_name} ({endpoint}) is {status.state}; call rejected",
        attempts=0,
        retry_after=status.seconds_until_probe,
    )


def _throttled(service_name: str, endpoint: str, limit: str | None) -> ThrottledError:
    return ThrottledError(
        ExternalServiceError.THROTTLED,
        service_name,
        endpoint,
        f"rate limit {limit} of {service_name} reached; call to {endpoint} refused",
        attempts=0,
    )


def _max_wait(config: ReliabilityConfig) -> float:
    """How long a call may wait for a rate-limit slot: never past its deadline."""
    wait = config.RATE_LIMIT_MAX_WAIT_SEC
    left = remaining_time()
    return wait if left is None or left >= wait else left


def _plan(
    settings: _Settings,
    service_name: str,
    endpoint: str,
    observer: CallObserver,
    budget: RetryBudget | None,
    breaker: CircuitBreaker,
) -> RetryPlan:
    config: ReliabilityConfig = settings.config
    return RetryPlan(
        service_name=service_name,
        endpoint=endpoint,
        max_attempts=settings.attempts,
        base_ms=config.HTTP_BACKOFF_BASE_MS,
        max_ms=config.HTTP_BACKOFF_MAX_MS,
        retry_after_max_sec=config.RETRY_AFTER_MAX_SEC,
        retry_unknown=config.RETRY_UNKNOWN_ERRORS,
        remaining=remaining_time,
        sleep=_sleep,
        async_sleep=_async_sleep,
        allow_retry=None if budget is None else budget.try_retry,
        blocked=breaker.rejects_after,
        on_retry=observer.retry,
    )


def _worth_retrying(first: ReliabilityError, settings: _Settings) -> bool:
    return settings.attempts > 1 and is_retryable(
        first.error_type, settings.config.RETRY_UNKNOWN_ERRORS
    )


def _fallback_value(observer: CallObserver, error: ReliabilityError, fallback: Any) -> Any:
    """What the fallback serves (maybe an awaitable, for the async path to await)."""
    observer.fallback(error)
    return fallback(error) if callable(fallback) else fallback


def _finish_failure(
    plan: RetryPlan | None, error: ReliabilityError, observer: CallObserver
) -> None:
    if plan is not None:
        if plan.stop_reason in ("exhausted", "deadline"):
            observer.exhausted(error)
        elif plan.stop_reason == "budget":
            observer.budget_rejected(error)


# The sleeps are module attributes so tests can replace them with a fake clock's.
def _sleep(seconds: float) -> None:
    time.sleep(seconds)


async def _async_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


# --- sync ---------------------------------------------------------------------------------------


def resilient_call(
    service_name: str,
    endpoint: str,
    func: Callable[[], T],
    timeout_sec: float | None = None,
    max_retries: int | None = None,
    *,
    deadline_sec: float | None = None,
    fallback: Any = NO_FALLBACK,
) -> T:
    """Call ``func()`` with retries, a circuit breaker, a timeout per attempt and telemetry.

    Args:
        service_name: the dependency, e.g. ``"openai"``; with ``endpoint`` it keys the breaker.
        endpoint: the operation, e.g. ``"chat.completions"``.
        func: a callable taking no arguments (use a lambda or ``functools.partial``).
        timeout_sec: limit of each attempt in seconds (default ``HTTP_TIMEOUT_SEC``).
        max_retries: attempts in all, the first included (default ``HTTP_RETRIES``): 3 means
            "try up to 3 times", as in the seed's migration example; 0 and 1 mean one attempt.
        deadline_sec: total time for the call across attempts and backoff (default
            ``DEADLINE_SEC``); a nested call keeps the tighter of its own and its caller's.
        fallback: a value, or a callable receiving the :class:`ReliabilityError`, that serves
            the result when the call finally fails or is rejected.

    Returns:
        What ``func()`` returned (or the fallback's value).

    Raises:
        ReliabilityError: the call failed (``.error_type`` says how); ``CircuitOpenError`` when
            an open breaker rejected it; the original exception is the ``__cause__``.
        TypeError, ValueError: invalid arguments, before any attempt.

    >>> from otel_resilience import resilient_call
    >>> resilient_call("inventory", "lookup", lambda: 42)
    42
    """
    if type(service_name) is not str:
        service_name = _name("service_name", service_name)
    if type(endpoint) is not str:
        endpoint = _name("endpoint", endpoint)
    settings, breaker, budget, observer = _prepare(
        service_name, endpoint, func, timeout_sec, max_retries, deadline_sec
    )
    try:
        if settings.deadline is None:
            result, attempts = _run(
                service_name, endpoint, func, settings, breaker, observer, budget
            )
        else:
            with deadline_scope(settings.deadline):
                result, attempts = _run(
                    service_name, endpoint, func, settings, breaker, observer, budget
                )
    except ReliabilityError as error:
        observer.end_failed(error, error.attempts)
        if fallback is NO_FALLBACK:
            raise
        value = _fallback_value(observer, error, fallback)
        if type(value) is CoroutineType:
            value.close()
            raise TypeError(
                "the fallback returned a coroutine: resilient_call cannot await it; use a sync"
                " fallback, or resilient_call_async"
            ) from error
        return cast(T, value)
    except BaseException as exc:  # interrupted (KeyboardInterrupt, SystemExit): not a failure
        observer.end_aborted(exc)
        raise
    observer.end_ok(attempts)
    return result


def _run(
    service_name: str,
    endpoint: str,
    func: Callable[[], T],
    settings: _Settings,
    breaker: CircuitBreaker,
    observer: CallObserver,
    budget: RetryBudget | None,
) -> tuple[T, int]:
    limiter: RateLimiter | None = get_rate_limiter(service_name, settings.config)
    if limiter is not None and not limiter.acquire(_max_wait(settings.config)):
        observer.throttled()
        raise _throttled(service_name, endpoint, settings.config.RATE_LIMIT)
    if budget is not None:
        budget.record_call()
    timeout = settings.timeout
    mode = settings.mode

    def attempt(number: int) -> T:
        if _deadline() is not None and _deadline_passed():
            raise _too_late(service_name, endpoint, number)
        permit = breaker.try_acquire()
        if permit == REJECTED:
            observer.rejected()
            if number == 1:
                raise _rejection(service_name, endpoint, breaker)
            raise StopRetrying("rejected")
        handle = observer.attempt_start(number)
        start = time.perf_counter()
        try:
            result = run_with_timeout(func, timeout, mode)
            if type(result) is CoroutineType:
                raise _coroutine_misuse(result)
        except _Misuse as exc:
            _abort(breaker, permit, observer, handle, exc)
            raise TypeError(str(exc)) from None
        except _Interrupted as exc:  # an enclosing deadline cut this attempt: not our failure
            _abort(breaker, permit, observer, handle, exc)
            raise
        except Exception as exc:
            duration = time.perf_counter() - start
            error = _as_error(exc, service_name, endpoint, number)
            try:
                _settle(breaker, permit, error, exc, duration)
            finally:
                observer.attempt_failed(handle, error, exc, duration)
            if error is exc:
                raise
            raise error from exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: not the service's fault
            _abort(breaker, permit, observer, handle, exc)
            raise
        duration = time.perf_counter() - start
        try:
            breaker.record_success(permit, duration)
        finally:
            observer.attempt_ok(handle, duration)
        return result

    gate = _load.gate(service_name, settings.config)  # WIRE(load control)
    if gate is not None:  # WIRE(load control)
        attempt = gate.wrap(attempt, endpoint, observer)  # WIRE(load control)
    try:
        return attempt(1), 1
    except ReliabilityError as first:  # a rejection (circuit_open) is never retried
        if not _worth_retrying(first, settings):
            raise
        failure = first
    plan = _plan(settings, service_name, endpoint, observer, budget, breaker)
    counter = _AttemptCounter(attempt)
    try:
        return retry_sync(plan, failure, counter), counter.last
    except ReliabilityError as error:
        _finish_failure(plan, error, observer)
        raise


def _abort(
    breaker: CircuitBreaker, permit: int, observer: CallObserver, handle: Any, exc: BaseException
) -> None:
    """An attempt that ended without the service's answer: give the permit back, end its span."""
    try:
        breaker.release(permit)
    finally:
        observer.attempt_aborted(handle, exc)


class _AttemptCounter:
    """Wraps an attempt function (sync or async) to remember the last attempt number it ran."""

    __slots__ = ("_attempt", "last")

    def __init__(self, attempt: Callable[[int], Any]) -> None:
        self._attempt = attempt
        self.last = 1

    def __call__(self, number: int) -> Any:
        self.last = number
        return self._attempt(number)


# --- async --------------------------------------------------------------------------------------


async def resilient_call_async(
    service_name: str,
    endpoint: str,
    func: Callable[[], Awaitable[T]],
    timeout_sec: float | None = None,
    max_retries: int | None = None,
    *,
    deadline_sec: float | None = None,
    fallback: Any = NO_FALLBACK,
) -> T:
    """The asyncio twin of :func:`resilient_call`: ``func`` returns an awaitable.

    Backoff uses ``asyncio.sleep`` (the event loop keeps running) and a timed-out attempt is
    cancelled for real. A callable ``fallback`` may be a coroutine function.

    >>> import asyncio
    >>> from otel_resilience import resilient_call_async
    >>> async def fetch() -> str:
    ...     return "ok"
    >>> asyncio.run(resilient_call_async("inventory", "lookup", fetch))
    'ok'
    """
    _require_asyncio()
    if type(service_name) is not str:
        service_name = _name("service_name", service_name)
    if type(endpoint) is not str:
        endpoint = _name("endpoint", endpoint)
    settings, breaker, budget, observer = _prepare(
        service_name, endpoint, func, timeout_sec, max_retries, deadline_sec
    )
    func = _awaitable_func(func)
    try:
        if settings.deadline is None:
            result, attempts = await _run_async(
                service_name, endpoint, func, settings, breaker, observer, budget
            )
        else:
            with deadline_scope(settings.deadline):
                result, attempts = await _run_async(
                    service_name, endpoint, func, settings, breaker, observer, budget
                )
    except ReliabilityError as error:
        observer.end_failed(error, error.attempts)
        if fallback is NO_FALLBACK:
            raise
        value = _fallback_value(observer, error, fallback)
        if inspect.isawaitable(value):
            value = await value
        return cast(T, value)
    except BaseException as exc:  # cancelled (asyncio.CancelledError) or interrupted
        observer.end_aborted(exc)
        raise
    observer.end_ok(attempts)
    return result


async def _run_async(
    service_name: str,
    endpoint: str,
    func: Callable[[], Awaitable[T]],
    settings: _Settings,
    breaker: CircuitBreaker,
    observer: CallObserver,
    budget: RetryBudget | None,
) -> tuple[T, int]:
    limiter: RateLimiter | None = get_rate_limiter(service_name, settings.config)
    if limiter is not None and not await limiter.acquire_async(_max_wait(settings.config)):
        observer.throttled()
        raise _throttled(service_name, endpoint, settings.config.RATE_LIMIT)
    if budget is not None:
        budget.record_call()
    timeout = settings.timeout
    mode = settings.mode

    # A breaker whose state lives elsewhere (the Redis backend) has asyncio twins of its
    # round trips; the in-memory one is called directly (no coroutine per operation).
    async_io = breaker.async_io

    async def attempt(number: int) -> T:
        if _deadline() is not None and _deadline_passed():
            raise _too_late(service_name, endpoint, number)
        permit = await breaker.try_acquire_async() if async_io else breaker.try_acquire()
        if permit == REJECTED:
            observer.rejected()
            if number == 1:
                raise _rejection(service_name, endpoint, breaker)
            raise StopRetrying("rejected")
        handle = observer.attempt_start(number)
        start = time.perf_counter()
        try:
            result = await run_with_timeout_async(func, timeout, mode)
        except _Misuse as exc:
            _abort(breaker, permit, observer, handle, exc)
            raise TypeError(str(exc)) from None
        except Exception as exc:
            duration = time.perf_counter() - start
            error = _as_error(exc, service_name, endpoint, number)
            try:
                if async_io:
                    await _settle_async(breaker, permit, error, exc, duration)
                else:
                    _settle(breaker, permit, error, exc, duration)
            finally:
                observer.attempt_failed(handle, error, exc, duration)
            if error is exc:
                raise
            raise error from exc
        except BaseException as exc:  # cancellation of the caller, KeyboardInterrupt
            # sync even for Redis: no await while being cancelled
            _abort(breaker, permit, observer, handle, exc)
            raise
        duration = time.perf_counter() - start
        try:
            if async_io:
                await breaker.record_success_async(permit, duration)
            else:
                breaker.record_success(permit, duration)
        finally:
            observer.attempt_ok(handle, duration)
        return result

    gate = _load.gate(service_name, settings.config)  # WIRE(load control)
    if gate is not None:  # WIRE(load control)
        attempt = gate.wrap_async(attempt, endpoint, observer)  # WIRE(load control)
    try:
        return await attempt(1), 1
    except ReliabilityError as first:
        if not _worth_retrying(first, settings):
            raise
        failure = first
    plan = _plan(settings, service_name, endpoint, observer, budget, breaker)
    counter = _AttemptCounter(attempt)
    try:
        return await retry_async(plan, failure, counter), counter.last
    except ReliabilityError as error:
        _finish_failure(plan, error, observer)
        raise


# --- decorators ---------------------------------------------------------------------------------


@overload
def resilient(
    service_name: str,
    endpoint: str,
    *,
    timeout_sec: float | None = ...,
    max_retries: int | None = ...,
    deadline_sec: float | None = ...,
    fallback: Any = ...,
) -> _Decorator: ...
@overload
def resilient(service_name: str, endpoint: str, **options: Any) -> _Decorator: ...
def resilient(service_name: str, endpoint: str, **options: Any) -> _Decorator:
    """Decorate a sync or async function so every call of it is a resilient call.

    >>> from otel_resilience import resilient
    >>> @resilient("gcs", "download", timeout_sec=5, max_retries=2)
    ... def download(path: str) -> bytes:
    ...     return b"data of " + path.encode()
    >>> download("a.txt")
    b'data of a.txt'
    """
    _check_name("service_name", service_name)
    _check_name("endpoint", endpoint)
    unknown = sorted(set(options) - {"timeout_sec", "max_retries", "deadline_sec", "fallback"})
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; accepted: timeout_sec, max_retries,"
            " deadline_sec, fallback"
        )
    if options.get("timeout_sec") is not None:
        validate_timeout("timeout_sec", options["timeout_sec"])
    if options.get("max_retries") is not None:
        _check_attempts(options["max_retries"])
    if options.get("deadline_sec") is not None:
        _check_deadline(options["deadline_sec"])
    return _Decorator(service_name, endpoint, options)


class _Decorator:
    __slots__ = ("_endpoint", "_options", "_service")

    def __init__(self, service: str, endpoint: str, options: dict[str, Any]) -> None:
        self._service = service
        self._endpoint = endpoint
        self._options = options

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, func: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        if not callable(func):
            raise TypeError(f"@resilient decorates a function, got {type(func).__name__}")
        service, endpoint, options = self._service, self._endpoint, self._options
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await resilient_call_async(
                    service, endpoint, lambda: func(*args, **kwargs), **options
                )

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return resilient_call(service, endpoint, lambda: func(*args, **kwargs), **options)

        return wrapper


def create_retry_decorator(
    service_name: str,
    endpoint: str,
    max_retries: int | None = None,
    timeout_sec: float | None = None,
    **options: Any,
) -> _Decorator:
    """The seed's decorator factory: retries, circuit breaker and timeout for a function.

    >>> from otel_resilience import create_retry_decorator
    >>> @create_retry_decorator("my_service", "my_endpoint", max_retries=5)
    ... def my_function() -> str:
    ...     return "done"
    >>> my_function()
    'done'
    """
    return resilient(
        service_name, endpoint, max_retries=max_retries, timeout_sec=timeout_sec, **options
    )
