"""Cost of a timeout around a call that succeeds: median microseconds per call.

Run by hand: ``.venv/bin/python bench/bench_timeout.py``. Prints (a) a bare call, (b)
``run_with_timeout(func, 30)`` in the main thread (SIGALRM + setitimer), (c) the same in a
non-main thread (worker pool), (d) ``ThreadPoolExecutor`` submit + result for comparison, and the
overheads. The target is (b) - (a) <= 5 us.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from otel_resilience._timeout import run_with_timeout, shutdown_workers

TARGET_MAIN_OVERHEAD_US = 5.0


def work() -> int:
    return 42


def measure(step: Callable[[], object], *, batch: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean microseconds per call in a batch of ``batch`` calls."""
    for _ in range(batch):  # warm up
        step()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            step()
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return statistics.median(samples)


def in_thread(fn: Callable[[], float]) -> float:
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def main() -> None:
    bare = measure(work, batch=20_000, rounds=15)
    main_thread = measure(lambda: run_with_timeout(work, 30.0), batch=20_000, rounds=15)
    worker = in_thread(
        lambda: measure(lambda: run_with_timeout(work, 30.0), batch=2_000, rounds=15)
    )
    with ThreadPoolExecutor(max_workers=1) as executor:
        tpe = measure(lambda: executor.submit(work).result(timeout=30.0), batch=2_000, rounds=15)
    shutdown_workers()

    overhead = main_thread - bare
    print(f"{'(a) bare call':<52} {bare:8.2f} us")
    print(f"{'(b) run_with_timeout(30 s), main thread (SIGALRM)':<52} {main_thread:8.2f} us")
    print(f"{'(c) run_with_timeout(30 s), other thread (workers)':<52} {worker:8.2f} us")
    print(f"{'(d) ThreadPoolExecutor submit + result':<52} {tpe:8.2f} us")
    print()
    verdict = "OK" if overhead <= TARGET_MAIN_OVERHEAD_US else "OVER TARGET"
    print(
        f"main-thread overhead (b)-(a): {overhead:.2f} us"
        f" (target <= {TARGET_MAIN_OVERHEAD_US:g} us: {verdict})"
    )
    print(f"other-thread overhead (c)-(a): {worker - bare:.2f} us")
    print(f"worker pool vs ThreadPoolExecutor (c)/(d): {worker / tpe:.2f}x")


if __name__ == "__main__":
    main()
