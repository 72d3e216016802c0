"""RedisCircuitBreaker against a real redis-server.

Several breaker objects on one key stand for several processes: each keeps its own local mirror
and listeners, exactly as separate processes would, and they share the state in Redis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis_support import RedisServer

import otel_resilience
from otel_resilience import (
    CircuitBreakerState,
    CircuitOpenError,
    ConfigError,
    ReliabilityConfig,
    ReliabilityError,
    get_circuit_breaker_manager,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._breakers import ADMITTED, REJECTED, CircuitBreaker
from otel_resilience._breakers._redis import RedisBackend, RedisCircuitBreaker, breaker_key
from support import FakeClock

pytestmark = pytest.mark.integration

CLOSED, OPEN, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
)


def _config(url: str, **fields: Any) -> ReliabilityConfig:
    return ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url, **fields)


class _Fleet:
    """``n`` breakers on one key (one per pretend process), each with a transition log."""

    def __init__(self, url: str, n: int, **fields: Any) -> None:
        config = _config(url, **fields)
        self.breakers = [
            RedisCircuitBreaker(
                "charge",
                config.CB_FAIL_THRESHOLD,
                config.CB_RESET_SEC,
                service_name="payments",
                config=config,
            )
            for _ in range(n)
        ]
        self.transitions: list[list[tuple[str, str]]] = [[] for _ in range(n)]
        for breaker, log in zip(self.breakers, self.transitions, strict=True):
            breaker.add_listener(lambda _b, old, new, log=log: log.append((old.value, new.value)))

    def __getitem__(self, index: int) -> RedisCircuitBreaker:
        return self.breakers[index]


def _fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.try_acquire())


def test_failures_of_all_processes_add_up_and_only_the_opener_fires(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 3, CB_FAIL_THRESHOLD=3)
    _fail(fleet[0], 2)
    _fail(fleet[1])  # the third failure, in another process: it opens the shared breaker

    assert fleet.transitions == [[], [("closed", "open")], []]
    assert fleet[2].try_acquire() == REJECTED  # learns the state on its next round trip
    assert fleet[2].state is OPEN
    assert fleet[2].status().failure_count == 3
    assert fleet.transitions[2] == []  # a mirror update is not a transition of this process


def test_healthy_call_costs_one_round_trip_and_writes_nothing(
    redis_url: str, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaker = _Fleet(redis_url, 1)[0]
    trips: list[str] = []
    real_run = breaker.backend.store.run
    monkeypatch.setattr(
        breaker.backend.store,
        "run",
        lambda source, keys, args: trips.append(source) or real_run(source, keys, args),
    )
    for _ in range(5):
        permit = breaker.try_acquire()
        breaker.record_success(permit, 0.01)

    assert len(trips) == 5  # the acquire only; a success with nothing to reset is free
    assert rclient.exists(breaker.backend.key) == 0  # a closed breaker without failures has no key


def test_success_resets_the_shared_failure_count(redis_url: str, rclient: redis.Redis) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=3)
    _fail(fleet[0], 2)
    assert rclient.hget(fleet[0].backend.key, "f") == b"2"

    permit = fleet[1].try_acquire()
    assert fleet[1].failure_count == 2  # mirrored from the acquire
    fleet[1].record_success(permit)
    _fail(fleet[0], 2)  # 2 again, not 4: still closed

    assert fleet[0].try_acquire() == ADMITTED
    assert fleet[0].state is CLOSED
    assert rclient.hget(fleet[0].backend.key, "f") == b"2"


@pytest.mark.parametrize("max_probes", [1, 3], ids=["one-probe", "three-probes"])
def test_half_open_admits_max_probes_across_processes(redis_url: str, max_probes: int) -> None:
    fleet = _Fleet(
        redis_url, 4, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.1, CB_HALF_OPEN_MAX_CALLS=max_probes
    )
    _fail(fleet[0])
    time.sleep(0.12)  # the reset timeout runs on the server's clock

    permits = [b.try_acquire() for b in fleet.breakers for _ in range(2)]

    assert sum(p.probe for p in permits) == max_probes
    assert permits.count(REJECTED) == 8 - max_probes
    half_opened = [log for log in fleet.transitions if ("open", "half_open") in log]
    assert len(half_opened) == 1  # exactly one process won OPEN -> HALF_OPEN


def test_successful_probes_close_for_every_process(redis_url: str, rclient: redis.Redis) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.1, CB_HALF_OPEN_MAX_CALLS=2)
    _fail(fleet[0])
    time.sleep(0.12)
    first, second = fleet[0].try_acquire(), fleet[1].try_acquire()
    assert first.probe
    assert second.probe

    fleet[0].record_success(first)
    assert fleet[0].state is HALF_OPEN  # one success of the two needed
    fleet[1].record_success(second)

    # a closed record, not a deleted key: a missing key means Redis lost the state
    assert rclient.hmget(fleet[0].backend.key, "s", "f", "p", "k") == [b"0", b"0", b"0", b"0"]
    assert 0 < rclient.pttl(fleet[0].backend.key) <= 86_400_000
    assert fleet.transitions[1][-1] == ("half_open", "closed")
    assert fleet[0].try_acquire() == ADMITTED
    assert fleet[0].state is CLOSED


def test_failed_probe_opens_again_for_everyone(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.1)
    _fail(fleet[0])
    time.sleep(0.12)
    probe = fleet[1].try_acquire()
    assert probe.probe

    fleet[1].record_failure(probe)

    assert fleet.transitions[1] == [("open", "half_open"), ("half_open", "open")]
    assert fleet[0].try_acquire() == REJECTED
    status = fleet[0].status()
    assert status.state == "open"
    assert status.seconds_until_probe is not None
    assert 0.05 < status.seconds_until_probe <= 0.1


def test_released_probe_lets_another_process_probe(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.1)
    _fail(fleet[0])
    time.sleep(0.12)
    probe = fleet[0].try_acquire()
    assert fleet[1].try_acquire() == REJECTED

    fleet[0].release(probe)  # e.g. a client error: neither success nor failure

    assert fleet[1].try_acquire().probe


def test_probe_of_a_dead_process_is_given_up_after_a_reset_period(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.1)
    _fail(fleet[0])
    time.sleep(0.12)
    assert fleet[0].try_acquire().probe  # ... and that process dies with its permit
    assert fleet[1].try_acquire() == REJECTED

    time.sleep(0.12)

    assert fleet[1].try_acquire().probe


@pytest.mark.parametrize(
    ("ttl_sec", "reset_sec", "expected_ttl_sec"),
    [(100, 5, 100), (10, 30, 60)],
    ids=["configured-ttl", "at-least-twice-the-reset-timeout"],
)
def test_keys_are_namespaced_and_expire(
    redis_url: str, rclient: redis.Redis, ttl_sec: int, reset_sec: float, expected_ttl_sec: int
) -> None:
    config = _config(
        redis_url, REDIS_KEY_PREFIX="shop.prod", REDIS_KEY_TTL_SEC=ttl_sec, CB_RESET_SEC=reset_sec
    )
    breaker = RedisCircuitBreaker(
        "v1/charge", 1, reset_sec, service_name="pay:ments", config=config
    )
    _fail(breaker)

    assert breaker.backend.key == "shop.prod:cb:pay%3Aments:v1%2Fcharge"
    assert rclient.keys("*") == [breaker.backend.key.encode()]
    assert (
        expected_ttl_sec * 1000 - 1000
        < rclient.pttl(breaker.backend.key)
        <= expected_ttl_sec * 1000
    )


def test_expired_key_of_a_long_open_breaker_lets_one_probe_through(
    redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    config = _config(redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=30, REDIS_KEY_TTL_SEC=60)
    breaker = RedisCircuitBreaker(
        "charge", 1, 30, service_name="payments", config=config, clock=clock
    )
    _fail(breaker)
    clock.advance(61)
    rclient.delete(breaker.backend.key)  # what the TTL does to an abandoned breaker

    probe = breaker.try_acquire()  # written back as open long ago: half-open at once

    assert probe.probe
    breaker.record_success(probe)
    assert breaker.state is CLOSED
    assert rclient.hget(breaker.backend.key, "s") == b"0"


def test_reset_clears_the_shared_state(redis_url: str, rclient: redis.Redis) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1)
    _fail(fleet[0])
    assert fleet[1].try_acquire() == REJECTED  # its mirror says OPEN now

    fleet[0].reset()

    assert rclient.hmget(fleet[0].backend.key, "s", "f") == [b"0", b"0"]  # a closed record
    assert fleet[1].try_acquire() == ADMITTED  # not mistaken for a lost key and written back
    assert fleet[1].state is CLOSED
    assert rclient.hget(fleet[0].backend.key, "s") == b"0"


def test_sync_reads_the_shared_state_without_taking_a_permit(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1)
    _fail(fleet[0])
    assert fleet[1].state is CLOSED  # nothing read yet

    assert fleet[1].sync() is OPEN
    assert fleet[1].status().state == "open"


def test_window_mode_rates_are_local_but_the_trip_is_shared(
    redis_url: str, rclient: redis.Redis
) -> None:
    fleet = _Fleet(
        redis_url,
        2,
        CB_MODE="count",
        CB_WINDOW_SIZE=4,
        CB_MIN_CALLS=4,
        CB_FAILURE_RATE_THRESHOLD=0.5,
    )
    for outcome in ("ok", "fail", "ok"):
        permit = fleet[0].try_acquire()
        if outcome == "ok":
            fleet[0].record_success(permit)
        else:
            fleet[0].record_failure(permit)
    assert rclient.exists(fleet[0].backend.key) == 0  # nothing shared before the trip

    _fail(fleet[0])  # 2 failures in 4 calls: rate 0.5 trips

    assert fleet.transitions[0] == [("closed", "open")]
    assert fleet[1].try_acquire() == REJECTED


def test_manual_states_are_per_process(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 3, CB_FAIL_THRESHOLD=1)
    fleet[0].force_open()
    assert fleet[0].try_acquire() == REJECTED
    assert fleet[1].try_acquire() == ADMITTED

    fleet[1].disable()
    _fail(fleet[2])  # opens the shared breaker
    assert fleet[1].try_acquire() == ADMITTED  # disabled: never rejects, records nothing
    fleet[0].metrics_only()
    assert fleet[0].try_acquire() == ADMITTED  # shared state is open, but metrics only
    assert fleet[0].state is OPEN


def test_missing_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisCircuitBreaker("charge", config=ReliabilityConfig())


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://"],
    ids=["http", "no-scheme", "no-host"],
)
def test_bad_redis_url_fails_at_config_load(url: str) -> None:
    env = {"RELIABILITY_STATE_BACKEND": "redis", "RELIABILITY_REDIS_URL": url}
    with pytest.raises(ConfigError, match="RELIABILITY_REDIS_URL"):
        ReliabilityConfig.from_env(env)


def test_redis_backend_from_the_environment_shares_breakers(
    redis_url: str, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELIABILITY_STATE_BACKEND", "redis")
    monkeypatch.setenv("RELIABILITY_REDIS_URL", redis_url)
    monkeypatch.setenv("CB_FAIL_THRESHOLD", "2")
    otel_resilience.reset()

    def down() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ReliabilityError):
            resilient_call("payments", "charge", down, max_retries=1)
    with pytest.raises(CircuitOpenError) as caught:
        resilient_call("payments", "charge", down)

    breaker = get_circuit_breaker_manager().get_breaker("payments", "charge")
    assert isinstance(breaker.backend, RedisBackend)
    assert rclient.hget(breaker_key("otel_resilience", "payments", "charge"), "s") == b"1"
    assert caught.value.retry_after is not None
    assert 59 < caught.value.retry_after <= 60


# --- asyncio ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("async_clients")
async def test_async_twins_share_state_with_sync_processes(redis_url: str) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=2, CB_RESET_SEC=0.1)
    for _ in range(2):
        await fleet[0].record_failure_async(await fleet[0].try_acquire_async())

    assert fleet.transitions[0] == [("closed", "open")]
    assert fleet[1].try_acquire() == REJECTED  # a sync process sees it
    await asyncio.sleep(0.12)
    probe = await fleet[0].try_acquire_async()
    assert probe.probe
    assert await fleet[1].try_acquire_async() == REJECTED
    await fleet[0].release_async(probe)
    probe = await fleet[1].try_acquire_async()
    await fleet[1].record_success_async(probe)
    assert fleet[0].try_acquire() == ADMITTED
    assert fleet.transitions[1] == [("half_open", "closed")]


@pytest.mark.usefixtures("async_clients")
async def test_concurrent_async_acquires_respect_the_probe_limit(redis_url: str) -> None:
    # 20 connections opened at once: the asyncio handshakes can take longer than the default
    # 50 ms on a busy machine, which would (correctly) fall back to local state
    fleet = _Fleet(
        redis_url,
        4,
        CB_FAIL_THRESHOLD=1,
        CB_RESET_SEC=0.1,
        CB_HALF_OPEN_MAX_CALLS=2,
        REDIS_TIMEOUT_MS=2000,
    )
    await fleet[0].record_failure_async(await fleet[0].try_acquire_async())
    await asyncio.sleep(0.12)

    permits = await asyncio.gather(*(b.try_acquire_async() for b in fleet.breakers * 5))

    assert sum(p.probe for p in permits) == 2
    assert permits.count(REJECTED) == 18
    assert fleet[0].backend.store.errors == 0


@pytest.mark.usefixtures("async_clients")
async def test_resilient_call_async_uses_the_shared_breaker(
    redis_url: str, rclient: redis.Redis
) -> None:
    otel_resilience.configure(_config(redis_url, CB_FAIL_THRESHOLD=2, HTTP_RETRIES=1))

    async def down() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ReliabilityError):
            await resilient_call_async("payments", "charge", down)
    with pytest.raises(CircuitOpenError):
        await resilient_call_async("payments", "charge", down)
    assert rclient.hget(breaker_key("otel_resilience", "payments", "charge"), "s") == b"1"


# --- edges: the mirror, malformed replies, fallback of each operation ---------------------------


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "OK",
        [1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, "x"],
        [3, 0, 0, 0, 0, 0],
        [1, 5, 0, 0, 0, 0],
        [1, 0, -1, 0, 0, 0],
        [1, 0, 0, 0, 0, 2],
    ],
    ids=[
        "nil",
        "string",
        "short",
        "not-a-number",
        "bad-permit",
        "bad-state",
        "negative",
        "bad-restored",
    ],
)
def test_malformed_acquire_reply_falls_back_to_local_state(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, reply: object
) -> None:
    breaker = _Fleet(redis_url, 1, CB_FAIL_THRESHOLD=1)[0]
    monkeypatch.setattr(breaker.backend.store, "run", lambda source, keys, args: reply)

    assert breaker.try_acquire() == ADMITTED  # the local (closed) breaker decides

    assert breaker.backend.store.errors == (0 if reply is None else 1)
    assert breaker.backend.pending_sync


def test_mirror_reads_half_open_once_the_reset_timeout_passed_locally(
    redis_url: str, rclient: redis.Redis
) -> None:
    clock = FakeClock()
    config = _config(redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=30)
    breaker = RedisCircuitBreaker(
        "charge", 1, 30, service_name="payments", config=config, clock=clock
    )
    _fail(breaker)
    assert breaker.state is OPEN

    clock.advance(30)

    assert breaker.state is HALF_OPEN  # what the next acquire will find (no round trip yet)
    assert rclient.hget(breaker.backend.key, "s") == b"1"


def test_late_success_while_open_records_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = _Fleet(redis_url, 2, CB_FAIL_THRESHOLD=1)
    permit = fleet[0].try_acquire()  # admitted while closed ...
    _fail(fleet[1])
    fleet[0].sync()  # ... and the breaker opened meanwhile
    trips: list[str] = []
    monkeypatch.setattr(fleet[0].backend.store, "run", lambda *args: trips.append("run"))

    fleet[0].record_success(permit)

    assert trips == []


def test_each_operation_falls_back_while_redis_is_down(
    redis_server: RedisServer, redis_url: str
) -> None:
    fleet = _Fleet(redis_url, 1, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=0.05, CB_HALF_OPEN_MAX_CALLS=2)
    breaker = fleet[0]
    redis_server.stop()

    _fail(breaker)
    assert breaker.state is OPEN
    time.sleep(0.06)
    first, second = breaker.try_acquire(), breaker.try_acquire()
    assert first.probe
    assert second.probe  # the local half-open logic
    breaker.release(first)
    breaker.record_success(second)
    assert breaker.try_acquire().probe  # the released slot
    breaker.reset()

    assert breaker.state is CLOSED
    assert fleet.transitions[0] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert breaker.backend.pending_sync


def test_window_trip_while_redis_is_down_opens_locally(
    redis_server: RedisServer, redis_url: str
) -> None:
    fleet = _Fleet(
        redis_url,
        1,
        CB_MODE="count",
        CB_WINDOW_SIZE=2,
        CB_MIN_CALLS=2,
        CB_FAILURE_RATE_THRESHOLD=1.0,
    )
    redis_server.stop()

    _fail(fleet[0], 2)

    assert fleet.transitions[0] == [("closed", "open")]
    assert fleet[0].try_acquire() == REJECTED


def test_window_closes_with_the_shared_breaker(redis_url: str) -> None:
    fleet = _Fleet(
        redis_url,
        2,
        CB_MODE="count",
        CB_WINDOW_SIZE=2,
        CB_MIN_CALLS=2,
        CB_FAILURE_RATE_THRESHOLD=1.0,
        CB_RESET_SEC=0.05,
    )
    _fail(fleet[0], 2)
    assert fleet[1].try_acquire() == REJECTED
    time.sleep(0.06)
    fleet[0].record_success(fleet[0].try_acquire())  # the probe closes it

    assert fleet[1].try_acquire() == ADMITTED  # the mirror closes, the window starts empty
    fleet[1].record_failure(ADMITTED)
    assert fleet[1].state is CLOSED  # one failure in a fresh window of 2: below MIN_CALLS


@pytest.mark.usefixtures("async_clients")
async def test_async_manual_states_need_no_round_trip(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = _Fleet(redis_url, 2)
    fleet[0].force_open()
    fleet[1].disable()
    trips: list[str] = []

    async def run_async(*args: object, **kwargs: object) -> None:
        trips.append("run")

    for breaker in fleet.breakers:
        monkeypatch.setattr(breaker.backend.store, "run_async", run_async)

    assert await fleet[0].try_acquire_async() == REJECTED
    assert await fleet[1].try_acquire_async() == ADMITTED
    await fleet[1].record_failure_async(ADMITTED)
    await fleet[1].record_success_async(ADMITTED)
    assert fleet[0].sync() is OPEN
    assert trips == []


def test_repr_of_a_redis_breaker_names_its_key(redis_url: str) -> None:
    config = ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=redis_url)
    breaker = RedisCircuitBreaker("charge", service_name="payments", config=config)
    assert repr(breaker) == (
        "CircuitBreaker(service_name='payments', endpoint='charge', state=closed,"
        " failure_count=0, key='otel_resilience:cb:payments:charge')"
    )
    assert breaker.async_io is True


async def test_releasing_a_non_probe_permit_asynchronously_costs_no_round_trip(
    async_clients: str,
) -> None:
    config = ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=async_clients)
    breaker = RedisCircuitBreaker("charge", service_name="payments", config=config)
    permit = await breaker.try_acquire_async()
    runs: list[object] = []
    store = breaker.backend.store
    real = store.run_async

    async def counting(*args: object, **kwargs: object) -> object:
        runs.append(args)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    store.run_async = counting  # type: ignore[method-assign]
    await breaker.release_async(permit)
    assert runs == []
    assert breaker.state is CircuitBreakerState.CLOSED
