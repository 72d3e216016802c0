"""The public :class:`CircuitBreaker`: a :class:`~._machine.Machine` plus a backend.

The backend (:class:`~._memory.MemoryBackend`, or the Redis one that shares the state between
processes) does the locking and the I/O; the breaker holds the listeners, logs the transitions
and answers the seed's attributes (``failure_count``, ``state``, ``lock``...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

from .._config import ReliabilityConfig
from .._log import log_event
from ._machine import (
    ADMITTED,
    BreakerOverride,
    CircuitBreakerState,
    Events,
    Machine,
    Permit,
    Settings,
)
from ._memory import Clock, Fire, MemoryBackend

logger = logging.getLogger("otel_resilience")

_CLOSED: Final = CircuitBreakerState.CLOSED

#: (breaker, old state, new state) -> None
TransitionListener = Callable[["CircuitBreaker", CircuitBreakerState, CircuitBreakerState], None]


class Backend(Protocol):
    """Where a breaker's state lives and how it is serialised (memory, Redis)."""

    @property
    def async_io(self) -> bool: ...  # the *_async methods do real I/O
    @property
    def lock(self) -> threading.Lock: ...
    def describe(self) -> str: ...
    def state(self) -> CircuitBreakerState: ...
    def try_acquire(self) -> Permit: ...
    def record_success(self, permit: Permit, duration: float) -> None: ...
    def record_failure(self, permit: Permit, duration: float) -> None: ...
    def release(self, permit: Permit) -> None: ...
    async def try_acquire_async(self) -> Permit: ...
    async def record_success_async(self, permit: Permit, duration: float) -> None: ...
    async def record_failure_async(self, permit: Permit, duration: float) -> None: ...
    async def release_async(self, permit: Permit) -> None: ...
    def reset(self) -> None: ...
    def sync(self) -> None: ...


class BackendFactory(Protocol):
    """Builds the backend of one breaker."""

    def __call__(
        self, machine: Machine, clock: Clock, fire: Fire, *, breaker: CircuitBreaker
    ) -> Backend: ...


def memory_backend(
    machine: Machine, clock: Clock, fire: Fire, *, breaker: CircuitBreaker
) -> Backend:
    """The in-process backend."""
    return MemoryBackend(machine, clock, fire)


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


class CircuitBreaker:
    """A thread-safe circuit breaker for one (service, endpoint).

    Built like the seed's dataclass (``endpoint``, ``failure_threshold``, ``reset_timeout_sec``,
    ``state``, ``failure_count``, ``last_failure_time``, ``lock``), plus a ``service_name``, the
    window modes of :class:`ReliabilityConfig`, an injectable clock and a backend (in memory
    unless told otherwise).

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
        backend: BackendFactory = memory_backend,
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
        self.clock = clock
        self.machine = Machine(Settings.from_config(base))
        self._listeners: list[TransitionListener] = []
        self.backend: Backend = backend(self.machine, clock, self._fire, breaker=self)
        self.async_io = self.backend.async_io
        # in-process state: the healthy fast paths are answered here, one call less per call
        self._inline = isinstance(self.backend, MemoryBackend)
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
            f" state={self.machine.state.value}, failure_count={self.failure_count}"
            f"{self.backend.describe()})"
        )

    # --- the seed's attributes ----------------------------------------------------------------

    @property
    def lock(self) -> threading.Lock:
        """The lock that guards the local state."""
        return self.backend.lock

    @property
    def failure_count(self) -> int:
        """Failures since the last success (consecutive mode) or the last close."""
        return self.machine.failure_count

    @property
    def last_failure_time(self) -> float:
        """When (on the breaker's clock) the last failure was recorded."""
        return self.machine.last_failure_time

    @property
    def state(self) -> CircuitBreakerState:
        """The current state (an OPEN circuit whose reset timeout passed reads HALF_OPEN)."""
        return self.backend.state()

    @property
    def _state(self) -> CircuitBreakerState:
        """The state as last recorded, with no transition (what ``_telemetry`` reads before a
        call; it will read ``breaker.machine.state``)."""
        return self.machine.state

    @property
    def override(self) -> BreakerOverride | None:
        """The manual state, if an operator set one."""
        return self.machine.override

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
        machine = self.machine
        until = machine.seconds_until_probe(self.clock()) if state is machine.state else None
        override = machine.override
        return BreakerStatus(
            self.service_name,
            self.endpoint,
            state.value,
            machine.failure_count,
            until,
            None if override is None else override.value,
        )

    # --- the call protocol --------------------------------------------------------------------

    def try_acquire(self) -> Permit:
        """Ask to make one call: admitted, admitted as a half-open probe, or rejected.

        Every admitted permit must be given back through :meth:`record_success`,
        :meth:`record_failure` or :meth:`release`.
        """
        if self._inline and not self.machine.rejecting:
            return ADMITTED
        return self.backend.try_acquire()

    def record_success(self, permit: Permit = ADMITTED, duration: float = 0.0) -> None:
        """The admitted call succeeded (``duration`` seconds, for slow-call tracking)."""
        machine = self.machine
        if (  # Machine.healthy inlined: the success path of a healthy in-process breaker
            self._inline
            and not permit.probe
            and machine.state is _CLOSED
            and machine.failure_count == 0
            and machine.window is None
        ):
            return
        self.backend.record_success(permit, duration)

    def record_failure(self, permit: Permit = ADMITTED, duration: float = 0.0) -> None:
        """The admitted call failed in a way that counts against the service."""
        self.backend.record_failure(permit, duration)

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call neither failed nor succeeded (a client error)."""
        self.backend.release(permit)

    async def try_acquire_async(self) -> Permit:
        """:meth:`try_acquire` for the asyncio call path."""
        return await self.backend.try_acquire_async()

    async def record_success_async(self, permit: Permit = ADMITTED, duration: float = 0.0) -> None:
        """:meth:`record_success` for the asyncio call path."""
        await self.backend.record_success_async(permit, duration)

    async def record_failure_async(self, permit: Permit = ADMITTED, duration: float = 0.0) -> None:
        """:meth:`record_failure` for the asyncio call path."""
        await self.backend.record_failure_async(permit, duration)

    async def release_async(self, permit: Permit) -> None:
        """:meth:`release` for the asyncio call path."""
        await self.backend.release_async(permit)

    def rejects_after(self, seconds: float) -> bool:
        """Whether a call made ``seconds`` from now would be rejected, as things stand now.

        True for a forced-open breaker and for an open one whose reset timeout ends later than
        that; the retry loop asks it before sleeping a backoff that would end in a rejection.
        """
        machine = self.machine
        return machine.rejecting and machine.rejects_after(seconds, self.clock())

    def sync(self) -> CircuitBreakerState:
        """Read the shared state into this process now (Redis; one round trip) and return it."""
        self.backend.sync()
        return self.state

    # --- manual states -------------------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (e.g. during a known outage)."""
        with self.lock:
            events = self.machine.force_open(self.clock())
        self._fire(events)

    def disable(self) -> None:
        """Always closed: never reject, record nothing, until :meth:`reset`."""
        with self.lock:
            events = self.machine.disable()
        self._fire(events)

    def metrics_only(self) -> None:
        """Transitions happen and are reported, but calls are never rejected."""
        with self.lock:
            self.machine.metrics_only()

    def reset(self) -> None:
        """Back to CLOSED with no history and no manual state (for every process on Redis)."""
        self.backend.reset()

    def idle(self) -> bool:
        """Nothing but successes recorded: dropping it and making a new one later loses nothing
        that could open it (read without the lock; a race costs one failure at most)."""
        return self.machine.idle()

    # --- reporting ----------------------------------------------------------------------------

    def _fire(self, events: Events) -> None:
        for old, new in events:
            log_event(
                logger,
                logging.WARNING if new is CircuitBreakerState.OPEN else logging.INFO,
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
