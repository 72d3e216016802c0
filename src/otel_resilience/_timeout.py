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
import inspect
import math
import numbers
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from types import CodeType, FrameType, MappingProxyType
from typing import Any, Final, NoReturn, ParamSpec, TypeVar, cast

T = TypeVar("T")
P = ParamSpec("P")

#: Used when ``with_timeout()`` gets neither a value nor a ``default_timeout``.
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
    if limit == requested:  # (never when requested is None)
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
# One call under a deadline


class _Call:
    """One call under a deadline: its limits, the error it ends with, and in the main thread the
    entry of its armed timer on the deadline stack (the token its frame recognises).

    Written once for every mechanism: the sync and async drivers only differ in how they run
    the function.
    """

    __slots__ = (
        "app_timer",
        "capped",
        "deadline",
        "fired",
        "limit",
        "named",
        "outer",
        "requested",
        "restore_handler",
        "state",
    )

    def __init__(
        self,
        deadline: float,
        limit: float,
        requested: float | None,
        named: object,
        outer: float | None,
    ) -> None:
        self.deadline = deadline
        self.limit = limit  # the limit that applies: the timeout, or what the enclosing one left
        self.requested = requested  # the timeout asked for (None: only an enclosing deadline)
        self.named = named  # what the error message names
        self.outer = outer  # the enclosing deadline, in force again when the call ends
        # main thread only:
        self.capped = False  # the timer is armed for less than the deadline
        self.fired = False  # the deadline passed while its frame was running
        self.state = 0  # 0 on the stack (active), 1 disarmed and popped, 2 fully left
        self.app_timer: tuple[float, float, float] | None = None  # (delay, interval, saved at)
        self.restore_handler: Any = None  # the application's handler to put back

    def error(self) -> AttemptTimeout:
        return _timeout_error(self.named, self.requested, self.limit)

    # Cooperative mode: ``with call: func()`` sets the deadline for the function and turns a late
    # end (a result, or an ``Exception`` after the deadline) into the timeout.

    def __enter__(self) -> None:
        _deadline_var.set(self.deadline)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        _deadline_var.set(self.outer)
        if _monotonic() < self.deadline:
            return
        if exc is None:
            raise self.error()
        if isinstance(exc, Exception):
            raise self.error() from exc


#: The ``TIMEOUT_MODE`` values (docs/timeouts.md).
MODES: Final = ("interrupt", "thread", "cooperative")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _start(timeout_sec: float | None, named: object, mode: str) -> _Call | None:
    """The decisions before a call, the same for sync and async: the mode is valid, the call's
    deadline (None: neither a timeout nor an enclosing deadline, call the function directly);
    raises the timeout when the deadline already passed (the function is never called)."""
    if mode != "interrupt":
        _check_mode(mode)
    outer = _deadline_var.get()
    if timeout_sec is None:
        if outer is None:
            return None
        deadline, limit = outer, outer - _monotonic()
    else:  # the tighter of the timeout and the enclosing deadline wins
        now = _monotonic()
        deadline, limit = now + timeout_sec, timeout_sec
        if outer is not None and outer < deadline:
            deadline, limit = outer, outer - now
    if limit <= 0.0:
        raise _timeout_error(named, timeout_sec, 0.0)
    return _Call(deadline, limit, timeout_sec, named, outer)


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


def _signal_thread() -> int | None:
    """The thread a deadline interrupts with SIGALRM: the main one, None without ``setitimer``."""
    return threading.main_thread().ident if _HAS_ITIMER else None


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
#: ... and once it was held back by this many ticks in a row: a region that blocks. A process
#: that did not run for a while (a loaded machine, a long garbage collection) finds the deadline
#: past the cap at its first tick, wherever it stopped (in ``socket.socket.__init__``, after
#: the descriptor exists): one tick after a pause is not a region that blocks.
_HOLD_TICKS: Final = 50


class _Interrupted(TimeoutError):
    """Raised by the SIGALRM handler into the main thread when a deadline passed.

    A ``TimeoutError`` (``socket.timeout``): the clients' own cleanup for a timed-out socket
    operation runs (close the connection, don't hand it back with a reply unread). ``entry``
    names the deadline; only the frame that armed it turns it into :class:`AttemptTimeout`.
    """

    def __init__(self, entry: _Call) -> None:
        super().__init__("deadline passed (interrupted by otel_resilience)")
        self.entry = entry


_Table = Mapping[str, tuple[tuple[str, str], ...]]


def _with_vendored_copies(table: _Table) -> _Table:
    """``table`` plus the copies of httpx and httpcore the OpenAI SDK ships (``httpx2``,
    ``httpcore2``), read-only."""
    copies = {
        name.replace("httpx.", "httpx2.", 1).replace("httpcore.", "httpcore2.", 1): names
        for name, names in table.items()
        if name.startswith(("httpx.", "httpcore."))
    }
    return MappingProxyType({**table, **copies})


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
_UNSAFE: Final = _with_vendored_copies(
    {
        # code the interpreter runs in the middle of anything (where an exception is "ignored")
        "warnings": (("*", "tree"),),
        "weakref": (("*", "tree"),),
        "_weakrefset": (("*", "tree"),),  # WeakSet's removal callbacks
        # logging's locks are taken before the ``try`` whose ``finally`` gives them back, by
        # functions that check for signals on entry: cut in one, a lock stays held and every
        # other thread that logs (or calls getLogger) waits for it forever
        "logging": (
            ("_acquireLock", "tree"),
            ("_releaseLock", "tree"),
            ("Handler.acquire", "tree"),
            ("Handler.release", "tree"),
        ),
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
            # between ``sock = self._connect()`` and ``self._sock = sock`` a connected socket
            # is nobody's; the handshake after it is an island (connect's retry disconnects)
            ("AbstractConnection.connect_check_health", "guard"),
            ("AbstractConnection.on_connect_check_health", "safe"),
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
)
#: functions the interpreter calls where an exception cannot propagate ("Exception ignored")
_NEVER_NAMES: Final = frozenset({"__del__", "unraisablehook", "unraisable_hook", "excepthook"})


def _code_of(module: object, qualname: str) -> CodeType | None:
    """The code object ``qualname`` names in ``module`` (``A.f``, ``f.<locals>.g``, a property's
    getter, a wrapped function's own code), None when the module has no such function."""
    target: Any = module
    outer, _, local = qualname.partition(".<locals>.")
    for part in outer.split("."):
        target = getattr(target, part, None)
    if isinstance(target, property):
        target = target.fget
    code = getattr(inspect.unwrap(target), "__code__", None)  # None: no such function
    return _nested_code(code, local) if local else code


def _nested_code(outer: CodeType | None, name: str) -> CodeType | None:
    """The code of the function ``name`` defined in ``outer`` (a constant of its code)."""
    consts = getattr(outer, "co_consts", ())
    return next((c for c in consts if getattr(c, "co_name", None) == name), None)


class _Regions:
    """The regions of a table like ``_UNSAFE`` as code objects, resolved as their modules get
    imported, and the walk that tells whether interrupted code is inside one."""

    __slots__ = ("files", "guard", "looked_at", "resolved", "safe", "table", "tree")

    def __init__(self, table: _Table) -> None:
        self.table = table
        self.tree: set[Any] = set()
        self.guard: set[Any] = set()
        self.safe: set[Any] = set()
        self.files: set[str] = set()  # modules listed with "*"
        self.resolved: set[str] = set()  # modules looked up already
        #: ``len(sys.modules)`` when every imported module of the table was resolved; -1 while
        #: one is still being imported (looked at again on every tick until it is done)
        self.looked_at = -1

    def resolve(self) -> None:
        """Add the code objects of the entries whose module is imported by now.

        Runs on every held tick, so it returns at once unless a module was imported since.
        A module still executing its import (a client imported lazily inside the call) is left
        for later: its classes may not exist yet, and skipping them would be for good. A module
        counts as resolved once all its entries were looked up, not before: an exception in the
        middle leaves it to look up again, never half done."""
        count = len(sys.modules)
        if count == self.looked_at:
            return
        complete = True
        for module_name in self.table.keys() - self.resolved:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                complete = False  # half imported: next tick
                continue
            self._add(module_name, module)
            self.resolved.add(module_name)
        self.looked_at = count if complete else -1

    def _add(self, module_name: str, module: object) -> None:
        """Add the code objects of the entries of an imported module."""
        scopes = {"tree": self.tree, "guard": self.guard, "safe": self.safe}
        for qualname, scope in self.table[module_name]:
            if qualname == "*":
                self.files.add(getattr(module, "__file__", None) or module_name)
                continue
            try:
                code = _code_of(module, qualname)
            except Exception:  # a lookup that raises (a lazy module's ``__getattr__``) must
                code = None  # not escape the signal handler into the client's code
            if code is not None:
                scopes[scope].add(code)

    def holds(self, frame: FrameType | None) -> bool:
        """Whether ``frame``, or a caller of it up to the frame that armed the deadline, is in
        a region never safe to cut (then a later tick tries again)."""
        self.resolve()
        hooks = _gc_callback_codes()
        in_safe = False  # inside a "safe" call: the "guard" calls around it may be cut
        # (a plain loop, not a generator: a held interruption walks these frames every tick)
        while frame is not None:  # innermost first, up to the frame that runs the function
            code = frame.f_code
            if code is _ARMED_CODE or code is _UNDER_CODE:
                break
            if self._never_cut(code, hooks):
                return True
            if code in self.safe:
                in_safe = True
            elif not in_safe and code in self.guard:
                return True
            frame = frame.f_back
        return False

    def _never_cut(self, code: CodeType, hooks: set[Any]) -> bool:
        # also: a finaliser or an unraisable-exception hook, mid-call; an import, half done
        return (
            code in self.tree
            or code.co_filename in self.files
            or code.co_name in _NEVER_NAMES
            or code in hooks
            or code.co_filename.startswith("<frozen importlib")
        )


def _gc_callback_codes() -> set[Any]:
    """The code of the garbage collector's callbacks: they run in the middle of anything."""
    return {getattr(inspect.unwrap(cb), "__code__", None) for cb in gc.callbacks}


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


def _is_bookkeeping(code: CodeType) -> bool:
    """Whether ``code`` is the library's own bookkeeping (deadlines, breakers, telemetry), never
    cut: the arming frame checks ``fired`` itself. What the library calls (the function, Redis)
    can be interrupted, and so can ``_call`` (running a C function) and the demo (an
    application)."""
    if code is _CALL_CODE:
        return False
    filename = code.co_filename
    return code in _OWN_CODES or (
        filename.startswith(_PACKAGE_DIR) and not filename.startswith(_DEMO_DIR)
    )


def _arm_for(entry: _Call, left: float) -> tuple[float, float]:
    """Arm the timer for ``entry``, ``left`` seconds before its deadline (at most ``_MAX_ARM``:
    the handler re-arms a capped timer); the timer armed before, ``(delay, interval)``."""
    entry.capped = left > _MAX_ARM
    before: tuple[float, float] = _setitimer(
        _ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM)
    )
    return before


def _rearm_app_timer(app_timer: tuple[float, float, float]) -> None:
    """Arm the application's timer again (``(delay, interval, saved at)``), less the time
    since it was saved."""
    delay, interval, saved_at = app_timer
    delay -= _monotonic() - saved_at
    _setitimer(_ITIMER_REAL, delay if delay > _TINY else _TINY, interval)


def _call(func: Callable[[], T]) -> T:
    """Calls the function of a main-thread deadline: the one frame of this package the handler
    raises into (``func`` may be a C function, e.g. a ``functools.partial`` of ``time.sleep``)."""
    return func()


class _Interrupter:
    """The process's ``SIGALRM`` machinery: the handler and its state, the stack of armed
    main-thread deadlines, the unsafe regions of known clients, and the worker pool that runs
    calls where a signal cannot interrupt them.

    Signal dispositions and interval timers belong to the process, so there is one instance,
    ``_interrupter``; only the main thread touches its signal state and its stack.
    """

    __slots__ = (
        "active",
        "deferred_since",
        "displaced",
        "handler",
        "held",
        "leaving",
        "main_ident",
        "missed",
        "pool",
        "redelivering",
        "regions",
        "stack",
        "swallow",
    )

    def __init__(self, table: _Table) -> None:
        #: The thread whose calls SIGALRM interrupts (None: no interval timer here).
        self.main_ident = _signal_thread()
        #: Armed deadlines of the main thread, outermost first, strictly decreasing; the itimer
        #: is armed for the last one (or repeats for redelivery).
        self.stack: list[_Call] = []
        #: What SIGALRM did before our handler took over; used for signals that are not ours.
        self.displaced: Any = _SIG_DFL
        #: Our timer expired but its signal had not been handled when the frame left.
        self.swallow = False
        #: The timer repeats every ``_REDELIVER`` s: an armed deadline has passed.
        self.redelivering = False
        #: When the handler first held an interruption back for a cleanup in progress.
        self.deferred_since: float | None = None
        #: Ticks in a row that a region held the interruption back by (see ``_HOLD_TICKS``).
        self.held = 0
        #: ``leave`` is disarming: the handler must not arm anything (``leave`` re-arms).
        self.leaving = False
        #: The handler is running: a tick that arrives meanwhile does not run it again inside
        #: itself (see :meth:`on_alarm`).
        self.active = False
        #: A tick arrived while the handler ran and nothing repeats it: raised again after.
        self.missed = False
        self.regions = _Regions(table)
        self.pool = _Pool()
        #: The handler we install, one bound method: recognised by identity.
        self.handler: Callable[[int, FrameType | None], None] = self.on_alarm

    def after_fork_in_child(self) -> None:
        self.main_ident = _signal_thread()
        self.stack.clear()  # timers are not inherited by a child process
        self.swallow = False
        self.active = self.missed = False  # forked from inside the handler
        self.pool = _Pool()  # the workers (and maybe a held lock) stayed in the parent

    # --- running a call ----------------------------------------------------------------------

    def run_main(self, func: Callable[[], T], call: _Call) -> T:
        """``func()`` under a main-thread deadline: :class:`AttemptTimeout` for ours, an
        ``_Interrupted`` passed on for an enclosing one.

        Everything from arming the timer to putting the application's timer back is inside the
        ``try``: the handler never raises into this frame (nor into ``_enter``/``leave``), it
        only marks the call ``fired``, which this frame checks; so no internal exception
        escapes and the stack is left empty whatever happens.
        """
        stack = self.stack
        if stack and call.deadline >= stack[-1].deadline:
            # An enclosing call's timer fires first; its frame handles it.
            return self._run_under(func, stack[-1], call.outer)
        try:
            if not self._enter(call):  # SIGALRM is not ours to use: a worker runs the call
                return self.pool.run(func, call)
            try:
                _deadline_var.set(call.deadline)
                if not call.fired:  # else it passed before the function could start
                    result = _call(func)
            finally:
                _deadline_var.set(call.outer)
                try:
                    self.leave(call)
                except BaseException:  # KeyboardInterrupt mid-cleanup: finish it, then raise
                    self.leave(call)
                    raise
        except Exception as exc:
            self._raise_instead(exc, call)
            raise
        if call.fired:  # the function swallowed our interruption (or it came too late to raise)
            raise call.error()
        return result

    def _run_under(self, func: Callable[[], T], top: _Call, outer: float | None) -> T:
        """``func()`` inside an enclosing deadline that ends first: nothing is armed, the
        enclosing one's interruption passes through (a client's error made of it becomes one
        again)."""
        _deadline_var.set(top.deadline)
        try:
            if top.fired:
                raise _Interrupted(top)
            return _call(func)
        except Exception as exc:
            # (``top`` is active: its frame is waiting for this one)
            if top.fired and type(exc) is not _Interrupted:
                raise _Interrupted(top) from exc  # the enclosing deadline cut this call
            raise
        finally:
            _deadline_var.set(outer)

    def _raise_instead(self, exc: Exception, call: _Call) -> None:
        """Raise what an exception ending an armed call becomes instead; return to let it
        through unchanged."""
        if isinstance(exc, _Interrupted):
            if exc.entry is call:  # raw (no cause), or what an inner call made of it (the cause)
                raise call.error() from exc.__cause__
            return
        enclosing = self._fired_enclosing()
        if enclosing is not None:
            raise _Interrupted(enclosing) from exc  # an enclosing deadline cut this call
        if call.fired:  # a client turned our interruption into its own
            raise call.error() from exc

    def _fired_enclosing(self) -> _Call | None:
        """The outermost enclosing deadline that passed (its frame must hear of it), if any."""
        for entry in self.stack:
            if entry.fired:
                return entry
        return None

    # --- arming and disarming ----------------------------------------------------------------

    def _enter(self, call: _Call) -> bool:
        """Push and arm a deadline; False: SIGALRM is not ours to use (the caller runs the
        function on a worker instead)."""
        left = call.deadline - _monotonic()
        if self.stack:  # the handler is ours already
            self.stack.append(call)
            _arm_for(call, left)
            return True
        installed = _getsignal(_SIGALRM)
        if installed is None:  # installed from C: we could not put it back
            return False
        if installed is not self.handler:  # (ours is a leftover of an interrupted cleanup)
            self.displaced = installed
        try:
            _setsignal(_SIGALRM, self.handler)
        except ValueError:  # e.g. not the main interpreter: signals are not ours to take
            return False
        self.swallow = False
        self.redelivering = False
        self.leaving = False
        call.restore_handler = self.displaced
        # _arm_for(call, left), written out on the path every call takes
        call.capped = left > _MAX_ARM
        self.stack.append(call)
        app_delay, app_interval = _setitimer(
            _ITIMER_REAL, _TINY if left < _TINY else min(left, _MAX_ARM)
        )
        if app_delay:  # the application's own timer was running
            return self._keep_app_timer(call, left, app_delay, app_interval)
        return True

    def _keep_app_timer(self, call: _Call, left: float, delay: float, interval: float) -> bool:
        """The application's timer was armed when ``call`` took SIGALRM over: it is put back
        when the call ends; False when it fires first (SIGALRM is left to it, and the call to
        a worker)."""
        if delay > left:
            call.app_timer = (delay, interval, _monotonic())
            return True
        restore = call.restore_handler
        call.restore_handler = None
        call.state = 2
        self.stack.pop()
        _setitimer(_ITIMER_REAL, delay, interval)
        _setsignal(_SIGALRM, restore)
        return False

    def leave(self, entry: _Call) -> None:
        """Disarm ``entry``, re-arm what was armed before it, put the application's handler and
        timer back. Idempotent; safe to call again if a signal (SIGINT) interrupted it."""
        self.leaving = True
        stack = self.stack
        if entry.state == 0:
            old = _setitimer(_ITIMER_REAL, 0.0)
            if self.redelivering or old[0] == 0.0:
                self.swallow = True  # a tick of ours may still be on its way
            if stack and stack[-1] is entry:
                stack.pop()
            else:
                self._drop(entry)
            entry.state = 1
        if entry.state == 1:
            if stack:
                self._arm(_monotonic())
            else:
                self._give_back(entry)
            entry.state = 2
        self.leaving = False

    def _drop(self, entry: _Call) -> None:
        """Take ``entry`` off the stack with the entries above it, left behind by an interrupted
        cleanup; nothing if a ``leave`` cut short took it off already."""
        if entry in self.stack:
            del self.stack[self.stack.index(entry) :]

    def _give_back(self, entry: _Call) -> None:
        """The outermost deadline left: the application's timer and handler again."""
        self.redelivering = False
        self.deferred_since = None
        self.held = 0
        app_timer = entry.app_timer
        if app_timer is not None:
            entry.app_timer = None
            _rearm_app_timer(app_timer)
        handler = entry.restore_handler
        if handler is not None:
            entry.restore_handler = None
            _setsignal(_SIGALRM, handler)

    def _arm(self, now: float) -> None:
        """Arm the timer for what is left on the stack (after an entry left it)."""
        self.redelivering = self._fired_enclosing() is not None
        if self.redelivering:  # an enclosing deadline passed: keep redelivering it
            _setitimer(_ITIMER_REAL, _REDELIVER, _REDELIVER)
        else:
            innermost = self.stack[-1]
            _arm_for(innermost, innermost.deadline - now)

    # --- the handler -------------------------------------------------------------------------

    def on_alarm(self, signum: int, frame: FrameType | None) -> None:
        """SIGALRM handler: raise the expired deadline into the main thread, when it is safe.

        Our timer is armed for the innermost (tightest) entry, so "no timer pending" means it
        fired: the kernel's real-time timer is trusted, the clock only decides whether an
        enclosing deadline has passed too (then the outermost one is raised, so that every
        frame in between lets it through). Once a deadline passed the timer repeats every
        ``_REDELIVER`` s until the frame leaves, so an interruption held back (see
        :meth:`may_interrupt`), swallowed by the function or lost (the handler did not run) is
        raised again.
        """
        if self.active:
            # A tick while the handler runs (it took longer than ``_REDELIVER``: a loaded
            # machine, a tracer, a garbage collection). Run inside itself, it would raise into
            # the handler's own work (resolving a client's regions half-way, so they stay half
            # resolved) and recurse without bound. A repeating timer ticks again anyway.
            self.missed = self.missed or not self.redelivering
            return
        self.active = True
        try:
            self._on_alarm(signum, frame)
        finally:
            self.active = False
            if self.missed:  # a one-off signal (a timer's expiry, an application's own)
                self.missed = False
                signal.raise_signal(_SIGALRM)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.leaving:
            return  # a tick that raced with disarming: leave() re-arms for what is left
        if not self.stack:
            self._unarmed_tick(signum, frame)
        elif self.redelivering or _getitimer(_ITIMER_REAL)[0] == 0.0:
            self._deliver(frame)
        else:
            self.forward(signum, frame)  # not our timer: it is still running

    def _unarmed_tick(self, signum: int, frame: FrameType | None) -> None:
        """A SIGALRM while no deadline is armed: ignored if it is a late tick of a deadline
        that left, else not ours."""
        if self.swallow:
            self.swallow = False
        else:
            self.forward(signum, frame)

    def _deliver(self, frame: FrameType | None) -> None:
        """Our timer fired: raise the deadline due into ``frame`` if that is safe now."""
        self.swallow = False
        now = _monotonic()
        target = self._due(now)
        if target is None:
            return
        self._fire(target)
        if self.may_interrupt(frame, now, now - target.deadline):
            raise _Interrupted(target)

    def _due(self, now: float) -> _Call | None:
        """The deadline to deliver: the outermost that passed, else the innermost (the timer was
        armed for it); None when a capped timer ran out early and was re-armed instead."""
        for entry in self.stack:
            if entry.deadline - now <= _SLACK:
                return entry
        target = self.stack[-1]
        if target.capped and not target.fired:  # the timer was shorter than the deadline
            _arm_for(target, target.deadline - now)
            return None
        return target

    def _fire(self, target: _Call) -> None:
        """Mark ``target`` passed; start redelivering until its frame leaves."""
        if target.fired:
            return
        target.fired = True
        self.held = 0
        if not self.redelivering:
            self.redelivering = True
            self.deferred_since = None
            _setitimer(_ITIMER_REAL, _REDELIVER, _REDELIVER)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """A SIGALRM that is not ours: do what the displaced handler would have done."""
        displaced = self.displaced
        if callable(displaced):
            displaced(signum, frame)
        elif displaced == _SIG_DFL:
            # The default action terminates the process: restore it and deliver it again.
            _setsignal(_SIGALRM, _SIG_DFL)
            signal.raise_signal(_SIGALRM)
        # SIG_IGN: nothing to do.

    def may_interrupt(self, frame: FrameType | None, now: float, overdue: float = 0.0) -> bool:
        """Whether raising into ``frame`` now is safe; if not, a later tick tries again.

        ``overdue``: seconds since the deadline passed; past ``_HOLD_MAX``, once ``_HOLD_TICKS``
        ticks in a row held it back, only the library's own bookkeeping still holds it back."""
        if frame is None:  # pragma: no cover - CPython always passes the interrupted frame
            return True
        if _is_bookkeeping(frame.f_code):
            return False
        if overdue < _HOLD_MAX or self.held < _HOLD_TICKS:
            if self._cleanup_in_grace(now):
                self.held = 0  # bounded by _GRACE: a region after it is held anew
                return False
            if self.regions.holds(frame):
                self.held += 1
                return False
        self.deferred_since = None
        self.held = 0
        return True

    def _cleanup_in_grace(self, now: float) -> bool:
        """Whether the code is handling one of our interruptions and its cleanup is still in
        the grace period (which starts at the first tick that finds it)."""
        if not _handling_ours():
            return False
        since = self.deferred_since
        if since is None:
            self.deferred_since = now
            return True
        return now - since < _GRACE

    def leftovers(self) -> list[str]:
        """What a main-thread deadline left behind: stack entries, our handler, a timer of
        ours. Empty when clean."""
        found = [
            f"deadline stack entry (deadline={e.deadline}, state={e.state})" for e in self.stack
        ]
        if _HAS_ITIMER:
            found += self._signal_leftovers()
        return found

    def _signal_leftovers(self) -> list[str]:
        """The part of :meth:`leftovers` in the signal state: our handler, a timer of ours."""
        found = []
        if _getsignal(_SIGALRM) is self.handler:
            found.append("our SIGALRM handler is still installed")
        delay, interval = _getitimer(_ITIMER_REAL)
        if self.redelivering:
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


def _thread_bound(error: BaseException) -> bool:
    """Whether ``error`` is sqlite3's refusal of an object created in another thread."""
    return type(error).__name__ == "ProgrammingError" and "same thread" in str(error)


class _Job:
    __slots__ = ("ctx", "done", "error", "func", "lock", "result")

    def __init__(self, func: Callable[[], Any], ctx: Context) -> None:
        self.func = func
        self.ctx = ctx
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.lock.acquire()

    def execute(self) -> None:
        try:
            self.result = self.ctx.run(self.func)
        except BaseException as exc:  # handed to the caller, whatever it is
            self.error = exc
        del self.func, self.ctx  # an abandoned job must not keep them alive
        self.done = True
        self.lock.release()

    def raise_error(self) -> NoReturn:
        """Raise the function's exception in the caller's thread."""
        error = cast(BaseException, self.error)
        self.error = None
        try:
            if _thread_bound(error):
                raise _ThreadBoundError(error) from error
            raise error
        finally:
            del error


def _acquire_until(lock: threading.Lock, end: float) -> None:
    """Wait for ``lock`` until the ``_real_monotonic()`` instant ``end`` at most."""
    left = end - _real_monotonic()
    while left > 0.0 and not lock.acquire(True, min(left, threading.TIMEOUT_MAX)):
        left = end - _real_monotonic()


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

    def run(self, func: Callable[[], T], call: _Call) -> T:
        """``func()`` on a worker, in a copy of the caller's context with the call's deadline;
        the timeout on time, the worker abandoned if it is still running."""
        token = _deadline_var.set(call.deadline)
        ctx = copy_context()
        _deadline_var.reset(token)
        job = _Job(func, ctx)
        self._submit(job)
        # The deadline becomes a duration now; the wait runs on the real clock.
        _acquire_until(job.lock, _real_monotonic() + (call.deadline - _monotonic()))
        if not job.done:
            raise call.error()
        if job.error is not None:
            job.raise_error()
        return cast(T, job.result)

    def submit(self, func: Callable[[], object]) -> None:
        """``func()`` on a worker, nobody waiting for it."""
        self._submit(_Job(func, copy_context()))

    def _submit(self, job: _Job) -> None:
        with self.lock:
            if self.idle:
                self.idle -= 1
                self.jobs.put(job)
                return
            self.spawned += 1
            thread = threading.Thread(
                target=self._work,
                args=(job, self.generation),
                name=f"{WORKER_NAME_PREFIX}-{self.spawned}",
                daemon=True,
            )
            self.workers.add(thread)
        try:
            thread.start()
        except BaseException:  # e.g. "can't start new thread": the caller must hear it, not wait
            with self.lock:
                self.workers.discard(thread)
            raise

    def _work(self, job: _Job | None, generation: int) -> None:
        if _HAS_ITIMER:
            # The interval timer's SIGALRM goes to any thread that does not block it. Taken by a
            # worker, its C handler can run after the main thread's call left and gave the
            # application its handler back, which then gets a tick that was never its own.
            signal.pthread_sigmask(signal.SIG_BLOCK, {_SIGALRM})
        try:
            while job is not None:
                job.execute()
                job = None
                with self.lock:
                    if generation != self.generation:
                        return  # shut down while busy: don't go back to idle
                    self.idle += 1
                job = self._next_job()
        finally:
            with self.lock:
                self.workers.discard(threading.current_thread())

    def _retire(self) -> list[threading.Thread]:
        """Start a new generation: the idle workers stop now, the busy ones when their job
        returns. The workers of the old generation."""
        with self.lock:
            self.generation += 1
            for _ in range(self.idle):
                self.jobs.put(None)
            self.idle = 0
            return list(self.workers)

    def _next_job(self) -> _Job | None:
        """The next job for an idle worker; None: stop (a sentinel, or idle for too long)."""
        while True:
            try:
                return self.jobs.get(timeout=WORKER_IDLE_SEC)
            except queue.Empty:
                with self.lock:
                    if self.idle:  # no submitter is counting on a waiting worker
                        self.idle -= 1
                        return None

    def shutdown(self, timeout: float) -> int:
        workers = self._retire()
        end = _real_monotonic() + timeout
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - _real_monotonic()))
        return sum(thread.is_alive() for thread in workers)


_interrupter: Final = _Interrupter(_UNSAFE)

_CALL_CODE: Final = _call.__code__
#: The frames that call the function: the walk over the interrupted frames stops there.
_ARMED_CODE: Final = _Interrupter.run_main.__code__
_UNDER_CODE: Final = _Interrupter._run_under.__code__
_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DEMO_DIR: Final = _PACKAGE_DIR + "demo" + os.sep
#: The deadline machinery's own code, never cut (also when its files moved since compiling).
_OWN_CODES: Final = frozenset(
    f.__code__
    for cls in (_Interrupter, _Regions, _Call)
    for f in vars(cls).values()
    if inspect.isfunction(f)
)


def _leftovers() -> list[str]:
    """What a main-thread deadline left behind: stack entries, our handler, a timer of ours.

    Empty when clean (for tests and the torture suite; call it in the main thread, outside any
    deadline).
    """
    return _interrupter.leftovers()


def spawn(func: Callable[[], object]) -> None:
    """``func()`` on one of the workers, in a copy of the caller's context, returning at once
    (the attempts of a hedged sync round: the caller waits for their outcomes itself). The pool
    grows as needed, so work abandoned on a worker never delays the next; what ``func`` returns
    or raises is dropped."""
    _interrupter.pool.submit(func)


def shutdown_workers(timeout: float = 1.0) -> int:
    """Stop the worker threads (for a clean process exit and for tests).

    Idle workers exit at once; a worker still running abandoned work exits when it returns.
    Waits up to ``timeout`` seconds in all and returns how many workers are still running.
    Calls made afterwards start new workers.
    """
    return _interrupter.pool.shutdown(timeout)


def _after_fork_in_child() -> None:
    _interrupter.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------
# Entry points: the sync and async drivers differ only in how they run the function


def _run_sync(
    func: Callable[[], T], timeout_sec: float | None, named: object, mode: str = "interrupt"
) -> T:
    call = _start(timeout_sec, named, mode)
    if call is None:
        return func()
    if mode == "cooperative":
        with call:  # never preempted: a late end is the timeout
            return func()
    interrupter = _interrupter
    if mode == "interrupt" and _get_ident() == interrupter.main_ident:
        return interrupter.run_main(func, call)
    return interrupter.pool.run(func, call)


async def _run_async(
    func: Callable[[], Awaitable[T]],
    timeout_sec: float | None,
    named: object,
    mode: str = "interrupt",
) -> T:
    call = _start(timeout_sec, named, mode)
    if call is None:
        return await func()
    if mode == "cooperative":
        with call:  # never cancelled: a late result or error is the timeout
            return await func()
    # cancelled at the deadline (inline, not a coroutine of its own: this runs every attempt)
    token = _deadline_var.set(call.deadline)
    scope = asyncio.timeout(call.deadline - _monotonic())
    try:
        async with scope:
            result = await func()
    except TimeoutError:
        if scope.expired():
            raise call.error() from None
        raise
    finally:
        _deadline_var.reset(token)
    if scope.expired():  # func swallowed the cancellation and returned late
        raise call.error()
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
    return _run_sync(func, timeout_sec, func, mode)


async def run_with_timeout_async(
    func: Callable[[], Awaitable[T]], timeout_sec: float | None, mode: str = "interrupt"
) -> T:
    """``await func()``, cancelled for real once the deadline passes (:class:`AttemptTimeout`).

    Only the expiry of this call's own deadline becomes :class:`AttemptTimeout`; a
    ``TimeoutError`` raised by ``func`` propagates unchanged. ``mode="cooperative"``: never
    cancelled (a result or error after the deadline is a timeout); ``"thread"`` is the same as
    ``"interrupt"`` here (cancellation is safe in asyncio).
    """
    return await _run_async(func, timeout_sec, func, mode)


# --------------------------------------------------------------------------------------------
# The seed's decorator


def _fallback_timeout() -> float:
    return DEFAULT_TIMEOUT_SEC


def with_timeout(
    timeout_sec: float | None = None, *, default_timeout: Callable[[], float] | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: the call raises ``TimeoutError`` after ``timeout_sec`` seconds (the seed's API).

    The message is the seed's: ``"Function <name> timed out after <timeout_sec> seconds"`` (the
    error is an :class:`AttemptTimeout`, a ``TimeoutError``). Unlike the seed's ``SIGALRM``
    version it works in any thread, takes float seconds, and decorates ``async def`` functions
    too (cancelled for real). ``None`` means ``default_timeout()``, read at each call (30
    seconds without one); ``otel_resilience.with_timeout`` passes the configured
    ``HTTP_TIMEOUT_SEC``.
    """
    if callable(timeout_sec):
        raise TypeError(
            "with_timeout takes the number of seconds: write @with_timeout(30) or"
            f" @with_timeout(), not @with_timeout (got the function {timeout_sec!r})"
        )
    validate_timeout("timeout_sec", timeout_sec)
    default = _fallback_timeout if default_timeout is None else default_timeout

    def decorator(func: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(func):
            coro_func: Callable[P, Coroutine[Any, Any, Any]] = func

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                limit = default() if timeout_sec is None else timeout_sec
                return await _run_async(
                    functools.partial(coro_func, *args, **kwargs), limit, coro_func
                )

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            limit = default() if timeout_sec is None else timeout_sec
            return _run_sync(functools.partial(func, *args, **kwargs), limit, func)

        return wrapper

    return decorator
