"""Rate limiting per service, on the ``limits`` library (moving window).

A service whose config sets ``RATE_LIMIT`` (``limits`` notation: ``"100/second"``,
``"10 per second"``, ``"600 per 1 minute"``) gets one limiter per process:

* ``STATE_BACKEND=memory``: a local limiter (``limits.storage.MemoryStorage``), the rate holds
  per process;
* ``STATE_BACKEND=redis``: a shared limiter (``limits.storage.RedisStorage`` on the same
  connection pool as the breakers, keys ``{REDIS_KEY_PREFIX}:rl:LIMITER/{service}/...``), the
  rate holds across every process. When Redis fails the limiter falls back to a local one with
  the same rate (so each process allows the whole rate until Redis is back), counted and logged
  like the breakers' fallback (see :mod:`._redis`).

The moving window is exact (no burst of twice the rate at a window boundary) and costs one
round trip per admitted call on Redis; a refused attempt costs a second one to learn when the
window frees up (asyncio callers use ``redis.asyncio`` with the same scripts and keys). The
timestamps are the processes' wall clocks (``limits`` computes them
client-side), so hosts sharing a limit should be NTP-synced.

A call over the limit waits for a slot up to ``RATE_LIMIT_MAX_WAIT_SEC`` (sleeping until the
window frees up, never longer than the time left) and otherwise fails at once with
``throttled``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final, Protocol

from ._clock import Clock, SystemClock
from ._config import ReliabilityConfig
from ._rates import _import_limits, parse_rate

if TYPE_CHECKING:
    from ._redis import RedisStore


#: shortest sleep between two tries of a waiting call
_MIN_SLEEP_SEC = 0.001


class RateLimiter(Protocol):
    """Admits calls at a configured rate."""

    def acquire(self, max_wait_sec: float) -> bool:
        """Take a slot, waiting up to ``max_wait_sec``; False when none came in time."""
        ...

    async def acquire_async(self, max_wait_sec: float) -> bool:
        """The asyncio twin of :meth:`acquire` (waits with ``asyncio.sleep``)."""
        ...

    def idle(self) -> bool:
        """Whether nothing is held in the window (the limiter can be dropped and rebuilt)."""
        ...


def _wall() -> float:
    return time.time()


class _Waiting:
    """The waiting loop shared by both limiters: ``_try()`` says (taken, seconds to wait)."""

    rate: str
    _clock: Clock

    def _try(self) -> tuple[bool, float]:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _try_async(self) -> tuple[bool, float]:
        return self._try()  # in memory: nothing to wait for

    def acquire(self, max_wait_sec: float) -> bool:
        """Take a slot, waiting up to ``max_wait_sec``; False when none came in time."""
        clock = self._clock
        deadline = clock.monotonic() + max_wait_sec
        while True:
            taken, wait = self._try()
            if taken:
                return True
            left = deadline - clock.monotonic()
            if left <= 0 or wait > left:  # no slot frees up in time: fail now, not later
                return False
            clock.sleep(max(wait, _MIN_SLEEP_SEC))

    async def acquire_async(self, max_wait_sec: float) -> bool:
        """The asyncio twin of :meth:`acquire` (the event loop runs while it waits)."""
        clock = self._clock
        deadline = clock.monotonic() + max_wait_sec
        while True:
            taken, wait = await self._try_async()
            if taken:
                return True
            left = deadline - clock.monotonic()
            if left <= 0 or wait > left:
                return False
            await clock.sleep_async(max(wait, _MIN_SLEEP_SEC))


class LocalRateLimiter(_Waiting):
    """A rate limit for this process alone: a moving window of the hits' times, on the
    runtime's clock (so a test's fake clock moves the window too)."""

    def __init__(self, service_name: str, rate: str, *, clock: Clock | None = None) -> None:
        item = parse_rate(rate)  # the setting's one parser (``limits``')
        self._clock = clock or SystemClock()
        self.service_name = service_name
        self.rate = rate
        self._amount = int(item.amount)
        self._window = float(item.get_expiry())
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalRateLimiter({self.service_name!r}, {self.rate!r})"

    def _expire(self, now: float) -> deque[float]:
        """The hits still in the window (lock held)."""
        hits = self._hits
        horizon = now - self._window
        while hits and hits[0] <= horizon:
            hits.popleft()
        return hits

    def _try(self) -> tuple[bool, float]:
        now = self._clock.monotonic()
        with self._lock:
            hits = self._expire(now)
            if len(hits) < self._amount:
                hits.append(now)
                return True, 0.0
            return False, max(0.0, hits[0] + self._window - now)

    def idle(self) -> bool:
        """No slot taken in the window: a new limiter would behave the same (safe to drop)."""
        with self._lock:
            return not self._expire(self._clock.monotonic())


class RedisRateLimiter(_Waiting):
    """A rate limit shared by every process through Redis, with a local fallback."""

    def __init__(
        self,
        service_name: str,
        rate: str,
        store: RedisStore,
        key_prefix: str,
        *,
        clock: Clock | None = None,
    ) -> None:
        limits = _import_limits()
        self._clock = clock or SystemClock()
        self.service_name = service_name
        self.rate = rate
        self.store = store
        self._item = parse_rate(rate)
        storage = limits.storage.RedisStorage(
            store.url, connection_pool=store.pool, key_prefix=f"{key_prefix}:rl"
        )
        self.storage = storage
        self._limiter = limits.strategies.MovingWindowRateLimiter(storage)
        self._local = LocalRateLimiter(service_name, rate, clock=clock)
        from ._redis import BUSY

        self._busy = BUSY  # a reply meaning "no free connection in time": the local limit decides

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self.service_name!r}, {self.rate!r}, {self.store!r})"

    def idle(self) -> bool:
        """The shared window lives in Redis: only the local fallback's state would be lost."""
        return self._local.idle()

    def _try(self) -> tuple[bool, float]:
        if self.store.available():
            # on a free connection of the store's pool; Redis failed (or none was free in
            # time): the local limiter decides
            reply = self.store.call(self._shared_try, failed=_FAILED)
            if reply is not _FAILED and reply is not self._busy:
                return reply  # type: ignore[no-any-return]
        return self._local._try()

    def _shared_try(self) -> tuple[bool, float]:
        if self._limiter.hit(self._item, self.service_name):
            return True, 0.0
        stats = self._limiter.get_window_stats(self._item, self.service_name)
        return False, max(0.0, float(stats.reset_time) - _wall())

    async def _try_async(self) -> tuple[bool, float]:
        """:meth:`_try` on ``redis.asyncio``, with the ``limits`` scripts and keys."""
        if self.store.available():
            key = self.storage.prefixed_key(self._item.key_for(self.service_name))
            amount, expiry = self._item.amount, self._item.get_expiry()
            now = _wall()
            acquired = await self.store.run_async(
                self.storage.SCRIPT_ACQUIRE_MOVING_WINDOW,
                (key,),
                (now, amount, expiry, 1),
                failed=_FAILED,
            )
            if acquired is not _FAILED and acquired is not self._busy:
                if acquired:
                    return True, 0.0
                window = await self.store.run_async(
                    self.storage.SCRIPT_MOVING_WINDOW,
                    (key,),
                    (now - expiry, amount),
                    failed=_FAILED,
                )
                if window is not _FAILED and window is not self._busy:
                    oldest = float(window[0]) if window else now
                    return False, max(0.0, oldest + expiry - _wall())
        return self._local._try()


_FAILED: Final = object()  # a store reply meaning "Redis failed" (nil is a script's "no")


def rate_limiter_settings(config: ReliabilityConfig) -> tuple[object, ...] | None:
    """What a limiter is built from (None: no limit): other settings can change without
    losing its window."""
    if config.RATE_LIMIT is None:
        return None
    return (
        config.RATE_LIMIT,
        config.STATE_BACKEND,
        config.REDIS_URL,
        config.REDIS_TIMEOUT_MS,
        config.REDIS_KEY_PREFIX,
    )


def build_rate_limiter(service_name: str, config: ReliabilityConfig, clock: Clock) -> RateLimiter:
    """The limiter of a service, waiting on ``clock``."""
    rate = config.RATE_LIMIT
    assert rate is not None
    if config.STATE_BACKEND == "redis" and config.REDIS_URL is not None:
        from ._redis import get_store

        store = get_store(config.REDIS_URL, config.REDIS_TIMEOUT_MS)
        return RedisRateLimiter(service_name, rate, store, config.REDIS_KEY_PREFIX, clock=clock)
    return LocalRateLimiter(service_name, rate, clock=clock)
