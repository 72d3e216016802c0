"""Circuit breakers: one per (service, endpoint), and the manager that holds them.

States (the seed's): CLOSED lets calls through and counts failures; OPEN rejects them at once;
after ``CB_RESET_SEC`` it becomes HALF_OPEN and admits ``CB_HALF_OPEN_MAX_CALLS`` probes at a time
(other callers are rejected): a successful probe closes it, a failed one opens it again.

What opens a circuit depends on ``CB_MODE``:

* ``consecutive`` (the seed's): ``CB_FAIL_THRESHOLD`` failures in a row;
* ``count``: the failure rate over the last ``CB_WINDOW_SIZE`` calls reaches
  ``CB_FAILURE_RATE_THRESHOLD`` (once ``CB_MIN_CALLS`` calls were seen), or the slow-call rate
  reaches ``CB_SLOW_CALL_RATE_THRESHOLD`` when ``CB_SLOW_CALL_SEC`` is set;
* ``time``: the same rates over the last ``CB_WINDOW_SIZE`` seconds.

The lock guards only the bookkeeping; it is never held while the wrapped function runs. Client
errors (authentication, permission, not found, bad request) are neither failures nor successes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, ClassVar, Final

from ._config import ReliabilityConfig, get_config
from ._log import log_event

logger = logging.getLogger("otel_resilience")

Clock = Callable[[], float]


class CircuitBreakerState(Enum):
    """The state of a circuit breaker; the values are the telemetry's state attribute."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOverride(Enum):
    """Manual states an operator can put a breaker in (``None`` is normal operation)."""

    FORCED_OPEN = "forced_open"  #: reject every call until reset
    DISABLED = "disabled"  #: always closed, nothing recorded
    METRICS_ONLY = "metrics_only"  #: transitions happen and are reported, calls never rejected


# Permits returned by try_acquire: what the admitted call is. A probe's permit is PROBE plus the
# number of the half-open period that admitted it, so a probe that answers after its period ended
# (the circuit reopened and went half-open again) cannot count in the new period.
REJECTED: Final = 0
ADMITTED: Final = 1
PROBE: Final = 2


def is_probe(permit: int) -> bool:
    """Whether a permit is a half-open probe's."""
    return permit >= PROBE


_CLOSED = CircuitBreakerState.CLOSED
_OPEN = CircuitBreakerState.OPEN
_HALF_OPEN = CircuitBreakerState.HALF_OPEN

#: transitions collected under the lock, reported after it is released
_Events = list[tuple[CircuitBreakerState, CircuitBreakerState]]

#: (breaker, old state, new state) -> None
TransitionListener = Callable[["CircuitBreaker", CircuitBreakerState, CircuitBreakerState], None]


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A breaker's health at one moment (the seed's "Circuit Breaker Status")."""

    service_name: str
    endpoint: str
    state: str
    failure_count: int
    seconds_until_probe: float | None
    override: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class _Window:
    """Outcomes over the last N calls (``count``) or the last N seconds (``time``)."""

    __slots__ = ("_buckets", "_by_time", "_clock", "_size", "calls", "failures", "slow")

    def __init__(self, by_time: bool, size: int, clock: Clock) -> None:
        self._by_time = by_time
        self._size = size
        self._clock = clock
        # count mode: one (failed, slow) entry per call; time mode: [second, calls, failed, slow]
        self._buckets: deque[list[int]] = deque()
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, failed: bool, slow: bool) -> None:
        f, s = int(failed), int(slow)
        if self._by_time:
            second = int(self._clock())
            self._expire(second)
            if self._buckets and self._buckets[-1][0] == second:
                bucket = self._buckets[-1]
                bucket[1] += 1
                bucket[2] += f
                bucket[3] += s
            else:
                self._buckets.append([second, 1, f, s])
        else:
            if len(self._buckets) == self._size:
                _, old_f, old_s = self._buckets.popleft()
                self.calls -= 1
                self.failures -= old_f
                self.slow -= old_s
            self._buckets.append([0, f, s])
        self.calls += 1
        self.failures += f
        self.slow += s

    def refresh(self) -> None:
        if self._by_time:
            self._expire(int(self._clock()))

    def _expire(self, second: int) -> None:
        horizon = second - self._size
        while self._buckets and self._buckets[0][0] <= horizon:
            _, calls, f, s = self._buckets.popleft()
            self.calls -= calls
            self.failures -= f
            self.slow -= s

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = self.slow = 0


class CircuitBreaker:
    """A thread-safe circuit breaker for one (service, endpoint).

    Built like the seed's dataclass (``endpoint``, ``failure_threshold``, ``reset_timeout_sec``,
    ``state``, ``failure_count``, ``last_failure_time``, ``lock``), plus a ``service_name``, the
    window modes of :class:`ReliabilityConfig` and an injectable clock.

    >>> from otel_resilience import CircuitBreaker, CircuitBreakerState
    >>> now = [0.0]
    >>> breaker = CircuitBreaker("scan", failure_threshold=2, reset_timeout_sec=10,
    ...                          clock=lambda: now[0])
    >>> for _ in range(2):
    ...     breaker.record_failure(breaker.try_acquire())
    >>> breaker.state
    <CircuitBreakerState.OPEN: 'open'>
    >>> now[0] = 10.0
    >>> breaker.state
    <CircuitBreakerState.HALF_OPEN: 'half_open'>
    >>> breaker.record_success(breaker.try_acquire())
    >>> breaker.state
    <CircuitBreakerState.CLOSED: 'closed'>
    """

    def __init__(
        self,
        endpoint: str,
        failure_threshold: int = 5,
        reset_timeout_sec: float = 60,
        *,
        service_name: str = "default",
        config: ReliabilityConfig | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        base = config or ReliabilityConfig()
        if config is None or failure_threshold != 5 or reset_timeout_sec != 60:
            base = base.with_overrides(
                {"CB_FAIL_THRESHOLD": failure_threshold, "CB_RESET_SEC": reset_timeout_sec}
            )
        self.service_name = service_name
        self.endpoint = endpoint
        self.config = base
        self.failure_threshold = base.CB_FAIL_THRESHOLD
        self.reset_timeout_sec = base.CB_RESET_SEC
        self.half_open_max_calls = base.CB_HALF_OPEN_MAX_CALLS
        self.lock = threading.Lock()
        self.failure_count = 0
        self.last_failure_time = 0.0
        self._state = _CLOSED
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._period = 0  # half-open periods so far
        self._override: BreakerOverride | None = None
        self._rejecting = False  # derived: state is OPEN/HALF_OPEN or forced open
        self._clock = clock
        self._slow_sec = base.CB_SLOW_CALL_SEC
        self._window = (
            None
            if base.CB_MODE == "consecutive"
            else _Window(base.CB_MODE == "time", base.CB_WINDOW_SIZE, clock)
        )
        self._listeners: list[TransitionListener] = []
        manual = base.CB_MANUAL_STATE
        if manual == "forced_open":
            self.force_open()
        elif manual == "disabled":
            self.disable()
        elif manual == "metrics_only":
            self.metrics_only()

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(service_name={self.service_name!r}, endpoint={self.endpoint!r},"
            f" state={self._state.value}, failure_count={self.failure_count})"
        )

    # --- state --------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitBreakerState:
        """The current state (an OPEN circuit whose reset timeout passed reads HALF_OPEN)."""
        if self._state is _OPEN and self._clock() - self._opened_at >= self.reset_timeout_sec:
            events: _Events = []
            with self.lock:
                self._maybe_half_open(events)
            self._fire(events)
        return self._state

    @property
    def override(self) -> BreakerOverride | None:
        """The manual state, if an operator set one."""
        return self._override

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(breaker, old, new)`` after each transition (outside the lock)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: TransitionListener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def status(self) -> BreakerStatus:
        """State, failure count and seconds until the next probe (None unless OPEN)."""
        state = self.state
        until: float | None = None
        if state is _OPEN:
            until = max(0.0, self.reset_timeout_sec - (self._clock() - self._opened_at))
        if self._override is BreakerOverride.FORCED_OPEN:
            until = None
        return BreakerStatus(
            self.service_name,
            self.endpoint,
            state.value,
            self.failure_count,
            until,
            None if self._override is None else self._override.value,
        )

    # --- the call protocol --------------------------------------------------------------------

    def try_acquire(self) -> int:
        """Ask to make one call: ``ADMITTED``, ``PROBE`` (a half-open probe) or ``REJECTED``.

        Every admitted permit must be given back through :meth:`record_success`,
        :meth:`record_failure` or :meth:`release`.
        """
        if not self._rejecting:  # the common case, without the lock
            return ADMITTED
        if self._override is not None:
            if self._override is BreakerOverride.FORCED_OPEN:
                return REJECTED
            if self._override is BreakerOverride.DISABLED:  # pragma: no cover - never rejecting
                return ADMITTED
        events: _Events = []
        with self.lock:
            if self._state is _OPEN:
                self._maybe_half_open(events)
            if self._state is _CLOSED:
                permit = ADMITTED
            elif self._state is _HALF_OPEN and self._probes_in_flight < self.half_open_max_calls:
                self._probes_in_flight += 1
                permit = PROBE + self._period
            else:
                permit = REJECTED
        self._fire(events)
        if permit == REJECTED and self._override is BreakerOverride.METRICS_ONLY:
            return ADMITTED
        return permit

    def record_success(self, permit: int = ADMITTED, duration: float = 0.0) -> None:
        """The admitted call succeeded (``duration`` seconds, for slow-call tracking)."""
        slow = self._slow_sec is not None and duration >= self._slow_sec
        if (
            permit == ADMITTED
            and self._state is _CLOSED
            and self.failure_count == 0
            and self._window is None
        ):
            return  # nothing to record: the fast path of a healthy breaker
        if self._override is BreakerOverride.DISABLED:
            return
        events: _Events = []
        with self.lock:
            if permit >= PROBE:
                if not self._current_probe(permit):
                    return
                self._probes_in_flight -= 1
                if self._state is _HALF_OPEN:
                    if slow:
                        self._open(events)
                    else:
                        self._probe_successes += 1
                        if self._probe_successes >= self.half_open_max_calls:
                            self._close(events)
            elif self._state is _CLOSED:
                self.failure_count = 0
                if self._window is not None:
                    self._window.add(False, slow)
                    if self._rates_exceeded():
                        self._open(events)
        self._fire(events)

    def record_failure(self, permit: int = ADMITTED, duration: float = 0.0) -> None:
        """The admitted call failed in a way that counts against the service."""
        if self._override is BreakerOverride.DISABLED:
            return
        slow = self._slow_sec is not None and duration >= self._slow_sec
        events: _Events = []
        with self.lock:
            self.failure_count += 1
            self.last_failure_time = self._clock()
            if permit >= PROBE:
                if self._current_probe(permit):
                    self._probes_in_flight -= 1
                    self._open(events)
            elif self._state is _CLOSED:
                if self._window is None:
                    if self.failure_count >= self.failure_threshold:
                        self._open(events)
                else:
                    self._window.add(True, slow)
                    if self._rates_exceeded():
                        self._open(events)
        self._fire(events)

    def release(self, permit: int) -> None:
        """Give back a permit whose call neither failed nor succeeded (a client error)."""
        if permit >= PROBE:
            with self.lock:
                if self._current_probe(permit):
                    self._probes_in_flight -= 1

    # --- asyncio twins: a backend with remote state (Redis) overrides them -------------------

    #: True when the state lives elsewhere and the ``*_async`` methods do real I/O
    async_io: ClassVar[bool] = False

    async def try_acquire_async(self) -> int:
        """:meth:`try_acquire` for the asyncio call path."""
        return self.try_acquire()

    async def record_success_async(self, permit: int = ADMITTED, duration: float = 0.0) -> None:
        """:meth:`record_success` for the asyncio call path."""
        self.record_success(permit, duration)

    async def record_failure_async(self, permit: int = ADMITTED, duration: float = 0.0) -> None:
        """:meth:`record_failure` for the asyncio call path."""
        self.record_failure(permit, duration)

    async def release_async(self, permit: int) -> None:
        """:meth:`release` for the asyncio call path."""
        self.release(permit)

    # --- manual states -------------------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (e.g. during a known outage)."""
        events: _Events = []
        with self.lock:
            self._override = BreakerOverride.FORCED_OPEN
            self._open(events)
        self._fire(events)

    def disable(self) -> None:
        """Always closed: never reject, record nothing, until :meth:`reset`."""
        events: _Events = []
        with self.lock:
            self._override = BreakerOverride.DISABLED
            self._close(events)
        self._fire(events)

    def metrics_only(self) -> None:
        """Transitions happen and are reported, but calls are never rejected."""
        with self.lock:
            self._override = BreakerOverride.METRICS_ONLY
            self._update_rejecting()

    def reset(self) -> None:
        """Back to CLOSED with no history and no manual state."""
        events: _Events = []
        with self.lock:
            self._override = None
            self._close(events)
        self._fire(events)

    def _idle(self) -> bool:
        """Nothing but successes recorded: dropping it and making a new one later loses nothing
        that could open it (read without the lock; a race costs one failure at most)."""
        window = self._window
        return (
            self._state is _CLOSED
            and self._override is None
            and self.failure_count == 0
            and self._probes_in_flight == 0
            and (window is None or (window.failures == 0 and window.slow == 0))
        )

    def rejects_after(self, seconds: float) -> bool:
        """Whether a call made ``seconds`` from now would be rejected, as things stand now.

        True for a forced-open breaker and for an open one whose reset timeout ends later than
        that; the retry loop asks it before sleeping a backoff that would end in a rejection.
        """
        if not self._rejecting:
            return False
        override = self._override
        if override is BreakerOverride.FORCED_OPEN:
            return True
        if override is not None:  # disabled or metrics-only: never rejects
            return False
        return (
            self._state is _OPEN
            and self._opened_at + self.reset_timeout_sec > self._clock() + seconds
        )

    # --- internals (lock held) ------------------------------------------------------------------

    def _current_probe(self, permit: int) -> bool:
        """A probe permit of the half-open period in progress (stale ones count for nothing)."""
        return self._state is _HALF_OPEN and permit == PROBE + self._period

    def _rates_exceeded(self) -> bool:
        window = self._window
        assert window is not None
        window.refresh()
        if window.calls < self.config.CB_MIN_CALLS:
            return False
        if window.failures / window.calls >= self.config.CB_FAILURE_RATE_THRESHOLD:
            return True
        return (
            self._slow_sec is not None
            and window.slow / window.calls >= self.config.CB_SLOW_CALL_RATE_THRESHOLD
        )

    def _maybe_half_open(self, events: _Events) -> None:
        if (
            self._state is _OPEN
            and self._override is not BreakerOverride.FORCED_OPEN
            and self._clock() - self._opened_at >= self.reset_timeout_sec
        ):
            self._transition(_HALF_OPEN, events)
            self._period += 1
            self._probes_in_flight = 0
            self._probe_successes = 0

    def _open(self, events: _Events) -> None:
        self._opened_at = self._clock()
        self._probes_in_flight = 0
        self._probe_successes = 0
        if self._state is not _OPEN:
            self._transition(_OPEN, events)
        self._update_rejecting()

    def _close(self, events: _Events) -> None:
        self.failure_count = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        if self._window is not None:
            self._window.clear()
        if self._state is not _CLOSED:
            self._transition(_CLOSED, events)
        self._update_rejecting()

    def _transition(
        self,
        new: CircuitBreakerState,
        events: _Events,
    ) -> None:
        old, self._state = self._state, new
        events.append((old, new))
        self._update_rejecting()

    def _update_rejecting(self) -> None:
        self._rejecting = self._state is not _CLOSED or (
            self._override is BreakerOverride.FORCED_OPEN
        )

    def _fire(self, events: _Events) -> None:
        for old, new in events:
            log_event(
                logger,
                logging.WARNING if new is _OPEN else logging.INFO,
                "Circuit breaker %s: transitioning to %s",
                self.endpoint,
                new.name,
                extra={
                    "resilience_service": self.service_name,
                    "resilience_endpoint": self.endpoint,
                },
            )
            for listener in tuple(self._listeners):
                try:
                    listener(self, old, new)
                except Exception:  # a listener must never break a call
                    log_event(
                        logger,
                        logging.ERROR,
                        "circuit breaker listener %r failed",
                        listener,
                        exc_info=True,
                    )


BreakerFactory = Callable[[str, str, ReliabilityConfig, Clock], CircuitBreaker]


def _default_factory(
    service_name: str, endpoint: str, config: ReliabilityConfig, clock: Clock
) -> CircuitBreaker:
    cls = CircuitBreaker
    if config.STATE_BACKEND == "redis":
        from ._redis_breaker import RedisCircuitBreaker

        cls = RedisCircuitBreaker
    return cls(
        endpoint,
        config.CB_FAIL_THRESHOLD,
        config.CB_RESET_SEC,
        service_name=service_name,
        config=config,
        clock=clock,
    )


class CircuitBreakerManager:
    """The registry of breakers, keyed by (service, endpoint).

    >>> from otel_resilience import get_circuit_breaker_manager
    >>> manager = get_circuit_breaker_manager()
    >>> breaker = manager.get_breaker("gcs", "upload")
    >>> manager.get_breaker("upload") is breaker   # the seed's one-argument form
    True
    >>> manager.reset()
    """

    #: Breakers kept before idle ones (closed, no failure recorded) are evicted; an evicted
    #: breaker is made afresh, closed, at its next call, so eviction loses no failure.
    max_idle_breakers: int = 1000

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._sweep_at = self.max_idle_breakers  # breaker count that triggers the next sweep
        self._listeners: list[TransitionListener] = []
        self._created_listeners: list[Callable[[CircuitBreaker], None]] = []
        self.factory: BreakerFactory = _default_factory

    def breaker_for(self, service_name: str, endpoint: str) -> CircuitBreaker:
        """The breaker of (service, endpoint), created with the service's config on first use."""
        found = self._breakers.get((service_name, endpoint))
        if found is not None:
            return found
        config = get_config(service_name)
        with self._lock:
            found = self._breakers.get((service_name, endpoint))
            if found is None:
                if len(self._breakers) >= self._sweep_at:
                    self._evict_idle()
                found = self.factory(service_name, endpoint, config, self._clock)
                for listener in self._listeners:
                    found.add_listener(listener)
                self._breakers[(service_name, endpoint)] = found
                created = tuple(self._created_listeners)
            else:
                created = ()
        for on_created in created:
            on_created(found)
        return found

    def get_breaker(self, service_or_endpoint: str, endpoint: str | None = None) -> CircuitBreaker:
        """``get_breaker(service, endpoint)``, or the seed's ``get_breaker(endpoint)``.

        The one-argument form finds the breaker of that endpoint when exactly one service has
        it; otherwise it raises ``KeyError`` naming the services to choose from.
        """
        if endpoint is not None:
            return self.breaker_for(service_or_endpoint, endpoint)
        matches = [b for (_, ep), b in list(self._breakers.items()) if ep == service_or_endpoint]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = sorted({f"{s}/{e}" for s, e in self._breakers}) or ["none yet"]
            raise KeyError(
                f"no circuit breaker for endpoint {service_or_endpoint!r};"
                f" known (service/endpoint): {', '.join(known)}"
            )
        services = sorted(b.service_name for b in matches)
        raise KeyError(
            f"endpoint {service_or_endpoint!r} is used by several services ({', '.join(services)});"
            f" use get_breaker(service_name, {service_or_endpoint!r})"
        )

    def breakers(self) -> list[CircuitBreaker]:
        """Every breaker that exists, in creation order."""
        return list(self._breakers.values())

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(self.breakers())

    def status(self) -> list[BreakerStatus]:
        """The status of every breaker (state, failure count, time to next probe)."""
        return [b.status() for b in self.breakers()]

    def add_listener(self, listener: TransitionListener) -> None:
        """Listen to the transitions of every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            existing = list(self._breakers.values())
        for breaker in existing:
            breaker.add_listener(listener)

    def remove_listener(self, listener: TransitionListener) -> None:
        """Stop calling a listener added with :meth:`add_listener` (no error if absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            existing = list(self._breakers.values())
        for breaker in existing:
            breaker.remove_listener(listener)

    def on_created(self, callback: Callable[[CircuitBreaker], None]) -> None:
        """Call ``callback(breaker)`` for each breaker created from now on."""
        with self._lock:
            self._created_listeners.append(callback)

    def reset(self) -> None:
        """Drop every breaker (they are created afresh, closed, on next use)."""
        with self._lock:
            self._breakers.clear()
            self._sweep_at = self.max_idle_breakers

    def _evict_idle(self) -> None:
        """Drop idle breakers (lock held). Sweeps again only once the count has doubled, so
        many busy breakers cost an amortised O(1) per creation."""
        breakers = self._breakers
        for key in [key for key, breaker in breakers.items() if breaker._idle()]:
            del breakers[key]
        self._sweep_at = max(self.max_idle_breakers, 2 * len(breakers))

    def drop_changed(self) -> None:
        """Drop the breakers whose service's config changed (they are made afresh with the new
        settings at next use); every other breaker keeps its state."""
        with self._lock:
            stale = [key for key, breaker in self._breakers.items() if _changed(breaker)]
            for key in stale:
                del self._breakers[key]


def _changed(breaker: CircuitBreaker) -> bool:
    try:
        return get_config(breaker.service_name) != breaker.config
    except Exception:  # the service's settings no longer load: the next call says why
        return True


def get_circuit_breaker_manager() -> CircuitBreakerManager:
    """The breakers of the runtime in use (the process's default runtime)."""
    from ._runtime import default_runtime

    return default_runtime().breakers
