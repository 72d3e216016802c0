"""Per-request overhead of the HTTP integrations against the bare clients and their peers.

Run: .venv/bin/python bench/bench_integrations.py [requests]

Every client sends GET /ok to the same local fault server (127.0.0.1, keep-alive) and the median
microseconds per request of several rounds is printed, with the ratios the project holds itself
to (no OpenTelemetry SDK configured, default config):

  1. httpx.Client(transport=ResilientTransport()) / bare httpx.Client          target <= 1.10
  2. requests.Session + ResilientAdapter / bare requests.Session                target <= 1.10
  3. against the peers users reach for today, on the same server:
     httpx-retries RetryTransport, urllib3 Retry on an HTTPAdapter, tenacity around the call
  4. the transport's own cost without any I/O: httpx.MockTransport, with and without
     ResilientTransport around it (microseconds the integration adds to every request)
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


def interleaved(cases: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Short batches of each case in turn, many times over: machine noise and drift hit them
    all alike; the median batch of each case is its figure."""
    found: dict[str, list[float]] = {name: [] for name in cases}
    for send in cases.values():  # warm up: connections open, caches filled
        for _ in range(max(20, n // 10)):
            send()
    batch = max(10, n // 10)
    for _ in range(30):
        for name, send in cases.items():
            start = time.perf_counter()
            for _ in range(batch):
                send()
            found[name].append((time.perf_counter() - start) / batch * 1e6)
    return {name: statistics.median(values) for name, values in found.items()}


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

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}")

    mock_bare = httpx.Client(transport=httpx.MockTransport(answer))
    mock_ours = httpx.Client(transport=ResilientTransport(httpx.MockTransport(answer)))
    no_io = interleaved(
        {
            "bare": lambda: mock_bare.get("http://svc.test/ok"),
            "ours": lambda: mock_ours.get("http://svc.test/ok"),
        },
        n * 10,
    )
    mock_bare.close()
    mock_ours.close()

    print(f"median us per GET on 127.0.0.1 (30 interleaved batches of {max(10, n // 10)} each)")
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
    print("without I/O (httpx.MockTransport)")
    print(f"  bare {no_io['bare']:.1f} us, with ResilientTransport {no_io['ours']:.1f} us:")
    print(f"  the integration adds {no_io['ours'] - no_io['bare']:.1f} us per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
