"""A workload for the end-to-end test: real resilient_call traffic with induced failures, served
on the Python Prometheus exporter for a real Prometheus to scrape (the pull path), or pushed every
second with the OTLP/HTTP exporter to ``$OTEL_EXPORTER_OTLP_ENDPOINT`` (the OTLP path).

    python tests/bundle/workload.py --port 9464 [--duration 120]
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8429/opentelemetry \
        python tests/bundle/workload.py --otlp [--duration 120]

Each dependency below misbehaves in its own way, so that every metric of TELEMETRY.md gets data
and every alert that can fire within a minute does:

    shop/checkout    healthy: 5% transient server errors, retried away
    search/query     70% server errors: retry amplification, exhausted retries, error-budget burn
    suggest/query    70% server errors under a 10% retry budget with a fallback
    scanner/scan     half the attempts hang past a 50 ms timeout: excessive timeouts
    storage/upload   connection refused every time, breaker reset 1h: breaker stuck open
    llm/chat         rate-limited for 1s, fine for 1s, over and over: breaker opens frequently
    embeddings/embed a 20/second rate limit, called faster (when the library has a rate limiter)
    billing/charge   down, but its breaker forced open on purpose (CB_MANUAL_STATE): no page

It prints one JSON line with the capabilities it exercised once the metrics endpoint is up, and
stops by itself after --duration seconds (or at SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from otel_resilience import (
    ReliabilityError,
    configure,
    configure_telemetry,
    resilient_call,
)

FAST = {"HTTP_BACKOFF_BASE_MS": 5, "HTTP_BACKOFF_MAX_MS": 50}


class HTTPStatusError(Exception):
    """Stands for a client library's error carrying an HTTP status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def failing(probability: float, status: int) -> Callable[[], str]:
    def call() -> str:
        time.sleep(random.uniform(0.001, 0.005))
        if random.random() < probability:
            raise HTTPStatusError(status)
        return "ok"

    return call


def hanging(probability: float, hang_sec: float) -> Callable[[], str]:
    def call() -> str:
        time.sleep(hang_sec if random.random() < probability else 0.002)
        return "ok"

    return call


def refused() -> str:
    raise ConnectionRefusedError("connection refused")


def flapping(period_sec: float) -> Callable[[], str]:
    start = time.monotonic()

    def call() -> str:
        if int((time.monotonic() - start) / period_sec) % 2 == 0:
            raise HTTPStatusError(429)
        return "ok"

    return call


#: service -> (endpoint, function, resilient_call keyword arguments, config overrides)
DEPENDENCIES: dict[str, tuple[str, Callable[[], str], dict[str, Any], dict[str, Any]]] = {
    "shop": ("checkout", failing(0.05, 500), {"max_retries": 3}, {"CB_FAIL_THRESHOLD": 1000}),
    "search": ("query", failing(0.7, 503), {"max_retries": 3}, {"CB_FAIL_THRESHOLD": 1000}),
    "suggest": (
        "query",
        failing(0.7, 503),
        {"max_retries": 3, "fallback": "[]"},
        {"CB_FAIL_THRESHOLD": 1000, "RETRY_BUDGET_RATIO": 0.1, "RETRY_BUDGET_MIN_PER_SEC": 0.1},
    ),
    "scanner": (
        "scan",
        hanging(0.5, 0.25),
        {"max_retries": 2, "timeout_sec": 0.05},
        {"CB_FAIL_THRESHOLD": 1000},
    ),
    "storage": (
        "upload",
        refused,
        {"max_retries": 2},
        {"CB_FAIL_THRESHOLD": 3, "CB_RESET_SEC": 3600},
    ),
    "llm": (
        "chat",
        flapping(1.0),
        {"max_retries": 2},
        {"CB_FAIL_THRESHOLD": 3, "CB_RESET_SEC": 0.3},
    ),
    "embeddings": ("embed", failing(0.0, 500), {}, {"RATE_LIMIT": "20/second"}),
    "billing": ("charge", refused, {"max_retries": 2}, {"CB_MANUAL_STATE": "forced_open"}),
}


def supported(service: str) -> bool:
    """Whether the library can run this dependency's config (later capabilities may be missing)."""
    endpoint, func, kwargs, _ = DEPENDENCIES[service]
    try:
        resilient_call(service, endpoint, func, **kwargs)
    except NotImplementedError:
        return False
    except ReliabilityError:
        pass
    return True


def drive(service: str, stop: threading.Event) -> None:
    endpoint, func, kwargs, _ = DEPENDENCIES[service]
    while not stop.is_set():
        with contextlib.suppress(ReliabilityError):
            resilient_call(service, endpoint, func, **kwargs)
        stop.wait(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    export = parser.add_mutually_exclusive_group(required=True)
    export.add_argument("--port", type=int, help="serve /metrics on this port (pull path)")
    export.add_argument("--otlp", action="store_true", help="push OTLP/HTTP every second")
    parser.add_argument("--duration", type=float, default=120.0)
    args = parser.parse_args()

    if args.otlp:
        handle = configure_telemetry(
            service_name="otel-resilience-e2e",
            traces_exporter="none",
            metrics_exporter="otlp",
            metric_export_interval_sec=1.0,
        )
    else:
        handle = configure_telemetry(
            service_name="otel-resilience-e2e",
            traces_exporter="none",
            metrics_exporter="prometheus",
            prometheus_host="127.0.0.1",
            prometheus_port=args.port,
        )
    configure(
        services={service: {**FAST, **cfg} for service, (_, _, _, cfg) in DEPENDENCIES.items()}
    )
    active = [service for service in DEPENDENCIES if supported(service)]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=drive, args=(s, stop), daemon=True) for s in active]
    for thread in threads:
        thread.start()
    if not args.otlp:
        urllib.request.urlopen(f"http://127.0.0.1:{args.port}/metrics", timeout=5).read()
    print(json.dumps({"ready": True, "dependencies": active}), flush=True)
    stop.wait(args.duration)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    handle.shutdown()


if __name__ == "__main__":
    main()
