"""The Redis connection of the shared state: one pool per URL, timeouts, health and fallback.

Everything that talks to Redis goes through a :class:`RedisStore` (one per URL and timeout, cached
for the process). A store never raises: a command that fails or takes longer than
``REDIS_TIMEOUT_MS`` returns ``None``, counts ``resilience.state_store.errors``, logs once per
outage ("state store unreachable, falling back to local state") and makes the store
*unavailable* for a cool-down (:data:`COOLDOWN_SEC`), during which callers use their local
state without trying Redis at all. The first command that works after an outage logs "state
store back" and bumps :attr:`RedisStore.epoch`, which tells breakers to push their local state
(re-sync).

Only the server failing is an outage. Waiting for a free connection is not: each command takes
a slot first (:data:`MAX_CONNECTIONS` for the threads of a process, :data:`LOOP_MAX_CONNECTIONS`
per event loop, as many as the pool's connections, so the pool is never exhausted), waiting up
to :data:`POOL_WAIT_SEC` for one. A command that got no slot in time returns :data:`BUSY`,
which counts nothing and leaves the store available (the caller decides on its local mirror for
that one call); one that got its slot after another command found Redis failing gives it back
and falls back at once, so a burst of waiters does not wait out one timeout each.

Each asyncio event loop has its own client. It is closed when the loop shuts down its
asynchronous generators (``asyncio.run`` and ``asyncio.Runner`` do), and forgotten when the
loop is found closed, so running many short-lived loops does not pile up connections.

``redis`` (redis-py) is imported lazily: it is in the ``redis`` extra
(``pip install 'otel-resilience[redis]'``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from ._log import log_event
from ._redact import redact_text, redact_url, url_secrets

if TYPE_CHECKING:
    import redis
    import redis.asyncio


logger = logging.getLogger("otel_resilience")

#: seconds a store stays unavailable after a failed command before Redis is tried again
COOLDOWN_SEC: Final = 1.0
#: longest wait for a free connection (or REDIS_TIMEOUT_MS if longer). The wait queues behind
#: this process's own commands, each bounded by REDIS_TIMEOUT_MS, and a failure sends the
#: waiters to their local state: it is long only when the process itself is saturated (150
#: threads fighting for the GIL wait a few hundred ms)
POOL_WAIT_SEC: Final = 1.0
#: connections of the process's sync pool (a URL's ``?max_connections=`` wins)
MAX_CONNECTIONS: Final = 100
#: connections of each event loop's pool: one loop runs one command at a time, so a few
#: connections keep it busy, and a burst of tasks does not open (and time out) 100 at once
LOOP_MAX_CONNECTIONS: Final = 32


class _Busy(Enum):
    """The reply of a command that found no free connection in time (not an outage)."""

    BUSY = "BUSY"

    def __repr__(self) -> str:
        return "BUSY"


#: what :meth:`RedisStore.run` returns when every pooled connection stayed in use too long
BUSY: Final = _Busy.BUSY

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


class _LoopClient:
    """An event loop's asyncio client, its scripts, and the guard that closes it."""

    __slots__ = ("client", "dropped", "guard", "scripts", "slots")

    def __init__(self, client: redis.asyncio.Redis, slots: int) -> None:
        self.client = client
        self.slots = asyncio.Semaphore(slots)
        self.scripts: dict[str, Any] = {}
        self.dropped = False
        self.guard: AsyncGenerator[None, None] | None = None

    def script(self, source: str) -> Any:
        """The registered (EVALSHA) asyncio script of ``source``."""
        found = self.scripts.get(source)
        if found is None:
            found = self.scripts[source] = self.client.register_script(source)
        return found


async def _close_at_loop_shutdown(
    store: RedisStore, entry: _LoopClient
) -> AsyncGenerator[None, None]:
    """Suspended for the loop's lifetime; ``loop.shutdown_asyncgens()`` closes the client."""
    try:
        yield
    finally:
        if not entry.dropped:
            entry.guard = None  # this generator is the one closing: nothing left to finish
            await store._aclose_entry(entry)


class RedisStore:
    """A Redis server as seen by this process: pools, scripts and health.

    Thread-safe. The sync client shares one connection pool; each asyncio event loop gets its
    own client (redis.asyncio connections belong to the loop that opened them).
    """

    def __init__(
        self,
        url: str,
        timeout_ms: int,
        *,
        cooldown_sec: float = COOLDOWN_SEC,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        redis_mod = import_redis()
        self.url = url
        self.safe_url = redact_url(url)
        self._secrets = url_secrets(url)
        self._redis = redis_mod
        self.timeout_sec = timeout_ms / 1000
        self.cooldown_sec = cooldown_sec
        #: told the backend's name ("redis") at each failed command (telemetry counts them)
        self.on_error = on_error
        self.pool: redis.ConnectionPool = self._new_pool(redis_mod, url)
        # one slot per connection: a command waits for a slot, never for the pool (redis-py
        # 8 pools raise at once past max_connections, which is not the server failing)
        self._slots = threading.BoundedSemaphore(self.pool.max_connections)
        self._url_max_connections = self.pool.max_connections != MAX_CONNECTIONS
        #: longest wait for a free slot (seconds)
        self.pool_wait_sec = max(self.timeout_sec, POOL_WAIT_SEC)
        self._max_connections_error = redis_mod.exceptions.MaxConnectionsError
        self.client: redis.Redis = redis_mod.Redis(connection_pool=self.pool)
        self._lock = threading.Lock()
        self._scripts: dict[str, Any] = {}
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._down_until = 0.0  # time.monotonic() before which Redis is not tried
        self._failed_at = 0.0  # time.monotonic() of the last failed command
        self._outage = False
        #: bumped when the store comes back after an outage (holders of local state re-sync)
        self.epoch = 0
        self.errors = 0
        #: commands that found no free connection within ``pool_wait_sec`` (not errors)
        self.busy = 0

    def _new_pool(self, redis_mod: Any, url: str) -> redis.ConnectionPool:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # A stale pooled connection (the server restarted) is retried once on a new one; a
        # timeout is never retried, so one command costs at most about one REDIS_TIMEOUT_MS.
        self._pool_kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout_sec,
            "socket_connect_timeout": self.timeout_sec,
            "health_check_interval": 0,
            "max_connections": MAX_CONNECTIONS,
        }
        self._retry_errors = (redis_mod.exceptions.ConnectionError,)
        retry = Retry(NoBackoff(), 1, supported_errors=self._retry_errors)
        pool: redis.ConnectionPool = redis_mod.ConnectionPool.from_url(
            url, retry=retry, **self._pool_kwargs
        )
        return pool

    def __repr__(self) -> str:
        return f"RedisStore({self.safe_url!r}, in_outage={self._outage})"

    def scrub(self, text: str) -> str:
        """``text`` without this store's passwords (error messages may quote the URL)."""
        return redact_text(text, self._secrets)

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

    def failed_since(self, started: float) -> bool:
        """True when a command failed at or after ``started`` and Redis is not back yet."""
        return self._outage and self._failed_at >= started

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
            self._failed_at = time.monotonic()
            self._down_until = self._failed_at + self.cooldown_sec
        if self.on_error is not None:
            self.on_error("redis")
        if first:
            log_event(
                logger,
                logging.WARNING,
                "state store unreachable, falling back to local state (redis %s: %s: %s);"
                " retrying every %g s",
                self.safe_url,
                type(exc).__name__,
                self.scrub(str(exc)),
                self.cooldown_sec,
            )

    def mark_ok(self, sent: float) -> None:
        """Record a command sent at ``sent`` that worked: after an outage, when it was sent
        after the failure that began it, log it and start a re-sync epoch (the late reply of a
        command sent before is no sign that Redis is back)."""
        if self._outage:
            self._end_outage(sent)

    def _end_outage(self, sent: float) -> None:
        with self._lock:
            back = self._outage and sent >= self._failed_at
            if back:
                self._outage = False
                self.epoch += 1
        if back:
            log_event(
                logger,
                logging.WARNING,
                "state store back (redis %s), re-syncing local state",
                self.safe_url,
            )

    # --- commands ------------------------------------------------------------------------------

    def script(self, source: str) -> Any:
        """The registered (EVALSHA, reloaded after a restart) sync script of ``source``."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def run(self, source: str, keys: Sequence[str], args: Sequence[Any], failed: Any = None) -> Any:
        """Run a Lua script: its reply, ``failed`` when Redis failed (or is cooling down), or
        :data:`BUSY` when no connection became free in time."""
        if not self.available():
            return failed
        return self.call(lambda: self.script(source)(keys=list(keys), args=list(args)), failed)

    def call(self, command: Callable[[], Any], failed: Any = None) -> Any:
        """``command()`` on a free connection of the sync pool: its result, ``failed`` or
        :data:`BUSY` (for commands of other libraries on :attr:`pool`, e.g. ``limits``)."""
        slots = self._slots
        taken = False
        try:  # the slot is given back on every path, a timeout's interruption included
            taken = slots.acquire(blocking=False)
            if not taken:
                started = time.monotonic()
                taken = slots.acquire(timeout=self.pool_wait_sec)
                if not taken:
                    return self._busy()
                if self.failed_since(started):  # an outage began while we waited: go local
                    return failed
            sent = time.monotonic()
            reply = command()
        except Exception as exc:  # any failure of the store falls back; a call never fails
            return self._failed(exc, failed)
        finally:
            if taken:
                slots.release()
        self.mark_ok(sent)
        return reply

    def _busy(self) -> Any:
        self.busy += 1  # our own queue, not the server: no outage, nothing counted
        logger.debug("redis %s: no free connection within %g s", self.safe_url, self.pool_wait_sec)
        return BUSY

    def _failed(self, exc: Exception, failed: Any) -> Any:
        if isinstance(exc, self._max_connections_error):  # a command outside the slots
            return self._busy()
        self.mark_failed(exc)
        return failed

    def _loop_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        found = self._async_clients.get(loop)
        if found is None:
            candidate = self._new_loop_client()  # no connection yet: cheap if a race loses it
            with self._lock:
                self._forget_closed_loops()
                found = self._async_clients.setdefault(loop, candidate)
        return found

    def _new_loop_client(self) -> _LoopClient:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff

        retry = AsyncRetry(NoBackoff(), 1, supported_errors=self._retry_errors)
        size = self.pool.max_connections if self._url_max_connections else LOOP_MAX_CONNECTIONS
        kwargs = {**self._pool_kwargs, "max_connections": size}
        pool = aioredis.ConnectionPool.from_url(self.url, retry=retry, **kwargs)
        return _LoopClient(aioredis.Redis(connection_pool=pool), pool.max_connections)

    def _forget_closed_loops(self) -> None:
        """Drop the clients of loops closed without shutting down (they can be collected)."""
        for loop, entry in list(self._async_clients.items()):
            if loop.is_closed():
                del self._async_clients[loop]
                _finish_guard(entry)

    async def _guarded_loop_client(self) -> _LoopClient:
        """This event loop's client, with the guard that closes it at the loop's shutdown."""
        entry = self._loop_client()
        if entry.guard is None:
            # started in this loop: its shutdown_asyncgens() closes the client
            entry.guard = _close_at_loop_shutdown(self, entry)
            await entry.guard.asend(None)
        return entry

    async def run_async(
        self, source: str, keys: Sequence[str], args: Sequence[Any], failed: Any = None
    ) -> Any:
        """The asyncio twin of :meth:`run`, on this event loop's own client."""
        if not self.available():
            return failed
        try:
            entry = await self._guarded_loop_client()
        except Exception as exc:  # pragma: no cover - building a client does no I/O
            return self._failed(exc, failed)
        slots = entry.slots
        if slots.locked():
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.pool_wait_sec):
                    await slots.acquire()
            except TimeoutError:
                return self._busy()
            if self.failed_since(started):
                slots.release()
                return failed
        else:
            await slots.acquire()  # free: returns at once
        sent = time.monotonic()
        try:
            script = entry.script(source)
            # the socket timeouts bound the connect and each read (no wait_for: cancelling
            # redis-py mid-reply could leave a connection out of step with its replies)
            reply = await script(keys=list(keys), args=list(args))
        except Exception as exc:  # any failure of the store falls back; a call never fails
            return self._failed(exc, failed)
        finally:
            slots.release()
        self.mark_ok(sent)
        return reply

    @property
    def loop_clients(self) -> int:
        """Event loops with an asyncio client of this store (diagnostics, tests)."""
        return len(self._async_clients)

    async def aclose_loop_client(self) -> None:
        """Close the running loop's asyncio client (before the loop closes)."""
        found = self._async_clients.get(asyncio.get_running_loop())
        if found is not None:
            await self._aclose_entry(found)

    async def _aclose_entry(self, entry: _LoopClient) -> None:
        with self._lock:
            for loop, held in list(self._async_clients.items()):
                if held is entry:
                    del self._async_clients[loop]
        entry.dropped = True
        try:
            await entry.client.aclose(close_connection_pool=True)
        finally:
            _finish_guard(entry)

    def close(self) -> None:
        """Close the sync pool's connections."""
        self.pool.disconnect()


class Stores:
    """The process's stores, one per URL and timeout, created on first use and shared by
    breakers and limiters (connection pools are a per-process resource, like the signal
    machinery of timeouts). Failed commands are reported to ``on_error``: the runtime in use
    sets it to its telemetry's counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, int], RedisStore] = {}
        self.on_error: Callable[[str], None] | None = None

    def _report(self, backend: str) -> None:
        hook = self.on_error
        if hook is not None:
            hook(backend)

    def get(self, url: str, timeout_ms: int) -> RedisStore:
        """The store for ``url`` and ``timeout_ms``."""
        found = self._stores.get((url, timeout_ms))
        if found is not None:
            return found
        with self._lock:
            found = self._stores.get((url, timeout_ms))
            if found is None:
                found = RedisStore(url, timeout_ms, on_error=self._report)
                self._stores[(url, timeout_ms)] = found
            return found

    def all(self) -> list[RedisStore]:
        """Every store created so far."""
        return list(self._stores.values())

    def close(self) -> None:
        """Close and forget every store."""
        with self._lock:
            found = list(self._stores.values())
            self._stores.clear()
        for store in found:
            store.close()


_default_stores = Stores()


def default_stores() -> Stores:
    """The process's stores."""
    return _default_stores


def get_store(url: str, timeout_ms: int) -> RedisStore:
    """The process's store for ``url`` (created on first use; shared by breakers and limiters)."""
    return _default_stores.get(url, timeout_ms)


def stores() -> list[RedisStore]:
    """Every store created in this process."""
    return _default_stores.all()


def close_stores() -> None:
    """Close and forget every store (tests; applications shutting down)."""
    _default_stores.close()


def _finish_guard(entry: _LoopClient) -> None:
    """Close an entry's guard without its loop (so its finalizer never needs the loop)."""
    entry.dropped = True
    guard, entry.guard = entry.guard, None
    if guard is None:
        return
    closing = guard.aclose().__await__()
    try:
        next(closing)  # the guard's finally returns at once when the entry is dropped
    except StopIteration:
        pass
    else:  # pragma: no cover - the guard never awaits once dropped
        closing.close()


async def aclose_async_clients() -> None:
    """Close the running loop's asyncio clients of every store (call before the loop ends)."""
    for store in stores():
        await store.aclose_loop_client()
