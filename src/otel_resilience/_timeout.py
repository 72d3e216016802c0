"""Deadlines: bound a call in time, in any thread, and tell callees how much time is left.

Three mechanisms, one semantics (``run_with_timeout`` / ``run_with_timeout_async``):

* **main thread** (POSIX): ``signal.setitimer(ITIMER_REAL)`` and a ``SIGALRM`` handler that raises
  an internal ``TimeoutError`` (``socket.timeout``, so clients run their own cleanup) into the
  running function at the deadline, where that is safe (see ``_UNSAFE``), and again every
  ``_REDELIVER`` seconds until the attempt ends. The frame that armed it turns it (or what the
  client made of it) into :class:`AttemptTimeout`; every other frame lets it pass, so nested
  deadlines work. An application's own ``SIGALRM`` handler and interval timer are saved and
  restored around the call.
* **any other thread** (and the main thread when the application's own timer would fire first):
  the function runs in a small pool of reusable daemon worker threads, with a copy of the caller's
  ``contextvars`` (OpenTelemetry context, the deadline); the caller waits on a lock with a timeout
  and raises :class:`AttemptTimeout` on time. The worker cannot be killed: it is *abandoned*, keeps
  running until the function returns (whatever it holds stays held), its result is discarded and it
  goes back to the pool. Pass :func:`remaining_time` to clients that accept a timeout so abandoned
  work ends soon after the deadline.
* **asyncio**: ``asyncio.timeout`` cancels the coroutine for real.

``TIMEOUT_MODE`` picks per service: ``interrupt`` (the above), ``thread`` (a worker in every
thread) or ``cooperative`` (no preemption; a late end is still a timeout).

The innermost deadline in force lives in a ``ContextVar``: :func:`remaining_time` and
:func:`current_deadline` read it, :func:`deadline_scope` tightens it without enforcing it.

Exception tree::

    TimeoutError
    └── AttemptTimeout      a deadline set by this module passed (``.timeout_sec``)
"""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import inspect
import math
import numbers
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from types import FrameType
from typing import Any, Final, ParamSpec, TypeVar, cast

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
    """An attempt's time ran out: what :func:`with_timeout` raises (``resilient_call`` turns it
    into :class:`CallTimeoutError`). A builtin ``TimeoutError``.

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
    """Tighten the deadline seen by :func:`remaining_time` and by the calls made in the block.

    Sets the deadline to ``min(current deadline, now + seconds)`` for the block and yields it.
    Nothing is enforced here: an attempt (``resilient_call``, ``with_timeout``) inside the block
    enforces it. ``None`` keeps the enclosing deadline.
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


#: While the frame of a deadline that passed is still running, the handler runs again this
#: often: an interruption that was swallowed, held back or never delivered is delivered again.
_REDELIVER: Final = 2e-4
#: How long an interruption waits for the cleanup of the previous one (an ``except``/``finally``
#: handling it) before it cuts that cleanup too, e.g. a client's retry backoff sleeping in it.
_GRACE: Final = 1e-2
#: An interruption held back (a client region never safe to cut, see ``_UNSAFE``) is delivered
#: anyway once the deadline is this far past: a region that blocks (a pool waiting for a free
#: connection, a connect to a frozen server) must not make the attempt unbounded.
_HOLD_MAX: Final = 1.0


class _Interrupted(TimeoutError):
    """Raised by the SIGALRM handler into the main thread when a deadline passed.

    A ``TimeoutError`` (``socket.timeout``): the clients' own cleanup for a timed-out socket
    operation runs (close the connection, don't hand it back with a reply unread). ``entry``
    names the deadline; only the frame that armed it turns it into :class:`AttemptTimeout`.
    """

    def __init__(self, entry: _Entry) -> None:
        super().__init__("deadline passed (interrupted by otel_resilience)")
        self.entry = entry


class _Entry:
    """One armed main-thread deadline (the token its frame recognises)."""

    __slots__ = ("app_timer", "capped", "deadline", "fired", "restore_handler", "state")

    def __init__(self, deadline: float, left: float) -> None:
        self.deadline = deadline
        self.capped = left > _MAX_ARM  # the timer is armed for less than the deadline
        self.fired = False  # the deadline passed while its frame was running
        self.state = 0  # 0 on the stack (active), 1 disarmed and popped, 2 fully left
        self.app_timer: tuple[float, float, float] | None = None  # (delay, interval, saved at)
        self.restore_handler: Any = None  # the application's handler to put back


class _SignalState:
    __slots__ = ("deferred_since", "displaced", "leaving", "redelivering", "swallow")

    def __init__(self) -> None:
        #: What SIGALRM did before our handler took over; used for signals that are not ours.
        self.displaced: Any = _SIG_DFL
        #: Our timer expired but its signal had not been handled when the frame left.
        self.swallow = False
        #: The timer repeats every ``_REDELIVER`` s: an armed deadline has passed.
        self.redelivering = False
        #: When the handler first held an interruption back for a cleanup in progress.
        self.deferred_since: float | None = None
        #: ``_leave`` is disarming: the handler must not arm anything (``_leave`` re-arms).
        self.leaving = False


#: Armed deadlines of the main thread, outermost first, strictly decreasing; the itimer is armed
#: for the last one (or repeats for redelivery). Only the main thread touches it.
_stack: list[_Entry] = []
_sig = _SignalState()

#: Where an interruption is safe in the clients we know, by module: (qualified name, scope).
#:
#: * ``"tree"``: never inside the call, whatever it calls (pool bookkeeping, closing,
#:   telemetry); ``"*"`` names every function of the module.
#: * ``"guard"``: not inside the call, except inside a ``"safe"`` call below it (the client's
#:   state is consistent only there: e.g. between taking a pooled connection and the ``try``
#:   that gives it back).
#: * ``"safe"``: a call whose own cleanup handles a ``TimeoutError`` (``except socket.timeout``,
#:   ``except BaseException: disconnect()``): an island inside a guarded call.
#:
#: Resolved when the handler first runs after the module was imported; code of modules not
#: listed here can be interrupted anywhere (see docs/timeouts.md).
_UNSAFE: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    # code the interpreter runs in the middle of anything (where an exception is "ignored")
    "warnings": (("*", "tree"),),
    "weakref": (("*", "tree"),),
    "_weakrefset": (("*", "tree"),),  # WeakSet's removal callbacks
    "contextlib": (
        ("_GeneratorContextManagerBase.__init__", "tree"),
        ("_GeneratorContextManager.__enter__", "guard"),
        ("_GeneratorContextManager.__exit__", "guard"),
    ),
    # a socket created but not yet stored is lost if interrupted: connecting is bounded by
    # the client's connect timeout instead
    "socket": (("create_connection", "tree"),),
    "urllib3.util.connection": (("create_connection", "tree"),),
    # redis-py
    "redis.client": (("Redis._execute_command", "guard"),),
    "redis.retry": (("Retry.call_with_retry", "safe"),),
    "redis.connection": (
        ("ConnectionPool.get_connection", "guard"),
        ("BlockingConnectionPool.get_connection", "guard"),
        ("AbstractConnection.connect", "safe"),
        # a socket created but not yet stored: connecting is bounded by socket_connect_timeout
        ("Connection._connect", "tree"),
        ("SSLConnection._connect", "tree"),
        ("UnixDomainSocketConnection._connect", "tree"),
        ("ConnectionPool.make_connection", "tree"),
        ("ConnectionPool.release", "tree"),
        ("BlockingConnectionPool.make_connection", "tree"),
        ("BlockingConnectionPool.release", "tree"),
        ("AbstractConnection.disconnect", "tree"),
    ),
    "redis.observability.recorder": (("*", "tree"),),
    "redis.observability.attributes": (("*", "tree"),),
    # requests and urllib3: a response holds its connection until its body was read
    "requests.sessions": (("Session.send", "guard"),),
    "requests.adapters": (("HTTPAdapter.send", "guard"),),
    "requests.models": (
        ("Response.content", "guard"),
        ("Response.iter_content", "guard"),
        ("Response.iter_content.<locals>.generate", "guard"),
    ),
    "requests.cookies": (("*", "tree"),),
    "requests.hooks": (("*", "tree"),),
    "urllib3._collections": (("*", "tree"),),
    "urllib3.connection": (
        ("HTTPConnection._new_conn", "tree"),
        ("HTTPConnection.connect", "guard"),
        ("HTTPSConnection.connect", "guard"),
    ),
    "urllib3.connectionpool": (
        ("HTTPConnectionPool.urlopen", "guard"),
        ("HTTPConnectionPool._make_request", "safe"),
        ("HTTPConnectionPool._get_conn", "tree"),
        ("HTTPConnectionPool._put_conn", "tree"),
    ),
    "urllib3.response": (
        ("HTTPResponse.stream", "guard"),
        ("HTTPResponse.read", "guard"),
        ("HTTPResponse._raw_read", "guard"),
        ("HTTPResponse._fp_read", "safe"),
        ("HTTPResponse.release_conn", "tree"),
        ("HTTPResponse.drain_conn", "tree"),
        ("BaseHTTPResponse._init_decoder", "tree"),
    ),
    # httpx and httpcore (the OpenAI SDK): a request is queued in the pool and a connection
    # marked active before the try blocks that undo it on errors
    "httpx._client": (
        ("Client.send", "guard"),
        ("Client._send_handling_auth", "guard"),
        ("Client._send_handling_redirects", "guard"),
        ("Client._send_single_request", "guard"),
        ("BoundSyncStream.__iter__", "guard"),
    ),
    "httpx._models": (
        ("Response.read", "guard"),
        ("Response.iter_bytes", "guard"),
        ("Response.iter_raw", "guard"),
        ("Response.close", "tree"),
    ),
    "httpx._transports.default": (
        ("HTTPTransport.handle_request", "guard"),
        ("ResponseStream.__iter__", "guard"),
        ("ResponseStream.close", "tree"),
    ),
    "httpcore._sync.connection_pool": (
        ("ConnectionPool.handle_request", "guard"),
        ("PoolByteStream.__iter__", "guard"),
        ("PoolByteStream.close", "tree"),
        ("ConnectionPool._assign_requests_to_connections", "tree"),
        ("ConnectionPool._close_connections", "tree"),
    ),
    "httpcore._sync.connection": (("HTTPConnection.handle_request", "guard"),),
    "httpcore._sync.http11": (
        ("HTTP11Connection.handle_request", "guard"),
        ("HTTP11ConnectionByteStream.__iter__", "guard"),
        ("HTTP11Connection._send_request_headers", "safe"),
        ("HTTP11Connection._send_request_body", "safe"),
        ("HTTP11Connection._receive_response_headers", "safe"),
        ("HTTP11Connection._receive_response_body", "safe"),
        ("HTTP11Connection._response_closed", "tree"),
        ("HTTP11Connection.close", "tree"),
        ("HTTP11ConnectionByteStream.close", "tree"),
    ),
    "httpcore._synchronization": (("*", "tree"),),
    "httpcore._backends.sync": (("SyncBackend.connect_tcp", "tree"),),
    "httpcore._trace": (("*", "tree"),),
}
# the OpenAI SDK ships its own copies of httpx and httpcore (``httpx2``, ``httpcore2``)
_UNSAFE.update(
    {
        name.replace("httpx.", "httpx2.", 1).replace("httpcore.", "httpcore2.", 1): names
        for name, names in list(_UNSAFE.items())
        if name.startswith(("httpx.", "httpcore."))
    }
)
_unsafe_tree: set[Any] = set()
_unsafe_guard: set[Any] = set()
_safe: set[Any] = set()
_unsafe_files: set[str] = set()
_unsafe_resolved: set[str] = set()
#: functions the interpreter calls where an exception cannot propagate ("Exception ignored")
_NEVER_NAMES: Final = frozenset({"__del__", "unraisablehook", "unraisable_hook", "excepthook"})


def _resolve_unsafe() -> None:
    """Add the code objects of ``_UNSAFE`` entries whose module is imported by now."""
    sets = {"tree": _unsafe_tree, "guard": _unsafe_guard, "safe": _safe}
    for module_name, names in _UNSAFE.items():
        if module_name in _unsafe_resolved:
            continue
        module = sys.modules.get(module_name)
        if module is None:
            continue
        _unsafe_resolved.add(module_name)
        for qualname, scope in names:
            if qualname == "*":
                _unsafe_files.add(getattr(module, "__file__", None) or module_name)
                continue
            target: Any = module
            outer, _, local = qualname.partition(".<locals>.")
            for part in outer.split("."):
                target = getattr(target, part, None)
            if isinstance(target, property):
                target = target.fget
            if target is None:
                continue
            code = getattr(inspect.unwrap(target), "__code__", None)
            if local:  # a nested function: its code is a constant of the outer one
                consts = getattr(code, "co_consts", ())
                code = next((c for c in consts if getattr(c, "co_name", None) == local), None)
            if code is not None:
                sets[scope].add(code)


def _handling_ours() -> bool:
    """Whether the code interrupted is handling (``except``/``finally``) one of our active
    interruptions, or an exception a client raised while handling one."""
    exc = sys.exc_info()[1]
    depth = 0
    while exc is not None and depth < 8:
        if type(exc) is _Interrupted and exc.entry.state == 0:
            return True
        exc = exc.__context__
        depth += 1
    return False


def _may_interrupt(frame: FrameType | None, now: float, overdue: float = 0.0) -> bool:
    """Whether raising into ``frame`` now is safe; if not, a later tick tries again.

    ``overdue``: seconds since the deadline passed; past ``_HOLD_MAX`` only the library's
    own bookkeeping still holds the interruption back."""
    if frame is None:  # pragma: no cover - CPython always passes the interrupted frame
        return True
    code = frame.f_code
    if code is _CALL_CODE:
        pass  # running the function (a C function, called from here)
    elif code in _OWN_CODES or (
        code.co_filename.startswith(_PACKAGE_DIR)
        and not code.co_filename.startswith(_DEMO_DIR)  # the demo is an application
    ):
        # our own bookkeeping (deadlines, breakers, telemetry): the arming frame checks
        # ``fired`` itself; what the library calls (the function, Redis) can be interrupted
        return False
    if overdue >= _HOLD_MAX:
        _sig.deferred_since = None
        return True
    if _handling_ours():
        since = _sig.deferred_since
        if since is None:
            _sig.deferred_since = now
            return False
        if now - since < _GRACE:
            return False
    if len(_unsafe_resolved) < len(_UNSAFE):
        _resolve_unsafe()
    tree, guard, safe, files = _unsafe_tree, _unsafe_guard, _safe, _unsafe_files
    # the garbage collector's callbacks run in the middle of anything too
    hooks = {getattr(inspect.unwrap(cb), "__code__", None) for cb in gc.callbacks}
    in_safe = False
    while frame is not None:
        code = frame.f_code
        if code is _RUN_MAIN_CODE:
            break
        if (
            code in tree
            or code.co_filename in files
            or code.co_name in _NEVER_NAMES
            or code in hooks
            or code.co_filename.startswith("<frozen importlib")  # an import, half done
        ):
            return False  # (also: a finaliser or an unraisable-exception hook, mid-call)
        if code in safe:
            in_safe = True
        elif not in_safe and code in guard:
            return False
        frame = frame.f_back
    _sig.deferred_since = None
    return True


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """SIGALRM handler: raise the expired deadline into the main thread, when it is safe.

    Our timer is armed for the innermost (tightest) entry, so "no timer pending" means it
    fired: the kernel's real-time timer is trusted, the clock only decides whether an enclosing
    deadline has passed too (then the outermost one is raised, so that every frame in between
    lets it through). Once a deadline passed the timer repeats every ``_REDELIVER`` s until the
    frame leaves, so an interruption held back (see :func:`_may_interrupt`), swallowed by the
    function or lost (the handler did not run) is raised again.
    """
    stack = _stack
    if _sig.leaving:
        return  # a tick that raced with disarming: _leave re-arms for what is left
    if not stack:
        if _sig.swallow:
            _sig.swallow = False
            return
        _forward(signum, frame)
        return
    if not _sig.redelivering and _getitimer(_ITIMER_REAL)[0] != 0.0:
        _forward(signum, frame)  # not our timer: it is still running
        return
    _sig.swallow = False
    now = _monotonic()
    target = stack[-1]
    for entry in stack:
        if entry.deadline - now <= _SLACK:
            target = entry
            break
    else:
        if target.capped and not target.fired:  # the timer was shorter than the deadline
            left = target.deadline - now
            target.capped = left > _MAX_ARM
            _setitimer(_ITIMER_REAL, min(left, _MAX_ARM))
            return
    if not target.fired:
        target.fired = True
        if not _sig.redelivering:
            _sig.redelivering = True
            _sig.deferred_since = None
            _setitimer(_ITIMER_REAL, _REDELIVER, _REDELIVER)
    if _may_interrupt(frame, now, now - target.deadline):
        raise _Interrupted(target)


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


def _arm(stack: list[_Entry], now: float) -> None:
    """Arm the timer for what is left on the stack (after an entry left it)."""
    for entry in stack:
        if entry.fired:  # an enclosing deadline passed: keep redelivering it
            _sig.redelivering = True
            _setitimer(_ITIMER_REAL, _REDELIVER, _REDELIVER)
            return
    _sig.redelivering = False
    outer = stack[-1]
    left = outer.deadline - now
    outer.capped = left > _MAX_ARM
    _setitimer(_ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM))


def _leave(entry: _Entry) -> None:
    """Disarm ``entry``, re-arm what was armed before it, put the application's handler and
    timer back. Idempotent; safe to call again if a signal (SIGINT) interrupted it."""
    stack = _stack
    _sig.leaving = True
    if entry.state == 0:
        old = _setitimer(_ITIMER_REAL, 0.0)
        if _sig.redelivering or old[0] == 0.0:
            _sig.swallow = True  # a tick of ours may still be on its way
        if stack and stack[-1] is entry:
            stack.pop()
        elif entry in stack:  # entries above it were left behind by an interrupted cleanup
            del stack[stack.index(entry) :]
        entry.state = 1
    if entry.state == 1:
        if stack:
            _arm(stack, _monotonic())
        else:
            _sig.redelivering = False
            _sig.deferred_since = None
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
    _sig.leaving = False


def _enter(deadline: float) -> _Entry | None:
    """Push and arm a deadline (the handler is ours already); ``None``: SIGALRM is not ours to
    use (the caller runs the function on a worker instead)."""
    stack = _stack
    left = deadline - _monotonic()
    entry = _Entry(deadline, left)
    if stack:
        stack.append(entry)
        _setitimer(_ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM))
        return entry
    handler = _getsignal(_SIGALRM)
    if handler is None:  # installed from C: we could not put it back
        return None
    if handler is _on_alarm:  # left behind by an interrupted cleanup
        restore = _sig.displaced
    else:
        _sig.displaced = restore = handler
        try:
            _setsignal(_SIGALRM, _on_alarm)
        except ValueError:  # e.g. not the main interpreter: signals are not ours to take
            return None
    _sig.swallow = False
    _sig.redelivering = False
    _sig.leaving = False
    entry.restore_handler = restore
    stack.append(entry)
    app_delay, app_interval = _setitimer(
        _ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM)
    )
    if app_delay:
        if app_delay <= left:
            # The application's own timer fires first: leave SIGALRM to it, use a thread.
            entry.restore_handler = None
            entry.state = 2
            stack.pop()
            _setitimer(_ITIMER_REAL, app_delay, app_interval)
            _setsignal(_SIGALRM, restore)
            return None
        entry.app_timer = (app_delay, app_interval, _monotonic())
    return entry


def _call(func: Callable[[], T]) -> T:
    """Calls the function of a main-thread deadline: the one frame of this package the handler
    raises into (``func`` may be a C function, e.g. a ``functools.partial`` of ``time.sleep``)."""
    return func()


def _run_main(
    func: Callable[[], T],
    deadline: float,
    limit: float,
    requested: float | None,
    named: object,
    outer: float | None,
) -> T:
    """``func()`` under a main-thread deadline.

    Everything from arming the timer to putting the application's timer back is inside the
    ``try``: the handler never raises into this frame (nor into ``_enter``/``_leave``), it
    only marks the entry ``fired``, which this frame checks; so no internal exception escapes
    and the stack is left empty whatever happens.
    """
    stack = _stack
    if stack and deadline >= stack[-1].deadline:
        # An enclosing call's timer fires first; its frame handles it.
        top = stack[-1]
        _deadline_var.set(top.deadline)
        try:
            if top.fired:
                raise _Interrupted(top)
            return func()
        except Exception as exc:
            if top.fired and top.state == 0 and type(exc) is not _Interrupted:
                raise _Interrupted(top) from exc  # the enclosing deadline cut this call
            raise
        finally:
            _deadline_var.set(outer)
    entry: _Entry | None = None
    try:
        try:
            entry = _enter(deadline)
            if entry is None:
                return _run_in_worker(func, deadline, limit, requested, named)
            _deadline_var.set(deadline)
            if not entry.fired:
                result = _call(func)
        finally:
            _deadline_var.set(outer)
            if entry is not None:
                try:
                    _leave(entry)
                except BaseException:  # KeyboardInterrupt mid-cleanup: finish it, then raise
                    _leave(entry)
                    raise
    except _Interrupted as exc:
        if exc.entry is entry:  # raw (no cause), or what an inner call made of it (the cause)
            raise _timeout_error(named, requested, limit) from exc.__cause__
        raise
    except Exception as exc:
        enclosing = _fired_enclosing()
        if enclosing is not None:
            raise _Interrupted(enclosing) from exc  # an enclosing deadline cut this call
        if entry is not None and entry.fired:  # a client turned our interruption into its own
            raise _timeout_error(named, requested, limit) from exc
        raise
    if entry.fired:  # the function swallowed our interruption (or it came too late to raise)
        raise _timeout_error(named, requested, limit)
    return result


def _fired_enclosing() -> _Entry | None:
    """The outermost enclosing deadline that passed (its frame must hear of it), if any."""
    for entry in _stack:
        if entry.fired:
            return entry
    return None


_RUN_MAIN_CODE: Final = _run_main.__code__
_CALL_CODE: Final = _call.__code__
_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DEMO_DIR: Final = _PACKAGE_DIR + "demo" + os.sep
_OWN_CODES: Final = frozenset(
    f.__code__
    for f in (_run_main, _enter, _leave, _arm, _Entry.__init__, _fired_enclosing, _may_interrupt)
)


def _leftovers() -> list[str]:
    """What a main-thread deadline left behind: stack entries, our handler, a timer of ours.

    Empty when clean (for tests and the torture suite; call it in the main thread, outside any
    deadline).
    """
    found = [f"deadline stack entry (deadline={e.deadline}, state={e.state})" for e in _stack]
    if _HAS_ITIMER:
        if _getsignal(_SIGALRM) is _on_alarm:
            found.append("our SIGALRM handler is still installed")
        delay, interval = _getitimer(_ITIMER_REAL)
        if _sig.redelivering:
            found.append(f"redelivery timer still marked on (itimer {delay}, {interval})")
        elif interval == _REDELIVER:
            found.append(f"our redelivery timer is still armed ({delay}, {interval})")
    return found


# --------------------------------------------------------------------------------------------
# Other threads: a pool of reusable daemon workers


class _ThreadBoundError(ValueError):
    """An object bound to the caller's thread (a ``sqlite3`` connection) was used on a worker.

    A misuse, not a failure of the service: classified ``bad_request`` (HTTP 400), so it is
    neither retried nor counted by the breaker, and the message says what to do.
    """

    status_code = 400

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            f"invalid use of a thread-bound object on a timeout worker thread ({error}): the"
            " function ran on a worker because TIMEOUT_MODE=thread or the caller is not the"
            " main thread; create the object inside the function, or set"
            " TIMEOUT_MODE=cooperative for this service (docs/timeouts.md)"
        )


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
            if type(error).__name__ == "ProgrammingError" and "same thread" in str(error):
                raise _ThreadBoundError(error) from error
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


#: The ``TIMEOUT_MODE`` values (docs/timeouts.md).
MODES: Final = ("interrupt", "thread", "cooperative")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _run_sync(
    func: Callable[[], T], timeout_sec: float | None, named: object, mode: str = "interrupt"
) -> T:
    outer = _deadline_var.get()
    limits = _limits(timeout_sec, outer)
    if limits is None:
        return func()
    deadline, limit = limits
    if limit <= 0.0:
        raise _timeout_error(named, timeout_sec, 0.0)
    if mode == "interrupt":
        if _HAS_ITIMER and _get_ident() == _main_ident:
            return _run_main(func, deadline, limit, timeout_sec, named, outer)
    elif mode == "cooperative":
        return _run_cooperative(func, deadline, limit, timeout_sec, named, outer)
    return _run_in_worker(func, deadline, limit, timeout_sec, named)


def _run_cooperative(
    func: Callable[[], T],
    deadline: float,
    limit: float,
    requested: float | None,
    named: object,
    outer: float | None,
) -> T:
    """``func()`` in this thread, never preempted: the attempt still ends as a timeout if it
    returns (or fails) after its deadline."""
    _deadline_var.set(deadline)
    try:
        result = func()
    except Exception as exc:
        if _monotonic() >= deadline:
            raise _timeout_error(named, requested, limit) from exc
        raise
    finally:
        _deadline_var.set(outer)
    if _monotonic() >= deadline:
        raise _timeout_error(named, requested, limit)
    return result


def run_with_timeout(
    func: Callable[[], T], timeout_sec: float | None, mode: str = "interrupt"
) -> T:
    """``func()``, or :class:`AttemptTimeout` once ``timeout_sec`` (or an enclosing deadline,
    whichever ends first) passed. Returns control on time in any thread.

    ``func``'s own exceptions propagate unchanged. Both limits ``None``: just ``func()``. The
    caller validates ``timeout_sec`` (see :func:`validate_timeout`). ``mode`` is the
    ``TIMEOUT_MODE``: ``"interrupt"`` (SIGALRM in the main thread, a worker elsewhere),
    ``"thread"`` (a worker in every thread) or ``"cooperative"`` (no preemption: ``func``
    must honour :func:`remaining_time`; a late return is still a timeout).
    """
    if mode != "interrupt":
        _check_mode(mode)
    return _run_sync(func, timeout_sec, func, mode)


async def _run_async(
    func: Callable[[], Awaitable[T]],
    timeout_sec: float | None,
    named: object,
    mode: str = "interrupt",
) -> T:
    outer = _deadline_var.get()
    limits = _limits(timeout_sec, outer)
    if limits is None:
        return await func()
    deadline, limit = limits
    if limit <= 0.0:
        raise _timeout_error(named, timeout_sec, 0.0)
    token = _deadline_var.set(deadline)
    if mode == "cooperative":  # no cancellation: a late result or error is a timeout
        try:
            result = await func()
        except Exception as exc:
            if _monotonic() >= deadline:
                raise _timeout_error(named, timeout_sec, limit) from exc
            raise
        finally:
            _deadline_var.reset(token)
        if _monotonic() >= deadline:
            raise _timeout_error(named, timeout_sec, limit)
        return result
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


async def run_with_timeout_async(
    func: Callable[[], Awaitable[T]], timeout_sec: float | None, mode: str = "interrupt"
) -> T:
    """``await func()``, cancelled for real once the deadline passes (:class:`AttemptTimeout`).

    Only the expiry of this call's own deadline becomes :class:`AttemptTimeout`; a
    ``TimeoutError`` raised by ``func`` propagates unchanged. ``mode="cooperative"``: never
    cancelled (a result or error after the deadline is a timeout); ``"thread"`` is the same as
    ``"interrupt"`` here (cancellation is safe in asyncio).
    """
    if mode != "interrupt":
        _check_mode(mode)
    return await _run_async(func, timeout_sec, func, mode)


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
