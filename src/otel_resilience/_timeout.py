"""Deadlines: bound a call in time, in any thread, and tell callees how much time is left.

Three mechanisms, one semantics (``run_with_timeout`` / ``run_with_timeout_async``):

* **main thread** (POSIX): ``signal.setitimer(ITIMER_REAL)`` and a ``SIGALRM`` handler that raises
  an internal ``BaseException`` into the running function at the deadline, so ``time.sleep``, a
  blocking socket read or a pure-Python loop is interrupted where it stands. The handler raises a
  token naming the deadline that expired; the frame that armed it turns it into
  :class:`AttemptTimeout`, every other frame lets it pass, so nested deadlines work. An
  application's own ``SIGALRM`` handler and interval timer are saved and restored around the call.
* **any other thread** (and the main thread when the application's own timer would fire first):
  the function runs in a small pool of reusable daemon worker threads, with a copy of the caller's
  ``contextvars`` (OpenTelemetry context, the deadline); the caller waits on a lock with a timeout
  and raises :class:`AttemptTimeout` on time. The worker cannot be killed: it is *abandoned*, keeps
  running until the function returns (whatever it holds stays held), its result is discarded and it
  goes back to the pool. Pass :func:`remaining_time` to clients that accept a timeout so abandoned
  work ends soon after the deadline.
* **asyncio**: ``asyncio.timeout`` cancels the coroutine for real.

The innermost deadline in force lives in a ``ContextVar``: :func:`remaining_time` and
:func:`current_deadline` read it, :func:`deadline_scope` tightens it without enforcing it.

Exception tree::

    TimeoutError
    └── AttemptTimeout      a deadline set by this module passed (``.timeout_sec``)
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import math
import numbers
import os
import queue
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from types import FrameType
from typing import Any, Final, ParamSpec, TypeVar, cast

__all__ = [
    "AttemptTimeout",
    "current_deadline",
    "deadline_scope",
    "remaining_time",
    "run_with_timeout",
    "run_with_timeout_async",
    "shutdown_workers",
    "validate_timeout",
    "with_timeout",
]

T = TypeVar("T")
P = ParamSpec("P")

#: Used when ``with_timeout()`` gets no value and ``otel_resilience._config`` is not there.
DEFAULT_TIMEOUT_SEC: Final = 30.0
#: An idle worker thread exits after this long without work.
WORKER_IDLE_SEC: Final = 30.0
#: Name prefix of the worker threads (tests and thread dumps recognise them by it).
WORKER_NAME_PREFIX: Final = "otel-resilience-timeout"

#: The clock of deadlines (tests may replace it). Enforcement turns a deadline into a duration
#: when a call starts and then waits on the real clock.
_monotonic = time.monotonic
_real_monotonic = time.monotonic
_deadline_var: ContextVar[float | None] = ContextVar("otel_resilience_deadline", default=None)


class AttemptTimeout(TimeoutError):
    """A deadline set by :func:`run_with_timeout` (or :func:`with_timeout`) passed.

    Attributes:
        timeout_sec: the limit that applied, in seconds: the requested timeout, or what was left
            of an enclosing, tighter deadline.
    """

    def __init__(self, message: str, timeout_sec: float) -> None:
        super().__init__(message)
        self.timeout_sec = timeout_sec

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.timeout_sec))


# --------------------------------------------------------------------------------------------
# The deadline context variable


def current_deadline() -> float | None:
    """The innermost deadline in force, as a ``time.monotonic()`` instant, or ``None``."""
    return _deadline_var.get()


def remaining_time() -> float | None:
    """Seconds left before the innermost deadline in force, ``None`` when there is none.

    Never negative (``0.0`` once the deadline passed). Inside a function run by
    ``resilient_call`` this is what is left of the attempt's timeout (or of the overall deadline,
    whichever ends first), never ``None``: pass it to clients that take a timeout, e.g.
    ``httpx.get(url, timeout=remaining_time())`` (see docs/timeouts.md for a helper that also
    covers calls made outside any deadline, where httpx and requests read ``None`` as "wait
    forever").
    """
    deadline = _deadline_var.get()
    if deadline is None:
        return None
    left = deadline - _monotonic()
    return left if left > 0.0 else 0.0


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[float | None]:
    """Tighten the deadline seen by :func:`remaining_time` and :func:`run_with_timeout`.

    Sets the deadline to ``min(current deadline, now + seconds)`` for the block and yields it.
    Nothing is enforced here: a :func:`run_with_timeout` inside the block enforces it. ``None``
    keeps the enclosing deadline.
    """
    if seconds is None:
        yield _deadline_var.get()
        return
    deadline = _monotonic() + seconds
    outer = _deadline_var.get()
    if outer is not None and outer < deadline:
        deadline = outer
    token = _deadline_var.set(deadline)
    try:
        yield deadline
    finally:
        _deadline_var.reset(token)


# --------------------------------------------------------------------------------------------
# Validation and messages

_RANGE_TEXT: Final = "a number of seconds > 0"


def validate_timeout(name: str, value: object) -> float | None:
    """``value`` as float seconds; ``None`` passes through. Raises naming ``name`` otherwise.

    Accepts ``int`` and ``float`` (any real number) that is > 0 and finite; ``bool`` is refused.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {_RANGE_TEXT}, got {type(value).__name__}: {value!r}")
    seconds = float(value)
    if not seconds > 0.0:
        raise ValueError(f"{name} must be {_RANGE_TEXT}, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def _func_name(named: object) -> str:
    name = getattr(named, "__name__", None)
    return name if isinstance(name, str) else repr(named)


def _timeout_error(named: object, requested: float | None, limit: float) -> AttemptTimeout:
    """The error for a deadline that passed; the seed's message when the requested limit applied."""
    if requested is not None and limit == requested:
        shown: object = requested
    elif limit <= 0.0:
        return AttemptTimeout(
            f"Function {_func_name(named)} timed out: the deadline had already passed", 0.0
        )
    else:
        shown = round(limit, 3)
    return AttemptTimeout(
        f"Function {_func_name(named)} timed out after {shown} seconds", float(limit)
    )


# --------------------------------------------------------------------------------------------
# Main thread: SIGALRM + ITIMER_REAL

_HAS_ITIMER: Final = hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM")
if _HAS_ITIMER:
    _SIGALRM: Final = signal.SIGALRM
    _ITIMER_REAL: Final = signal.ITIMER_REAL
_setitimer: Any = getattr(signal, "setitimer", None)
_getitimer: Any = getattr(signal, "getitimer", None)
# The C functions: ``signal.getsignal``/``signal.signal`` convert to and from ``Handlers`` enums,
# which costs ~2 us per call through a ValueError whenever the handler is a function.
_csignal: Any = getattr(signal, "_signal", signal)
_getsignal = _csignal.getsignal
_setsignal = _csignal.signal
_SIG_DFL: Final = int(signal.SIG_DFL)
_get_ident = threading.get_ident
_main_ident: int | None = threading.main_thread().ident

#: Shortest timer we arm (setitimer(0) would disarm instead).
_TINY: Final = 1e-6
#: A timer that fires this close to its deadline counts as on time (timer/clock rounding).
_SLACK: Final = 5e-4
#: Longest timer we arm (~3 years; setitimer overflows past ~292 years). A longer limit is
#: re-armed in steps by the handler.
_MAX_ARM = 1e8


class _Expired(BaseException):
    """Raised by the SIGALRM handler into the main thread; ``entry`` names the deadline."""

    def __init__(self, entry: _Entry) -> None:
        super().__init__("deadline passed")
        self.entry = entry


class _Entry:
    """One armed main-thread deadline (the token its frame recognises)."""

    __slots__ = ("app_timer", "capped", "deadline", "fired", "restore_handler", "state")

    def __init__(self, deadline: float, left: float) -> None:
        self.deadline = deadline
        self.capped = left > _MAX_ARM  # the timer is armed for less than the deadline
        self.fired = False  # the handler raised _Expired for it
        self.state = 0  # 0 armed, 1 disarmed and popped, 2 fully left
        self.app_timer: tuple[float, float, float] | None = None  # (delay, interval, saved at)
        self.restore_handler: Any = None  # the application's handler to put back


class _SignalState:
    __slots__ = ("displaced", "swallow")

    def __init__(self) -> None:
        #: What SIGALRM did before our handler took over; used for signals that are not ours.
        self.displaced: Any = _SIG_DFL
        #: Our timer expired but its signal had not been handled when the frame left.
        self.swallow = False


#: Armed deadlines of the main thread, outermost first, strictly decreasing; the itimer is armed
#: for the last one. Only the main thread touches it.
_stack: list[_Entry] = []
_sig = _SignalState()


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """SIGALRM handler: raise the expired deadline into the main thread.

    Our timer is one-shot and armed for the innermost (tightest) entry, so "no timer pending"
    means it fired: the kernel's real-time timer is trusted, the clock only decides whether an
    enclosing deadline has passed too (then the outermost one is raised, so that every frame in
    between lets it through).
    """
    stack = _stack
    if stack and _getitimer(_ITIMER_REAL)[0] == 0.0:
        _sig.swallow = False
        target = stack[-1]
        now = _monotonic()
        for entry in stack:
            if entry.deadline - now <= _SLACK:
                target = entry
                break
        else:
            if target.capped:  # the timer was shorter than the deadline: arm the rest
                left = target.deadline - now
                target.capped = left > _MAX_ARM
                _setitimer(_ITIMER_REAL, min(left, _MAX_ARM))
                return
        if not target.fired:
            target.fired = True
            index = stack.index(target)
            if index:  # keep the enclosing deadline armed, in case this one gets swallowed
                outer = stack[index - 1]
                left = outer.deadline - now
                outer.capped = left > _MAX_ARM
                _setitimer(_ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM))
            raise _Expired(target)
        return  # a late duplicate of a deadline already raised
    if _sig.swallow:
        _sig.swallow = False
        return
    _forward(signum, frame)


def _forward(signum: int, frame: FrameType | None) -> None:
    """A SIGALRM that is not ours: do what the displaced handler would have done."""
    displaced = _sig.displaced
    if callable(displaced):
        displaced(signum, frame)
    elif displaced == _SIG_DFL:
        # The default action terminates the process: restore it and deliver the signal again.
        _setsignal(_SIGALRM, _SIG_DFL)
        signal.raise_signal(_SIGALRM)
    # SIG_IGN: nothing to do.


def _leave(entry: _Entry) -> None:
    """Disarm ``entry``, re-arm what was armed before it. Idempotent; safe to call again if a
    signal interrupted it."""
    stack = _stack
    if entry.state == 0:
        if _setitimer(_ITIMER_REAL, 0.0)[0] == 0.0 and not entry.fired:
            _sig.swallow = True  # expired but not handled yet: its signal may still come
        if stack and stack[-1] is entry:
            stack.pop()
        elif entry in stack:  # entries above it were left behind by an interrupted cleanup
            del stack[stack.index(entry) :]
        entry.state = 1
    if entry.state == 1:
        if stack:
            outer = stack[-1]
            left = outer.deadline - _monotonic()
            if left > 0.0:
                outer.capped = left > _MAX_ARM
                _setitimer(_ITIMER_REAL, min(left, _MAX_ARM))
            elif not outer.fired:
                _setitimer(_ITIMER_REAL, _TINY)
        else:
            app_timer = entry.app_timer
            if app_timer is not None:
                entry.app_timer = None
                delay, interval, saved_at = app_timer
                delay -= _monotonic() - saved_at
                _setitimer(_ITIMER_REAL, delay if delay > _TINY else _TINY, interval)
            handler = entry.restore_handler
            if handler is not None:
                entry.restore_handler = None
                _setsignal(_SIGALRM, handler)
        entry.state = 2


def _run_main(
    func: Callable[[], T],
    deadline: float,
    limit: float,
    requested: float | None,
    named: object,
    outer: float | None,
) -> T:
    stack = _stack
    if stack:
        top = stack[-1]
        if deadline >= top.deadline:
            # An enclosing call's timer fires first; its frame handles it.
            _deadline_var.set(top.deadline)
            try:
                return func()
            finally:
                _deadline_var.set(outer)
        left = deadline - _monotonic()
        entry = _Entry(deadline, left)
        stack.append(entry)
        _setitimer(_ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM))
    else:
        handler = _getsignal(_SIGALRM)
        if handler is None:  # installed from C: we could not put it back
            return _run_in_worker(func, deadline, limit, requested, named)
        if handler is _on_alarm:  # left behind by an interrupted cleanup
            restore = _sig.displaced
        else:
            _sig.displaced = restore = handler
            try:
                _setsignal(_SIGALRM, _on_alarm)
            except ValueError:  # e.g. not the main interpreter: signals are not ours to take
                return _run_in_worker(func, deadline, limit, requested, named)
        _sig.swallow = False
        left = deadline - _monotonic()
        entry = _Entry(deadline, left)
        stack.append(entry)
        app_delay, app_interval = _setitimer(
            _ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM)
        )
        entry.restore_handler = restore
        if app_delay:
            if app_delay <= left:
                # The application's own timer fires first: leave SIGALRM to it, use a thread.
                entry.state = 2
                stack.pop()
                _setitimer(_ITIMER_REAL, app_delay, app_interval)
                _setsignal(_SIGALRM, restore)
                return _run_in_worker(func, deadline, limit, requested, named)
            entry.app_timer = (app_delay, app_interval, _monotonic())
    _deadline_var.set(deadline)
    try:
        try:
            result = func()
        finally:
            _deadline_var.set(outer)
            _leave(entry)
    except _Expired as expired:
        _leave(entry)
        if expired.entry is entry:
            raise _timeout_error(named, requested, limit) from None
        raise
    except BaseException:
        _leave(entry)  # a KeyboardInterrupt may have cut the first _leave short
        raise
    if entry.fired:  # the function swallowed our interruption and returned late
        raise _timeout_error(named, requested, limit)
    return result


# --------------------------------------------------------------------------------------------
# Other threads: a pool of reusable daemon workers


class _Job:
    __slots__ = ("ctx", "done", "error", "func", "lock", "result")

    def __init__(self, func: Callable[[], Any], ctx: Context) -> None:
        self.func: Callable[[], Any] | None = func
        self.ctx: Context | None = ctx
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.lock.acquire()


class _Pool:
    """Hand-rolled worker pool: cheaper than ``ThreadPoolExecutor`` (no futures, no locks per
    state change), and a worker that is still busy with abandoned work is simply not idle."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        #: Workers waiting for a job that no submitter has counted on yet. Invariant: waiting
        #: workers == idle + jobs (or stop sentinels) queued but not yet taken.
        self.idle = 0
        self.generation = 0
        self.spawned = 0
        self.workers: set[threading.Thread] = set()


_pool = _Pool()


def _submit(job: _Job) -> None:
    pool = _pool
    with pool.lock:
        if pool.idle:
            pool.idle -= 1
            pool.jobs.put(job)
            return
        pool.spawned += 1
        thread = threading.Thread(
            target=_worker,
            args=(pool, job, pool.generation),
            name=f"{WORKER_NAME_PREFIX}-{pool.spawned}",
            daemon=True,
        )
        pool.workers.add(thread)
    try:
        thread.start()
    except BaseException:  # e.g. "can't start new thread": the caller must hear it, not wait
        with pool.lock:
            pool.workers.discard(thread)
        raise


def _execute(job: _Job) -> None:
    ctx, func = job.ctx, job.func
    assert ctx is not None
    assert func is not None
    try:
        job.result = ctx.run(func)
    except BaseException as exc:  # handed to the caller, whatever it is
        job.error = exc
    job.func = job.ctx = None
    job.done = True
    job.lock.release()


def _worker(pool: _Pool, job: _Job | None, generation: int) -> None:
    try:
        while job is not None:
            _execute(job)
            job = None
            with pool.lock:
                if generation != pool.generation:
                    return  # shut down while busy: don't go back to idle
                pool.idle += 1
            while True:
                try:
                    job = pool.jobs.get(timeout=WORKER_IDLE_SEC)
                    break
                except queue.Empty:
                    with pool.lock:
                        if pool.idle:  # no submitter is counting on a waiting worker
                            pool.idle -= 1
                            return
    finally:
        with pool.lock:
            pool.workers.discard(threading.current_thread())


def _run_in_worker(
    func: Callable[[], T],
    deadline: float,
    limit: float,
    requested: float | None,
    named: object,
) -> T:
    token = _deadline_var.set(deadline)
    ctx = copy_context()
    _deadline_var.reset(token)
    job = _Job(func, ctx)
    _submit(job)
    lock = job.lock
    # The deadline becomes a duration now; the wait runs on the real clock.
    end = _real_monotonic() + (deadline - _monotonic())
    while True:
        left = end - _real_monotonic()
        if left <= 0.0 or lock.acquire(True, min(left, threading.TIMEOUT_MAX)):
            break
    if not job.done:
        raise _timeout_error(named, requested, limit)
    error = job.error
    if error is not None:
        job.error = None
        try:
            raise error
        finally:
            del error
    return cast(T, job.result)


def shutdown_workers(timeout: float = 1.0) -> int:
    """Stop the worker threads (for a clean process exit and for tests).

    Idle workers exit at once; a worker still running abandoned work exits when it returns.
    Waits up to ``timeout`` seconds in all and returns how many workers are still running.
    Calls made afterwards start new workers.
    """
    pool = _pool
    with pool.lock:
        pool.generation += 1
        for _ in range(pool.idle):
            pool.jobs.put(None)
        pool.idle = 0
        workers = list(pool.workers)
    end = _real_monotonic() + timeout
    for thread in workers:
        if thread is not threading.current_thread():
            thread.join(max(0.0, end - _real_monotonic()))
    return sum(thread.is_alive() for thread in workers)


def _after_fork_in_child() -> None:
    global _main_ident, _pool
    _main_ident = threading.main_thread().ident
    _stack.clear()  # timers are not inherited by a child process
    _sig.swallow = False
    _pool = _Pool()  # the workers (and maybe a held lock) stayed in the parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------
# Entry points


def _limits(timeout_sec: float | None, outer: float | None) -> tuple[float, float] | None:
    """(deadline, limit in seconds) of a call from its timeout and the enclosing deadline, the
    tighter one winning; None when neither is set."""
    if timeout_sec is None:
        if outer is None:
            return None
        return outer, outer - _monotonic()
    now = _monotonic()
    deadline = now + timeout_sec
    if outer is not None and outer < deadline:
        return outer, outer - now
    return deadline, timeout_sec


def _run_sync(func: Callable[[], T], timeout_sec: float | None, named: object) -> T:
    outer = _deadline_var.get()
    limits = _limits(timeout_sec, outer)
    if limits is None:
        return func()
    deadline, limit = limits
    if limit <= 0.0:
        raise _timeout_error(named, timeout_sec, 0.0)
    if _HAS_ITIMER and _get_ident() == _main_ident:
        return _run_main(func, deadline, limit, timeout_sec, named, outer)
    return _run_in_worker(func, deadline, limit, timeout_sec, named)


def run_with_timeout(func: Callable[[], T], timeout_sec: float | None) -> T:
    """``func()``, or :class:`AttemptTimeout` once ``timeout_sec`` (or an enclosing deadline,
    whichever ends first) passed. Returns control on time in any thread.

    ``func``'s own exceptions propagate unchanged. Both limits ``None``: just ``func()``. The
    caller validates ``timeout_sec`` (see :func:`validate_timeout`).
    """
    return _run_sync(func, timeout_sec, func)


async def _run_async(
    func: Callable[[], Awaitable[T]], timeout_sec: float | None, named: object
) -> T:
    outer = _deadline_var.get()
    limits = _limits(timeout_sec, outer)
    if limits is None:
        return await func()
    deadline, limit = limits
    if limit <= 0.0:
        raise _timeout_error(named, timeout_sec, 0.0)
    token = _deadline_var.set(deadline)
    scope = asyncio.timeout(deadline - _monotonic())
    try:
        async with scope:
            result = await func()
    except TimeoutError:
        if scope.expired():
            raise _timeout_error(named, timeout_sec, limit) from None
        raise
    finally:
        _deadline_var.reset(token)
    if scope.expired():  # func swallowed the cancellation and returned late
        raise _timeout_error(named, timeout_sec, limit)
    return result


async def run_with_timeout_async(func: Callable[[], Awaitable[T]], timeout_sec: float | None) -> T:
    """``await func()``, cancelled for real once the deadline passes (:class:`AttemptTimeout`).

    Only the expiry of this call's own deadline becomes :class:`AttemptTimeout`; a
    ``TimeoutError`` raised by ``func`` propagates unchanged.
    """
    return await _run_async(func, timeout_sec, func)


# --------------------------------------------------------------------------------------------
# The seed's decorator

_config_module: Any = None


def _default_timeout() -> float:
    """``HTTP_TIMEOUT_SEC`` of the library's config, read at call time (30 without a config)."""
    global _config_module
    module = _config_module
    if module is None:
        try:
            module = importlib.import_module("otel_resilience._config")
        except ModuleNotFoundError as exc:
            if exc.name != "otel_resilience._config":
                raise
            return DEFAULT_TIMEOUT_SEC
        _config_module = module
    value = module.get_config().HTTP_TIMEOUT_SEC
    return value if isinstance(value, int | float) else float(value)  # 30 stays "30 seconds"


def with_timeout(timeout_sec: float | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: the call raises ``TimeoutError`` after ``timeout_sec`` seconds (the seed's API).

    The message is the seed's: ``"Function <name> timed out after <timeout_sec> seconds"`` (the
    error is an :class:`AttemptTimeout`, a ``TimeoutError``). Unlike the seed's ``SIGALRM``
    version it works in any thread, takes float seconds, and decorates ``async def`` functions
    too (cancelled for real). ``None`` means the configured ``HTTP_TIMEOUT_SEC``.
    """
    if callable(timeout_sec):
        raise TypeError(
            "with_timeout takes the number of seconds: write @with_timeout(30) or"
            f" @with_timeout(), not @with_timeout (got the function {timeout_sec!r})"
        )
    validate_timeout("timeout_sec", timeout_sec)

    def decorator(func: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(func):
            coro_func: Callable[P, Coroutine[Any, Any, Any]] = func

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                limit = _default_timeout() if timeout_sec is None else timeout_sec
                return await _run_async(
                    functools.partial(coro_func, *args, **kwargs), limit, coro_func
                )

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            limit = _default_timeout() if timeout_sec is None else timeout_sec
            return _run_sync(functools.partial(func, *args, **kwargs), limit, func)

        return wrapper

    return decorator
