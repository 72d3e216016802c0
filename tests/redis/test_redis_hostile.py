"""Redis under hostile conditions: an outage is an outage, nothing else is.

A busy pool is not an outage; a restart, FLUSHALL, eviction or deleted key does not forget an
open circuit; short-lived event loops do not pile up connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis_support import RedisServer

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ReliabilityConfig,
    ReliabilityError,
    get_circuit_breaker_manager,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._breakers import ADMITTED, REJECTED, Permit, probe_permit
from otel_resilience._breakers._redis import RedisCircuitBreaker, breaker_key
from otel_resilience._redis import BUSY, RedisStore, get_store
from support import counter_points, limiter_for

pytestmark = pytest.mark.integration

KEY = breaker_key("otel_resilience", "payments", "charge")
#: generous for a loaded CI host: these tests are about the pool, not about latency
TIMEOUT_MS = 250


def _config(url: str, **fields: Any) -> ReliabilityConfig:
    return ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url, HTTP_RETRIES=1, **fields)


def _breaker(config: ReliabilityConfig) -> RedisCircuitBreaker:
    """A breaker on the same key, standing for another process."""
    return RedisCircuitBreaker(
        "charge",
        config.CB_FAIL_THRESHOLD,
        config.CB_RESET_SEC,
        service_name="payments",
        config=config,
    )


def _open_elsewhere(config: ReliabilityConfig) -> None:
    """Another process opens the shared circuit: only Redis knows."""
    other = _breaker(config)
    for _ in range(config.CB_FAIL_THRESHOLD):
        other.record_failure(other.try_acquire())
    assert other.try_acquire() == REJECTED


def _no_outage(url: str, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture) -> None:
    store = get_store(url, TIMEOUT_MS)
    assert store.errors == 0
    assert not store.in_outage
    assert store.available()
    assert counter_points(reader, "resilience.state_store.errors") == {}
    assert not [r for r in caplog.records if "state store unreachable" in r.getMessage()]


def _connected_clients(client: redis.Redis, at_most: int, wait_sec: float = 3.0) -> int:
    """The server's client count, once it is at most ``at_most`` (or after ``wait_sec``)."""
    deadline = time.monotonic() + wait_sec
    while True:
        count = int(client.info("clients")["connected_clients"])
        if count <= at_most or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


@contextlib.contextmanager
def _every_connection_in_use(store: RedisStore) -> Iterator[None]:
    """As if every connection of the sync pool were busy (waits give up after 20 ms)."""
    store.pool_wait_sec = 0.02
    for _ in range(store.pool.max_connections):
        store._slots.acquire()
    try:
        yield
    finally:
        for _ in range(store.pool.max_connections):
            store._slots.release()


@contextlib.asynccontextmanager
async def _every_loop_connection_in_use(store: RedisStore) -> AsyncIterator[None]:
    """The same for the running event loop's pool."""
    store.pool_wait_sec = 0.02
    slots = store._loop_client().slots
    held = 0
    while not slots.locked():
        await slots.acquire()
        held += 1
    try:
        yield
    finally:
        for _ in range(held):
            slots.release()


# --- a busy pool is not an outage -------------------------------------------------------------


async def test_150_concurrent_async_calls_wait_for_connections_and_all_ask_redis(
    async_clients: str, metric_reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    url = async_clients
    config = _config(url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60, REDIS_TIMEOUT_MS=TIMEOUT_MS)
    otel_resilience.configure(config)
    _open_elsewhere(config)
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    go = asyncio.Event()

    async def one() -> str:
        await go.wait()
        try:
            return await resilient_call_async("payments", "charge", work)
        except CircuitOpenError:
            return "rejected"

    tasks = [asyncio.create_task(one()) for _ in range(150)]
    await asyncio.sleep(0)
    go.set()
    results = await asyncio.gather(*tasks)

    # every call read the shared OPEN state: none fell back to the local (closed) state
    assert results == ["rejected"] * 150
    assert calls == 0
    assert get_store(url, TIMEOUT_MS).busy == 0
    _no_outage(url, metric_reader, caplog)


def test_150_threads_at_once_wait_for_connections_and_all_ask_redis(
    redis_url: str, metric_reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60, REDIS_TIMEOUT_MS=TIMEOUT_MS)
    otel_resilience.configure(config)
    _open_elsewhere(config)
    barrier = threading.Barrier(150)
    results: list[str] = []
    called: list[int] = []

    def one() -> None:
        barrier.wait()
        for _ in range(5):
            try:
                resilient_call("payments", "charge", lambda: called.append(1))
                results.append("admitted")
            except CircuitOpenError:
                results.append("rejected")

    threads = [threading.Thread(target=one) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == ["rejected"] * 750
    assert called == []
    assert get_store(redis_url, TIMEOUT_MS).busy == 0
    _no_outage(redis_url, metric_reader, caplog)


def test_no_free_connection_in_time_decides_on_the_mirror_without_an_outage(
    redis_url: str,
    rclient: redis.Redis,
    metric_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = redis_url + "?max_connections=1"
    config = _config(url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60, REDIS_TIMEOUT_MS=TIMEOUT_MS)
    breaker = _breaker(config)
    transitions: list[str] = []
    breaker.add_listener(lambda _b, _old, new: transitions.append(new.value))
    store = breaker.backend.store
    with _every_connection_in_use(store):
        assert store.run("return 1", (KEY,), ()) is BUSY
        assert breaker.try_acquire() == ADMITTED  # the mirror is closed
        breaker.record_failure(ADMITTED)  # not recorded: no local opening either
        assert breaker.state.value == "closed"
        assert rclient.exists(KEY) == 0
    _open_elsewhere(config)
    assert breaker.try_acquire() == REJECTED  # mirrored OPEN from Redis
    with _every_connection_in_use(store):
        assert breaker.try_acquire() == REJECTED  # busy: the mirror (OPEN) decides
        breaker.record_success(ADMITTED)
        breaker.release(probe_permit(0))
        assert breaker.sync().value == "open"

    assert store.busy == 6
    assert transitions == []  # the other process made the only transition; none here
    assert not breaker.backend.pending_sync  # nothing to push: the shared state is still the truth
    _no_outage(url, metric_reader, caplog)


async def test_no_free_async_connection_in_time_is_no_outage_for_breakers_and_limits(
    async_clients: str, metric_reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    url = async_clients + "?max_connections=1"
    config = _config(url, RATE_LIMIT="1/minute", REDIS_TIMEOUT_MS=TIMEOUT_MS)
    breaker = _breaker(config)
    store = breaker.backend.store
    async with _every_loop_connection_in_use(store):
        assert await store.run_async("return 1", (KEY,), ()) is BUSY
        assert await breaker.try_acquire_async() == ADMITTED
        await breaker.record_failure_async(ADMITTED)
        limiter = limiter_for("payments", config)
        assert limiter is not None
        assert await limiter.acquire_async(0)  # the local limit decides
        assert limiter.acquire(0) is True  # the sync pool is free: the shared limit

    assert store.busy == 4
    _no_outage(url, metric_reader, caplog)
    await store.aclose_loop_client()


def test_no_free_connection_for_the_shared_limit_uses_the_local_one(
    redis_url: str, metric_reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_url + "?max_connections=1"
    config = _config(url, RATE_LIMIT="2/minute", REDIS_TIMEOUT_MS=TIMEOUT_MS)
    limiter = limiter_for("payments", config)
    assert limiter is not None
    store = get_store(url, TIMEOUT_MS)
    assert limiter.acquire(0)  # shared: 1 of 2
    with _every_connection_in_use(store):
        assert [limiter.acquire(0), limiter.acquire(0), limiter.acquire(0)] == [True, True, False]

    assert store.busy == 3
    assert limiter.acquire(0)  # shared again: 2 of 2
    assert not limiter.acquire(0)
    _no_outage(url, metric_reader, caplog)


# --- lost state is written back ---------------------------------------------------------------


def _lose(loss: str, server: RedisServer, client: redis.Redis) -> None:
    if loss == "restart":
        server.stop()
        server.start()  # same port, empty
    elif loss == "flushall":
        client.flushall()
    elif loss == "delete":
        client.delete(KEY)
    else:  # eviction: a memory limit below what is used, a volatile policy, one write
        client.config_set("maxmemory-policy", "volatile-ttl")
        client.config_set("maxmemory", "1")
        try:
            client.set("trigger", "x")
        except redis.exceptions.ResponseError:  # OOM: evicting every volatile key did not do
            pass
        finally:
            client.config_set("maxmemory", "0")
            client.config_set("maxmemory-policy", "noeviction")
    assert client.exists(KEY) == 0


def _second_process_permit(url: str) -> Permit:
    code = (
        "from otel_resilience import ReliabilityConfig;"
        "from otel_resilience._breakers._redis import RedisCircuitBreaker;"
        f"c = ReliabilityConfig(STATE_BACKEND='redis', REDIS_URL={url!r});"
        "b = RedisCircuitBreaker('charge', 2, 60, service_name='payments', config=c);"
        "print(int(b.try_acquire().admitted), b.backend.store.errors)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    permit, errors = done.stdout.split()
    assert errors == "0"
    return ADMITTED if int(permit) else REJECTED


@pytest.mark.parametrize("loss", ["restart", "flushall", "delete", "eviction"])
def test_open_circuit_lost_by_redis_is_written_back_and_keeps_rejecting(
    redis_server: RedisServer,
    redis_url: str,
    rclient: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    loss: str,
) -> None:
    otel_resilience.configure(_config(redis_url, CB_FAIL_THRESHOLD=2, CB_RESET_SEC=60))
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ReliabilityError):
            resilient_call("payments", "charge", down)
    assert rclient.hget(KEY, "s") == b"1"
    _lose(loss, redis_server, rclient)
    rclient = redis_server.client()  # a restart closed the old connection
    rclient.config_resetstat()

    with pytest.raises(CircuitOpenError):
        resilient_call("payments", "charge", down)

    assert len(calls) == 2  # the dependency was not called again
    assert rclient.hget(KEY, "s") == b"1"
    assert rclient.hget(KEY, "f") == b"2"
    assert 0 < rclient.pttl(KEY) <= 86_400_000
    evalsha = rclient.info("commandstats")["cmdstat_evalsha"]
    assert evalsha["calls"] - evalsha.get("failed_calls", 0) == 1  # no extra round trip
    restored = [r for r in caplog.records if "shared state was missing" in r.getMessage()]
    assert len(restored) == 1
    assert "wrote back OPEN" in restored[0].getMessage()
    other = _breaker(get_circuit_breaker_manager().get_breaker("payments", "charge").config)
    assert other.try_acquire() == REJECTED
    status = other.status()
    assert status.seconds_until_probe is not None
    assert 50 < status.seconds_until_probe <= 60  # it kept how long ago it opened
    assert _second_process_permit(redis_url) == REJECTED
    assert get_store(redis_url, 50).errors == 0
    rclient.close()


async def test_async_call_writes_back_a_flushed_open_circuit(
    async_clients: str, rclient: redis.Redis
) -> None:
    otel_resilience.configure(_config(async_clients, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60))

    async def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ReliabilityError):
        await resilient_call_async("payments", "charge", down)
    rclient.flushall()

    with pytest.raises(CircuitOpenError):
        await resilient_call_async("payments", "charge", down)

    assert rclient.hget(KEY, "s") == b"1"


def test_a_failure_counted_into_a_new_key_by_another_process_does_not_hide_the_loss(
    redis_url: str, rclient: redis.Redis
) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=3, CB_RESET_SEC=60)
    opener = _breaker(config)
    for _ in range(3):
        opener.record_failure(opener.try_acquire())
    rclient.flushall()
    newcomer = _breaker(config)  # its mirror is closed: it cannot know
    newcomer.record_failure(newcomer.try_acquire())
    assert rclient.hmget(KEY, "s", "f", "o") == [b"0", b"1", b"0"]

    assert opener.try_acquire() == REJECTED  # a record that never opened: written back

    assert rclient.hget(KEY, "s") == b"1"
    assert newcomer.try_acquire() == REJECTED


def test_half_open_circuit_lost_by_redis_is_written_back_half_open(
    redis_url: str, rclient: redis.Redis
) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.2)
    prober = _breaker(config)
    prober.record_failure(prober.try_acquire())
    time.sleep(0.25)
    assert prober.try_acquire().probe  # this process probes: its mirror is HALF_OPEN
    rclient.flushall()

    assert prober.try_acquire().probe  # a new half-open period with a probe of its own

    assert rclient.hget(KEY, "s") == b"2"
    assert _breaker(config).try_acquire() == REJECTED  # the probe limit holds again


@pytest.mark.parametrize(
    "operation",
    [
        lambda b: b.record_failure(ADMITTED),  # a late failure of a call admitted before
        lambda b: b.release(probe_permit(0)),  # a permit given back
    ],
    ids=["failure", "release"],
)
def test_every_script_writes_back_a_lost_open_circuit(
    redis_url: str, rclient: redis.Redis, operation: Callable[[RedisCircuitBreaker], None]
) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60)
    breaker = _breaker(config)
    breaker.record_failure(breaker.try_acquire())
    rclient.delete(KEY)

    operation(breaker)

    assert rclient.hget(KEY, "s") == b"1"
    assert breaker.state.value == "open"
    assert _breaker(config).try_acquire() == REJECTED


def test_forced_open_breaker_is_never_written_back_for_the_others(
    redis_url: str, rclient: redis.Redis
) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=3)
    operator = _breaker(config)
    in_flight = operator.try_acquire()
    operator.force_open()  # an operator drains this process only

    operator.record_failure(in_flight)  # a call admitted before fails afterwards

    assert rclient.hmget(KEY, "s", "o") == [b"0", b"0"]  # counted, not opened for all
    assert _breaker(config).try_acquire() == ADMITTED
    assert operator.try_acquire() == REJECTED


def test_closed_breaker_does_not_write_back_anything(redis_url: str, rclient: redis.Redis) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=3)
    breaker = _breaker(config)
    breaker.record_failure(breaker.try_acquire())
    rclient.delete(KEY)  # lost one failure of a closed breaker: nothing worth restoring

    assert breaker.try_acquire() == ADMITTED

    assert rclient.exists(KEY) == 0


# --- event loops do not leak connections --------------------------------------------------------


async def _calls(n: int) -> list[str]:
    async def work() -> str:
        await asyncio.sleep(0)
        return "ok"

    return list(
        await asyncio.gather(*(resilient_call_async("payments", "charge", work) for _ in range(n)))
    )


def test_200_asyncio_runs_leave_no_connection_open(redis_url: str, rclient: redis.Redis) -> None:
    otel_resilience.configure(_config(redis_url))
    before = _connected_clients(rclient, at_most=1)

    for _ in range(200):
        assert asyncio.run(_calls(3)) == ["ok"] * 3

    assert _connected_clients(rclient, at_most=before) == before
    assert get_store(redis_url, 50).loop_clients == 0


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_loop_closed_without_shutdown_is_forgotten_and_its_connections_released(
    redis_url: str, rclient: redis.Redis
) -> None:
    otel_resilience.configure(_config(redis_url))
    before = _connected_clients(rclient, at_most=1)
    store = get_store(redis_url, 50)
    for _ in range(3):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(_calls(2)) == ["ok", "ok"]
        loop.close()  # no shutdown_asyncgens(): nothing could close the client in the loop
        del loop
    assert store.loop_clients == 1  # each new loop's first call forgot the closed ones

    assert asyncio.run(_calls(1)) == ["ok"]  # the next loop's first call forgets closed ones
    gc.collect()

    assert store.loop_clients == 0
    assert _connected_clients(rclient, at_most=before) == before


def test_loops_still_running_keep_their_clients_when_another_loop_ends(
    redis_url: str, rclient: redis.Redis
) -> None:
    otel_resilience.configure(_config(redis_url))
    before = _connected_clients(rclient, at_most=1)
    store = get_store(redis_url, 50)
    alive = asyncio.new_event_loop()
    assert alive.run_until_complete(_calls(2)) == ["ok", "ok"]

    assert asyncio.run(_calls(1)) == ["ok"]  # registers, then closes, its own client only

    assert store.loop_clients == 1
    assert alive.run_until_complete(_calls(1)) == ["ok"]  # its client still works
    alive.run_until_complete(alive.shutdown_asyncgens())  # what asyncio.run does at the end
    alive.close()
    assert store.loop_clients == 0
    assert _connected_clients(rclient, at_most=before) == before


def test_explicit_close_before_the_loop_ends_still_works(
    redis_url: str, rclient: redis.Redis
) -> None:
    otel_resilience.configure(_config(redis_url))
    before = _connected_clients(rclient, at_most=1)

    async def main() -> None:
        await _calls(2)
        await otel_resilience._redis.aclose_async_clients()
        assert get_store(redis_url, 50).loop_clients == 0
        await _calls(1)  # a new client for the same loop, closed at shutdown

    asyncio.run(main())

    assert get_store(redis_url, 50).loop_clients == 0
    assert _connected_clients(rclient, at_most=before) == before


def test_busy_success_after_failures_and_busy_window_trip_record_nothing(
    redis_url: str, rclient: redis.Redis
) -> None:
    url = redis_url + "?max_connections=1"
    breaker = _breaker(_config(url, CB_FAIL_THRESHOLD=5))
    breaker.record_failure(breaker.try_acquire())
    window = _breaker(
        _config(url, CB_MODE="count", CB_WINDOW_SIZE=2, CB_MIN_CALLS=2, CB_FAILURE_RATE_THRESHOLD=1)
    )
    window.record_failure(window.try_acquire())
    store = breaker.backend.store
    with _every_connection_in_use(store):
        breaker.record_success(ADMITTED)  # would reset the shared failure count: busy
        window.record_failure(ADMITTED)  # the window trips: opening it for all is busy

    assert store.busy == 2
    assert rclient.hget(KEY, "f") == b"1"
    assert window.state.value == "closed"  # not opened locally either
    window.record_failure(window.try_acquire())  # the window still trips: now it is shared
    assert rclient.hget(KEY, "s") == b"1"


def test_a_full_pool_used_outside_the_slots_is_busy_too(redis_url: str) -> None:
    store = get_store(redis_url, 50)

    def full() -> None:
        raise redis.exceptions.MaxConnectionsError("Too many connections")

    assert store.call(full) is BUSY

    assert store.busy == 1
    assert store.errors == 0
    assert not store.in_outage


def test_an_interrupted_command_gives_its_connection_back(redis_url: str) -> None:
    class Interrupted(BaseException):  # what a timeout's interruption looks like
        pass

    def interrupted() -> None:
        raise Interrupted

    store = get_store(redis_url + "?max_connections=1", 50)
    store.pool_wait_sec = 0.02
    for _ in range(3):
        with pytest.raises(Interrupted):
            store.call(interrupted)

    assert store.run("return 1", (KEY,), ()) == 1  # the one slot is free again
    assert store.busy == 0


def test_waiters_go_local_at_once_when_redis_failed_while_they_waited(redis_url: str) -> None:
    store = get_store(redis_url, 50)
    replies: list[object] = []
    with _every_connection_in_use(store):
        store.pool_wait_sec = 5
        waiter = threading.Thread(target=lambda: replies.append(store.run("return 1", (KEY,), ())))
        waiter.start()
        time.sleep(0.05)  # waiting for a slot
        store.mark_failed(ConnectionError("another command found Redis down"))
    started = time.perf_counter()
    waiter.join()

    assert replies == [None]  # fell back without sending anything
    assert time.perf_counter() - started < 1
    assert store.errors == 1  # the other command's failure only


async def test_async_waiters_go_local_at_once_when_redis_failed_while_they_waited(
    async_clients: str,
) -> None:
    store = get_store(async_clients, 50)
    async with _every_loop_connection_in_use(store):
        store.pool_wait_sec = 5
        waiter = asyncio.create_task(store.run_async("return 1", (KEY,), ()))
        await asyncio.sleep(0.05)
        store.mark_failed(ConnectionError("another command found Redis down"))

    assert await asyncio.wait_for(waiter, 1) is None
    assert store.errors == 1


def test_hung_redis_under_a_burst_costs_each_caller_about_one_timeout(
    redis_server: RedisServer, redis_url: str
) -> None:
    otel_resilience.configure(_config(redis_url))

    async def timed() -> float:
        started = time.perf_counter()
        await resilient_call_async("payments", "charge", lambda: asyncio.sleep(0, "ok"))
        return time.perf_counter() - started

    async def burst() -> list[float]:
        await asyncio.gather(*(timed() for _ in range(40)))  # open the loop's connections
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # hung: answers nothing
        try:
            return list(await asyncio.gather(*(timed() for _ in range(300))))
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)

    durations = asyncio.run(burst())

    # the first commands time out (50 ms); the others waiting for a connection then go local
    # instead of each waiting out another timeout in turn (that took 1 s for the last ones)
    assert max(durations) < 0.05 + 0.4


def test_store_logs_busy_at_debug_level_only(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_resilience")
    store = get_store(redis_url + "?max_connections=1", 50)
    with _every_connection_in_use(store):
        assert store.run("return 1", (KEY,), ()) is BUSY

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.DEBUG,
            f"redis {redis_url}?max_connections=1: no free connection within 0.02 s",
        )
    ]
    assert repr(BUSY) == "BUSY"
