"""Overload: goodput and p99 of a dependency offered 3x its capacity, per concurrency limit mode.

Run: .venv/bin/python bench/bench_overload.py [--quick]

The stand-in dependency serves CAPACITY requests at a time, each taking SERVICE_SEC; beyond that
requests queue (latency grows with the queue) and past QUEUE_MAX queued it answers 503 at once.
A request whose caller gave up (its attempt timeout) is still served when its turn comes: wasted
work, the mechanism of congestion collapse. It is offered 3x its capacity, paced (open loop), by
64 threads and by 256 asyncio tasks, for 20 s each (``--quick``: 4 s), through ``resilient_call``
with: no limit; ``CONCURRENCY_LIMIT`` fixed at the capacity; ``CONCURRENCY_LIMIT_MODE=adaptive``.

Prints goodput (successful calls/s, and as a ratio of the capacity) and the p99 latency of the
successful calls against the uncongested p99 (the same stand-in offered 1/3 of its capacity).
Targets: adaptive goodput >= 0.9x capacity and p99 <= 2x uncongested; no limit collapses.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import otel_resilience
from otel_resilience import ReliabilityError, remaining_time, resilient_call, resilient_call_async

CAPACITY = 16
SERVICE_SEC = 0.020
QUEUE_MAX = 2 * CAPACITY
OFFERED = 3.0  # x capacity
CAPACITY_PER_SEC = CAPACITY / SERVICE_SEC
THREADS = 64
TASKS = 256
ATTEMPT_TIMEOUT_SEC = 2.5 * SERVICE_SEC

BASE = {
    "HTTP_TIMEOUT_SEC": ATTEMPT_TIMEOUT_SEC,
    "HTTP_RETRIES": 2,
    "HTTP_BACKOFF_BASE_MS": 5,
    "HTTP_BACKOFF_MAX_MS": 20,
    "CB_FAIL_THRESHOLD": 1_000_000,  # the breaker is not what this measures
    "TIMEOUT_MODE": "cooperative",
}
MODES = {
    "no limit": {},
    "fixed at capacity": {"CONCURRENCY_LIMIT": CAPACITY},
    "adaptive": {
        "CONCURRENCY_LIMIT_MODE": "adaptive",
        "CONCURRENCY_LIMIT_MIN": 1,
        "CONCURRENCY_LIMIT_MAX": 200,
    },
}


class Unavailable(Exception):
    status_code = 503


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, latency: float) -> None:
        with self.lock:
            self.latencies.append(latency)

    def failed(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100)[98]


# --- the stand-in, threads ------------------------------------------------------------------------


class ThreadStandIn:
    def __init__(self) -> None:
        self.queue: queue.Queue[threading.Event | None] = queue.Queue(maxsize=QUEUE_MAX)
        self.workers = [threading.Thread(target=self._serve, daemon=True) for _ in range(CAPACITY)]
        for worker in self.workers:
            worker.start()

    def _serve(self) -> None:
        while True:
            done = self.queue.get()
            if done is None:
                return
            time.sleep(SERVICE_SEC)
            done.set()

    def request(self) -> str:
        done = threading.Event()
        try:
            self.queue.put_nowait(done)
        except queue.Full:
            raise Unavailable("503 Service Unavailable") from None
        if not done.wait(remaining_time()):
            raise TimeoutError("read timed out")  # the request stays queued: wasted work
        return "ok"

    def stop(self) -> None:
        for _ in self.workers:
            self.queue.put(None)


def run_threads(service: str, seconds: float, offered: float, tally: Tally) -> None:
    server = ThreadStandIn()
    interval = THREADS / (offered * CAPACITY_PER_SEC)
    end = time.perf_counter() + seconds

    def client(index: int) -> None:
        next_at = time.perf_counter() + interval * index / THREADS
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            start = time.perf_counter()
            try:
                resilient_call(service, "work", server.request)
                tally.ok(time.perf_counter() - start)
            except ReliabilityError as error:
                tally.failed(error.error_type.value)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()


# --- the stand-in, asyncio ------------------------------------------------------------------------


async def run_tasks(service: str, seconds: float, offered: float, tally: Tally) -> None:
    # The stand-in runs on its own threads, as a dependency runs in its own process: its
    # capacity must not depend on how busy the callers' event loop is.
    server = ThreadStandIn()
    loop = asyncio.get_running_loop()

    def answered(done: asyncio.Future[None]) -> None:
        if not done.done():
            done.set_result(None)

    async def request() -> str:
        done = loop.create_future()
        signal = threading.Event()
        signal.set = lambda: loop.call_soon_threadsafe(answered, done)  # type: ignore[method-assign]
        try:
            server.queue.put_nowait(signal)
        except queue.Full:
            raise Unavailable("503 Service Unavailable") from None
        await asyncio.shield(done)  # the attempt timeout cancels the wait, not the request
        return "ok"

    interval = TASKS / (offered * CAPACITY_PER_SEC)
    end = time.perf_counter() + seconds

    async def client(index: int) -> None:
        next_at = time.perf_counter() + interval * index / TASKS
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += interval
            start = time.perf_counter()
            try:
                await resilient_call_async(service, "work", request)
                tally.ok(time.perf_counter() - start)
            except ReliabilityError as error:
                tally.failed(error.error_type.value)

    await asyncio.gather(*(client(i) for i in range(TASKS)))
    server.stop()


# --- the cases ------------------------------------------------------------------------------------


def case(
    runner: Callable[[str, float, float, Tally], None],
    name: str,
    settings: dict[str, object],
    seconds: float,
    offered: float,
) -> tuple[float, float, Tally]:
    otel_resilience.reset()
    service = "dep-" + name.replace(" ", "-")
    otel_resilience.configure(services={service: {**BASE, **settings}})
    tally = Tally()
    runner(service, seconds, offered, tally)
    goodput = len(tally.latencies) / seconds
    return goodput, p99(tally.latencies), tally


def report(label: str, runner: Callable[[str, float, float, Tally], None], seconds: float) -> bool:
    print(
        f"\n== {label}: capacity {CAPACITY} x {SERVICE_SEC * 1000:.0f} ms"
        f" = {CAPACITY_PER_SEC:.0f}/s, offered {OFFERED:g}x for {seconds:g} s"
    )
    _, base_p99, _ = case(runner, "uncongested", {}, max(2.0, seconds / 4), 1 / 3)
    print(f"uncongested p99 (offered 1/3 of capacity)  {base_p99 * 1000:7.1f} ms")
    ok = True
    for name, settings in MODES.items():
        goodput, tail, tally = case(runner, name, settings, seconds, OFFERED)
        ratio = goodput / CAPACITY_PER_SEC
        errors = ", ".join(f"{k} {v}" for k, v in sorted(tally.errors.items())) or "none"
        print(
            f"{name:18s} goodput {goodput:7.1f}/s = {ratio:4.2f}x capacity,"
            f" p99 {tail * 1000:7.1f} ms = {tail / base_p99:5.2f}x uncongested; errors: {errors}"
        )
        if name == "adaptive":
            ok = ratio >= 0.9 and tail <= 2 * base_p99
            print(f"RATIO adaptive goodput / capacity = {ratio:.2f}  (target >= 0.9)")
            print(f"RATIO adaptive p99 / uncongested p99 = {tail / base_p99:.2f}  (target <= 2.0)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per case (CI-sized)")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else 20.0
    ok = report(f"{THREADS} threads", run_threads, seconds)
    ok = (
        report(
            f"{TASKS} asyncio tasks",
            lambda s, d, o, t: asyncio.run(run_tasks(s, d, o, t)),
            seconds,
        )
        and ok
    )
    otel_resilience.reset()
    print("\nRESULT", "all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
