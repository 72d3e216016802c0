"""Redis down, hung or restarted: calls keep working on local state, and sharing comes back."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from typing import Any

import pytest
import redis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis_support import RedisServer, free_port

import otel_resilience
from otel_resilience import (
    CircuitBreakerState,
    CircuitOpenError,
    ReliabilityConfig,
    ReliabilityError,
    ThrottledError,
    get_circuit_breaker_manager,
    resilient_call,
)
from otel_resilience._breakers import ADMITTED, REJECTED
from otel_resilience._breakers._redis import RedisCircuitBreaker
from otel_resilience._redis import COOLDOWN_SEC, RedisStore, get_store
from support import FakeClock, counter_points

pytestmark = pytest.mark.integration

ANY_SCRIPT = "return 1"

OPEN = CircuitBreakerState.OPEN


def _messages(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def _config(url: str, **fields: Any) -> ReliabilityConfig:
    return ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url, HTTP_RETRIES=1, **fields)


def _wait_for_cooldown() -> None:
    time.sleep(COOLDOWN_SEC + 0.05)


def test_calls_keep_working_while_redis_is_down_and_errors_are_counted_once_logged(
    redis_server: RedisServer,
    redis_url: str,
    metric_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="otel_resilience")
    otel_resilience.configure(_config(redis_url, RATE_LIMIT="1000/second"))
    assert resilient_call("payments", "charge", lambda: "ok") == "ok"
    redis_server.stop()
    results: list[object] = []

    def caller() -> None:
        results.extend(resilient_call("payments", "charge", lambda: "ok") for _ in range(50))

    started = time.perf_counter()
    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    assert results == ["ok"] * 200
    # At most one failed round trip per caller (the rest is the cool-down, no Redis at all):
    # a refused connection costs far less than REDIS_TIMEOUT_MS.
    assert elapsed < 1.0
    errors = counter_points(metric_reader, "resilience.state_store.errors")
    assert list(errors) == [(("resilience.state_store.backend", "redis"),)]
    assert 1 <= sum(errors.values()) <= 8  # breaker and limiter, per caller racing the first
    assert len(_messages(caplog, "state store unreachable")) == 1

    redis_server.start()
    _wait_for_cooldown()
    assert resilient_call("payments", "charge", lambda: "ok") == "ok"
    assert len(_messages(caplog, "state store back")) == 1
    assert len(_messages(caplog, "state store unreachable")) == 1


def test_hung_redis_falls_back_within_the_timeout(
    redis_server: RedisServer, redis_url: str
) -> None:
    timeout_ms = 50
    otel_resilience.configure(_config(redis_url, REDIS_TIMEOUT_MS=timeout_ms))
    assert resilient_call("payments", "charge", lambda: "warm") == "warm"  # pooled connection
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts nothing, answers nothing: a hung or slow server
    try:
        started = time.perf_counter()
        assert resilient_call("payments", "charge", lambda: "ok") == "ok"
        first = time.perf_counter() - started
        started = time.perf_counter()
        assert resilient_call("payments", "charge", lambda: "ok") == "ok"
        second = time.perf_counter() - started
    finally:
        os.kill(pid, signal.SIGCONT)

    assert timeout_ms / 1000 <= first < timeout_ms / 1000 + 0.25  # one timed-out round trip
    assert second < timeout_ms / 1000  # cooling down: Redis is not tried, no timeout to wait


def test_unreachable_redis_from_the_start_never_fails_a_call() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: connections are refused
    otel_resilience.configure(_config(url, CB_FAIL_THRESHOLD=2))

    def down() -> None:
        raise ConnectionError("down")

    assert resilient_call("payments", "charge", lambda: 1) == 1
    for _ in range(2):
        with pytest.raises(ReliabilityError):
            resilient_call("payments", "charge", down)
    with pytest.raises(CircuitOpenError):  # the local breaker still protects
        resilient_call("payments", "charge", down)


def test_breaker_opened_during_an_outage_is_pushed_to_redis_when_it_is_back(
    redis_server: RedisServer, redis_url: str, rclient: redis.Redis
) -> None:
    otel_resilience.configure(_config(redis_url, CB_FAIL_THRESHOLD=2, CB_RESET_SEC=60))

    def down() -> None:
        raise ConnectionError("down")

    redis_server.stop()
    for _ in range(2):
        with pytest.raises(ReliabilityError):
            resilient_call("payments", "charge", down)
    breaker = get_circuit_breaker_manager().get_breaker("payments", "charge")
    assert breaker.state is OPEN  # opened locally
    redis_server.start()  # empty: it knows nothing of the outage
    _wait_for_cooldown()

    with pytest.raises(CircuitOpenError):
        resilient_call("payments", "charge", down)

    assert rclient.hget(breaker.backend.key, "s") == b"1"  # re-synced: every process sees OPEN now
    other = RedisCircuitBreaker("charge", 2, 60, service_name="payments", config=breaker.config)
    assert other.try_acquire() == REJECTED
    pttl = rclient.pttl(breaker.backend.key)
    assert 0 < pttl <= 86_400_000


def test_failure_count_of_an_outage_is_merged_into_redis(
    redis_server: RedisServer, redis_url: str, rclient: redis.Redis
) -> None:
    config = _config(redis_url, CB_FAIL_THRESHOLD=5)
    breaker = RedisCircuitBreaker("charge", 5, 60, service_name="payments", config=config)
    breaker.record_failure(breaker.try_acquire())
    redis_server.stop()
    for _ in range(2):
        breaker.record_failure(breaker.try_acquire())
    assert breaker.failure_count == 3
    redis_server.start()
    _wait_for_cooldown()

    assert breaker.try_acquire() == ADMITTED

    assert rclient.hget(breaker.backend.key, "f") == b"3"


def test_local_fallback_moves_open_to_half_open_on_the_local_clock(
    redis_server: RedisServer, redis_url: str
) -> None:
    clock = FakeClock()
    config = _config(redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=30)
    breaker = RedisCircuitBreaker(
        "charge", 1, 30, service_name="payments", config=config, clock=clock
    )
    redis_server.stop()
    breaker.record_failure(breaker.try_acquire())
    assert breaker.state is OPEN

    clock.advance(30)

    assert breaker.state is CircuitBreakerState.HALF_OPEN
    assert breaker.status().state == "half_open"


def test_shared_rate_limit_falls_back_to_a_local_one(
    redis_server: RedisServer, redis_url: str
) -> None:
    otel_resilience.configure(_config(redis_url, RATE_LIMIT="5/minute"))
    redis_server.stop()

    for _ in range(5):
        assert resilient_call("payments", "charge", lambda: "ok") == "ok"
    with pytest.raises(ThrottledError) as caught:
        resilient_call("payments", "charge", lambda: "ok")

    assert caught.value.error_type.value == "throttled"
    assert get_store(redis_url, 50).errors >= 1


def test_after_a_cool_down_one_caller_tries_redis_and_the_others_stay_local() -> None:
    store = RedisStore(f"redis://user:secret@127.0.0.1:{free_port()}/0", 50, cooldown_sec=0.05)
    assert store.run(ANY_SCRIPT, ("k",), ()) is None  # refused: the outage starts
    assert [store.available(), store.available()] == [False, False]  # cooling down
    assert "secret" not in repr(store)

    time.sleep(0.06)

    assert [store.available(), store.available()] == [True, False]  # one trial per cool-down
    assert store.errors == 1
    assert store.in_outage


def test_a_store_reports_each_failed_command_to_its_on_error_callback(
    metric_reader: InMemoryMetricReader,
) -> None:
    reported: list[str] = []
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", 50, on_error=reported.append)
    assert store.run("return 1", (), ()) is None  # nothing listens on that port
    assert reported == ["redis"]
    assert store.errors == 1
    # the callback replaces the default one (which counts resilience.state_store.errors)
    assert counter_points(metric_reader, "resilience.state_store.errors") == {}
    store.close()


#: keeps Redis busy for 30 ms (within the store's 50 ms timeout)
BUSY_SCRIPT = """
local start = redis.call('TIME')
local t0 = start[1] * 1000000 + start[2]
while true do
    local now = redis.call('TIME')
    if now[1] * 1000000 + now[2] - t0 > 30000 then return 1 end
end
"""


async def test_a_late_reply_of_a_command_sent_before_the_outage_does_not_end_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the multi-process outage test (asyncio tasks): a command in flight when
    another one failed ended the outage when its reply came, so the next failure logged a
    second "state store unreachable" for one outage (and a second "back")."""
    store = RedisStore(redis_url, 50, cooldown_sec=30)
    assert await store.run_async(ANY_SCRIPT, ("k",), ()) == 1  # the loop's client is warm
    with caplog.at_level(logging.WARNING, logger="otel_resilience"):
        slow = asyncio.ensure_future(store.run_async(BUSY_SCRIPT, ("k",), (), failed="failed"))
        await asyncio.sleep(0.01)  # the busy script is running in Redis
        store.mark_failed(redis.ConnectionError("another command failed"))  # the outage
        assert await slow == 1  # the reply of the command sent before the failure
        assert store.in_outage  # ... is no sign that Redis is back
        assert store.epoch == 0
        await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert not any("state store back" in m for m in messages)
    await store.aclose_loop_client()
    store.close()
