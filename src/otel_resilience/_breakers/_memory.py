"""The in-process backend: a lock around the :class:`~._machine.Machine`.

The lock guards only the bookkeeping; it is never held while the wrapped function runs, nor
while transitions are reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from ._machine import ADMITTED, CircuitBreakerState, Events, Machine, Permit

_OPEN: Final = CircuitBreakerState.OPEN

Clock = Callable[[], float]
#: reports transitions (log + listeners), called with no lock held
Fire = Callable[[Events], None]


class MemoryBackend:
    """The state of one breaker in this process only."""

    #: the ``*_async`` methods do no I/O (the call path may call the sync ones directly)
    async_io = False

    __slots__ = ("clock", "fire", "lock", "machine")

    def __init__(self, machine: Machine, clock: Clock, fire: Fire) -> None:
        self.machine = machine
        self.clock = clock
        self.fire = fire
        self.lock = threading.Lock()

    def describe(self) -> str:
        """Extra text for the breaker's repr."""
        return ""

    def state(self) -> CircuitBreakerState:
        """The current state (an expired OPEN becomes HALF_OPEN now)."""
        machine = self.machine
        if machine.state is _OPEN and machine.half_open_due(self.clock()):
            with self.lock:
                events = machine.tick(self.clock())
            self.fire(events)
        return machine.state

    def try_acquire(self) -> Permit:
        """Admit, admit as a probe, or reject one call."""
        machine = self.machine
        if not machine.rejecting:  # the common case, without the lock
            return ADMITTED
        with self.lock:
            permit, events = machine.acquire(self.clock())
        if events:
            self.fire(events)
        return permit

    def record_success(self, permit: Permit, duration: float) -> None:
        """The admitted call succeeded."""
        machine = self.machine
        if machine.healthy(permit):
            return  # nothing to record: the fast path of a healthy breaker
        with self.lock:
            events = machine.success(permit, duration, self.clock())
        if events:
            self.fire(events)

    def record_failure(self, permit: Permit, duration: float) -> None:
        """The admitted call failed."""
        with self.lock:
            events = self.machine.failure(permit, duration, self.clock())
        if events:
            self.fire(events)

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call neither failed nor succeeded."""
        if permit.probe:
            with self.lock:
                self.machine.release(permit)

    async def try_acquire_async(self) -> Permit:
        """:meth:`try_acquire` (no I/O)."""
        return self.try_acquire()

    async def record_success_async(self, permit: Permit, duration: float) -> None:
        """:meth:`record_success` (no I/O)."""
        self.record_success(permit, duration)

    async def record_failure_async(self, permit: Permit, duration: float) -> None:
        """:meth:`record_failure` (no I/O)."""
        self.record_failure(permit, duration)

    async def release_async(self, permit: Permit) -> None:
        """:meth:`release` (no I/O)."""
        self.release(permit)

    def reset(self) -> None:
        """Back to CLOSED with no history and no manual state."""
        with self.lock:
            events = self.machine.reset()
        self.fire(events)

    def sync(self) -> None:
        """Nothing to read: the state is here."""
