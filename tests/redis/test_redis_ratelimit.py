"""Shared rate limits on a real redis-server (several limiter objects stand for processes)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

import otel_resilience
from otel_resilience import ReliabilityConfig, ThrottledError, resilient_call_async
from otel_resilience._ratelimit import RedisRateLimiter
from otel_resilience._redis import get_store
from support import limiter_for

pytestmark = pytest.mark.integration


def _limiters(
    url: str, rate: str, n: int, prefix: str = "otel_resilience"
) -> list[RedisRateLimiter]:
    store = get_store(url, 1000)
    return [RedisRateLimiter("payments", rate, store, prefix) for _ in range(n)]


def test_rate_is_shared_by_every_limiter_of_the_service(redis_url: str) -> None:
    limiters = _limiters(redis_url, "5/minute", 3)

    taken = [limiter.acquire(0) for limiter in limiters for _ in range(3)]

    assert taken.count(True) == 5
    assert taken[:5] == [True] * 5  # in order: the first five hits, whichever the process


def test_limit_keys_are_namespaced_and_expire_with_the_window(
    redis_url: str, rclient: redis.Redis
) -> None:
    (limiter,) = _limiters(redis_url, "5/minute", 1, prefix="shop.prod")
    assert limiter.acquire(0)

    keys = rclient.keys("*")
    assert keys == [b"shop.prod:rl:LIMITER/payments/5/1/minute"]
    assert 0 < rclient.ttl(keys[0]) <= 60


def test_waiting_caller_gets_a_slot_freed_in_another_process(redis_url: str) -> None:
    first, second = _limiters(redis_url, "2/second", 2)
    assert first.acquire(0)
    assert first.acquire(0)
    assert not second.acquire(0)

    started = time.monotonic()
    assert second.acquire(max_wait_sec=2)
    waited = time.monotonic() - started

    assert 0.8 < waited < 1.5  # until the first hit left the 1 s window


def test_redis_backend_builds_a_shared_limiter(redis_url: str) -> None:
    config = ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=redis_url, RATE_LIMIT="3/second")

    limiter = limiter_for("payments", config)

    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.store is get_store(redis_url, config.REDIS_TIMEOUT_MS)


async def test_async_limiters_share_the_rate_with_sync_ones(async_clients: str) -> None:
    sync_limiter, async_limiter = _limiters(async_clients, "4/minute", 2)
    assert sync_limiter.acquire(0)

    taken = await asyncio.gather(*(async_limiter.acquire_async(0) for _ in range(5)))

    assert sorted(taken) == [False, False, True, True, True]
    assert not sync_limiter.acquire(0)
    assert async_limiter.store.errors == 0


async def test_async_caller_waits_for_the_shared_window(async_clients: str) -> None:
    first, second = _limiters(async_clients, "1/second", 2)
    assert await first.acquire_async(0)

    started = time.monotonic()
    assert not await second.acquire_async(0.5)  # the slot is 1 s away: fail at once
    assert time.monotonic() - started < 0.2
    assert await second.acquire_async(2)
    assert 0.8 < time.monotonic() - started < 1.5


async def test_resilient_call_async_is_throttled_by_the_shared_limit(async_clients: str) -> None:
    otel_resilience.configure(
        ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=async_clients, RATE_LIMIT="2/minute")
    )
    (other_process,) = _limiters(async_clients, "2/minute", 1)
    assert other_process.acquire(0)

    async def charge() -> str:
        return "charged"

    assert await resilient_call_async("payments", "charge", charge) == "charged"
    with pytest.raises(ThrottledError):
        await resilient_call_async("payments", "charge", charge)
