"""Load control of each service: the concurrency limit and the adaptive rate, as one gate.

The call engine asks a service's :class:`Gate` before each attempt (retries and hedges included)
and tells it after::

    ticket = gate.admit(number, endpoint, observer)     # or: await gate.admit_async(...)
    ... breaker, attempt ...
    gate.settle(ticket, error_or_none, latency)         # every attempt outcome
    gate.abandon(ticket)                                # the attempt ended without one

``admit`` takes a token of the adaptive rate, then a slot of the concurrency limit, waiting up to
the configured waits but never past the call's deadline (``remaining_time()``), and raises
:class:`ThrottledError` or :class:`ConcurrencyLimitedError` when it cannot. A refusal is not an
attempt: no attempt span, never retried, never a breaker failure. :meth:`Gate.wrap` and
:meth:`Gate.wrap_async` do all three around an attempt function.

An attempt abandoned by its timeout gives its slot back when control returns to the caller,
even though a ``thread``-mode worker may still be talking to the service: holding the slot until
the worker ends would lose it for good to a worker that never returns (a hung socket without an
I/O timeout), and the adaptive limit reads the timeout as overload and cuts itself by 10%, which
takes the stray worker's load into account. ``interrupt`` mode in the main thread and asyncio stop
the work itself, so there the slot is exactly the load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
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
from ._timeout import _deadline_var, remaining_time

if TYPE_CHECKING:
    from ._config import ReliabilityConfig
    from ._telemetry import CallObserver

T = TypeVar("T")
#: an attempt function (of the attempt number); the gated one has the same type
F = TypeVar("F", bound=Callable[[int], Any])

#: the adaptive limit's starting point when ``CONCURRENCY_LIMIT`` is unset (Netflix's default)
DEFAULT_INITIAL_LIMIT: Final = 20
#: services kept before idle fixed limiters are dropped (rebuilt at their next call)
MAX_IDLE_GATES: Final = 1000

_perf = time.perf_counter
_OK: Final = Outcome.OK
#: a result no attempt returns (``wrap``'s "refused" marker)
_NOTHING: Final = object()


def _wait(configured: float) -> float:
    """The wait allowed now: the configured one, never past the deadline in force."""
    if configured <= 0.0 or _deadline_var.get() is None:
        return configured
    left = remaining_time()
    assert left is not None
    return configured if left >= configured else left


class Gate:
    """The load control of one service: its limiter and/or its adaptive rate."""

    __slots__ = (
        "_adaptive",
        "_fixed",
        "concurrency_wait",
        "limiter",
        "rate",
        "rate_wait",
        "service_name",
    )

    def __init__(
        self,
        service_name: str,
        limiter: ConcurrencyLimiter | None,
        rate: AdaptiveRate | None,
        config: ReliabilityConfig,
    ) -> None:
        self.service_name = service_name
        self.limiter = limiter
        self.rate = rate
        self.concurrency_wait = config.CONCURRENCY_LIMIT_MAX_WAIT_SEC
        self.rate_wait = config.RATE_LIMIT_MAX_WAIT_SEC
        #: the limiter when it is all there is and it is fixed (the cheapest wrapper)
        self._fixed = (
            (limiter.enter, limiter.leave)
            if rate is None and limiter and not limiter.adaptive
            else None
        )
        self._adaptive = limiter if rate is None and limiter and limiter.adaptive else None

    # --- refusals -----------------------------------------------------------------------------

    def _limited(self, endpoint: str, number: int, waited: float) -> ConcurrencyLimitedError:
        limiter = self.limiter
        assert limiter is not None
        how = f" after waiting {waited:.3g} s" if waited > 0 else ""
        return ConcurrencyLimitedError(
            ExternalServiceError.CONCURRENCY_LIMITED,
            self.service_name,
            endpoint,
            f"concurrency limit {limiter.limit} of {self.service_name} reached"
            f" ({limiter.in_flight} in flight){how}; attempt {number} of {endpoint} refused",
            attempts=number - 1,
        )

    def _throttled(self, endpoint: str, number: int) -> ThrottledError:
        rate = self.rate
        assert rate is not None
        return ThrottledError(
            ExternalServiceError.THROTTLED,
            self.service_name,
            endpoint,
            f"adaptive rate {rate.rate:.3g}/s of {self.service_name} reached (learnt from the"
            f" service's rate limiting); attempt {number} of {endpoint} refused",
            attempts=number - 1,
        )

    # --- admission ----------------------------------------------------------------------------

    def admit(self, number: int, endpoint: str, observer: CallObserver) -> Slot | None:
        """Take what attempt ``number`` needs (a rate token, a slot); raise when refused."""
        rate = self.rate
        if rate is not None and not rate.acquire(_wait(self.rate_wait)):
            observer.throttled()
            raise self._throttled(endpoint, number)
        limiter = self.limiter
        if limiter is None:
            return None
        observer.concurrency_seen()
        slot = limiter.try_acquire(endpoint)
        if slot is not None:
            return slot
        wait = _wait(self.concurrency_wait)
        waited = 0.0
        if wait > 0.0:
            start = _perf()
            slot = limiter.acquire(wait, endpoint)
            waited = _perf() - start
            observer.concurrency_waited(waited)
            if slot is not None:
                return slot
        observer.concurrency_rejected()
        raise self._limited(endpoint, number, waited)

    async def admit_async(self, number: int, endpoint: str, observer: CallObserver) -> Slot | None:
        """The asyncio twin of :meth:`admit`."""
        rate = self.rate
        if rate is not None and not await rate.acquire_async(_wait(self.rate_wait)):
            observer.throttled()
            raise self._throttled(endpoint, number)
        limiter = self.limiter
        if limiter is None:
            return None
        observer.concurrency_seen()
        slot = limiter.try_acquire(endpoint)
        if slot is not None:
            return slot
        wait = _wait(self.concurrency_wait)
        waited = 0.0
        if wait > 0.0:
            start = _perf()
            slot = await limiter.acquire_async(wait, endpoint)
            waited = _perf() - start
            observer.concurrency_waited(waited)
            if slot is not None:
                return slot
        observer.concurrency_rejected()
        raise self._limited(endpoint, number, waited)

    # --- outcomes -----------------------------------------------------------------------------

    def settle(
        self, slot: Slot | None, error: ReliabilityError | None, latency: float, number: int = 0
    ) -> None:
        """The outcome of an attempt: the hook the engine calls after each one."""
        if error is not None and type(error) is CallTimeoutError and error.attempts < number:
            outcome = Outcome.NEUTRAL  # its deadline passed before it could start
        else:
            outcome = outcome_of(error)
            if self.rate is not None:
                self.rate.on_attempt(error, latency)
        if slot is not None:
            assert self.limiter is not None
            self.limiter.release(slot, outcome, latency)

    def abandon(self, slot: Slot | None) -> None:
        """An attempt that ended without the service's answer (cancelled, a misuse)."""
        if slot is not None:
            assert self.limiter is not None
            self.limiter.release(slot, Outcome.NEUTRAL, 0.0)

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
        pair = self._fixed
        if pair is not None:  # a fixed limit alone: no latency, no outcome, just the place
            enter, leave = pair
            observer.concurrency_seen()
            if enter(endpoint):
                observer.concurrency_held(1)
                try:
                    return attempt(*args)
                finally:
                    leave(endpoint)
                    observer.concurrency_held(-1)
            slot = self.admit(number, endpoint, observer)  # wait for one, or be refused
            observer.concurrency_held(1)
            try:
                return attempt(*args)
            finally:
                self.abandon(slot)
                observer.concurrency_held(-1)
        limiter = self._adaptive
        if limiter is not None:  # an adaptive limit alone: a sample per attempt, no slot object
            observer.concurrency_seen()
            taken = limiter.enter(endpoint)
            if taken:
                observer.concurrency_held(1)
                try:
                    return self._sampled(limiter, taken, number, endpoint, refused, attempt, args)
                finally:
                    observer.concurrency_held(-1)
        slot = self.admit(number, endpoint, observer)
        if slot is None:  # an adaptive rate alone
            return self._settled(slot, number, refused, attempt, args)
        observer.concurrency_held(1)
        try:
            return self._settled(slot, number, refused, attempt, args)
        finally:
            observer.concurrency_held(-1)

    def _sampled(
        self,
        limiter: ConcurrencyLimiter,
        taken: int,
        number: int,
        endpoint: str,
        refused: object,
        attempt: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> Any:
        """Run an attempt holding a place of an adaptive limit; its latency is a sample."""
        leave = limiter.leave
        start = _perf()
        try:
            result = attempt(*args)
        except ReliabilityError as error:
            if type(error) is CallTimeoutError and error.attempts < number:
                leave(endpoint)  # its deadline passed before it could start
            else:
                leave(endpoint, taken, outcome_of(error), _perf() - start)
            raise
        except BaseException:
            leave(endpoint)
            raise
        if result is refused:
            leave(endpoint)
        else:
            leave(endpoint, taken, _OK, _perf() - start)
        return result

    def _settled(
        self,
        slot: Slot | None,
        number: int,
        refused: object,
        attempt: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> Any:
        """Run one admitted attempt and settle it (the general, synchronous path)."""
        start = _perf()
        try:
            result = attempt(*args)
        except ReliabilityError as error:
            self.settle(slot, error, _perf() - start, number)
            raise
        except BaseException:
            self.abandon(slot)
            raise
        if result is refused:
            self.abandon(slot)
        else:
            self.settle(slot, None, _perf() - start)
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
        slot = await self.admit_async(number, endpoint, observer)
        held = slot is not None
        if held:
            observer.concurrency_held(1)
        start = _perf()
        try:
            result = await attempt(*args)
        except ReliabilityError as error:
            self.settle(slot, error, _perf() - start, number)
            raise
        except BaseException:
            self.abandon(slot)
            raise
        finally:
            if held:
                observer.concurrency_held(-1)
        if result is refused:
            self.abandon(slot)
        else:
            self.settle(slot, None, _perf() - start)
        return result

    def wrap(self, attempt: F, endpoint: str, observer: CallObserver) -> F:
        """``attempt`` (a function of the attempt number) gated by :meth:`run`."""

        def gated(number: int) -> Any:
            return self.run(number, endpoint, observer, _NOTHING, attempt, number)

        return cast(F, gated)


def _limiter_settings(config: ReliabilityConfig) -> tuple[object, ...] | None:
    if config.CONCURRENCY_LIMIT_MODE == "fixed":
        if config.CONCURRENCY_LIMIT is None:
            return None
        return ("fixed", config.CONCURRENCY_LIMIT)
    return (
        "adaptive",
        config.CONCURRENCY_LIMIT,
        config.CONCURRENCY_LIMIT_MIN,
        config.CONCURRENCY_LIMIT_MAX,
    )


def _rate_settings(config: ReliabilityConfig) -> tuple[object, ...] | None:
    if config.RATE_LIMIT_MODE == "fixed":
        return None
    return ("adaptive", config.RATE_LIMIT)


def _build_limiter(service: str, settings: tuple[Any, ...]) -> ConcurrencyLimiter:
    if settings[0] == "fixed":
        return ConcurrencyLimiter(service, FixedLimit(settings[1]))
    _, initial, low, high = settings
    start = DEFAULT_INITIAL_LIMIT if initial is None else initial
    return ConcurrencyLimiter(service, VegasLimit(start, low, high))


class LoadControl:
    """The gates of every service (one per service and process).

    ``rate_clock`` (keyword arguments of :class:`AdaptiveRate`: ``clock``, ``wall``, ``sleep``,
    ``sleep_async``) lets tests run the learnt rates on a fake clock.
    """

    def __init__(self, **rate_clock: Any) -> None:
        self._rate_clock = rate_clock
        self._lock = threading.Lock()
        #: per service: the config last seen, the settings built from, the gate
        self._gates: dict[str, tuple[ReliabilityConfig, tuple[object, ...], Gate]] = {}

    def gate(self, service_name: str, config: ReliabilityConfig) -> Gate | None:
        """The gate of a service, or None when its config turns load control off."""
        found = self._gates.get(service_name)
        if found is not None and found[0] is config:  # the usual case: the same config object
            return found[2]
        if (
            config.CONCURRENCY_LIMIT is None
            and config.CONCURRENCY_LIMIT_MODE == "fixed"
            and config.RATE_LIMIT_MODE == "fixed"
        ):
            return None
        return self._resolve(service_name, config)

    def _resolve(self, service_name: str, config: ReliabilityConfig) -> Gate:
        limiter_settings = _limiter_settings(config)
        rate_settings = _rate_settings(config)
        settings = (
            limiter_settings,
            rate_settings,
            config.CONCURRENCY_LIMIT_MAX_WAIT_SEC,
            config.RATE_LIMIT_MAX_WAIT_SEC,
        )
        with self._lock:
            found = self._gates.get(service_name)
            if found is not None and found[1] == settings:
                gate = found[2]
            else:
                if len(self._gates) >= MAX_IDLE_GATES:
                    self._drop_idle()
                gate = self._build(service_name, config, settings, found)
            self._gates[service_name] = (config, settings, gate)
            return gate

    def _build(
        self,
        service_name: str,
        config: ReliabilityConfig,
        settings: tuple[Any, ...],
        found: tuple[ReliabilityConfig, tuple[Any, ...], Gate] | None,
    ) -> Gate:
        """A new gate; a part whose own settings did not change keeps its state (the slots in
        flight, the learnt rate)."""
        before: tuple[Any, ...] = found[1] if found is not None else (None, None)
        old = found[2] if found is not None else None
        limiter_settings, rate_settings = settings[0], settings[1]
        limiter = rate = None
        if limiter_settings is not None:
            limiter = old.limiter if old and before[0] == limiter_settings else None
            limiter = limiter or _build_limiter(service_name, limiter_settings)
        if rate_settings is not None:
            rate = self._rate_for(service_name, rate_settings, old, before[1])
        return Gate(service_name, limiter, rate, config)

    def _rate_for(
        self, service: str, settings: tuple[Any, ...], old: Gate | None, before: object
    ) -> AdaptiveRate:
        """The old gate's learnt rate when its settings did not change, else a new one."""
        if old is not None and old.rate is not None and before == settings:
            return old.rate
        return self._build_rate(service, settings)

    def _build_rate(self, service: str, settings: tuple[Any, ...]) -> AdaptiveRate:
        ceiling = None
        if settings[1] is not None:
            from ._rates import parse_rate

            item = parse_rate(settings[1])
            ceiling = item.amount / item.get_expiry()
        return AdaptiveRate(service, ceiling, **self._rate_clock)

    def _drop_idle(self) -> None:
        """Drop the gates that would behave the same rebuilt (lock held)."""
        for name in [
            name
            for name, (_, _, gate) in self._gates.items()
            if gate.rate is None and (gate.limiter is None or gate.limiter.idle())
        ]:
            del self._gates[name]

    def limiters(self) -> list[ConcurrencyLimiter]:
        """Every concurrency limiter in use (for the limit and in-flight gauges)."""
        return [gate.limiter for _, _, gate in list(self._gates.values()) if gate.limiter]

    def reset(self) -> None:
        """Forget every gate (limits and learnt rates start afresh at next use)."""
        with self._lock:
            self._gates.clear()
