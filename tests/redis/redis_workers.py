"""What the spawned worker processes of the multi-process tests run.

Each worker configures the library like an application instance would (``configure``), waits at
a barrier shared with the other workers, hammers one (service, endpoint) from several threads or
asyncio tasks, and puts a summary dict on a queue. The dependency counts its hits in Redis
(``INCR`` on a key of the test), so the parent sees the total across processes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

import redis

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ReliabilityConfig,
    ReliabilityError,
    ThrottledError,
    resilient_call,
    resilient_call_async,
)

SERVICE = "payments"
ENDPOINT = "charge"


class _Transitions(logging.Handler):
    """Counts the breaker's "transitioning to X" and the store's fallback log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "transitioning to " in message:
            self.counts[message.rsplit(" ", 1)[-1]] += 1
        elif message.startswith("state store unreachable"):
            self.counts["store_down"] += 1
        elif message.startswith("state store back"):
            self.counts["store_back"] += 1


def _setup(url: str, **fields: Any) -> _Transitions:
    config = ReliabilityConfig(
        STATE_BACKEND="redis", REDIS_URL=url, HTTP_RETRIES=1, HTTP_TIMEOUT_SEC=10, **fields
    )
    otel_resilience.configure(config)
    handler = _Transitions()
    logger = logging.getLogger("otel_resilience")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def _store_errors() -> int:
    from otel_resilience import _redis

    return sum(store.errors for store in _redis.stores())


def _summary(handler: _Transitions, outcomes: Counter[str]) -> dict[str, Any]:
    breaker = otel_resilience.get_circuit_breaker_manager().get_breaker(SERVICE, ENDPOINT)
    return {
        "logs": dict(handler.counts),
        "outcomes": dict(outcomes),
        "state": breaker.state.value,
        "store_errors": _store_errors(),
    }


def _classify(exc: BaseException) -> str:
    if isinstance(exc, CircuitOpenError):
        return "rejected"
    if isinstance(exc, ThrottledError):
        return "throttled"
    if isinstance(exc, ReliabilityError):
        return "failed"
    return "crashed:" + type(exc).__name__  # pragma: no cover - reported to the parent


def breaker_storm(
    url: str, threshold: int, threads: int, mode: str, hits_key: str, barrier: Any, queue: Any
) -> None:
    """Every thread (or task) calls a failing dependency until the breaker rejects it."""
    handler = _setup(url, CB_FAIL_THRESHOLD=threshold, CB_RESET_SEC=60, REDIS_TIMEOUT_MS=2000)
    dependency_client = redis.Redis.from_url(url)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def failing() -> None:
        dependency_client.incr(hits_key)
        raise ConnectionError("payments is down")

    async def failing_async() -> None:
        failing()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    def worker() -> None:
        for _ in range(10 * threshold):  # bounded: a breaker that never opens ends the loop
            try:
                resilient_call(SERVICE, ENDPOINT, failing)
            except Exception as exc:
                count(_classify(exc))
                if isinstance(exc, CircuitOpenError):
                    return

    async def task() -> None:
        for _ in range(10 * threshold):
            try:
                await resilient_call_async(SERVICE, ENDPOINT, failing_async)
            except Exception as exc:
                count(_classify(exc))
                if isinstance(exc, CircuitOpenError):
                    return
            await asyncio.sleep(0)  # let the other tasks interleave

    async def tasks() -> None:
        await asyncio.gather(*(task() for _ in range(threads)))

    barrier.wait()
    if mode == "async":
        asyncio.run(tasks())
    else:
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    queue.put(_summary(handler, outcomes))


def probe_storm(
    url: str,
    reset_sec: float,
    max_probes: int,
    threads: int,
    hits_key: str,
    barrier: Any,
    queue: Any,
) -> None:
    """Every thread makes one call to a slow failing dependency while the breaker is half-open."""
    handler = _setup(
        url,
        CB_FAIL_THRESHOLD=1,
        CB_RESET_SEC=reset_sec,
        CB_HALF_OPEN_MAX_CALLS=max_probes,
        REDIS_TIMEOUT_MS=2000,
    )
    dependency_client = redis.Redis.from_url(url)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def slow_failing() -> None:
        dependency_client.incr(hits_key)
        time.sleep(0.3)  # the probes are in flight together
        raise ConnectionError("still down")

    def worker() -> None:
        try:
            resilient_call(SERVICE, ENDPOINT, slow_failing)
        except Exception as exc:
            with lock:
                outcomes[_classify(exc)] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    barrier.wait()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put(_summary(handler, outcomes))


def rate_storm(
    url: str,
    rate: str,
    threads: int,
    duration: float,
    mode: str,
    hits_key: str,
    barrier: Any,
    queue: Any,
) -> None:
    """Every thread (or task) calls as fast as the shared rate limit lets it, for ``duration``."""
    handler = _setup(url, RATE_LIMIT=rate, RATE_LIMIT_MAX_WAIT_SEC=0, REDIS_TIMEOUT_MS=2000)
    dependency_client = redis.Redis.from_url(url)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def ok() -> None:
        dependency_client.incr(hits_key)

    async def ok_async() -> None:
        ok()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                resilient_call(SERVICE, ENDPOINT, ok)
                count("ok")
            except Exception as exc:
                count(_classify(exc))
                time.sleep(0.005)  # a throttled caller backs off a little

    async def task(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await resilient_call_async(SERVICE, ENDPOINT, ok_async)
                count("ok")
            except Exception as exc:
                count(_classify(exc))
                await asyncio.sleep(0.005)

    async def tasks(deadline: float) -> None:
        from otel_resilience._redis import aclose_async_clients

        await asyncio.gather(*(task(deadline) for _ in range(threads)))
        await aclose_async_clients()

    barrier.wait()
    deadline = time.monotonic() + duration
    if mode == "async":
        asyncio.run(tasks(deadline))
    else:
        pool = [threading.Thread(target=worker, args=(deadline,)) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    queue.put(_summary(handler, outcomes))


def steady_calls(
    url: str, threads: int, duration: float, mode: str, barrier: Any, queue: Any
) -> None:
    """Threads (or tasks) call a healthy dependency for ``duration`` s while Redis goes away.

    Outcomes are "ok", "rejected" (the shared breaker was opened by the parent: sharing works)
    and anything else (a failure: what the fallback must prevent). The time of the first
    rejection, on the wall clock, tells when sharing came back.
    """
    handler = _setup(url, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=60, REDIS_TIMEOUT_MS=50)
    outcomes: Counter[str] = Counter()
    first_rejection: list[float] = []
    lock = threading.Lock()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1
            if outcome == "rejected" and not first_rejection:
                first_rejection.append(time.time())

    def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                resilient_call(SERVICE, ENDPOINT, lambda: "ok")
                count("ok")
            except Exception as exc:
                count(_classify(exc))
            time.sleep(0.002)

    async def healthy() -> str:
        return "ok"

    async def task(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await resilient_call_async(SERVICE, ENDPOINT, healthy)
                count("ok")
            except Exception as exc:
                count(_classify(exc))
            await asyncio.sleep(0.002)

    async def tasks() -> None:
        from otel_resilience._redis import aclose_async_clients

        # connections opened before the run: a cold start must not look like an outage
        await asyncio.gather(*(resilient_call_async(SERVICE, ENDPOINT, healthy) for _ in range(3)))
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        deadline = time.monotonic() + duration
        await asyncio.gather(*(task(deadline) for _ in range(threads)))
        await aclose_async_clients()

    if mode == "async":
        asyncio.run(tasks())
    else:
        resilient_call(SERVICE, ENDPOINT, lambda: "warm")
        barrier.wait()
        deadline = time.monotonic() + duration
        pool = [threading.Thread(target=worker, args=(deadline,)) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    summary = _summary(handler, outcomes)
    summary["first_rejection"] = first_rejection[0] if first_rejection else None
    queue.put(summary)
