"""The call engine: every decision of one resilient call, written once and I/O-free.

A :class:`Call` knows the service's context, the breaker, the budget and the telemetry observer;
it classifies each attempt's outcome, decides whether and how long to back off (a
:class:`RetryPlan`, tenacity's decision machine), settles the breaker permit and builds the
errors. It never blocks, sleeps, awaits or touches the network: the drivers in ``_call.py`` (one
sync loop, one asyncio loop) do that -- take a rate-limit slot, take a breaker permit, run the
attempt under its timeout, record the outcome in the breaker, sleep -- and hand each result back
to the engine. A strategy that waits or talks to a store plugs in as a driver action; one that
only decides plugs in here (docs/architecture.md).

Order of one call::

    rate limit (per call) -> [deadline? -> breaker permit -> attempt under timeout -> settle
    -> backoff] x attempts -> value | ReliabilityError | fallback
"""

from __future__ import annotations

import time
from typing import Any, Final, cast

from ._breakers import CircuitBreaker
from ._classify import map_external_error, redact_detail, well_formed
from ._errors import (
    CLIENT_ERRORS,
    ERROR_CLASSES,
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
    is_retryable,
    with_retry_policy,
)
from ._idempotency import request_not_processed
from ._retry import RetryPlan
from ._runtime import CallSettings, ServiceContext
from ._telemetry import CallObserver
from ._timeout import AttemptTimeout, remaining_time

_E_TIMEOUT: Final = ExternalServiceError.TIMEOUT

#: failures that say nothing about the service's health: the permit is given back, nothing is
#: recorded (the caller's own mistakes, and a nested call refused by the library's rate limiter)
_NEUTRAL: Final = CLIENT_ERRORS | {
    ExternalServiceError.THROTTLED,
    ExternalServiceError.CONCURRENCY_LIMITED,
}


class NoFallback:
    """The ``fallback`` default: the failure is raised."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no fallback>"


NO_FALLBACK: Final = NoFallback()


class Misuse(TypeError):
    """A programming error found while running an attempt: not the service's failure."""


class Call:
    """The state and decisions of one call (made by the drivers, one per call)."""

    __slots__ = (
        "attempt",
        "breaker",
        "context",
        "endpoint",
        "error",
        "handle",
        "hedge",
        "hedging",
        "idempotent",
        "lost",
        "observer",
        "plan",
        "settings",
        "started",
        "won",
    )

    #: the attempt under way: its telemetry handle and ``time.perf_counter()`` at its start
    handle: Any
    started: float

    def __init__(
        self,
        context: ServiceContext,
        endpoint: str,
        settings: CallSettings,
        breaker: CircuitBreaker,
        observer: CallObserver,
        idempotent: bool = True,
    ) -> None:
        # (the success path builds one per call: every store counts; ``handle`` and
        # ``started`` are set by the drivers when an attempt starts, before anything reads them)
        self.context = context
        self.idempotent = idempotent
        self.endpoint = endpoint
        self.settings = settings
        self.breaker = breaker
        self.observer = observer
        self.attempt = 0  # the number of the attempt under way (or the last one)
        self.plan: RetryPlan | None = None
        self.error: ReliabilityError | None = None  # the last attempt's failure
        #: the service's hedging policy, for idempotent calls only
        self.hedging = context.hedging if idempotent else None
        self.hedge = False  # this attempt is a hedge (a branch of a hedged call)
        self.lost = False  # another attempt of the same round won: this one's result is dropped
        self.won = False

    @property
    def service(self) -> str:
        return self.context.name

    @property
    def budget(self) -> Any:
        return self.context.budget

    def branch(self, hedge: bool) -> Call:
        """A copy for one attempt of a hedged round: the same call, its own attempt state."""
        twin = Call.__new__(Call)
        for name in Call.__slots__:
            if hasattr(self, name):
                setattr(twin, name, getattr(self, name))
        twin.hedge = hedge
        twin.lost = twin.won = False
        twin.handle = None
        return twin

    # --- admission of the call ------------------------------------------------------------

    def max_wait(self) -> float:
        """How long the call may wait for a rate-limit slot: never past its deadline."""
        wait = self.settings.config.RATE_LIMIT_MAX_WAIT_SEC
        left = remaining_time()
        return wait if left is None or left >= wait else left

    def throttled(self) -> ThrottledError:
        """The rate limiter refused the call: counted, and the error to raise."""
        self.observer.throttled()
        limit = self.settings.config.RATE_LIMIT
        return ThrottledError(
            ExternalServiceError.THROTTLED,
            self.service,
            self.endpoint,
            f"rate limit {limit} of {self.service} reached; call to {self.endpoint} refused",
            attempts=0,
        )

    # --- before each attempt --------------------------------------------------------------

    def too_late(self) -> CallTimeoutError:
        """The deadline passed before attempt ``attempt`` could start (a failure, no attempt)."""
        number = self.attempt
        return CallTimeoutError(
            _E_TIMEOUT,
            self.service,
            self.endpoint,
            f"timeout calling {self.service} ({self.endpoint}): the deadline passed before"
            f" attempt {number} could start",
            attempts=number - 1,
        )

    def rejected(self) -> ReliabilityError:
        """The breaker refused the attempt: the error to raise (the call ends)."""
        self.observer.rejected()
        if self.attempt == 1 or self.error is None:
            status = self.breaker.status()
            return CircuitOpenError(
                ExternalServiceError.CIRCUIT_OPEN,
                self.service,
                self.endpoint,
                f"circuit breaker for {self.service} ({self.endpoint}) is {status.state};"
                " call rejected",
                attempts=0,
                retry_after=status.seconds_until_probe,
            )
        if self.plan is not None:
            self.plan.stop("rejected")
        return self.error  # the previous attempt's failure stands

    # --- the attempt's outcome ------------------------------------------------------------

    def finish_attempt_ok(self, duration: float) -> None:
        hedging = self.hedging
        if hedging is None:
            self.observer.attempt_ok(self.handle, duration)
            return
        if hedging.fixed_delay is None:
            hedging.record_success(self.endpoint, duration)
        if self.lost:
            self.observer.attempt_cancelled(self.handle)
        else:
            self.observer.attempt_ok(self.handle, duration, self.won)

    def failed(self, exc: Exception) -> tuple[ReliabilityError, float, bool]:
        """The attempt raised: its error, its duration and whether it is neutral (the permit is
        given back, nothing recorded) or a failure of the service."""
        duration = time.perf_counter() - self.started
        error = with_retry_policy(self.as_error(exc), self.settings.config.RETRY_UNKNOWN_ERRORS)
        neutral = error.error_type in _NEUTRAL or _never_started(exc)
        return error, duration, neutral

    def finish_attempt_failed(
        self, error: ReliabilityError, exc: Exception, duration: float
    ) -> None:
        self.error = error
        if self.lost:
            self.observer.attempt_cancelled(self.handle)
        else:
            self.observer.attempt_failed(self.handle, error, exc, duration)

    def aborted(self, exc: BaseException) -> None:
        """The attempt ended without the service's answer (cancelled, interrupted, misuse)."""
        if self.lost:  # a hedge that lost the race: cancelled, not a failure
            self.observer.attempt_cancelled(self.handle)
        else:
            self.observer.attempt_aborted(self.handle, exc)

    def as_error(self, exc: BaseException) -> ReliabilityError:
        """The ReliabilityError of a failed attempt, labelled with *this* call's service.

        Types are tested on ``type(exc)``: ``isinstance`` would read an exception's own
        ``__class__``, which a hostile exception can make raise.
        """
        kind = type(exc)
        service, endpoint, number = self.service, self.endpoint, self.attempt
        if issubclass(kind, AttemptTimeout):
            return CallTimeoutError(
                _E_TIMEOUT,
                service,
                endpoint,
                f"timeout calling {service} ({endpoint}): no answer within"
                f" {cast(AttemptTimeout, exc).timeout_sec:g} s",
                attempts=number,
            )
        if issubclass(kind, ReliabilityError) and well_formed(exc):
            return self._nested(cast(ReliabilityError, exc))
        return map_external_error(
            service,
            endpoint,
            exc,
            attempts=number,
            classifiers=self.context.runtime.classifiers,
            config=self.settings.config,
        )

    def _nested(self, nested: ReliabilityError) -> ReliabilityError:
        """A nested resilient_call's error (or the function's own): keep its class."""
        service, endpoint, number = self.service, self.endpoint, self.attempt
        if nested.service_name == service and nested.endpoint == endpoint:
            nested.attempts = number
            return nested
        cls = ERROR_CLASSES.get(nested.error_type, ReliabilityError)
        detail = redact_detail(nested.message, self.settings.config)
        return cls(
            nested.error_type,
            service,
            endpoint,
            f"{nested.error_type.value} calling {service} ({endpoint}): {detail}",
            attempts=number,
            retry_after=nested.retry_after,
        )

    # --- the retry decision ---------------------------------------------------------------

    def next_delay(self, error: ReliabilityError) -> float | None:
        """Seconds to back off before the next attempt, or None: the call ends with ``error``.

        The plan (tenacity's decision machine) is built at the first retryable failure only:
        a call that succeeds, or fails for good at once, never builds it. A call made with
        ``idempotent=False`` goes on only when the failure (the exception that caused
        ``error``, or ``error`` itself) proves the request was not processed.
        """
        self.error = error
        plan = self.plan
        if plan is None:
            settings = self.settings
            if settings.attempts <= 1 or not is_retryable(
                error.error_type, settings.config.RETRY_UNKNOWN_ERRORS
            ):
                return None
            plan = self.plan = self._new_plan()
        if not self.idempotent and not self._may_resend(error, error.__cause__ or error):
            plan.stop("not_idempotent")
            plan.log_stopped()
            return None
        return plan.next_delay(self.attempt, error)

    def _may_resend(self, error: ReliabilityError, exc: BaseException | None) -> bool:
        return self.settings.config.RETRY_NON_IDEMPOTENT or request_not_processed(error, exc)

    def _new_plan(self) -> RetryPlan:
        config = self.settings.config
        budget = self.budget
        return RetryPlan(
            service_name=self.service,
            endpoint=self.endpoint,
            max_attempts=self.settings.attempts,
            base_ms=config.HTTP_BACKOFF_BASE_MS,
            max_ms=config.HTTP_BACKOFF_MAX_MS,
            retry_after_max_sec=config.RETRY_AFTER_MAX_SEC,
            retry_unknown=config.RETRY_UNKNOWN_ERRORS,
            jitter=config.RETRY_JITTER,
            remaining=remaining_time,
            allow_retry=None if budget is None else budget.try_retry,
            blocked=self.breaker.rejects_after,
            on_retry=self.observer.retry,
        )

    # --- the end of the call --------------------------------------------------------------

    def ended_failed(self, error: ReliabilityError) -> None:
        """The call failed for good (also a rejection or a refusal): telemetry of why."""
        plan = self.plan
        observer = self.observer
        if plan is not None:
            if plan.stop_reason in ("exhausted", "deadline"):
                observer.exhausted(error)
            elif plan.stop_reason == "budget":
                observer.budget_rejected(error)
        observer.end_failed(error, error.attempts)

    def served(self, error: ReliabilityError, fallback: Any) -> Any:
        """The call failed for good: its telemetry, then the fallback's value (maybe an
        awaitable, for the async driver to await), or ``error`` raised when there is none.

        The fallback is recorded before the call span ends, so the span says it
        (``resilience.fallback``)."""
        if fallback is NO_FALLBACK:
            self.ended_failed(error)
            raise error
        self.observer.fallback(error)
        self.ended_failed(error)
        return fallback(error) if callable(fallback) else fallback

    def ended_aborted(self, exc: BaseException) -> None:
        self.observer.end_aborted(exc)


def _never_started(exc: Exception) -> bool:
    """The attempt's deadline had passed before it could start: the service was not called."""
    return issubclass(type(exc), AttemptTimeout) and cast(AttemptTimeout, exc).timeout_sec <= 0.0
