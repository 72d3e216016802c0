"""Quota: the adaptive rate learning a dependency's hidden rate from its 429s, in real time.

Run: .venv/bin/python bench/bench_quota.py [--quick]

The stand-in admits HIDDEN_RATE requests per second (a token bucket, burst BURST) and answers
429 with ``Retry-After`` (the seconds until its next token) beyond it; each request takes
SERVICE_SEC. THREADS threads call it as fast as the library lets them through
``resilient_call`` with ``RATE_LIMIT_MODE=adaptive`` (``RATE_LIMIT_MAX_WAIT_SEC=1``), for 20 s
(``--quick``: 14 s). A caller refused as ``throttled`` waits 10 ms before its next call.

Prints the accepted rate per second, then the ratios: the accepted rate from 10 s on against the
hidden rate (target within +-15%) and the share of 429s among the calls from 10 s on (target < 5%);
and, for comparison, the same without the adaptive rate (every call that the quota refuses is a
429, retried).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import otel_resilience
from otel_resilience import ReliabilityError, resilient_call

HIDDEN_RATE = 50.0
BURST = 5.0
SERVICE_SEC = 0.005
THREADS = 8
SETTLED_AFTER_SEC = 10.0


class TooManyRequests(Exception):
    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("429 Too Many Requests")
        self.headers = {"Retry-After": f"{retry_after:.3f}"}


class Quota:
    """The stand-in: a hidden token bucket, thread-safe; logs (time, accepted)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens = BURST
        self.at = time.perf_counter()
        self.start = self.at
        self.log: list[tuple[float, bool]] = []

    def request(self) -> str:
        time.sleep(SERVICE_SEC)
        with self.lock:
            now = time.perf_counter()
            self.tokens = min(BURST, self.tokens + (now - self.at) * HIDDEN_RATE)
            self.at = now
            accepted = self.tokens >= 1
            if accepted:
                self.tokens -= 1
            self.log.append((now - self.start, accepted))
            wait = (1 - self.tokens) / HIDDEN_RATE
        if not accepted:
            raise TooManyRequests(wait)
        return "ok"

    def window(self, start: float, end: float) -> tuple[float, float, int]:
        inside = [ok for when, ok in self.log if start <= when < end]
        accepted = sum(inside)
        return accepted / (end - start), (len(inside) - accepted) / max(1, len(inside)), len(inside)


def run(settings: dict[str, object], seconds: float, show: bool) -> tuple[float, float]:
    otel_resilience.reset()
    otel_resilience.configure(services={"llm": settings})
    quota = Quota()
    end = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < end:
            try:
                resilient_call("llm", "chat", quota.request)
            except ReliabilityError as error:
                if error.error_type.value == "throttled":
                    time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if show:
        per_second = [quota.window(t, t + 1)[0] for t in range(int(seconds))]
        print("accepted per second:", " ".join(f"{r:.0f}" for r in per_second))
    rate, share, _ = quota.window(SETTLED_AFTER_SEC, seconds)
    return rate, share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="14 s per case (CI-sized)")
    args = parser.parse_args()
    seconds = 14.0 if args.quick else 20.0
    base = {"HTTP_RETRIES": 3, "HTTP_BACKOFF_BASE_MS": 10, "CB_FAIL_THRESHOLD": 1_000_000}
    print(f"== hidden rate {HIDDEN_RATE:g}/s (burst {BURST:g}), {THREADS} threads, {seconds:g} s")
    print("-- RATE_LIMIT_MODE=adaptive")
    rate, share = run(
        {**base, "RATE_LIMIT_MODE": "adaptive", "RATE_LIMIT_MAX_WAIT_SEC": 1.0}, seconds, True
    )
    print("-- no client-side rate (for comparison)")
    plain_rate, plain_share = run(base, seconds, True)
    print(f"without it: accepted {plain_rate:.1f}/s, 429s {plain_share:.1%} of calls after 10 s")
    ratio = rate / HIDDEN_RATE
    print(
        f"RATIO adaptive accepted rate after 10 s / hidden rate = {ratio:.2f}  (target 0.85..1.15)"
    )
    print(f"RATIO 429s / calls after 10 s = {share:.3f}  (target < 0.05)")
    ok = 0.85 <= ratio <= 1.15 and share < 0.05
    otel_resilience.reset()
    print("\nRESULT", "all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
