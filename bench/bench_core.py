"""Core success-path costs against the peers, measured in one run (issue: resilience core).

Run: .venv/bin/python bench/bench_core.py

Prints median microseconds per call and the ratios the project holds itself to:
  1. resilient_call (default config: 30 s timeout, no OpenTelemetry SDK)
     / tenacity Retrying()(f)                                                    <= 1.0
  2. 16 threads x 10 calls of a 10 ms function through one endpoint / the same bare    <= 1.3
     (pybreaker, which holds its lock during the call, shown for comparison)
  3. the attempt timeout's cost on the success path, main thread (<= 5 us) and other threads
  4. ratio 1 again with a sliding-window breaker (CB_MODE=count) and the retry budget on   <= 1.0
  5. what a concurrency limit adds to the success path: fixed <= +1 us, adaptive <= +3 us
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable

import pybreaker
import stamina
from tenacity import Retrying, stop_after_attempt

import otel_resilience
from otel_resilience import resilient_call
from otel_resilience._timeout import run_with_timeout


def per_call_us(fn: Callable[[], object], n: int = 20_000, repeats: int = 9) -> float:
    for _ in range(n // 10):  # warm up
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def in_thread(measure: Callable[[], float]) -> float:
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(measure()))
    thread.start()
    thread.join()
    return out[0]


def threads_seconds(call: Callable[[], object], threads: int = 16, calls: int = 10) -> float:
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            call()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start = time.perf_counter()
    barrier.wait()
    for thread in pool:
        thread.join()
    return time.perf_counter() - start


def main() -> int:
    otel_resilience.reset()

    def f() -> int:
        return 1

    @stamina.retry(on=Exception, attempts=3)
    def stamina_f() -> int:
        return 1

    print("== 1. success path, default config (30 s timeout), no OpenTelemetry SDK, main thread")
    bare = per_call_us(f)
    tenacity_us = per_call_us(lambda: Retrying(stop=stop_after_attempt(3))(f))
    stamina_us = per_call_us(stamina_f)
    ours = per_call_us(lambda: resilient_call("bench", "op", f))
    print(f"bare call                         {bare:8.2f} us")
    print(f"tenacity Retrying(...)(f)         {tenacity_us:8.2f} us")
    print(f"stamina @retry                    {stamina_us:8.2f} us")
    print(f"resilient_call                    {ours:8.2f} us")
    ratio1 = ours / tenacity_us
    print(f"RATIO resilient_call / tenacity = {ratio1:.2f}  (target <= 1.0)")

    print("\n== 2. 16 threads x 10 calls of a 10 ms function through one endpoint")

    def ten_ms() -> None:
        time.sleep(0.01)

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    bare_s = min(threads_seconds(ten_ms) for _ in range(3))
    ours_s = min(threads_seconds(lambda: resilient_call("bench", "slow", ten_ms)) for _ in range(3))
    pyb_s = threads_seconds(lambda: breaker.call(ten_ms))
    print(f"bare threads                      {bare_s:8.3f} s")
    print(f"resilient_call                    {ours_s:8.3f} s")
    print(f"pybreaker call                    {pyb_s:8.3f} s")
    ratio2 = ours_s / bare_s
    print(f"RATIO resilient_call / bare = {ratio2:.2f}  (target <= 1.3)")
    print(f"      pybreaker / bare = {pyb_s / bare_s:.1f}")

    print("\n== 3. cost of the attempt timeout on the success path")
    main_cost = per_call_us(lambda: run_with_timeout(f, 30.0)) - bare
    other_bare = in_thread(lambda: per_call_us(f, n=5_000, repeats=5))
    other_cost = in_thread(
        lambda: per_call_us(lambda: run_with_timeout(f, 30.0), n=5_000, repeats=5)
    )
    other_call = in_thread(
        lambda: per_call_us(lambda: resilient_call("bench", "op", f), n=5_000, repeats=5)
    )
    print(f"timeout, main thread (setitimer)  {main_cost:8.2f} us per call  (target <= 5 us)")
    print(f"timeout, other thread (worker)    {other_cost - other_bare:8.2f} us per call")
    print(f"resilient_call, other thread      {other_call:8.2f} us per call")

    print("\n== 4. success path with a count-window breaker and a retry budget")
    otel_resilience.configure(
        services={
            "windowed": {"CB_MODE": "count", "CB_WINDOW_SIZE": 100, "RETRY_BUDGET_RATIO": 0.2}
        }
    )
    tenacity_again = per_call_us(lambda: Retrying(stop=stop_after_attempt(3))(f))
    windowed = per_call_us(lambda: resilient_call("windowed", "op", f))
    ratio4 = windowed / tenacity_again
    print(f"tenacity Retrying(...)(f)         {tenacity_again:8.2f} us")
    print(f"resilient_call (window + budget)  {windowed:8.2f} us")
    print(f"RATIO resilient_call / tenacity = {ratio4:.2f}  (target <= 1.0)")

    print("\n== 5. success path with a concurrency limit (no OpenTelemetry SDK)")
    otel_resilience.configure(
        services={
            "limited": {"CONCURRENCY_LIMIT": 64},
            "adaptive": {"CONCURRENCY_LIMIT_MODE": "adaptive"},
        }
    )
    # interleaved, best of three rounds each: the differences are a few percent of a call
    plain_us = fixed_us = adaptive_us = float("inf")
    for _ in range(3):
        plain_us = min(plain_us, per_call_us(lambda: resilient_call("bench", "op", f)))
        fixed_us = min(fixed_us, per_call_us(lambda: resilient_call("limited", "op", f)))
        adaptive_us = min(adaptive_us, per_call_us(lambda: resilient_call("adaptive", "op", f)))
    fixed_cost, adaptive_cost = fixed_us - plain_us, adaptive_us - plain_us
    print(f"resilient_call, no limit          {plain_us:8.2f} us")
    print(
        f"resilient_call, fixed limit       {fixed_us:8.2f} us  (+{fixed_cost:.2f} us, target <= 1)"
    )
    print(
        f"resilient_call, adaptive limit    {adaptive_us:8.2f} us  (+{adaptive_cost:.2f} us,"
        " target <= 3)"
    )

    ok = (
        ratio1 <= 1.0
        and ratio2 <= 1.3
        and main_cost <= 5.0
        and ratio4 <= 1.0
        and fixed_cost <= 1.0
        and adaptive_cost <= 3.0
    )
    print("\nRESULT", "all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
