"""Load control of each service: the concurrency limit and the adaptive rate, as one gate.

The call engine runs each attempt (retries and hedges included) through its service's
:class:`Gate`::

    result = gate.run(number, endpoint, observer, refused, attempt, *args)
    result = await gate.run_async(number, endpoint, observer, refused, attempt, *args)

``run`` takes a token of the adaptive rate, then a place in the concurrency limit, waiting up to
the configured waits but never past the call's deadline (``remaining_time()``), and raises
:class:`ThrottledError` or :class:`ConcurrencyLimitedError` when it cannot. A refusal is not an
attempt: no attempt span, never retried, never a breaker failure. The attempt's outcome is then
settled: its latency and overload reading go to the adaptive limit and rate, its place back to
the limiter. A place is the number in flight when it was taken (0: no limit), the sample the
adaptive limit reads. A fixed or adaptive limit alone has a faster synchronous path of its own
(:class:`_FixedGate`, :class:`_AdaptiveGate`); :meth:`Gate.wrap` gates an attempt function.

An attempt abandoned by its timeout gives its place back when control returns to the caller,
even though a ``thread``-mode worker may still be talking to the service: holding the place
until the worker ends would lose it for good to a worker that never returns (a hung socket
without an I/O timeout), and the adaptive limit reads the timeout as overload and cuts itself
by 10%, which takes the stray worker's load into account. ``interrupt`` mode in the main thread
and asyncio stop the work itself, so there the place is exactly the load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ._adaptive_rate import AdaptiveRate
from ._concurrency import ConcurrencyLimiter, FixedLimit, Outcome, Slot, VegasLimit, outcome_of
from ._errors import (
    CallTimeoutError,
    ConcurrencyLimitedError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._timeout import remaining_time

if TYPE_CHECKING:
    from ._config import ReliabilityConfig
    from ._telemetry import CallObserver

#: an attempt function (of the attempt number); the gated one has the same type
F = TypeVar("F", bound=Callable[[int], Any])
P = TypeVar("P")

#: services kept before idle fixed limiters are dropped (rebuilt at their next call)
MAX_IDLE_GATES: Final = 1000

_perf = time.perf_counter
_OK: Final = Outcome.OK
_NEUTRAL: Final = Outcome.NEUTRAL
#: a result no attempt returns (``wrap``'s "refused" marker)
_NOTHING: Final = object()
#: the entry of a service not seen yet: no config, no gate
_UNSEEN: Final = (None, None)


def _wait(configured: float) -> float:
    """The wait allowed now: the configured one, never past the deadline in force."""
    left = remaining_time() if configured > 0.0 else None
    return configured if left is None else min(configured, left)


def _too_late(error: ReliabilityError | None, number: int) -> bool:
    """Attempt ``number`` timed out because its deadline passed before it could start."""
    return type(error) is CallTimeoutError and error.attempts < number


def _sample(error: BaseException, number: int) -> Outcome:
    """What a failed attempt ``number`` tells the adaptive limit: nothing (neutral) when it got
    no answer from the service or its deadline passed before it could start."""
    if isinstance(error, ReliabilityError) and not _too_late(error, number):
        return outcome_of(error)
    return _NEUTRAL


class Gate:
    """The load control of one service: its limiter and/or its adaptive rate.

    A place is held exactly when there is a limiter (``admit`` takes one or raises).
    """

    __slots__ = ("concurrency_wait", "limiter", "rate", "rate_wait", "service_name", "settings")

    def __init__(
        self,
        service_name: str,
        limiter: ConcurrencyLimiter | None,
        rate: AdaptiveRate | None,
        config: ReliabilityConfig,
        settings: tuple[Any, ...] = (None, None),
    ) -> None:
        self.service_name = service_name
        self.limiter = limiter
        self.rate = rate
        self.concurrency_wait = config.CONCURRENCY_LIMIT_MAX_WAIT_SEC
        self.rate_wait = config.RATE_LIMIT_MAX_WAIT_SEC
        self.settings = settings  # what it was built from (the parts keep theirs when rebuilt)

    # --- refusals -----------------------------------------------------------------------------

    def _limited(
        self,
        limiter: ConcurrencyLimiter,
        endpoint: str,
        number: int,
        observer: CallObserver,
        waited: float = 0.0,
    ) -> ConcurrencyLimitedError:
        observer.concurrency_rejected()
        how = f" after waiting {waited:.3g} s" if waited > 0 else ""
        return ConcurrencyLimitedError(
            ExternalServiceError.CONCURRENCY_LIMITED,
            self.service_name,
            endpoint,
            f"concurrency limit {limiter.limit} of {self.service_name} reached"
            f" ({limiter.in_flight} in flight){how}; attempt {number} of {endpoint} refused",
            attempts=number - 1,
        )

    def _throttled(
        self, rate: AdaptiveRate, endpoint: str, number: int, observer: CallObserver
    ) -> ThrottledError:
        observer.throttled()
        return ThrottledError(
            ExternalServiceError.THROTTLED,
            self.service_name,
            endpoint,
            f"adaptive rate {rate.rate:.3g}/s of {self.service_name} reached (learnt from the"
            f" service's rate limiting); attempt {number} of {endpoint} refused",
            attempts=number - 1,
        )

    # --- admission ----------------------------------------------------------------------------

    def admit(self, number: int, endpoint: str, observer: CallObserver) -> int:
        """Take what attempt ``number`` needs (a rate token, a place); raise when refused."""
        rate = self.rate
        if rate is not None and not rate.acquire(_wait(self.rate_wait)):
            raise self._throttled(rate, endpoint, number, observer)
        limiter = self.limiter
        if limiter is None:
            return 0
        observer.concurrency_seen()
        taken = limiter.enter(endpoint) or self._queue(limiter, number, endpoint, observer)
        observer.concurrency_held(1)
        return taken

    async def admit_async(self, number: int, endpoint: str, observer: CallObserver) -> int:
        """The asyncio twin of :meth:`admit`."""
        rate = self.rate
        if rate is not None and not await rate.acquire_async(_wait(self.rate_wait)):
            raise self._throttled(rate, endpoint, number, observer)
        limiter = self.limiter
        if limiter is None:
            return 0
        observer.concurrency_seen()
        taken = limiter.enter(endpoint)
        taken = taken or await self._queue_async(limiter, number, endpoint, observer)
        observer.concurrency_held(1)
        return taken

    def _queue(
        self, limiter: ConcurrencyLimiter, number: int, endpoint: str, observer: CallObserver
    ) -> int:
        """A place after waiting in the limiter's queue; raise when none came."""
        wait = self._patience(limiter, number, endpoint, observer)
        start = _perf()
        slot = limiter.acquire(wait, endpoint)
        return self._waited(slot, start, limiter, number, endpoint, observer)

    async def _queue_async(
        self, limiter: ConcurrencyLimiter, number: int, endpoint: str, observer: CallObserver
    ) -> int:
        """The asyncio twin of :meth:`_queue`."""
        wait = self._patience(limiter, number, endpoint, observer)
        start = _perf()
        slot = await limiter.acquire_async(wait, endpoint)
        return self._waited(slot, start, limiter, number, endpoint, observer)

    def _patience(
        self, limiter: ConcurrencyLimiter, number: int, endpoint: str, observer: CallObserver
    ) -> float:
        """How long the attempt may queue for a place; refused at once when it may not."""
        wait = _wait(self.concurrency_wait)
        if wait <= 0.0:
            raise self._limited(limiter, endpoint, number, observer)
        return wait

    def _waited(
        self,
        slot: Slot | None,
        start: float,
        limiter: ConcurrencyLimiter,
        number: int,
        endpoint: str,
        observer: CallObserver,
    ) -> int:
        """The place the queue granted (measured); refused when none came."""
        waited = _perf() - start
        observer.concurrency_waited(waited)
        if slot is None:
            raise self._limited(limiter, endpoint, number, observer, waited)
        return slot.in_flight

    # --- outcomes -----------------------------------------------------------------------------

    def settle(
        self,
        taken: int,
        endpoint: str,
        observer: CallObserver,
        error: ReliabilityError | None,
        latency: float,
        number: int = 0,
    ) -> None:
        """The service's answer to attempt ``number`` (``error`` None: it succeeded) that held
        place ``taken``: the rate and the limit learn from it, unless it never started."""
        if _too_late(error, number):
            self.give_back(taken, endpoint, observer)
        else:
            self._learn(taken, endpoint, observer, error, latency, outcome_of(error))

    def _learn(
        self,
        taken: int,
        endpoint: str,
        observer: CallObserver,
        error: ReliabilityError | None,
        latency: float,
        outcome: Outcome,
    ) -> None:
        """An answer that is a sample: the rate learns from it, the limit from its outcome."""
        if self.rate is not None:
            self.rate.on_attempt(error, latency)
        self.give_back(taken, endpoint, observer, outcome, latency)

    def give_back(
        self,
        taken: int,
        endpoint: str,
        observer: CallObserver,
        outcome: Outcome = _NEUTRAL,
        latency: float = 0.0,
    ) -> None:
        """Give the attempt's place back (neutral: an attempt that got no answer)."""
        if self.limiter is not None:
            self.limiter.leave(endpoint, taken, outcome, latency)
            observer.concurrency_held(-1)

    def _failed(
        self,
        taken: int,
        endpoint: str,
        observer: CallObserver,
        error: BaseException,
        start: float,
        number: int,
    ) -> None:
        """Settle an attempt that raised (anything but a ReliabilityError is no answer)."""
        if isinstance(error, ReliabilityError):
            self.settle(taken, endpoint, observer, error, _perf() - start, number)
        else:
            self.give_back(taken, endpoint, observer)

    def _returned(
        self, taken: int, endpoint: str, observer: CallObserver, refused: bool, start: float
    ) -> None:
        """Settle an attempt that returned (``refused``: the breaker said no, nothing was sent)."""
        if refused:
            self.give_back(taken, endpoint, observer)
        else:
            self._learn(taken, endpoint, observer, None, _perf() - start, _OK)

    # --- around an attempt ---------------------------------------------------------------------

    def run(
        self,
        number: int,
        endpoint: str,
        observer: CallObserver,
        refused: object,
        attempt: Callable[..., Any],
        *args: Any,
    ) -> Any:
        """``attempt(*args)`` as attempt ``number``, admitted and settled; a result that ``is
        refused`` (the breaker said no: nothing was sent) settles as neutral."""
        taken = self.admit(number, endpoint, observer)
        start = _perf()
        try:
            result = attempt(*args)
        except BaseException as error:
            self._failed(taken, endpoint, observer, error, start, number)
            raise
        self._returned(taken, endpoint, observer, result is refused, start)
        return result

    async def run_async(
        self,
        number: int,
        endpoint: str,
        observer: CallObserver,
        refused: object,
        attempt: Callable[..., Awaitable[Any]],
        *args: Any,
    ) -> Any:
        """The asyncio twin of :meth:`run`."""
        taken = await self.admit_async(number, endpoint, observer)
        start = _perf()
        try:
            result = await attempt(*args)
        except BaseException as error:
            self._failed(taken, endpoint, observer, error, start, number)
            raise
        self._returned(taken, endpoint, observer, result is refused, start)
        return result

    def wrap(self, attempt: F, endpoint: str, observer: CallObserver) -> F:
        """``attempt`` (a function of the attempt number) gated by :meth:`run`."""

        def gated(number: int) -> Any:
            return self.run(number, endpoint, observer, _NOTHING, attempt, number)

        return cast(F, gated)


class _FixedGate(Gate):
    """A fixed limit alone: a place and nothing else (no latency, no outcome), the cheapest."""

    __slots__ = ()
    limiter: ConcurrencyLimiter

    def run(
        self,
        number: int,
        endpoint: str,
        observer: CallObserver,
        refused: object,
        attempt: Callable[..., Any],
        *args: Any,
    ) -> Any:
        limiter = self.limiter
        observer.concurrency_seen()
        if not limiter.enter(endpoint):
            self._queue(limiter, number, endpoint, observer)  # wait for one, or be refused
        observer.concurrency_held(1)
        try:
            return attempt(*args)
        finally:
            limiter.leave(endpoint)
            observer.concurrency_held(-1)


class _AdaptiveGate(Gate):
    """An adaptive limit alone: each attempt's latency and outcome is a sample."""

    __slots__ = ()
    limiter: ConcurrencyLimiter

    def run(
        self,
        number: int,
        endpoint: str,
        observer: CallObserver,
        refused: object,
        attempt: Callable[..., Any],
        *args: Any,
    ) -> Any:
        limiter = self.limiter
        observer.concurrency_seen()
        taken = limiter.enter(endpoint) or self._queue(limiter, number, endpoint, observer)
        observer.concurrency_held(1)
        start = _perf()
        try:
            result = attempt(*args)
        except BaseException as error:
            limiter.leave(endpoint, taken, _sample(error, number), _perf() - start)
            raise
        finally:
            observer.concurrency_held(-1)
        limiter.leave(endpoint, taken, _NEUTRAL if result is refused else _OK, _perf() - start)
        return result


def _limiter_settings(config: ReliabilityConfig) -> tuple[Any, ...] | None:
    """The limit's algorithm and its arguments (None: no limit)."""
    limit = config.CONCURRENCY_LIMIT
    if config.CONCURRENCY_LIMIT_MODE == "fixed":
        return None if limit is None else (FixedLimit, limit)
    return (VegasLimit, limit, config.CONCURRENCY_LIMIT_MIN, config.CONCURRENCY_LIMIT_MAX)


def _settings(config: ReliabilityConfig) -> tuple[Any, ...] | None:
    """What a gate is built from: the limit's settings, the rate's, the waits (None: no gate)."""
    rate = None if config.RATE_LIMIT_MODE == "fixed" else (config.RATE_LIMIT,)
    parts = (_limiter_settings(config), rate)
    if parts == (None, None):  # no limit, no learnt rate
        return None
    return (*parts, config.CONCURRENCY_LIMIT_MAX_WAIT_SEC, config.RATE_LIMIT_MAX_WAIT_SEC)


def _renewed(part: P | None, before: object, now: Any, build: Callable[[Any], P]) -> P | None:
    """``part`` while its settings did not change (None: no part then and now), else a new one
    built from the new settings."""
    if now == before:
        return part
    return None if now is None else build(now)


def _ceiling(rate_limit: str | None) -> float | None:
    """``RATE_LIMIT``'s calls per second, the learnt rate's cap (None: unset)."""
    if rate_limit is None:
        return None
    from ._rates import parse_rate

    item = parse_rate(rate_limit)
    return float(item.amount / item.get_expiry())


#: the gate of a limit alone, per algorithm (each has a faster path of its own)
_LONE_LIMIT: Final = MappingProxyType({FixedLimit: _FixedGate, VegasLimit: _AdaptiveGate})


def _gate_class(settings: tuple[Any, ...]) -> type[Gate]:
    """The gate that runs these parts: a limit alone has a faster path of its own."""
    return Gate if settings[1] is not None else _LONE_LIMIT[settings[0][0]]


class LoadControl:
    """The gates of every service (one per service and process).

    ``rate_clock`` (keyword arguments of :class:`AdaptiveRate`: ``clock``, ``wall``, ``sleep``,
    ``sleep_async``) lets tests run the learnt rates on a fake clock.
    """

    def __init__(self, **rate_clock: Any) -> None:
        self._rate_clock = rate_clock
        self._lock = threading.Lock()
        #: per service: the config last seen and its gate
        self._gates: dict[str, tuple[ReliabilityConfig, Gate]] = {}

    def gate(self, service_name: str, config: ReliabilityConfig) -> Gate | None:
        """The gate of a service, or None when its config turns load control off."""
        found = self._gates.get(service_name, _UNSEEN)
        if found[0] is config:  # the usual case: the same config object
            return found[1]
        settings = _settings(config)
        return None if settings is None else self._resolve(service_name, config, settings)

    def _resolve(
        self, service_name: str, config: ReliabilityConfig, settings: tuple[Any, ...]
    ) -> Gate:
        with self._lock:
            gate = self._gates.get(service_name, _UNSEEN)[1]
            if gate is None or gate.settings != settings:
                gate = self._build(service_name, config, settings, gate)
            self._gates[service_name] = (config, gate)
            return gate

    def _build(
        self,
        service_name: str,
        config: ReliabilityConfig,
        settings: tuple[Any, ...],
        old: Gate | None,
    ) -> Gate:
        """A new gate; a part whose own settings did not change keeps its state (the slots in
        flight, the learnt rate). Idle limiters are dropped first past ``MAX_IDLE_GATES``."""
        if len(self._gates) >= MAX_IDLE_GATES:
            self._drop_idle()
        before = old or Gate(service_name, None, None, config)
        limiter = _renewed(
            before.limiter,
            before.settings[0],
            settings[0],
            lambda new: ConcurrencyLimiter(service_name, new[0](*new[1:])),
        )
        rate = _renewed(
            before.rate,
            before.settings[1],
            settings[1],
            lambda new: AdaptiveRate(service_name, _ceiling(new[0]), **self._rate_clock),
        )
        return _gate_class(settings)(service_name, limiter, rate, config, settings)

    def _drop_idle(self) -> None:
        """Drop the gates that would behave the same rebuilt (lock held)."""
        for name, (_, gate) in list(self._gates.items()):
            if isinstance(gate, _FixedGate) and gate.limiter.idle():  # a fixed limit alone
                del self._gates[name]

    def limiters(self) -> list[ConcurrencyLimiter]:
        """Every concurrency limiter in use (for the limit and in-flight gauges)."""
        return [gate.limiter for _, gate in list(self._gates.values()) if gate.limiter]

    def reset(self) -> None:
        """Forget every gate (limits and learnt rates start afresh at next use)."""
        with self._lock:
            self._gates.clear()
