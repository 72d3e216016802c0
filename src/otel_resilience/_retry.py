"""Retries: the seed's jittered exponential backoff, driven by tenacity.

This is the only module that imports tenacity, and no tenacity type leaves it. A
:class:`RetryPlan` is the call engine's retry decision: after each failed attempt
:meth:`RetryPlan.next_delay` says how long to sleep before the next one, or ``None`` to stop.
It steps tenacity's own decision machine (``Retrying.iter``, the loop tenacity's ``__call__``
runs) one failure at a time, so the sync and async drivers sleep themselves and no tenacity
loop owns the attempt. Without tenacity (``TENACITY_AVAILABLE`` is False) the same stop, wait
and retry rules are applied in the same order by a built-in stepper.

Backoff before retry ``n`` (``n`` = the number of the attempt that failed)::

    delay_ms  = min(HTTP_BACKOFF_BASE_MS * 2 ** (n - 1), HTTP_BACKOFF_MAX_MS)
    jitter_ms = random.randint(0, int(delay_ms * 0.1))      # the seed's 10% jitter
    sleep       (delay_ms + jitter_ms) / 1000 seconds

The jitter comes after the cap, so clients at the cap stay spread out. When the failed attempt
carried a ``Retry-After`` (a 429, or a 503 that said when to come back), that value replaces the
computed delay, capped at ``RETRY_AFTER_MAX_SEC``.

Retries stop when the attempts run out, when the next sleep would pass the call's deadline, or
when the retry budget refuses one; the last attempt's error is raised.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from ._errors import ReliabilityError, is_retryable
from ._log import log_event

try:  # the seed's promise: without tenacity the same decisions are made by a built-in stepper
    from tenacity import DoSleep, RetryCallState, Retrying, retry_if_exception

    TENACITY_AVAILABLE = True
except ImportError:  # pragma: no cover - run by tests/test_retry.py in a subprocess
    TENACITY_AVAILABLE = False

logger = logging.getLogger("otel_resilience")

#: the seed's jitter: up to 10% of the delay, added on top
JITTER_FRACTION: Final = 0.1

StopReason = Literal["exhausted", "deadline", "budget", "rejected", "not_idempotent"]

_EXHAUSTED: Final = (logging.ERROR, "All retries exhausted for %s (%s)")
#: the log line of each stop reason that has one (level, message of service and endpoint)
_STOP_LOGS: Final[Mapping[StopReason | None, tuple[int, str]]] = MappingProxyType(
    {
        "budget": (logging.DEBUG, "Retry budget of %s refused a retry of %s"),
        "not_idempotent": (
            logging.INFO,
            "Not retrying %s (%s): not idempotent, and the request may have been processed",
        ),
        "exhausted": _EXHAUSTED,
        "deadline": _EXHAUSTED,
    }
)


def backoff_delay(
    attempt: int, base_ms: int, max_ms: int, rng: random.Random | None = None
) -> float:
    """Seconds to sleep after failed attempt number ``attempt`` (1-based).

    >>> import random
    >>> [round(backoff_delay(n, 1000, 30_000, random.Random(0)), 3) for n in (1, 2, 3)]
    [1.049, 2.098, 4.197]
    >>> backoff_delay(20, 1000, 30_000, random.Random(0)) <= 33.0
    True
    """
    delay_ms = capped_delay_ms(attempt, base_ms, max_ms)
    jitter_ms = (rng or random).randint(0, int(delay_ms * JITTER_FRACTION))
    return (delay_ms + jitter_ms) / 1000.0


JitterMode = Literal["seed", "full", "decorrelated"]

#: Polly's V2 decorrelated jitter constants (Polly.Core's RetryHelper)
_RP_SCALING: Final = 1 / 1.4
_P_FACTOR: Final = 4.0


def capped_delay_ms(attempt: int, base_ms: int, max_ms: int) -> int:
    """``min(base_ms * 2 ** (attempt - 1), max_ms)`` without building huge integers."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    exponent = attempt - 1
    if base_ms == 0:
        return 0
    if exponent >= 63:  # base * 2**63 ms is past any cap the config accepts
        return max_ms
    return min(base_ms * (1 << exponent), max_ms)


def full_jitter_delay(
    attempt: int, base_ms: int, max_ms: int, rng: random.Random | None = None
) -> float:
    """AWS's "full jitter": ``rand(0, 1) * min(base * 2**(n-1), max)`` seconds.

    >>> import random
    >>> 0 <= full_jitter_delay(3, 1000, 30_000, random.Random(0)) <= 4.0
    True
    """
    return (rng or random).random() * capped_delay_ms(attempt, base_ms, max_ms) / 1000.0


def decorrelated_jitter_delay(
    attempt: int, base_ms: int, max_ms: int, previous: float, rng: random.Random | None = None
) -> tuple[float, float]:
    """Polly's V2 decorrelated jitter: (seconds, the state to pass as ``previous`` next time).

    Start with ``previous=0``. Delays grow about exponentially with a median first delay near
    ``base_ms``, are decorrelated from each other and never exceed ``max_ms``.

    >>> import random
    >>> rng, state, delays = random.Random(1), 0.0, []
    >>> for n in (1, 2, 3):
    ...     delay, state = decorrelated_jitter_delay(n, 1000, 30_000, state, rng)
    ...     delays.append(round(delay, 3))
    >>> all(0 <= d <= 30 for d in delays)
    True
    """
    t = (attempt - 1) + (rng or random).random()
    nxt = 2.0 ** min(t, 1000.0) * math.tanh(math.sqrt(_P_FACTOR * t))
    value_ms = (nxt - previous) * _RP_SCALING * base_ms
    return min(max(value_ms, 0.0), float(max_ms)) / 1000.0, nxt


@dataclass(slots=True)
class RetryPlan:
    """Everything one call's retries need; built only when a first attempt failed."""

    service_name: str
    endpoint: str
    max_attempts: int
    base_ms: int
    max_ms: int
    retry_after_max_sec: float
    retry_unknown: bool = True
    jitter: JitterMode = "seed"
    #: seconds left before the call's deadline (None: no deadline); read before each backoff
    remaining: Callable[[], float | None] | None = None
    rng: random.Random | None = None
    #: returns False to refuse a retry (the retry budget)
    allow_retry: Callable[[], bool] | None = None
    #: given the upcoming sleep, True when the retry after it would be rejected anyway (the
    #: failure just opened the breaker): stop now instead of sleeping and counting a retry
    blocked: Callable[[float], bool] | None = None
    #: called before each backoff sleep: (failed attempt number, its error, delay seconds)
    on_retry: Callable[[int, ReliabilityError, float], None] | None = None
    #: why retrying stopped, once it has
    stop_reason: StopReason | None = field(default=None)
    _stepper: Any = field(default=None, repr=False)
    _jitter_state: float = field(default=0.0, repr=False)

    def next_delay(self, attempt: int, error: ReliabilityError) -> float | None:
        """After failed attempt ``attempt``: seconds to sleep before the next, or None to stop.

        When it stops for a reason (attempts, deadline, budget, breaker), ``stop_reason`` says
        which and the seed's log line is written.
        """
        if self._stepper is None:
            self._stepper = _TenacityStepper(self) if TENACITY_AVAILABLE else _BuiltinStepper(self)
        delay: float | None = self._stepper.step(attempt, error)
        if delay is None:
            self.log_stopped()
        return delay

    def stop(self, reason: StopReason) -> None:
        """End the retries from outside (the breaker rejected the next attempt)."""
        self.stop_reason = reason

    def delay_for(self, attempt: int, error: BaseException | None) -> float:
        """The sleep before the attempt after ``attempt`` (``Retry-After`` wins, capped)."""
        if isinstance(error, ReliabilityError):
            retry_after = error.retry_after
            # only a usable wait wins: a negative or NaN one (a user's own error) is ignored
            if retry_after is not None and retry_after >= 0.0:
                return min(retry_after, self.retry_after_max_sec)
        if self.jitter == "full":
            return full_jitter_delay(attempt, self.base_ms, self.max_ms, self.rng)
        if self.jitter == "decorrelated":
            delay, self._jitter_state = decorrelated_jitter_delay(
                attempt, self.base_ms, self.max_ms, self._jitter_state, self.rng
            )
            return delay
        return backoff_delay(attempt, self.base_ms, self.max_ms, self.rng)

    # --- the rules, shared by both steppers (in tenacity's order: retry, wait, stop, sleep) --

    def retryable(self, error: BaseException) -> bool:
        return isinstance(error, ReliabilityError) and is_retryable(
            error.error_type, self.retry_unknown
        )

    def should_stop(self, attempt: int, upcoming_sleep: float) -> bool:
        if attempt >= self.max_attempts:
            self.stop_reason = "exhausted"
            return True
        if self._past_deadline(upcoming_sleep):
            self.stop_reason = "deadline"
            return True
        if self.blocked is not None and self.blocked(upcoming_sleep):
            self.stop_reason = "rejected"
            return True
        if self.allow_retry is not None and not self.allow_retry():
            self.stop_reason = "budget"
            return True
        return False

    def _past_deadline(self, upcoming_sleep: float) -> bool:
        """The call's deadline would pass before the sleep ends."""
        left = self.remaining() if self.remaining is not None else None
        return left is not None and upcoming_sleep >= left

    def announce(self, attempt: int, error: ReliabilityError, delay: float) -> None:
        """The seed's retry log line, and the telemetry's retry event."""
        log_event(
            logger,
            logging.WARNING,
            "Retrying %s (%s) attempt %d/%d",
            self.service_name,
            self.endpoint,
            attempt + 1,
            self.max_attempts,
            extra={
                **self._where(),
                "resilience_error_type": error.error_type.value,
                "resilience_retry_delay_s": delay,
            },
        )
        if self.on_retry is not None:
            self.on_retry(attempt, error, delay)

    def log_stopped(self) -> None:
        """Log why retrying ended (the seed's message when the attempts ran out)."""
        reason = self.stop_reason
        found = _STOP_LOGS.get(reason)
        if found is None:  # no reason yet, or "rejected" (the breaker opened: not logged here)
            return
        level, message = found
        extra = {**self._where(), "resilience_stop_reason": reason}
        log_event(logger, level, message, self.service_name, self.endpoint, extra=extra)

    def _where(self) -> dict[str, Any]:
        return {"resilience_service": self.service_name, "resilience_endpoint": self.endpoint}


class _BuiltinStepper:
    """The plan's rules applied without tenacity (same order, same outcomes)."""

    __slots__ = ("_plan",)

    def __init__(self, plan: RetryPlan) -> None:
        self._plan = plan

    def step(self, attempt: int, error: ReliabilityError) -> float | None:
        plan = self._plan
        if not plan.retryable(error):
            return None
        delay = plan.delay_for(attempt, error)
        if plan.should_stop(attempt, delay):
            return None
        plan.announce(attempt, error, delay)
        return delay


class _TenacityStepper:
    """One ``tenacity.Retrying`` decision machine, fed one failed attempt at a time."""

    __slots__ = ("_plan", "_retrying", "_state")

    def __init__(self, plan: RetryPlan) -> None:
        self._plan = plan
        self._retrying = Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception(plan.retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        self._retrying.begin()
        self._state = RetryCallState(self._retrying, fn=None, args=(), kwargs={})

    def step(self, attempt: int, error: ReliabilityError) -> float | None:
        state = self._state
        state.attempt_number = attempt
        state.set_exception((type(error), error, error.__traceback__))
        try:
            do = self._retrying.iter(state)
        except ReliabilityError:  # tenacity re-raised the failure: not retried, or stopped
            return None
        if isinstance(do, DoSleep):
            state.prepare_for_next_attempt()
            return float(do)
        return None  # pragma: no cover - every outcome is a failure

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        return self._plan.delay_for(state.attempt_number, error)

    def _stop(self, state: RetryCallState) -> bool:
        return self._plan.should_stop(state.attempt_number, state.upcoming_sleep)

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        assert isinstance(error, ReliabilityError)
        self._plan.announce(state.attempt_number, error, state.upcoming_sleep)
