"""Retries: the seed's jittered exponential backoff, driven by tenacity.

This is the only module that imports tenacity, and no tenacity type leaves it.

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

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception

from ._errors import ReliabilityError, is_retryable
from ._log import log_event

__all__ = ["RetryPlan", "backoff_delay", "is_retryable", "retry_async", "retry_sync"]

logger = logging.getLogger("otel_resilience")

T = TypeVar("T")

#: the seed's jitter: up to 10% of the delay, added on top
JITTER_FRACTION: Final = 0.1

StopReason = Literal["exhausted", "deadline", "budget", "rejected"]


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
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # 2 ** (attempt - 1) grows without bound: compare exponents first to avoid huge ints
    exponent = attempt - 1
    if base_ms == 0:
        delay_ms = 0
    elif exponent >= 63:  # base * 2**63 ms is past any cap the config accepts
        delay_ms = max_ms
    else:
        delay_ms = min(base_ms * (1 << exponent), max_ms)
    jitter_ms = (rng or random).randint(0, int(delay_ms * JITTER_FRACTION))
    return (delay_ms + jitter_ms) / 1000.0


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
    #: seconds left before the call's deadline (None: no deadline); read before each backoff
    remaining: Callable[[], float | None] | None = None
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
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

    def delay_for(self, attempt: int, error: BaseException | None) -> float:
        """The sleep before the attempt after ``attempt`` (``Retry-After`` wins, capped)."""
        if isinstance(error, ReliabilityError):
            retry_after = error.retry_after
            # only a usable wait wins: a negative or NaN one (a user's own error) is ignored
            if retry_after is not None and retry_after >= 0.0:
                return min(retry_after, self.retry_after_max_sec)
        return backoff_delay(attempt, self.base_ms, self.max_ms, self.rng)

    # --- tenacity callbacks ---------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        return self.delay_for(state.attempt_number, error)

    def _stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.max_attempts:
            self.stop_reason = "exhausted"
            return True
        if self.remaining is not None:
            left = self.remaining()
            if left is not None and state.upcoming_sleep >= left:
                self.stop_reason = "deadline"
                return True
        if self.blocked is not None and self.blocked(state.upcoming_sleep):
            self.stop_reason = "rejected"
            return True
        if self.allow_retry is not None and not self.allow_retry():
            self.stop_reason = "budget"
            return True
        return False

    def _retry(self, error: BaseException) -> bool:
        return isinstance(error, ReliabilityError) and is_retryable(
            error.error_type, self.retry_unknown
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        assert isinstance(error, ReliabilityError)
        delay = state.upcoming_sleep
        log_event(
            logger,
            logging.WARNING,
            "Retrying %s (%s) attempt %d/%d",
            self.service_name,
            self.endpoint,
            state.attempt_number + 1,
            self.max_attempts,
            extra={
                "resilience_service": self.service_name,
                "resilience_endpoint": self.endpoint,
                "resilience_error_type": error.error_type.value,
                "resilience_retry_delay_s": delay,
            },
        )
        if self.on_retry is not None:
            self.on_retry(state.attempt_number, error, delay)

    def _options(self) -> dict[str, Any]:
        return {
            "stop": self._stop,
            "wait": self._wait,
            "retry": retry_if_exception(self._retry),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def log_stopped(self) -> None:
        """Log why retrying ended (the seed's message when the attempts ran out)."""
        if self.stop_reason == "budget":
            log_event(
                logger,
                logging.DEBUG,
                "Retry budget of %s refused a retry of %s",
                self.service_name,
                self.endpoint,
                extra={
                    "resilience_service": self.service_name,
                    "resilience_endpoint": self.endpoint,
                    "resilience_stop_reason": self.stop_reason,
                },
            )
        elif self.stop_reason in ("exhausted", "deadline"):
            log_event(
                logger,
                logging.ERROR,
                "All retries exhausted for %s (%s)",
                self.service_name,
                self.endpoint,
                extra={
                    "resilience_service": self.service_name,
                    "resilience_endpoint": self.endpoint,
                    "resilience_stop_reason": self.stop_reason,
                },
            )


class StopRetrying(Exception):
    """Raised by an attempt function to end the retries at once (an open breaker, say)."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason: StopReason = reason


def retry_sync(plan: RetryPlan, first_error: ReliabilityError, attempt: Callable[[int], T]) -> T:
    """Go on after a failed first attempt: sleep, call ``attempt(n)`` for n = 2, 3, ...

    Raises the last attempt's error when retrying stops.
    """
    replay: list[ReliabilityError] = [first_error]
    last: list[ReliabilityError] = [first_error]
    number = [1]

    def run() -> T:
        if replay:  # the first attempt already ran: give tenacity its outcome
            raise replay.pop()
        number[0] += 1
        try:
            return attempt(number[0])
        except ReliabilityError as error:
            last[0] = error
            raise

    sleep = plan.sleep
    retrying = Retrying(sleep=sleep, **plan._options())
    try:
        return retrying(run)
    except StopRetrying as stop:
        plan.stop_reason = stop.reason
        raise last[0] from last[0].__cause__ or None
    except ReliabilityError:
        plan.log_stopped()
        raise


async def retry_async(
    plan: RetryPlan,
    first_error: ReliabilityError,
    attempt: Callable[[int], Awaitable[T]],
) -> T:
    """The asyncio twin of :func:`retry_sync` (sleeps with ``asyncio.sleep``)."""
    replay: list[ReliabilityError] = [first_error]
    last: list[ReliabilityError] = [first_error]
    number = [1]

    async def run() -> T:
        if replay:
            raise replay.pop()
        number[0] += 1
        try:
            return await attempt(number[0])
        except ReliabilityError as error:
            last[0] = error
            raise

    retrying = AsyncRetrying(sleep=plan.async_sleep, **plan._options())
    try:
        return await retrying(run)
    except StopRetrying as stop:
        plan.stop_reason = stop.reason
        raise last[0] from last[0].__cause__ or None
    except ReliabilityError:
        plan.log_stopped()
        raise
