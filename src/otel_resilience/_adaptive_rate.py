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
from collections.abc import Callable
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
        """Count one send at ``now``: the measured rate (before the first full bucket, the rate
        counted so far)."""
        bucket = math.floor(now / self.BUCKET_SEC) * self.BUCKET_SEC
        self._count += 1
        if bucket > self._last_bucket:
            current = self._count / (bucket - self._last_bucket)
            self.rate = current * self.SMOOTHING + self.rate * (1 - self.SMOOTHING)
            self._count = 0
            self._last_bucket = bucket
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


def _header(get: Callable[[str], object], name: str) -> object:
    """A header's value through a headers object's ``get`` (case-insensitive or not)."""
    try:
        value = get(name)
        return get(name.lower()) if value is None else value
    except Exception:  # a foreign headers object that misbehaves is no reason to fail
        return None


def _get(get: Callable[[str], object], *names: str) -> str:
    """The first of the headers ``names`` that has a value ("" when none has)."""
    for name in names:
        value = _header(get, name)
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        if isinstance(value, str) and value.strip():
            return value
    return ""


#: a number as ``float`` reads it (one dot at most): ``1.2.3`` is no number, not a crash
_FLOAT: Final = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_DURATION: Final = re.compile(
    rf"(?=.)(?:({_FLOAT})h)?(?:({_FLOAT})m(?!s))?(?:({_FLOAT})s)?(?:({_FLOAT})ms)?"
)
_POLICY_WINDOW: Final = re.compile(rf"w=({_FLOAT})(?![0-9.])")
_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ZERO: Final = re.compile(r"0+(?:\.0+)?")
#: a reset larger than this is an epoch time, not a delay (GitHub's ``x-ratelimit-reset``)
_EPOCH_FROM: Final = 1e9
#: the headers that say how many calls remain and when the window resets (the first one found)
_REMAINING: Final = (
    "RateLimit-Remaining",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining",
)
_RESET: Final = ("RateLimit-Reset", "x-ratelimit-reset-requests", "x-ratelimit-reset")


def _seconds(text: str, now_wall: float) -> float:
    """A reset value: delta seconds, an epoch time or a Go-style duration (``1m30s``, ``20ms``);
    0.0 when it is none of them."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        return value - now_wall if value >= _EPOCH_FROM else value
    match = _DURATION.fullmatch(text)
    if match is None:
        return 0.0
    hours, minutes, seconds, millis = map(float, match.groups("0"))
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _key(name: str) -> re.Pattern[str]:
    """The value of ``name=value`` in a structured header (``limit=100, remaining=0, reset=5``)."""
    return re.compile(rf"(?:^|[\s,;]){name}=({_FLOAT})(?![0-9.])")


#: a policy's quota: ``q=``, else ``limit=``, else (``RateLimit-Policy`` only) a leading number
_QUOTA: Final = (_key("q"), _key("limit"))
_LEADING: Final = re.compile(r"\A\s*([0-9]+(?:\.[0-9]+)?)")
#: the calls remaining and the reset in the combined ``RateLimit`` header
_REMAINING_FIELDS: Final = (_key("remaining"), _key("r"))
_RESET_FIELDS: Final = (_key("reset"), _key("t"))


def _first(text: str, *patterns: re.Pattern[str]) -> str:
    """The value the first matching pattern finds in ``text`` ("" when none matches)."""
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return ""


def _per_second(text: str, *quota: re.Pattern[str]) -> float | None:
    """Calls per second of a policy (``100;w=60``, ``"default";q=100;w=60``, ``limit=...;w=``):
    its quota (the first of ``quota`` found) over its window."""
    amount, window = _first(text, *quota), _first(text, _POLICY_WINDOW)
    if not amount or not window or float(window) <= 0:
        return None
    return float(amount) / float(window)


def _said(
    get: Callable[[str], object],
    names: tuple[str, ...],
    combined: str,
    fields: tuple[re.Pattern[str], ...],
) -> str:
    """A value from its own headers (the first one set), else from the combined one's fields."""
    return _get(get, *names) or _first(combined, *fields)


def _pause(get: Callable[[str], object], combined: str, now: float) -> float | None:
    """Seconds until the reset when no call remains, else None."""
    if not _ZERO.fullmatch(_said(get, _REMAINING, combined, _REMAINING_FIELDS).strip()):
        return None
    seconds = _seconds(_said(get, _RESET, combined, _RESET_FIELDS), now)
    return min(seconds, MAX_PAUSE_SEC) if seconds > 0 else None


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
    get = _attr(headers, "get")
    if not callable(get):
        return None, None
    combined = _get(get, "RateLimit")
    ceiling = _per_second(_get(get, "RateLimit-Policy"), *_QUOTA, _LEADING)
    if ceiling is None:
        ceiling = _per_second(combined, *_QUOTA)
    return ceiling, _pause(get, combined, time.time() if now_wall is None else now_wall)


def _headers_of(error: ReliabilityError) -> object:
    """The headers of the failed attempt's answer: ``exc.response.headers`` or ``exc.headers``."""
    cause = error.__cause__
    for holder in (_attr(cause, "response"), cause):
        headers = _attr(holder, "headers")
        if callable(_attr(headers, "get")):
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
        self._ceiling = math.inf if ceiling is None else ceiling
        self._header_ceiling = math.inf  # a RateLimit-Policy's rate, once one was seen
        self.throttles = 0
        self._last_cut = -math.inf

    def __repr__(self) -> str:
        shown = f"{self.rate:.3g}/s" if self.enabled else "unlimited"
        return f"AdaptiveRate({self.service_name!r}, {shown})"

    # --- admission -----------------------------------------------------------------------------

    def _try(self, deadline: float) -> float:
        """Take a token: 0.0 when taken, -1.0 when none comes before ``deadline``, else the
        seconds to sleep before trying again."""
        now = self._clock()
        with self._lock:
            if now < self._paused_until:
                wait = self._paused_until - now
            elif not self.enabled:
                return 0.0
            else:
                rate = max(self.rate, MIN_RATE)
                capacity = max(rate, 1.0)
                self._tokens = min(capacity, self._tokens + (now - self._filled_at) * rate)
                self._filled_at = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return 0.0
                wait = (1.0 - self._tokens) / rate
        return max(wait, MIN_SLEEP_SEC) if now + wait <= deadline else -1.0

    def acquire(self, max_wait: float) -> bool:
        """Take a token, waiting up to ``max_wait`` seconds; False when none comes in time."""
        deadline = self._clock() + max_wait
        while (pause := self._try(deadline)) > 0.0:
            self._sleep(pause)
        return pause == 0.0

    async def acquire_async(self, max_wait: float) -> bool:
        """The asyncio twin of :meth:`acquire`."""
        deadline = self._clock() + max_wait
        while (pause := self._try(deadline)) > 0.0:
            await self._sleep_async(pause)  # type: ignore[misc]
        return pause == 0.0

    # --- learning ------------------------------------------------------------------------------

    def on_attempt(self, error: ReliabilityError | None, latency: float = 0.0) -> None:
        """Learn from one attempt's outcome (None: it succeeded) that took ``latency`` s."""
        now = self._clock()
        if error is None:
            with self._lock:
                self._climb(now)
        else:
            self._failed(error, latency, now)

    def _failed(self, error: ReliabilityError, latency: float, now: float) -> None:
        """A failed attempt: its answer's headers and ``Retry-After`` are heeded, a throttle
        cuts the rate; any other failure moves it along the curve as a success does."""
        throttled = error.error_type is ExternalServiceError.RATE_LIMIT
        ceiling, pause = self._pushback(error, throttled)
        with self._lock:
            if ceiling is not None:
                self._header_ceiling = ceiling
            if pause is not None:
                self._paused_until = max(self._paused_until, now + pause)
            if throttled:
                self._throttled(latency, now)
            else:
                self._climb(now)

    def _pushback(
        self, error: ReliabilityError, throttled: bool
    ) -> tuple[float | None, float | None]:
        """(a policy's rate, seconds to pause) the failed attempt's answer asked for."""
        ceiling, pause = parse_rate_headers(_headers_of(error), self._wall())
        if throttled and error.retry_after is not None:
            pause = max(pause or 0.0, min(error.retry_after, MAX_PAUSE_SEC))
        return ceiling, pause

    def _climb(self, now: float) -> None:
        """An attempt that was not throttled: the rate moves along the curve (lock held)."""
        measured = self._clocker.record(now)
        if self.enabled:
            self.rate = self._capped(self._cubic.success(now), measured)

    def _throttled(self, latency: float, now: float) -> None:
        """A throttle (lock held): counted, and the rate cut, unless the attempt was sent before
        the last cut: it went out at the old rate and says nothing new, as TCP cuts its window
        once per round trip however many losses it sees."""
        self.throttles += 1
        measured = self._clocker.record(now)
        if now - latency >= self._last_cut:
            self.rate = self._capped(self._cut(measured, now), measured)

    def _cut(self, measured: float, now: float) -> float:
        """The CUBIC cut from the rate in use (lock held); the first one turns the bucket on."""
        self._last_cut = now
        if self.enabled:
            return self._cubic.throttled(min(measured, self.rate), now)
        self.enabled = True
        self._tokens = 0.0
        self._filled_at = now
        return self._cubic.throttled(measured, now)

    def _capped(self, new: float, measured: float) -> float:
        """``new`` within twice the measured rate, the ceilings and the floor."""
        new = min(new, MAX_RATE_ADJUST_SCALE * measured, self._ceiling, self._header_ceiling)
        return max(new, MIN_RATE)
