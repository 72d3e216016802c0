"""Concurrency limits per service (a bulkhead): fixed, or adaptive on the service's latency.

Every attempt to a service takes a slot of its limiter before the circuit breaker is asked, and
gives it back when the attempt ends, whatever the way it ends. A full limiter refuses the attempt
(``concurrency_limited``) at once, or after waiting up to ``CONCURRENCY_LIMIT_MAX_WAIT_SEC`` (never
past the call's deadline) in a first-come first-served queue that threads and asyncio tasks share.

The adaptive limit is TCP Vegas as Netflix's ``concurrency-limits`` runs it (``VegasLimit``): the
smallest latency seen is the service's "no load" latency; a sample ``rtt`` means about
``limit * (1 - rtt_noload / rtt)`` calls are queued at the service. Few queued: grow (fast while
nothing queues); many queued: shrink by ``log10(limit)``. An overload outcome (timeout, 429, 5xx)
cuts the limit to 90% at once, as AIMD does on a drop. A service that is not used up to half its
limit moves nothing (no drift upwards while idle); every ``~30 x limit`` samples the no-load
latency is probed afresh, so a service that became slower for good is not read as congested for
ever. Why Vegas rather than Gradient2 or AIMD alone: AIMD needs failures to find the limit (it
shrinks only once the service already answers 503 or times out, so latency is at the queue's
worst); Gradient2 compares a short with a long latency average and drifts up under sustained
congestion as the long average catches up; Vegas keeps the queue at the service at a few calls,
which holds the latency of admitted calls near the uncongested one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
from collections import deque
from enum import Enum
from typing import Final

from ._errors import ExternalServiceError, ReliabilityError

#: the adaptive limit's starting point when ``CONCURRENCY_LIMIT`` is unset (Netflix's default)
DEFAULT_INITIAL_LIMIT: Final = 20


class Outcome(Enum):
    """How an attempt that held a slot ended, as the adaptive limit reads it."""

    OK = "ok"  #: the service answered: the latency is a sample
    OVERLOAD = "overload"  #: timeout, rate limit, server error: shrink
    NEUTRAL = "neutral"  #: says nothing about the service's load (no sample)


#: error types read as the service being overloaded
OVERLOAD_ERRORS: Final = frozenset(
    {
        ExternalServiceError.TIMEOUT,
        ExternalServiceError.RATE_LIMIT,
        ExternalServiceError.SERVER_ERROR,
    }
)


def outcome_of(error: ReliabilityError | None) -> Outcome:
    """The outcome of an attempt that ended with ``error`` (None: it succeeded)."""
    if error is None:
        return Outcome.OK
    return Outcome.OVERLOAD if error.error_type in OVERLOAD_ERRORS else Outcome.NEUTRAL


class FixedLimit:
    """A limit that never moves."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def update(self, latency: float, in_flight: int, outcome: Outcome) -> int:
        return self.limit


class VegasLimit:
    """Netflix's ``VegasLimit`` (queue estimate from the minimum latency), with a 0.9 cut on
    overload, updated once per window of samples as TCP Vegas updates once per round trip.

    A window holds ``window`` samples (default: as many as the limit, one round of the limit);
    its mean latency gives the queue estimate, an overload outcome in it the 0.9 cut (once per
    window, so a burst of timeouts is one cut, not one per timeout). Not thread-safe on its own:
    the limiter calls it under its lock. ``initial`` None starts at ``DEFAULT_INITIAL_LIMIT``.
    """

    __slots__ = (
        "_count",
        "_estimate",
        "_in_flight",
        "_overload",
        "_probe_at",
        "_probe_count",
        "_random",
        "_sum",
        "_window",
        "_window_min",
        "high",
        "limit",
        "low",
        "rtt_noload",
    )

    #: samples between probes of the no-load latency, per unit of limit (Netflix's default)
    PROBE_MULTIPLIER: Final = 30
    #: the cut on an overload outcome
    BACKOFF: Final = 0.9

    def __init__(
        self,
        initial: int | None,
        low: int,
        high: int,
        *,
        window: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.low = low
        self.high = high
        start = DEFAULT_INITIAL_LIMIT if initial is None else initial
        self._estimate = float(min(high, max(low, start)))
        self.limit = int(self._estimate)
        self.rtt_noload = 0.0  # 0.0: no sample yet
        self._window = window
        self._probe_count = 0
        self._random = random.Random(seed)
        self._probe_at = self._next_probe()
        self._reset_window()

    def _reset_window(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._window_min = math.inf
        self._in_flight = 0
        self._overload = False

    def _next_probe(self) -> float:
        return self._random.uniform(0.5, 1.0) * self.PROBE_MULTIPLIER * self._estimate

    def update(self, latency: float, in_flight: int, outcome: Outcome) -> int:
        """Feed one sample: ``in_flight`` is the number in flight when the attempt started."""
        if outcome is Outcome.NEUTRAL:
            return self.limit
        self._count += 1
        self._in_flight = max(self._in_flight, in_flight)
        if outcome is Outcome.OVERLOAD:
            self._overload = True
        else:
            self._sum += latency
            self._window_min = min(self._window_min, latency)
            if not 0.0 < self.rtt_noload <= latency:  # none yet, or a lower one
                self.rtt_noload = latency
        window = self._window if self._window is not None else max(1, self.limit)
        if self._count < window:
            return self.limit
        return self._end_window()

    def _end_window(self) -> int:
        overload, in_flight, lowest = self._overload, self._in_flight, self._window_min
        mean = self._sum / self._count  # of the OK samples: used only in a window without overload
        self._probe_count += self._count
        self._reset_window()
        if overload:
            return self._set(self._estimate * self.BACKOFF)
        if self._probe_count >= self._probe_at:
            return self._probe(lowest)
        estimate = self._estimate
        if mean <= 0.0 or in_flight * 2 < estimate:  # not using the limit: no evidence to grow
            return self.limit
        queue = math.ceil(estimate * (1.0 - self.rtt_noload / mean))
        return self._set(_vegas_step(estimate, queue))

    def _probe(self, lowest: float) -> int:
        """Now and then the no-load latency is measured afresh (the window's lowest latency):
        a service that became slower for good must not read as congested for ever."""
        self._probe_count = 0
        self._probe_at = self._next_probe()
        self.rtt_noload = lowest
        return self.limit

    def _set(self, value: float) -> int:
        self._estimate = min(float(self.high), max(float(self.low), value))
        self.limit = int(self._estimate)
        return self.limit


def _vegas_step(estimate: float, queue: int) -> float:
    """Vegas' next limit for a queue estimate (the same between alpha and beta)."""
    log = max(1.0, math.log10(estimate))
    if queue <= log:
        return estimate + 6 * log  # nothing queues: grow fast (Vegas' beta)
    if queue < 3 * log:
        return estimate + log
    if queue > 6 * log:
        return estimate - log
    return estimate


class Slot:
    """One attempt's place in a limiter: give it back with :meth:`ConcurrencyLimiter.release`."""

    __slots__ = ("endpoint", "in_flight", "released")

    def __init__(self, endpoint: str, in_flight: int) -> None:
        self.endpoint = endpoint
        self.in_flight = in_flight  # in flight when it was taken (itself included)
        self.released = False


class _Waiter:
    """A caller queued for a slot (``slot`` is set under the limiter's lock when granted)."""

    __slots__ = ("endpoint", "slot")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.slot: Slot | None = None

    def wake(self) -> None: ...


class _ThreadWaiter(_Waiter):
    """A thread queued for a slot: it waits on an event."""

    __slots__ = ("event",)

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


class _TaskWaiter(_Waiter):
    """An asyncio task queued for a slot: it waits on a future of its own event loop."""

    __slots__ = ("future", "loop")

    def __init__(self, endpoint: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(endpoint)
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


#: an endpoint entry whose count drops to 0 is forgotten past this many endpoints
_ENDPOINTS_KEPT: Final = 256
_NEUTRAL: Final = Outcome.NEUTRAL


class ConcurrencyLimiter:
    """The slots of one service, shared by its threads and asyncio tasks.

    >>> limiter = ConcurrencyLimiter("llm", FixedLimit(1))
    >>> slot = limiter.try_acquire("chat")
    >>> limiter.try_acquire("chat") is None, limiter.in_flight
    (True, 1)
    >>> limiter.release(slot, Outcome.OK, 0.2)
    >>> limiter.in_flight
    0
    """

    def __init__(self, service_name: str, algorithm: FixedLimit | VegasLimit) -> None:
        self.service_name = service_name
        self.algorithm = algorithm
        self.adaptive = isinstance(algorithm, VegasLimit)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        #: in flight per endpoint (the telemetry's ``in_flight`` series)
        self._endpoints: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimiter({self.service_name!r}, limit={self.limit},"
            f" in_flight={self.in_flight})"
        )

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def endpoints(self) -> list[tuple[str, int]]:
        """(endpoint, in flight) of every endpoint seen (lately)."""
        with self._lock:
            return list(self._endpoints.items())

    def idle(self) -> bool:
        """Nothing in flight or queued (a fixed limiter can then be dropped and rebuilt)."""
        return self._in_flight == 0 and not self._waiters and not self.adaptive

    # --- taking -------------------------------------------------------------------------------

    def _take(self, endpoint: str) -> Slot:
        """A slot (lock held, room checked)."""
        self._in_flight += 1
        counts = self._endpoints
        counts[endpoint] = counts.get(endpoint, 0) + 1
        return Slot(endpoint, self._in_flight)

    def try_acquire(self, endpoint: str = "") -> Slot | None:
        """A slot if one is free now (and nobody queues for one), else None."""
        taken = self.enter(endpoint)
        return Slot(endpoint, taken) if taken else None

    def acquire(self, timeout: float, endpoint: str = "") -> Slot | None:
        """A slot, waiting up to ``timeout`` seconds in the queue; None when none came."""
        waiter = _ThreadWaiter(endpoint)
        if self._join(waiter, timeout):
            try:
                waiter.event.wait(timeout)
            except BaseException:  # a KeyboardInterrupt while queued
                self._cancel(waiter)
                raise
            self._withdraw(waiter)
        return waiter.slot

    async def acquire_async(self, timeout: float, endpoint: str = "") -> Slot | None:
        """The asyncio twin of :meth:`acquire` (the event loop runs while it waits)."""
        waiter = _TaskWaiter(endpoint, asyncio.get_running_loop())
        if self._join(waiter, timeout):
            try:
                await asyncio.wait_for(waiter.future, timeout)
            except TimeoutError:
                pass
            except BaseException:  # cancelled while queued
                self._cancel(waiter)
                raise
            self._withdraw(waiter)
        return waiter.slot

    def _join(self, waiter: _Waiter, timeout: float) -> bool:
        """Grant ``waiter`` a free slot at once, else queue it if it may wait (True: queued)."""
        with self._lock:
            if self._in_flight < self.algorithm.limit and not self._waiters:
                waiter.slot = self._take(waiter.endpoint)
                return False
            if timeout > 0:
                self._waiters.append(waiter)
            return timeout > 0

    def _withdraw(self, waiter: _Waiter) -> None:
        """Take a waiter that was not granted a slot out of the queue."""
        with self._lock:
            if waiter.slot is None:  # still queued: only granted waiters leave the queue
                self._waiters.remove(waiter)

    def _cancel(self, waiter: _Waiter) -> None:
        """A waiter interrupted: out of the queue, and a slot granted meanwhile goes back."""
        self._withdraw(waiter)
        if waiter.slot is not None:
            self.release(waiter.slot, Outcome.NEUTRAL, 0.0)

    # --- giving back --------------------------------------------------------------------------

    def release(self, slot: Slot, outcome: Outcome, latency: float) -> None:
        """Give a slot back (a second release of the same slot does nothing)."""
        with self._lock:
            if slot.released:
                return
            slot.released = True
        self.leave(slot.endpoint, slot.in_flight, outcome, latency)

    # --- the fast pair (no slot object) -----------------------------------------------------

    def enter(self, endpoint: str) -> int:
        """:meth:`try_acquire` without a :class:`Slot` (the gates' path): the number in flight
        with this one when a place was taken, else 0. Give it back with :meth:`leave`, exactly
        once (the caller's ``try/finally`` guarantees it)."""
        lock = self._lock
        lock.acquire()
        try:
            if self._in_flight >= self.algorithm.limit or self._waiters:
                return 0
            self._in_flight += 1
            counts = self._endpoints
            counts[endpoint] = counts.get(endpoint, 0) + 1
            return self._in_flight
        finally:
            lock.release()

    def leave(
        self,
        endpoint: str,
        in_flight: int = 0,
        outcome: Outcome = Outcome.NEUTRAL,
        latency: float = 0.0,
    ) -> None:
        """Give back a place taken by :meth:`enter` (``in_flight``: what it returned); a neutral
        outcome is no sample."""
        lock = self._lock
        lock.acquire()
        try:
            self._in_flight -= 1
            counts = self._endpoints
            left = counts[endpoint] - 1
            if left or len(counts) <= _ENDPOINTS_KEPT:
                counts[endpoint] = left
            else:
                del counts[endpoint]
            if outcome is not _NEUTRAL and self.adaptive:
                self.algorithm.update(latency, in_flight, outcome)
        finally:
            lock.release()
        if self._waiters:  # callers queue: hand them the place (the grant checks again)
            self._hand_over()

    def _hand_over(self) -> None:
        """Grant free slots to the first waiters; they are woken outside the lock."""
        granted = []
        with self._lock:
            waiters = self._waiters
            while waiters and self._in_flight < self.algorithm.limit:
                waiter = waiters.popleft()
                waiter.slot = self._take(waiter.endpoint)
                granted.append(waiter)
        for waiter in granted:
            waiter.wake()
