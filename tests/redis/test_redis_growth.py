"""Growing break durations on Redis: the grown open time lives in the shared record.

``d`` (the current opening's length, ms) and ``n`` (its level) are written by the script that
re-opens the circuit, so every process waits the same grown time; a lost record gets them back
from a process's mirror, and while Redis is down the mirror keeps growing on its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis_support import RedisServer

from otel_resilience import CircuitBreakerState, ReliabilityConfig
from otel_resilience._breakers import REJECTED, CircuitBreaker
from otel_resilience._breakers._redis import RedisCircuitBreaker
from otel_resilience._redis import COOLDOWN_SEC
from support import FakeClock

pytestmark = pytest.mark.integration

OPEN, HALF_OPEN = CircuitBreakerState.OPEN, CircuitBreakerState.HALF_OPEN


def _breaker(url: str, clock: Any = time.monotonic, **fields: Any) -> CircuitBreaker:
    config = ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url, CB_FAIL_THRESHOLD=1, **fields)
    breaker = RedisCircuitBreaker(
        "charge", 1, config.CB_RESET_SEC, service_name="payments", config=config, clock=clock
    )
    breaker.machine.rand = lambda: 0.0  # no jitter: exact durations
    return breaker


def _record(client: redis.Redis, breaker: CircuitBreaker) -> tuple[int, int]:
    """The shared record's (level, open ms)."""
    level, open_ms = client.hmget(breaker.backend.key, "n", "d")  # type: ignore[attr-defined]
    return int(level), int(open_ms)


def _fail_probe(breaker: CircuitBreaker) -> None:
    probe = breaker.try_acquire()
    assert probe.probe
    breaker.record_failure(probe)
    assert breaker.machine.state is OPEN


def test_every_process_waits_the_grown_time(redis_url: str, rclient: redis.Redis) -> None:
    fields = {"CB_RESET_SEC": 0.1, "CB_RESET_MULTIPLIER": 4}
    first, second = _breaker(redis_url, **fields), _breaker(redis_url, **fields)
    first.record_failure(first.try_acquire())
    assert _record(rclient, first) == (0, 100)
    time.sleep(0.12)

    _fail_probe(second)  # the second process's probe fails: 4 x 100 ms for everyone

    assert _record(rclient, first) == (1, 400)
    assert first.sync() is OPEN
    assert first.machine.level == 1
    until = first.status().seconds_until_probe
    assert until is not None
    assert 0.25 < until <= 0.4
    time.sleep(0.15)  # past the first open time, not the grown one
    assert first.try_acquire() is REJECTED
    assert second.try_acquire() is REJECTED
    time.sleep(0.26)
    probe = first.try_acquire()
    assert probe.probe
    first.record_success(probe)  # recovered: back to CB_RESET_SEC in the record
    assert _record(rclient, first) == (0, 100)
    assert second.sync() is CircuitBreakerState.CLOSED
    assert second.machine.level == 0


def test_a_lost_record_gets_the_grown_time_back_from_the_mirror(
    redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    breaker = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=2)
    breaker.record_failure(breaker.try_acquire())
    for _ in range(2):
        clock.advance(60)
        rclient.hincrby(breaker.backend.key, "o", -60_000)  # the server's time moves too
        time.sleep(0.002)
        _fail_probe(breaker)
    assert _record(rclient, breaker) == (2, 40_000)
    clock.advance(5)
    rclient.delete(breaker.backend.key)  # FLUSHALL, eviction, a restart

    assert breaker.try_acquire() is REJECTED  # written back: open for 35 s more

    assert _record(rclient, breaker) == (2, 40_000)
    assert breaker.machine.level == 2
    until = breaker.status().seconds_until_probe
    assert until == pytest.approx(35, abs=0.1)


def test_the_open_time_keeps_growing_locally_while_redis_is_down(
    redis_server: RedisServer, redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    breaker = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=3)
    breaker.record_failure(breaker.try_acquire())
    clock.advance(10)
    rclient.hincrby(breaker.backend.key, "o", -10_000)
    _fail_probe(breaker)
    assert breaker.machine.level == 1
    redis_server.stop()

    clock.advance(30)
    assert breaker.state is HALF_OPEN  # the local logic: the shared 30 s are over
    _fail_probe(breaker)  # failed locally: 90 s now

    assert breaker.machine.level == 2
    assert breaker.status().seconds_until_probe == pytest.approx(90)
    clock.advance(89)
    assert breaker.try_acquire() is REJECTED
    clock.advance(1)
    assert breaker.try_acquire().probe


def test_the_key_outlives_the_longest_open_time(redis_url: str, rclient: redis.Redis) -> None:
    breaker = _breaker(
        redis_url,
        CB_RESET_SEC=5,
        CB_RESET_MULTIPLIER=2,
        CB_RESET_MAX_SEC=300,
        REDIS_KEY_TTL_SEC=60,
    )
    breaker.record_failure(breaker.try_acquire())

    assert 599_000 < rclient.pttl(breaker.backend.key) <= 600_000  # twice the cap


def test_a_record_without_growth_fields_opens_for_the_reset_time(
    redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    breaker = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=2)
    breaker.record_failure(breaker.try_acquire())
    rclient.hdel(breaker.backend.key, "d", "n")  # a record written by an older version

    assert breaker.sync() is OPEN

    assert breaker.machine.level == 0
    assert breaker.status().seconds_until_probe == pytest.approx(10, abs=0.1)


def _outage(breaker: CircuitBreaker) -> None:
    """Redis fails for this process (a cool-down of local logic); the record stays as it is."""
    breaker.backend.store.mark_failed(ConnectionError("test outage"))  # type: ignore[attr-defined]


def test_growth_made_while_redis_was_away_is_merged_back(
    redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    breaker = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=3)
    other = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=3)
    breaker.record_failure(breaker.try_acquire())
    clock.advance(10)
    rclient.hincrby(breaker.backend.key, "o", -10_000)
    _fail_probe(breaker)  # shared: level 1, 30 s
    _outage(breaker)
    clock.advance(30)
    rclient.hincrby(breaker.backend.key, "o", -30_000)
    _fail_probe(breaker)  # locally: level 2, 90 s; the record still says level 1
    assert _record(rclient, breaker) == (1, 30_000)
    time.sleep(COOLDOWN_SEC + 0.05)

    assert breaker.try_acquire() is REJECTED  # merged: the higher level wins

    assert _record(rclient, breaker) == (2, 90_000)
    assert other.try_acquire() is REJECTED  # the shared 30 s are over, the grown 90 s are not
    assert other.machine.level == 2
    until = other.status().seconds_until_probe
    assert until == pytest.approx(90, abs=0.5)


def test_a_shared_open_of_a_higher_level_is_kept_on_merge(
    redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    breaker = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=2)
    other = _breaker(redis_url, clock, CB_RESET_SEC=10, CB_RESET_MULTIPLIER=2)
    breaker.record_failure(breaker.try_acquire())  # shared and local: level 0
    assert other.sync() is OPEN
    for opened in (10, 20):  # then another process's probes fail twice
        clock.advance(opened)
        rclient.hincrby(other.backend.key, "o", -opened * 1000)
        time.sleep(0.002)
        _fail_probe(other)
    assert _record(rclient, other) == (2, 40_000)
    breaker.backend.pending_sync = True  # as an outage leaves it: push the local state next

    assert breaker.try_acquire() is REJECTED  # its local OPEN of level 0 does not win

    assert _record(rclient, breaker) == (2, 40_000)
    assert breaker.machine.level == 2
    assert not breaker.backend.pending_sync


@pytest.mark.usefixtures("async_clients")
async def test_async_twins_grow_the_shared_open_time(redis_url: str, rclient: redis.Redis) -> None:
    fields = {"CB_RESET_SEC": 0.1, "CB_RESET_MULTIPLIER": 2, "CB_SLOW_CALL_SEC": 1.0}
    breaker, other = _breaker(redis_url, **fields), _breaker(redis_url, **fields)
    await breaker.record_failure_async(await breaker.try_acquire_async())
    await asyncio.sleep(0.12)
    await breaker.record_failure_async(await breaker.try_acquire_async())  # the probe fails
    assert _record(rclient, breaker) == (1, 200)
    await asyncio.sleep(0.22)
    probe = await other.try_acquire_async()
    assert probe.probe
    await other.record_success_async(probe, 2.0)  # a slow probe: no recovery either

    assert _record(rclient, breaker) == (2, 400)
    assert await breaker.try_acquire_async() is REJECTED
    assert breaker.machine.level == 2
