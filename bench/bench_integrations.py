"""Per-request overhead of the HTTP integrations against the bare clients and their peers.

Run: .venv/bin/python bench/bench_integrations.py [requests]

Every client sends GET /ok to the same local fault server (127.0.0.1, keep-alive) and the median
microseconds per request of several rounds is printed, with the ratios the project holds itself
to (no OpenTelemetry SDK configured, default config):

  1. httpx.Client(transport=ResilientTransport()) / bare httpx.Client          target <= 1.10
  2. requests.Session + ResilientAdapter / bare requests.Session                target <= 1.10
  3. against the peers users reach for today, on the same server:
     httpx-retries RetryTransport, urllib3 Retry on an HTTPAdapter, tenacity around the call
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

import httpx
import requests
import requests.adapters
from httpx_retries import Retry as HttpxRetry
from httpx_retries import RetryTransport
from tenacity import Retrying, stop_after_attempt
from urllib3.util.retry import Retry

import faultserver
from faultserver import FaultServer
from otel_resilience.httpx import ResilientTransport
from otel_resilience.requests import ResilientAdapter


def per_request_us(send: Callable[[], object], n: int, rounds: int = 7) -> float:
    for _ in range(max(20, n // 10)):  # warm up: connections open, caches filled
        send()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            send()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def interleaved(cases: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Each case measured in turn, three times over: machine noise hits them all alike."""
    found: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):
        for name, send in cases.items():
            found[name].append(per_request_us(send, n))
    return {name: min(values) for name, values in found.items()}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    # headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every keep-alive request and hide what the clients cost
    faultserver._Handler.disable_nagle_algorithm = True
    with FaultServer() as server:
        url = f"{server.url}/ok"
        bare_httpx = httpx.Client()
        ours_httpx = httpx.Client(transport=ResilientTransport())
        peer_httpx = httpx.Client(transport=RetryTransport(retry=HttpxRetry(total=3)))
        bare_requests = requests.Session()
        ours_requests = requests.Session()
        ours_requests.mount("http://", ResilientAdapter())
        peer_requests = requests.Session()
        peer_requests.mount("http://", requests.adapters.HTTPAdapter(max_retries=Retry(total=3)))
        tenacious = Retrying(stop=stop_after_attempt(3), reraise=True)

        results = interleaved(
            {
                "httpx bare": lambda: bare_httpx.get(url),
                "httpx + ResilientTransport": lambda: ours_httpx.get(url),
                "httpx + httpx-retries": lambda: peer_httpx.get(url),
                "httpx + tenacity": lambda: tenacious(bare_httpx.get, url),
                "requests bare": lambda: bare_requests.get(url),
                "requests + ResilientAdapter": lambda: ours_requests.get(url),
                "requests + urllib3 Retry": lambda: peer_requests.get(url),
                "requests + tenacity": lambda: tenacious(bare_requests.get, url),
            },
            n,
        )
        for client in (bare_httpx, ours_httpx, peer_httpx):
            client.close()
        for session in (bare_requests, ours_requests, peer_requests):
            session.close()

    print(f"median us per GET on 127.0.0.1 ({n} requests x 7 rounds, best of 3 interleaved runs)")
    for name, value in results.items():
        print(f"  {name:32s} {value:8.1f}")
    print("ratios")
    for lib, ours in (("httpx", "ResilientTransport"), ("requests", "ResilientAdapter")):
        bare = results[f"{lib} bare"]
        mine = results[f"{lib} + {ours}"]
        print(f"  {lib} + {ours} / bare: {mine / bare:.3f}  (target <= 1.10)")
        for peer in ("httpx-retries", "urllib3 Retry", "tenacity"):
            key = f"{lib} + {peer}"
            if key in results:
                print(f"  {lib} + {ours} / {lib} + {peer}: {mine / results[key]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
