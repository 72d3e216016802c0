"""The calls: :func:`resilient_call` and :func:`resilient_call_async`, the engine's two drivers.

Every decision of a call (classification, retry, settling, errors, telemetry) is made once in
:class:`~otel_resilience._engine.Call`. This module only does what differs between a thread and
an event loop: wait for a rate-limit slot, take a breaker permit, run the attempt under its
timeout, record the outcome in the breaker, and sleep before a retry -- each either called or
awaited. One call::

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
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType, FunctionType
from typing import Any, Final, ParamSpec, TypeVar, cast, overload

from ._breakers import Permit
from ._engine import NO_FALLBACK, Call, Misuse
from ._errors import ReliabilityError
from ._hedging import HedgePolicy
from ._runtime import _default, check_attempts, check_deadline
from ._timeout import (
    _deadline_var,
    _Interrupted,
    deadline_scope,
    remaining_time,
    run_with_timeout,
    run_with_timeout_async,
    spawn,
    validate_timeout,
)

T = TypeVar("T")
P = ParamSpec("P")

#: the deadline in force (a ContextVar read: the whole cost of the check on calls without one)
_deadline = _deadline_var.get


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


def _begin(
    service_name: object,
    endpoint: object,
    func: object,
    options: _Options,
    idempotent: bool,
) -> Call:
    """Check the arguments and gather what one call needs (both drivers).

    ``options``: the per-call ``timeout_sec``, ``max_retries``, ``deadline_sec`` and
    ``timeout_mode``; a call that passes none uses its service's settings, shared."""
    service = service_name if type(service_name) is str else _name("service_name", service_name)
    where = endpoint if type(endpoint) is str else _name("endpoint", endpoint)
    if not service:
        _check_name("service_name", service)
    if not where:
        _check_name("endpoint", where)
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}: {func!r}")
    runtime = _default.runtime
    context = runtime.service(service)
    settings = context.defaults if options == _NO_OPTIONS else context.settings(*options)
    breaker = runtime.breakers.breaker_for(service, where)
    if idempotent is not True and idempotent is not False:
        raise TypeError(f"idempotent must be True or False, got {idempotent!r}")
    observer = runtime.telemetry.call(service, where, breaker)
    return Call(context, where, settings, breaker, observer, idempotent)


#: a call's own timeout_sec, max_retries, deadline_sec and timeout_mode
_Options = tuple[float | None, int | None, float | None, str | None]
#: the per-call options of a call that passes none
_NO_OPTIONS: Final = (None, None, None, None)


def _coroutine_misuse(result: Any) -> Misuse:
    result.close()  # never awaited: close it, so no "was never awaited" warning follows
    return Misuse(
        "func returned a coroutine: resilient_call runs sync functions; await"
        " resilient_call_async(...) for coroutine functions, or use @resilient on the async def"
    )


_CO_COROUTINE: Final = inspect.CO_COROUTINE


def _awaitable_func(func: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``func``, checked to return an awaitable (a sync function given to the async call)."""
    if type(func) is FunctionType and func.__code__.co_flags & _CO_COROUTINE:
        return func  # an ``async def`` function: what inspect would answer, five calls sooner
    if inspect.iscoroutinefunction(func):
        return func

    def checked() -> Awaitable[T]:
        value = func()
        if not inspect.isawaitable(value):
            raise Misuse(
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


def _deadline_passed() -> bool:
    """Whether the deadline in force has passed (checked before taking a permit; the callers
    first test ``_deadline() is not None``, which is all a call without a deadline pays)."""
    return remaining_time() == 0.0


def _too_late(call: Call) -> None:
    """Raise the call's deadline error if the deadline in force has passed (before a round)."""
    if _deadline() is not None and _deadline_passed():
        raise call.too_late()


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
    idempotent: bool = True,
    timeout_mode: str | None = None,
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
        idempotent: False for a call that must not run twice (a POST creating something):
            it is retried only when the failure proves the request was not processed
            (refused connection, DNS failure, 429/503 with ``Retry-After``), unless
            ``RETRY_NON_IDEMPOTENT`` is set (docs/retries.md).
        timeout_mode: the ``TIMEOUT_MODE`` of this call (default: the service's); the
            integrations pass ``"cooperative"``, as they set the client's own I/O timeout.

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
    options = (timeout_sec, max_retries, deadline_sec, timeout_mode)
    call = _begin(service_name, endpoint, func, options, idempotent)
    try:
        if call.settings.deadline is None:
            result = _drive(call, func)
        else:
            with deadline_scope(call.settings.deadline):
                result = _drive(call, func)
    except ReliabilityError as error:
        value = call.served(error, fallback)
        if type(value) is CoroutineType:
            value.close()
            raise TypeError(
                "the fallback returned a coroutine: resilient_call cannot await it; use a sync"
                " fallback, or resilient_call_async"
            ) from error
        return cast(T, value)
    except BaseException as exc:  # interrupted (KeyboardInterrupt, SystemExit): not a failure
        call.ended_aborted(exc)
        raise
    call.observer.end_ok(call.attempt)  # Call.ended_ok, inline (hot path)
    return result


def _drive(call: Call, func: Callable[[], T]) -> T:
    """The sync driver: the engine's decisions, with blocking I/O and sleeps."""
    context = call.context
    limiter = context.limiter
    if limiter is not None and not limiter.acquire(call.max_wait()):
        raise call.throttled()
    budget = context.budget  # the call counts towards the retry budget (inline: hot path)
    if budget is not None:
        budget.record_call()
    sleep = context.runtime.clock.sleep
    plain = call.hedging is None and context.gate is None  # the usual case: one attempt
    while True:
        call.attempt += 1
        try:
            if plain and _deadline() is None:
                result = _attempt_once(call, func)
            else:
                result = _round(call, func)
        except ReliabilityError as failure:
            delay = call.next_delay(failure)
            if delay is None:
                raise
        else:
            if result is _REFUSED:
                error = call.rejected()
                raise error from error.__cause__
            return result  # type: ignore[return-value]
        sleep(delay)


def _round(call: Call, func: Callable[[], T]) -> T | _Refused:
    """One attempt (or, hedged, one attempt and its hedges), unless the deadline has passed."""
    _too_late(call)
    hedging = call.hedging
    return _attempt(call, func) if hedging is None else _hedged(call, func, hedging)


def _attempt(call: Call, func: Callable[[], T], race: _Race | None = None) -> T | _Refused:
    """One attempt through the service's load control (concurrency limit, adaptive rate)."""
    gate = call.context.gate
    if gate is None:
        return _attempt_once(call, func, race)
    args = (call.attempt, call.endpoint, call.observer, _REFUSED)
    result: T | _Refused = gate.run(*args, _attempt_once, call, func, race)
    return result


def _attempt_once(call: Call, func: Callable[[], T], race: _Race | None = None) -> T | _Refused:
    """One attempt: a breaker permit, ``func()`` under the attempt timeout, the outcome settled.

    Returns the value (or ``_REFUSED`` when the breaker refused the permit); a failure is
    raised as its ReliabilityError, with the exception as ``__cause__``.
    """
    breaker, settings = call.breaker, call.settings
    permit = breaker.try_acquire()
    if not permit.admitted:
        return _REFUSED
    observer = call.observer  # the attempt starts: its span, its clock (hot path)
    call.handle = observer.attempt_start(call.attempt, call.hedge)
    call.started = started = time.perf_counter()
    injector = call.context.injector
    if injector is not None:
        func = injector.wrap(func, call)
    try:
        result = run_with_timeout(func, settings.timeout, settings.mode)
        if type(result) is CoroutineType:
            raise _coroutine_misuse(result)
    except Exception as exc:
        raise _cut_short(call, permit, exc) or _failed(call, permit, exc, race)  # noqa: B904
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: not the service's fault
        _abort(call, permit, exc)
        raise
    if race is not None:
        race.settle_success(call)
    duration = time.perf_counter() - started
    try:
        breaker.record_success(permit, duration)
    finally:
        if call.hedging is None:  # Call.finish_attempt_ok, inline (hot path)
            observer.attempt_ok(call.handle, duration)
        else:
            call.finish_attempt_ok(duration)
    return result


def _failed(call: Call, permit: Permit, exc: Exception, race: _Race | None) -> BaseException:
    """A failed attempt settled in the breaker (failure, or neutral: the permit given back)
    and recorded; the ReliabilityError to raise, its ``__cause__`` the exception."""
    error, duration, neutral = _classified(call, exc, race)
    try:
        if neutral:
            call.breaker.release(permit)
        else:
            call.breaker.record_failure(permit, duration)
    finally:
        call.finish_attempt_failed(error, exc, duration)
    return _caused(error, exc)


def _classified(
    call: Call, exc: Exception, race: _Race | None
) -> tuple[ReliabilityError, float, bool]:
    if race is not None:
        race.settle_failure(call)
    return call.failed(exc)


def _caused(error: ReliabilityError, exc: Exception) -> BaseException:
    if error is not exc:
        error.__cause__ = exc  # as ``raise error from exc``
    return error


def _cut_short(call: Call, permit: Permit, exc: Exception) -> BaseException | None:
    """An attempt cut short by the caller's side (a misuse, an enclosing deadline), not by the
    service: the permit is given back, nothing is counted; the exception to raise instead."""
    kind = type(exc)
    if issubclass(kind, Misuse):
        _abort(call, permit, exc)
        misuse = TypeError(str(exc))
        misuse.__cause__ = None  # as ``raise ... from None``
        return misuse
    if issubclass(kind, _Interrupted):  # an enclosing deadline cut this attempt: not ours
        _abort(call, permit, exc)
        return exc
    return None


# --- hedging --------------------------------------------------------------------------------------


class _Refused:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<refused by the breaker>"


_REFUSED = _Refused()


class _Race:
    """The attempts of one hedged round: the first success wins, the others lose.

    This base settles without a lock: the attempts of an asyncio round all run on its loop's
    thread (:class:`_Hedges`). :class:`_ThreadRace` is the one for worker threads.
    """

    __slots__ = ("finished",)

    def __init__(self) -> None:
        self.finished = False

    def settle_success(self, branch: Call) -> None:
        if self.finished:
            branch.lost = True
        else:
            self.finished = branch.won = True

    def settle_failure(self, branch: Call) -> None:
        if self.finished:
            branch.lost = True


class _ThreadRace(_Race):
    """A race whose attempts run on worker threads, each reporting how it ended."""

    __slots__ = ("_lock", "outcomes")

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        #: (branch, returned, value or exception), in the order the attempts ended
        self.outcomes: queue.SimpleQueue[tuple[Call, bool, Any]] = queue.SimpleQueue()

    def settle_success(self, branch: Call) -> None:
        with self._lock:
            super().settle_success(branch)

    def settle_failure(self, branch: Call) -> None:
        with self._lock:
            super().settle_failure(branch)


def _hedged(call: Call, func: Callable[[], T], hedging: HedgePolicy) -> T | _Refused:
    """One round of a hedged sync call: the attempt on a worker thread, and after each hedge
    delay another (within ``HEDGE_MAX_EXTRA`` and the budget) until one succeeds. Losers are
    abandoned: they run to their end on their worker and their results are dropped."""
    hedging.budget.record_call()
    delay = hedging.delay(call.endpoint)
    if delay is None:  # not enough latencies seen yet: a plain attempt
        return _attempt(call, func)
    round_ = _ThreadRound(call, func, hedging, delay)
    return cast("T | _Refused", round_.run())


class _ThreadRound:
    """The attempts of one hedged sync round, each on a worker thread."""

    __slots__ = ("_call", "_func", "_hedging", "_race", "delay", "extras", "in_flight", "last")

    def __init__(
        self, call: Call, func: Callable[[], Any], hedging: HedgePolicy, delay: float
    ) -> None:
        self._call, self._func, self._hedging = call, func, hedging
        self._race = _ThreadRace()
        self.delay = delay
        self.extras = 0
        self.in_flight = 0
        self.last: BaseException | None = None

    def _launch(self, hedge: bool) -> None:
        branch = self._call.branch(hedge)
        spawn(functools.partial(_run_branch, branch, self._func, self._race))
        self.in_flight += 1

    def _hedge(self) -> None:
        """The hedge delay passed with no answer: another attempt, if the budget allows."""
        if self._hedging.allow_hedge():
            self._call.observer.hedged()
            self._launch(True)
            self.extras += 1
        else:
            self.extras = self._hedging.max_extra  # the budget is spent: no more this round

    def run(self) -> Any:
        outcomes = self._race.outcomes
        self._launch(False)
        while self.in_flight:
            wait = self.delay if self.extras < self._hedging.max_extra else None
            try:
                branch, returned, value = outcomes.get(timeout=wait)
            except queue.Empty:
                self._hedge()
                continue
            self.in_flight -= 1
            if returned and branch.won:
                return value
            if not returned:
                self.last = value
        if self.last is None:
            return _REFUSED
        raise self.last


def _run_branch(branch: Call, func: Callable[[], Any], race: _ThreadRace) -> None:
    outcomes = race.outcomes
    try:
        value = _attempt(branch, func, race)
    except BaseException as exc:  # reported to the waiting caller, who raises it
        outcomes.put((branch, False, exc))
    else:
        outcomes.put((branch, True, value))


def _abort(call: Call, permit: Permit, exc: BaseException) -> None:
    """An attempt that ended without the service's answer: give the permit back, end its span.

    Sync in both drivers: a cancelled task must not await (the Redis backend's release is a
    short blocking round trip on its own connection).
    """
    try:
        call.breaker.release(permit)
    finally:
        call.aborted(exc)


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
    idempotent: bool = True,
    timeout_mode: str | None = None,
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
    options = (timeout_sec, max_retries, deadline_sec, timeout_mode)
    call = _begin(service_name, endpoint, func, options, idempotent)
    func = _awaitable_func(func)
    try:
        if call.settings.deadline is None:
            result = await _drive_async(call, func)
        else:
            with deadline_scope(call.settings.deadline):
                result = await _drive_async(call, func)
    except ReliabilityError as error:
        value = call.served(error, fallback)
        if inspect.isawaitable(value):
            value = await value
        return cast(T, value)
    except BaseException as exc:  # cancelled (asyncio.CancelledError) or interrupted
        call.ended_aborted(exc)
        raise
    call.observer.end_ok(call.attempt)  # as the sync driver: inline (hot path)
    return result


async def _drive_async(call: Call, func: Callable[[], Awaitable[T]]) -> T:
    """The asyncio driver: the same decisions as :func:`_drive`, with awaited I/O and sleeps."""
    limiter = call.context.limiter
    if limiter is not None and not await limiter.acquire_async(call.max_wait()):
        raise call.throttled()
    budget = call.context.budget  # the call counts towards the retry budget
    if budget is not None:
        budget.record_call()
    sleep = call.context.runtime.clock.sleep_async
    round_ = _async_round(call)
    while True:
        call.attempt += 1
        try:
            result: T | _Refused = await round_(call, func)
        except ReliabilityError as failure:
            delay = call.next_delay(failure)
            if delay is None:
                raise
        else:
            if result is _REFUSED:
                error = call.rejected()
                raise error from error.__cause__
            return result  # type: ignore[return-value]
        await sleep(delay)


def _async_round(call: Call) -> Callable[..., Awaitable[Any]]:
    """What runs each attempt of an asyncio call: a hedged round, a round through the load
    gate or under a deadline, or (the usual case) the attempt itself, as the sync driver's
    fast path."""
    if call.hedging is not None:
        return _hedged_async
    if call.context.gate is None and _deadline() is None:
        return _attempt_once_async
    return _round_async


async def _round_async(call: Call, func: Callable[[], Awaitable[T]]) -> T | _Refused:
    """One attempt, unless the deadline has passed (a hedged round: :func:`_hedged_async`)."""
    _too_late(call)
    return await _attempt_async(call, func)


async def _attempt_async(
    call: Call, func: Callable[[], Awaitable[T]], race: _Race | None = None
) -> T | _Refused:
    """The asyncio twin of :func:`_attempt`."""
    gate = call.context.gate
    if gate is None:
        return await _attempt_once_async(call, func, race)
    args = (call.attempt, call.endpoint, call.observer, _REFUSED)
    result: T | _Refused = await gate.run_async(*args, _attempt_once_async, call, func, race)
    return result


async def _attempt_once_async(
    call: Call, func: Callable[[], Awaitable[T]], race: _Race | None = None
) -> T | _Refused:
    """The asyncio twin of :func:`_attempt_once` (breaker I/O awaited, the attempt cancellable).

    A breaker whose backend does no I/O (in memory) is asked directly: no coroutine per permit.
    """
    breaker, settings = call.breaker, call.settings
    io = breaker.async_io
    permit = await breaker.try_acquire_async() if io else breaker.try_acquire()
    if not permit.admitted:
        return _REFUSED
    observer = call.observer  # the attempt starts: its span, its clock (hot path)
    call.handle = observer.attempt_start(call.attempt, call.hedge)
    call.started = started = time.perf_counter()
    injector = call.context.injector
    if injector is not None:
        func = injector.wrap_async(func, call)
    try:
        result = await run_with_timeout_async(func, settings.timeout, settings.mode)
    except Exception as exc:
        raise _cut_short(call, permit, exc) or await _failed_async(call, permit, exc, race)  # noqa: B904
    except BaseException as exc:  # cancellation of the caller (or of a lost hedge)
        _abort(call, permit, exc)
        raise
    if race is not None:
        race.settle_success(call)
    duration = time.perf_counter() - started
    try:
        if io:
            await breaker.record_success_async(permit, duration)
        else:
            breaker.record_success(permit, duration)
    finally:
        if call.hedging is None:  # Call.finish_attempt_ok, inline (hot path)
            observer.attempt_ok(call.handle, duration)
        else:
            call.finish_attempt_ok(duration)
    return result


async def _failed_async(
    call: Call, permit: Permit, exc: Exception, race: _Race | None
) -> BaseException:
    """:func:`_failed` with the breaker's I/O awaited."""
    error, duration, neutral = _classified(call, exc, race)
    try:
        if neutral:
            await call.breaker.release_async(permit)
        else:
            await call.breaker.record_failure_async(permit, duration)
    finally:
        call.finish_attempt_failed(error, exc, duration)
    return _caused(error, exc)


async def _hedged_async(call: Call, func: Callable[[], Awaitable[T]]) -> T | _Refused:
    """One round of a hedged asyncio call. The first attempt runs in the caller's task (no task
    is made when no hedge is needed: an entry in the service's hedge timer is all it costs);
    each hedge is a task. A winning hedge cancels the first attempt for real (the caller's task
    is cancelled and un-cancelled, as ``asyncio.timeout`` does); losing hedges are cancelled."""
    _too_late(call)
    hedging: HedgePolicy = call.hedging  # type: ignore[assignment]  # set: a hedged call
    hedging.budget.record_call()
    delay = hedging.fixed_delay
    if delay is None:
        delay = hedging.delay(call.endpoint)
        if delay is None:  # not enough latencies seen yet: a plain attempt
            return await _attempt_async(call, func)
    hedges = _Hedges(call, func, hedging, delay)
    attempt = _attempt_once_async if call.context.gate is None else _attempt_async
    try:
        try:
            value = await attempt(call, func, hedges)
        except asyncio.CancelledError:
            if not hedges.took_over():
                raise
            return cast(T, hedges.winner)
        except ReliabilityError:
            if not hedges.pending():
                raise
            return cast(T, await hedges.wait())  # a hedge may still succeed
        if call.won or not hedges.undecided():
            return value  # the first attempt won, or was refused with no hedge in flight
        return cast(T, await hedges.wait())  # a hedge won first (or may)
    finally:
        hedges.stop()


class _Hedges(_Race):
    """One asyncio round and its race: the hedge tasks, started after each hedge delay by the
    service's :class:`HedgeTimer` on this loop (no timer of its own: a round that needs no
    hedge costs an entry in a heap)."""

    __slots__ = (
        "_call",
        "_func",
        "_hedging",
        "_last",
        "_loop",
        "_task",
        "_tasks",
        "_timer",
        "delay",
        "extras",
        "winner",
    )

    def __init__(
        self,
        call: Call,
        func: Callable[[], Awaitable[Any]],
        hedging: HedgePolicy,
        delay: float,
    ) -> None:
        self.finished = False
        self._call = call
        self._func = func
        self._hedging = hedging
        self.delay = delay
        self.extras = 0
        self.winner: Any = None
        self._last: BaseException | None = None
        self._tasks: dict[asyncio.Future[Any], Call] | None = None  # made by the first hedge
        loop = asyncio.get_running_loop()
        #: None once no more hedges may start (the first attempt ended, or the round)
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._task: asyncio.Task[Any] | None = asyncio.current_task(loop)
        self._timer = hedging.timer(loop)
        self._timer.after(loop, delay, self)

    def launch(self) -> None:
        """The hedge delay passed: another attempt, unless the round is decided or the budget
        is spent."""
        loop = self._loop
        if loop is None or self.finished:
            return
        if not self._hedging.allow_hedge():
            return
        self._call.observer.hedged()
        branch = self._call.branch(True)
        task = loop.create_task(_attempt_async(branch, self._func, self))
        if self._tasks is None:
            self._tasks = {}
        self._tasks[task] = branch
        task.add_done_callback(functools.partial(self._done, branch))
        self.extras += 1
        if self.extras < self._hedging.max_extra:
            self._timer.after(loop, self.delay, self)

    def _done(self, branch: Call, task: asyncio.Future[Any]) -> None:
        if task.cancelled():  # a loser, cancelled when the round ended
            return
        failure = task.exception()
        if failure is not None:
            self._last = failure
        elif branch.won and self.winner is None:
            self.winner = task.result()
            if not self._call.lost and self._task is not None:
                self._call.lost = True  # the first attempt, still running in the caller's task
                self._task.cancel()

    def pending(self) -> bool:
        return self._tasks is not None and any(not task.done() for task in self._tasks)

    def undecided(self) -> bool:
        """After the first attempt ended without winning: a hedge won, or may still."""
        return self.winner is not None or self.pending()

    def took_over(self) -> bool:
        """The first attempt was cancelled: by a winning hedge (the caller's task then
        un-cancelled, as ``asyncio.timeout`` does), not by the caller's own cancellation."""
        if self.winner is None or self._task is None:
            return False
        return self._task.uncancel() == 0

    async def wait(self) -> Any:
        """After the first attempt ended without winning: the hedges' winner, or their failure."""
        self._loop = None  # no more hedges once the first attempt has ended
        while self.winner is None:
            pending = [task for task in self._tasks or () if not task.done()]
            if not pending:
                break
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if self.winner is not None:
            return self.winner
        if self._last is not None:
            raise self._last
        return _REFUSED

    def stop(self) -> None:
        """The round is over: losers cancelled; the entry left in the timer's heap until it falls
        due keeps no loop or task alive."""
        self._loop = self._task = None
        self._timer.forget(self)
        tasks = self._tasks
        if tasks is not None:
            for task, branch in tasks.items():
                if not task.done():
                    branch.lost = True
                    task.cancel()
                    task.add_done_callback(_retrieve)
            self._tasks = None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume a cancelled loser's outcome (no "exception was never retrieved" warning)."""
    if not task.cancelled():
        task.exception()


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
    idempotent: bool = ...,
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
    accepted = (
        "timeout_sec",
        "max_retries",
        "deadline_sec",
        "fallback",
        "idempotent",
        "timeout_mode",
    )
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if options.get("idempotent", True) not in (True, False):
        raise TypeError(f"idempotent must be True or False, got {options['idempotent']!r}")
    if options.get("timeout_sec") is not None:
        validate_timeout("timeout_sec", options["timeout_sec"])
    if options.get("max_retries") is not None:
        check_attempts(options["max_retries"])
    if options.get("deadline_sec") is not None:
        check_deadline(options["deadline_sec"])
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
