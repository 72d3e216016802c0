"""An adaptive client-side rate per service, learnt from the service's pushback.

``RATE_LIMIT_MODE=adaptive`` is the AWS SDK's adaptive retry mode (botocore
``retries/adaptive.py`` and ``retries/throttling.py``): a token bucket whose rate follows CUBIC.
Until the service first throttles, nothing is limited. A ``rate_limit`` answer (429) sets the rate
to 70% of the rate measured just before and remembers that rate as ``w_max``; every success then
moves it along the cubic ``0.4 * (t - k)**3 + w_max`` (``k`` the time the curve takes to climb back
to ``w_max``): fast at first, flat near the rate that was throttled, then probing above it. The
rate never exceeds twice the measured sending rate, so an idle spell does not build up a burst.

On top of botocore, the service's own words are read:

* ``Retry-After`` on a 429 pauses the bucket until then (no attempt of this process goes out
  before the service said it may);
* ``RateLimit-Policy: 100;w=60`` (and ``RateLimit: limit=100, ...;w=60``) caps the rate at
  ``100/60`` per second;
* ``RateLimit-Remaining: 0`` / ``x-ratelimit-remaining(-requests): 0`` with the reset
  (``RateLimit-Reset``, ``x-ratelimit-reset(-requests)``: seconds, an epoch time, or a duration
  such as ``1m30s`` or ``20ms``) pauses the bucket until the reset.

Headers are read on the failed attempts' exceptions (``exc.response.headers``).

An attempt waits for a token up to ``RATE_LIMIT_MAX_WAIT_SEC`` (never past the call's deadline)
and otherwise fails at once as ``throttled``: the fail-fast botocore lacks. The learnt rate is
local to the process, also on the Redis backend: every process learns its own share from the
429s it receives (CUBIC flows converge to a fair share, as TCP's do); ``RATE_LIMIT``, when set,
stays the hard cap shared through Redis.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from ._errors import ExternalServiceError, ReliabilityError

#: the lowest rate the bucket goes down to, per second (botocore's)
MIN_RATE: Final = 0.5
#: the rate never exceeds this multiple of the measured sending rate (botocore's)
MAX_RATE_ADJUST_SCALE: Final = 2.0
#: the shortest sleep between two tries of a waiting attempt
MIN_SLEEP_SEC: Final = 0.001
#: the longest pause a header may impose (a broken reset value must not stall a service for days)
MAX_PAUSE_SEC: Final = 3_600.0


class Cubic:
    """botocore's ``CubicCalculator``: the rate after a throttle and after each success."""

    __slots__ = ("_beta", "_k", "_last_fail", "_scale", "w_max")

    def __init__(
        self, start_rate: float, now: float, *, scale: float = 0.4, beta: float = 0.7
    ) -> None:
        self.w_max = start_rate
        self._scale = scale
        self._beta = beta
        self._k = self._zero_point()
        self._last_fail = now

    def _zero_point(self) -> float:
        return float((self.w_max * (1 - self._beta) / self._scale) ** (1 / 3))

    def success(self, now: float) -> float:
        return self._scale * (now - self._last_fail - self._k) ** 3 + self.w_max

    def throttled(self, rate: float, now: float) -> float:
        self.w_max = rate
        self._k = self._zero_point()
        self._last_fail = now
        return rate * self._beta


class RateClocker:
    """botocore's ``RateClocker``: the sending rate, smoothed over half-second buckets."""

    __slots__ = ("_count", "_last_bucket", "rate")

    SMOOTHING: Final = 0.8
    BUCKET_SEC: Final = 0.5

    def __init__(self, now: float) -> None:
        self.rate = 0.0
        self._count = 0
        self._last_bucket = float(math.floor(now))

    def record(self, now: float) -> float:
        bucket = math.floor(now / self.BUCKET_SEC) * self.BUCKET_SEC
        self._count += 1
        if bucket > self._last_bucket:
            current = self._count / (bucket - self._last_bucket)
            self.rate = current * self.SMOOTHING + self.rate * (1 - self.SMOOTHING)
            self._count = 0
            self._last_bucket = bucket
        return self.rate

    def estimate(self, now: float) -> float:
        """The measured rate, or before the first full bucket the rate counted so far."""
        if self.rate > 0.0:
            return self.rate
        return self._count / max(now - self._last_bucket, self.BUCKET_SEC)


# --- headers ------------------------------------------------------------------------------------


def _attr(obj: object, name: str) -> object:
    """``getattr(obj, name, None)`` that survives a property raising anything."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _header(headers: object, name: str) -> object:
    """A header's value from any headers object with ``get`` (case-insensitive or not)."""
    get = _attr(headers, "get")
    if not callable(get):
        return None
    try:
        value = get(name)
        return get(name.lower()) if value is None else value
    except Exception:  # a foreign headers object that misbehaves is no reason to fail
        return None


_DURATION: Final = re.compile(r"(?:([0-9.]+)h)?(?:([0-9.]+)m(?!s))?(?:([0-9.]+)s)?(?:([0-9.]+)ms)?")
_POLICY_WINDOW: Final = re.compile(r"w=([0-9.]+)")
_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: a reset larger than this is an epoch time, not a delay (GitHub's ``x-ratelimit-reset``)
_EPOCH_FROM: Final = 1e9


def _seconds(text: str, now_wall: float) -> float | None:
    """A reset value: delta seconds, an epoch time or a Go-style duration (``1m30s``, ``20ms``)."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        return value - now_wall if value >= _EPOCH_FROM else value
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _get(headers: object, *names: str) -> str | None:
    for name in names:
        value = _header(headers, name)
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        if isinstance(value, str) and value.strip():
            return value
    return None


def _dict_field(text: str, key: str) -> str | None:
    """``key=value`` of a structured header (``limit=100, remaining=0, reset=5``)."""
    match = re.search(rf"(?:^|[\s,;]){key}=([0-9.]+)", text)
    return match.group(1) if match else None


def _policy_quota(text: str, policy: bool) -> float | None:
    """Calls per second of a policy (``100;w=60``, ``"default";q=100;w=60``, ``limit=...;w=``)."""
    window = _POLICY_WINDOW.search(text)
    quota = _dict_field(text, "q") or _dict_field(text, "limit")
    if quota is None and policy:
        first = _NUMBER.match(text.strip())
        quota = first.group(0) if first else None
    if window is None or quota is None or float(window.group(1)) <= 0:
        return None
    return float(quota) / float(window.group(1))


def _exhausted_pause(remaining: str | None, reset: str | None, now: float) -> float | None:
    """Seconds until the reset when nothing remains, else None."""
    if remaining is None or reset is None or _NUMBER.fullmatch(remaining.strip()) is None:
        return None
    if float(remaining) != 0:
        return None
    seconds = _seconds(reset, now)
    return min(seconds, MAX_PAUSE_SEC) if seconds is not None and seconds > 0 else None


def parse_rate_headers(
    headers: object, now_wall: float | None = None
) -> tuple[float | None, float | None]:
    """(the rate a policy header allows per second, seconds to pause), each None when unsaid.

    >>> parse_rate_headers({"RateLimit-Policy": "100;w=60"})
    (1.6666666666666667, None)
    >>> parse_rate_headers({"x-ratelimit-remaining-requests": "0",
    ...                     "x-ratelimit-reset-requests": "1m30s"})
    (None, 90.0)
    >>> parse_rate_headers({"RateLimit": "limit=10, remaining=0, reset=2"})
    (None, 2.0)
    """
    if headers is None:
        return None, None
    now = time.time() if now_wall is None else now_wall
    policy = _get(headers, "RateLimit-Policy")
    combined = _get(headers, "RateLimit")
    ceiling = _policy_quota(policy, True) if policy is not None else None
    if ceiling is None and combined is not None:
        ceiling = _policy_quota(combined, False)
    remaining, reset = _remaining_and_reset(headers, combined)
    return ceiling, _exhausted_pause(remaining, reset, now)


def _remaining_and_reset(headers: object, combined: str | None) -> tuple[str | None, str | None]:
    """The remaining calls and the reset, from their own headers or the combined one."""
    remaining = _get(
        headers, "RateLimit-Remaining", "x-ratelimit-remaining-requests", "x-ratelimit-remaining"
    )
    reset = _get(headers, "RateLimit-Reset", "x-ratelimit-reset-requests", "x-ratelimit-reset")
    if combined is not None:
        remaining = remaining or _dict_field(combined, "remaining") or _dict_field(combined, "r")
        reset = reset or _dict_field(combined, "reset") or _dict_field(combined, "t")
    return remaining, reset


def _headers_of(error: ReliabilityError) -> object:
    cause = error.__cause__
    if cause is None:
        return None
    for holder in (_attr(cause, "response"), cause):
        headers = _attr(holder, "headers") if holder is not None else None
        if isinstance(headers, Mapping) or hasattr(headers, "get"):
            return headers
    return None


# --- the bucket -----------------------------------------------------------------------------------


class AdaptiveRate:
    """The learnt rate of one service: a token bucket whose rate CUBIC moves.

    ``clock`` is monotonic seconds, ``wall`` the epoch (for reset headers); ``sleep`` and
    ``sleep_async`` wait. Thread-safe; shared by the service's threads and asyncio tasks.
    """

    def __init__(
        self,
        service_name: str,
        ceiling: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        sleep_async: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.service_name = service_name
        self.ceiling = ceiling  # RATE_LIMIT's rate, when set: the learnt rate stays under it
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._sleep_async = sleep_async
        self._lock = threading.Lock()
        now = clock()
        self._cubic = Cubic(0.0, now)
        self._clocker = RateClocker(now)
        self.enabled = False  # no throttle seen yet: nothing is limited
        self.rate = 0.0  # tokens per second, while enabled
        self._tokens = 0.0
        self._filled_at = now
        self._paused_until = 0.0
        self._header_ceiling: float | None = None
        self.throttles = 0
        self._last_cut = -math.inf

    def __repr__(self) -> str:
        shown = f"{self.rate:.3g}/s" if self.enabled else "unlimited"
        return f"AdaptiveRate({self.service_name!r}, {shown})"

    # --- admission -----------------------------------------------------------------------------

    def _try(self) -> float:
        """Take a token: 0.0 when taken, else the seconds until one will be there."""
        now = self._clock()
        with self._lock:
            if now < self._paused_until:
                return self._paused_until - now
            if not self.enabled:
                return 0.0
            rate = max(self.rate, MIN_RATE)
            capacity = max(rate, 1.0)
            self._tokens = min(capacity, self._tokens + (now - self._filled_at) * rate)
            self._filled_at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / rate

    def acquire(self, max_wait: float) -> bool:
        """Take a token, waiting up to ``max_wait`` seconds; False when none comes in time."""
        deadline = self._clock() + max_wait
        while True:
            wait = self._try()
            if wait == 0.0:
                return True
            if self._clock() + wait > deadline:
                return False
            self._sleep(max(wait, MIN_SLEEP_SEC))

    async def acquire_async(self, max_wait: float) -> bool:
        """The asyncio twin of :meth:`acquire`."""
        deadline = self._clock() + max_wait
        while True:
            wait = self._try()
            if wait == 0.0:
                return True
            if self._clock() + wait > deadline:
                return False
            await self._sleep_async(max(wait, MIN_SLEEP_SEC))  # type: ignore[misc]

    # --- learning ------------------------------------------------------------------------------

    def on_attempt(self, error: ReliabilityError | None, latency: float = 0.0) -> None:
        """Learn from one attempt's outcome (None: it succeeded) that took ``latency`` s.

        A throttle of an attempt sent before the last cut says nothing new (it went out at the
        old rate): it is counted and its pause kept, but the rate is not cut again, as TCP cuts
        its window once per round trip however many losses it sees.
        """
        now = self._clock()
        throttled = error is not None and error.error_type is ExternalServiceError.RATE_LIMIT
        ceiling, pause = self._pushback(error, throttled)
        with self._lock:
            self._clocker.record(now)
            measured = self._clocker.estimate(now)
            if ceiling is not None:
                self._header_ceiling = ceiling
            if pause is not None:
                self._paused_until = max(self._paused_until, now + pause)
            if throttled:
                self.throttles += 1
                if now - latency < self._last_cut:
                    return
                new = self._cut(measured, now)
            elif self.enabled:
                new = self._cubic.success(now)
            else:
                return
            self.rate = self._capped(new, measured)

    def _pushback(
        self, error: ReliabilityError | None, throttled: bool
    ) -> tuple[float | None, float | None]:
        """(a policy's rate, seconds to pause) the failed attempt's answer asked for."""
        if error is None:
            return None, None
        ceiling, pause = parse_rate_headers(_headers_of(error), self._wall())
        if throttled and error.retry_after is not None:
            pause = max(pause or 0.0, min(error.retry_after, MAX_PAUSE_SEC))
        return ceiling, pause

    def _cut(self, measured: float, now: float) -> float:
        """A throttle: the CUBIC cut from the rate in use (lock held); turns the bucket on."""
        self._last_cut = now
        used = min(measured, self.rate) if self.enabled else measured
        if not self.enabled:
            self.enabled = True
            self._tokens = 0.0
            self._filled_at = now
        return self._cubic.throttled(used, now)

    def _capped(self, new: float, measured: float) -> float:
        """``new`` within twice the measured rate, the ceilings and the floor."""
        new = min(new, MAX_RATE_ADJUST_SCALE * measured)
        for cap in (self.ceiling, self._header_ceiling):
            if cap is not None:
                new = min(new, cap)
        return max(new, MIN_RATE)
