"""Cost of the Redis state backend on the success path: p50 and p99 microseconds per call.

Run by hand: ``.venv/bin/python bench/bench_redis.py [calls]``. Starts its own redis-server
(``/usr/bin/redis-server``, free 127.0.0.1 port, no persistence) unless ``RELIABILITY_REDIS_URL``
names one, and times single successful calls of

  (a) ``resilient_call`` with the in-memory backend,
  (b) ``resilient_call`` with the Redis backend (shared breaker),
  (c) the same with a shared rate limit (``RATE_LIMIT``, never reached),
  (d) the breaker alone: ``try_acquire`` + ``record_success``, memory then Redis,

interleaved call by call (a, b, c, a, b, c, ...) so that a noisy neighbour slows all of them
alike. It prints p50/p99 per variant, the overhead of (b) and (c) over (a) at p50 and p99, and
the Redis commands each call of (b) sent (from ``INFO commandstats``): the target is one
round trip (one EVALSHA) per healthy call.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

import otel_resilience
from otel_resilience import ReliabilityConfig, get_circuit_breaker_manager, resilient_call
from otel_resilience._breakers import CircuitBreaker
from otel_resilience._breakers._redis import RedisCircuitBreaker

REDIS_SERVER = "/usr/bin/redis-server"


@contextmanager
def redis_url() -> Iterator[str]:
    given = os.environ.get("RELIABILITY_REDIS_URL")
    if given:
        yield given
        return
    if not shutil.which(REDIS_SERVER):
        sys.exit(
            f"{REDIS_SERVER} not found: apt-get install redis-server, or set RELIABILITY_REDIS_URL"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1e6


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def main(calls: int = 20_000) -> None:
    with redis_url() as url:
        memory = ReliabilityConfig(HTTP_TIMEOUT_SEC=30)
        shared = ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url)
        otel_resilience.configure(
            memory,
            services={
                "redis-backend": shared,
                "redis-limited": shared.with_overrides({"RATE_LIMIT": "1000000/second"}),
            },
        )

        def work() -> int:
            return 42

        variants: dict[str, Callable[[], object]] = {
            "(a) memory backend": lambda: resilient_call("memory-backend", "op", work),
            "(b) redis backend": lambda: resilient_call("redis-backend", "op", work),
            "(c) redis + rate limit": lambda: resilient_call("redis-limited", "op", work),
        }
        local = CircuitBreaker("op", config=memory)
        remote = RedisCircuitBreaker("op", service_name="bench-breaker", config=shared)
        breakers: dict[str, Callable[[], object]] = {
            "(d) breaker alone, memory": lambda: local.record_success(local.try_acquire()),
            "(d) breaker alone, redis": lambda: remote.record_success(remote.try_acquire()),
        }
        for step in (*variants.values(), *breakers.values()):  # warm up pools and scripts
            for _ in range(200):
                step()

        client = redis.Redis.from_url(url)
        samples: dict[str, list[float]] = {name: [] for name in (*variants, *breakers)}
        before = evalsha_calls(client)
        for _ in range(calls):
            samples["(b) redis backend"].append(timed(variants["(b) redis backend"]))
        per_call = (evalsha_calls(client) - before) / calls
        samples["(b) redis backend"].clear()

        for _ in range(calls):
            for name, step in variants.items():
                samples[name].append(timed(step))
            for name, step in breakers.items():
                samples[name].append(timed(step))

        print(f"{calls} successful calls each, interleaved; microseconds per call")
        print(f"{'variant':34} {'p50':>8} {'p99':>8} {'mean':>8}")
        for name, values in samples.items():
            print(
                f"{name:34} {percentile(values, 0.5):8.1f} {percentile(values, 0.99):8.1f}"
                f" {statistics.fmean(values):8.1f}"
            )
        base = samples["(a) memory backend"]
        for name in ("(b) redis backend", "(c) redis + rate limit"):
            values = samples[name]
            p50 = percentile(values, 0.5) - percentile(base, 0.5)
            p99 = percentile(values, 0.99) - percentile(base, 0.99)
            print(f"overhead of {name} over (a): p50 +{p50:.1f} us, p99 +{p99:.1f} us")
        print(f"Redis scripts (EVALSHA) per healthy call of (b): {per_call:.2f}")
        breaker = get_circuit_breaker_manager().get_breaker("redis-backend", "op")
        assert breaker.state.value == "closed"
        client.close()
        if per_call > 1.0:
            sys.exit(f"FAIL: {per_call:.2f} round trips per healthy call (target: 1)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
