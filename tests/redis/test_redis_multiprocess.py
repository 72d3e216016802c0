"""Several processes (spawned, like separate replicas) sharing breakers and rate limits in Redis."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis_workers
from redis_support import RedisServer
from redis_workers import ENDPOINT, SERVICE

from otel_resilience import ReliabilityConfig
from otel_resilience._breakers._redis import RedisCircuitBreaker

pytestmark = pytest.mark.integration

PROCESSES = 4
THREADS = 8
_ctx = multiprocessing.get_context("spawn")


def _run_workers(
    target: Callable[..., None],
    args: tuple[Any, ...],
    *,
    before_release: Callable[[], None] = lambda: None,
    while_running: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Start PROCESSES workers, release them together, collect their summaries."""
    barrier = _ctx.Barrier(PROCESSES + 1)
    queue = _ctx.Queue()
    processes = [
        _ctx.Process(target=target, args=(*args, barrier, queue)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        before_release()  # the workers wait at the barrier meanwhile
        barrier.wait(timeout=60)  # every worker is ready: all start together
        while_running()
        summaries = [queue.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():  # pragma: no cover - a hung worker
                process.kill()
    assert all(process.exitcode == 0 for process in processes)
    return summaries


def _total(summaries: list[dict[str, Any]], field: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for summary in summaries:
        total.update(summary[field])
    return total


@pytest.mark.parametrize("mode", ["sync", "async"], ids=["threads", "asyncio-tasks"])
def test_breaker_opens_once_for_all_processes_after_about_threshold_calls(
    redis_url: str, rclient: redis.Redis, mode: str
) -> None:
    threshold = 40
    summaries = _run_workers(
        redis_workers.breaker_storm, (redis_url, threshold, THREADS, mode, "hits")
    )
    hits = int(rclient.get("hits") or 0)
    # Each hit is a failure recorded in the shared count; once it reaches the threshold every
    # acquire is rejected, so only calls already in flight (one per other caller) can follow.
    # Without sharing each process would need `threshold` failures: 4 x 40 = 160 hits.
    slack = PROCESSES * THREADS - 1
    assert threshold <= hits <= threshold + slack
    assert _total(summaries, "outcomes")["failed"] == hits
    assert _total(summaries, "logs")["OPEN"] == 1  # one process won the transition
    assert [s["state"] for s in summaries] == ["open"] * PROCESSES
    assert all(s["outcomes"]["rejected"] == THREADS for s in summaries)
    assert [s["store_errors"] for s in summaries] == [0] * PROCESSES


@pytest.mark.parametrize("max_probes", [1, 2], ids=["one-probe", "two-probes"])
def test_half_open_probe_limit_holds_across_processes(
    redis_url: str, rclient: redis.Redis, max_probes: int
) -> None:
    reset_sec = 1.0
    config = ReliabilityConfig(
        STATE_BACKEND="redis",
        REDIS_URL=redis_url,
        CB_FAIL_THRESHOLD=1,
        CB_RESET_SEC=reset_sec,
        CB_HALF_OPEN_MAX_CALLS=max_probes,
    )
    opener = RedisCircuitBreaker(ENDPOINT, 1, reset_sec, service_name=SERVICE, config=config)
    opener.record_failure(opener.try_acquire())
    opened_at = time.monotonic()

    def wait_for_half_open() -> None:
        time.sleep(max(0.0, reset_sec - (time.monotonic() - opened_at)) + 0.05)

    summaries = _run_workers(
        redis_workers.probe_storm,
        (redis_url, reset_sec, max_probes, THREADS, "hits"),
        before_release=wait_for_half_open,
    )
    outcomes = _total(summaries, "outcomes")
    # 32 callers at once: exactly max_probes probes reach the dependency (4x that if each
    # process kept its own half-open count); they fail and the circuit opens again.
    assert int(rclient.get("hits") or 0) == max_probes, summaries
    assert outcomes == {"failed": max_probes, "rejected": PROCESSES * THREADS - max_probes}
    assert _total(summaries, "logs")["HALF_OPEN"] == 1
    assert rclient.hget(opener.backend.key, "s") == b"1"


@pytest.mark.parametrize("mode", ["sync", "async"], ids=["threads", "asyncio-tasks"])
def test_rate_limit_holds_across_processes(redis_url: str, rclient: redis.Redis, mode: str) -> None:
    rate, per_second, duration = "20/second", 20, 2.5
    summaries = _run_workers(redis_workers.rate_storm, (redis_url, rate, 4, duration, mode, "hits"))
    outcomes = _total(summaries, "outcomes")
    hits = int(rclient.get("hits") or 0)
    # A moving window admits at most 20 calls in any second, so 2.5 s (plus the workers'
    # start skew, well under 0.5 s) hold at most 3 windows: 60 calls, whatever the number of
    # processes (4 local limiters would admit 4x that). Tolerance: none above, 1/3 below.
    assert 2 * per_second <= hits <= 3 * per_second
    assert outcomes["ok"] == hits
    assert outcomes["throttled"] > 0
    assert set(outcomes) == {"ok", "throttled"}
    assert [s["store_errors"] for s in summaries] == [0] * PROCESSES


@pytest.mark.parametrize("mode", ["sync", "async"], ids=["threads", "asyncio-tasks"])
def test_stopping_redis_mid_run_fails_no_call_and_restart_restores_sharing(
    redis_server: RedisServer, redis_url: str, mode: str
) -> None:
    config = ReliabilityConfig(
        STATE_BACKEND="redis", REDIS_URL=redis_url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60
    )
    opened: list[float] = []

    def outage_then_open() -> None:
        time.sleep(0.5)
        redis_server.stop()  # every worker falls back to local state
        time.sleep(0.7)
        redis_server.start()  # empty: nothing was saved
        time.sleep(1.6)  # > the 1 s cool-down: every worker is talking to Redis again
        opener = RedisCircuitBreaker(ENDPOINT, 1, 60, service_name=SERVICE, config=config)
        opened.append(time.time())
        opener.record_failure(opener.try_acquire())
        assert opener.state.value == "open"

    summaries = _run_workers(
        redis_workers.steady_calls,
        (redis_url, 2, 3.5, mode),
        while_running=outage_then_open,
    )
    outcomes = _total(summaries, "outcomes")
    assert set(outcomes) == {"ok", "rejected"}  # no call failed because Redis did
    assert outcomes["ok"] > 100
    for summary in summaries:
        assert summary["store_errors"] >= 1
        assert summary["logs"]["store_down"] == 1  # logged once per outage
        assert summary["logs"]["store_back"] == 1
        # the breaker opened by another process after the restart reached this one
        assert summary["first_rejection"] is not None
        assert summary["first_rejection"] >= opened[0]
        assert summary["state"] == "open"
