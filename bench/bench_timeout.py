"""Cost of a timeout around a call that succeeds: median microseconds per call.

Run by hand: ``.venv/bin/python bench/bench_timeout.py [rounds]``. Prints

  (a) a bare call,
  (b) ``run_with_timeout(func, 30)`` in the main thread (SIGALRM + setitimer),
  (c) the same in a non-main thread (the worker pool),
  (d) ``ThreadPoolExecutor`` submit + result from a non-main thread, for comparison,

and the overheads. The target is (b) - (a) <= 5 us. The four are measured round-robin, so a
noisy neighbour slows all of them alike. Each round gives the mean per call within a batch;
the table shows the median and the best round (a thread hand-off costs twice as much when the
two threads do not get a core each, which makes (c) and (d) bimodal on a busy machine).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from otel_resilience._timeout import run_with_timeout, shutdown_workers

TARGET_MAIN_OVERHEAD_US = 5.0
FAST_BATCH = 20_000  # calls per batch for (a) and (b)
THREAD_BATCH = 2_000  # calls per batch for (c) and (d): each is a thread hand-off


def work() -> int:
    return 42


def batch_us(step: Callable[[], object], batch: int) -> float:
    """Mean microseconds per call over ``batch`` calls."""
    start = time.perf_counter()
    for _ in range(batch):
        step()
    return (time.perf_counter() - start) / batch * 1e6


def in_thread(fn: Callable[[], float]) -> float:
    """``fn()`` run in a fresh non-main thread (thread start-up is not timed)."""
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def main(rounds: int = 15) -> None:
    executor = ThreadPoolExecutor(max_workers=1)

    def bare() -> float:
        return batch_us(work, FAST_BATCH)

    def main_thread() -> float:
        return batch_us(lambda: run_with_timeout(work, 30.0), FAST_BATCH)

    def worker() -> float:
        return in_thread(lambda: batch_us(lambda: run_with_timeout(work, 30.0), THREAD_BATCH))

    def pool_executor() -> float:
        return in_thread(
            lambda: batch_us(lambda: executor.submit(work).result(timeout=30.0), THREAD_BATCH)
        )

    cases = {"a": bare, "b": main_thread, "c": worker, "d": pool_executor}
    for measure in cases.values():  # warm up
        measure()
    samples: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(rounds):
        for key, measure in cases.items():
            samples[key].append(measure())
    executor.shutdown()
    shutdown_workers()

    a, b, c, d = (statistics.median(samples[key]) for key in "abcd")
    best = {key: min(values) for key, values in samples.items()}
    labels = {
        "a": "(a) bare call",
        "b": "(b) run_with_timeout(30 s), main thread (SIGALRM)",
        "c": "(c) run_with_timeout(30 s), other thread (worker pool)",
        "d": "(d) ThreadPoolExecutor submit + result, other thread",
    }
    print(f"{'us per call':<56} {'median':>8} {'best':>8}")
    for key, label in labels.items():
        print(f"{label:<56} {statistics.median(samples[key]):8.2f} {best[key]:8.2f}")
    print()
    verdict = "OK" if b - a <= TARGET_MAIN_OVERHEAD_US else "OVER TARGET"
    print(
        f"main-thread overhead (b)-(a): {b - a:.2f} us"
        f" (target <= {TARGET_MAIN_OVERHEAD_US:g} us: {verdict})"
    )
    print(f"other-thread overhead (c)-(a): {c - a:.2f} us")
    print(f"worker pool vs ThreadPoolExecutor (c)/(d): {c / d:.2f}x")
    print(f"main thread vs worker pool (c)/(b): {c / b:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
