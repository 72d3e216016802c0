"""The Redis connection of the shared state: one pool per URL, timeouts, health and fallback.

Everything that talks to Redis goes through a :class:`RedisStore` (one per URL and timeout, cached
for the process). A store never raises: a command that fails or takes longer than
``REDIS_TIMEOUT_MS`` returns ``None``, counts ``resilience.state_store.errors``, logs once per
outage ("state store unreachable, falling back to local state") and makes the store
*unavailable* for a cool-down (:data:`COOLDOWN_SEC`), during which callers use their local
state without trying Redis at all. The first command that works after an outage logs "state
store back" and bumps :attr:`RedisStore.epoch`, which tells breakers to push their local state
(re-sync).

``redis`` (redis-py) is imported lazily: it is in the ``redis`` extra
(``pip install 'otel-resilience[redis]'``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ._telemetry import get_telemetry

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["COOLDOWN_SEC", "RedisStore", "close_stores", "get_store", "import_redis"]

logger = logging.getLogger("otel_resilience")

#: seconds a store stays unavailable after a failed command before Redis is tried again
COOLDOWN_SEC: Final = 1.0

_INSTALL_HINT: Final = (
    "the redis state backend and shared rate limits need the 'redis' and 'limits' packages:"
    " pip install 'otel-resilience[redis]'"
)


def import_redis() -> Any:
    """The ``redis`` module, or an ImportError that says which extra to install."""
    try:
        import redis
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return redis


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class RedisStore:
    """A Redis server as seen by this process: pools, scripts and health.

    Thread-safe. The sync client shares one connection pool; each asyncio event loop gets its
    own client (redis.asyncio connections belong to the loop that opened them).
    """

    def __init__(self, url: str, timeout_ms: int, *, cooldown_sec: float = COOLDOWN_SEC) -> None:
        redis_mod = import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.timeout_sec = timeout_ms / 1000
        self.cooldown_sec = cooldown_sec
        # A stale pooled connection (the server restarted) is retried once on a new one; a
        # timeout is never retried, so one command costs at most about one REDIS_TIMEOUT_MS.
        self._pool_kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout_sec,
            "socket_connect_timeout": self.timeout_sec,
            "health_check_interval": 0,
        }
        self._retry_errors = (redis_mod.exceptions.ConnectionError,)
        retry = Retry(NoBackoff(), 1, supported_errors=self._retry_errors)
        self.pool: redis.ConnectionPool = redis_mod.ConnectionPool.from_url(
            url, retry=retry, **self._pool_kwargs
        )
        self.client: redis.Redis = redis_mod.Redis(connection_pool=self.pool)
        self._lock = threading.Lock()
        self._scripts: dict[str, Any] = {}
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, dict[str, Any]]
        ] = weakref.WeakKeyDictionary()
        self._down_until = 0.0  # time.monotonic() before which Redis is not tried
        self._outage = False
        #: bumped when the store comes back after an outage (holders of local state re-sync)
        self.epoch = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"RedisStore({_redact(self.url)!r}, in_outage={self._outage})"

    # --- health --------------------------------------------------------------------------------

    def available(self) -> bool:
        """False during the cool-down after a failure: use local state, do not try Redis.

        When a cool-down ends, one caller gets True (the trial) and the others keep their local
        state for another cool-down unless the trial works: an outage costs each process one
        timed-out round trip per cool-down, not one per caller.
        """
        if not self._outage:
            return True
        if time.monotonic() < self._down_until:
            return False
        return self._claim_trial()

    def _claim_trial(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._outage and now < self._down_until:
                return False  # another caller is trying
            self._down_until = now + self.cooldown_sec
            return True

    @property
    def in_outage(self) -> bool:
        """True from a failed command until the next one that works."""
        return self._outage

    def mark_failed(self, exc: BaseException) -> None:
        """Record a failed command: count it, log the first of an outage, start a cool-down."""
        with self._lock:
            self.errors += 1
            first = not self._outage
            self._outage = True
            self._down_until = time.monotonic() + self.cooldown_sec
        get_telemetry().count_state_store_error("redis")
        if first:
            logger.warning(
                "state store unreachable, falling back to local state (redis %s: %s: %s);"
                " retrying every %g s",
                _redact(self.url),
                type(exc).__name__,
                exc,
                self.cooldown_sec,
            )

    def mark_ok(self) -> None:
        """Record a command that worked (after an outage: log it and start a re-sync epoch)."""
        if self._outage:
            self._end_outage()

    def _end_outage(self) -> None:
        with self._lock:
            back, self._outage = self._outage, False
            if back:
                self.epoch += 1
        if back:
            logger.warning("state store back (redis %s), re-syncing local state", _redact(self.url))

    # --- commands ------------------------------------------------------------------------------

    def script(self, source: str) -> Any:
        """The registered (EVALSHA, reloaded after a restart) sync script of ``source``."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def run(self, source: str, keys: Sequence[str], args: Sequence[Any], failed: Any = None) -> Any:
        """Run a Lua script: its reply, or ``failed`` when Redis failed (or is cooling down)."""
        if not self.available():
            return failed
        try:
            reply = self.script(source)(keys=list(keys), args=list(args))
        except Exception as exc:  # any failure of the store falls back; a call never fails
            self.mark_failed(exc)
            return failed
        self.mark_ok()
        return reply

    def _async_client(self) -> tuple[redis.asyncio.Redis, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        found = self._async_clients.get(loop)
        if found is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry as AsyncRetry
            from redis.backoff import NoBackoff

            retry = AsyncRetry(NoBackoff(), 1, supported_errors=self._retry_errors)
            pool = aioredis.ConnectionPool.from_url(self.url, retry=retry, **self._pool_kwargs)
            found = (aioredis.Redis(connection_pool=pool), {})
            self._async_clients[loop] = found
        return found

    async def run_async(
        self, source: str, keys: Sequence[str], args: Sequence[Any], failed: Any = None
    ) -> Any:
        """The asyncio twin of :meth:`run`, on this event loop's own client."""
        if not self.available():
            return failed
        try:
            client, scripts = self._async_client()
            script = scripts.get(source)
            if script is None:
                script = scripts[source] = client.register_script(source)
            # the socket timeouts bound the connect and each read (no wait_for: cancelling
            # redis-py mid-reply could leave a connection out of step with its replies)
            reply = await script(keys=list(keys), args=list(args))
        except Exception as exc:  # any failure of the store falls back; a call never fails
            self.mark_failed(exc)
            return failed
        self.mark_ok()
        return reply

    async def aclose_loop_client(self) -> None:
        """Close the running loop's asyncio client (before the loop closes)."""
        loop = asyncio.get_running_loop()
        found = self._async_clients.pop(loop, None)
        if found is not None:
            await found[0].aclose(close_connection_pool=True)

    def close(self) -> None:
        """Close the sync pool's connections."""
        self.pool.disconnect()


_stores: dict[tuple[str, int], RedisStore] = {}
_stores_lock = threading.Lock()


def get_store(url: str, timeout_ms: int) -> RedisStore:
    """The process's store for ``url`` (created on first use; shared by breakers and limiters)."""
    found = _stores.get((url, timeout_ms))
    if found is not None:
        return found
    with _stores_lock:
        found = _stores.get((url, timeout_ms))
        if found is None:
            found = _stores[(url, timeout_ms)] = RedisStore(url, timeout_ms)
        return found


def stores() -> list[RedisStore]:
    """Every store created in this process."""
    return list(_stores.values())


def close_stores() -> None:
    """Close and forget every store (tests; applications shutting down)."""
    with _stores_lock:
        found = list(_stores.values())
        _stores.clear()
    for store in found:
        store.close()


async def aclose_async_clients() -> None:
    """Close the running loop's asyncio clients of every store (call before the loop ends)."""
    for store in stores():
        await store.aclose_loop_client()
