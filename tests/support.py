"""Test helpers importable from any test module in tests/ (``from support import ...``)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from typing import Any

import pytest


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def sleep_async(self, seconds: float) -> None:
        self.sleep(seconds)

    async_sleep = sleep_async


def require_binary(path: str, what: str) -> str:
    """The binary's path; skip when missing, unless CI=true (then fail: CI must run it)."""
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if found:
        return found
    message = f"{what} binary {path!r} not found (apt-get install it; .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI=true, so this test must run")
    pytest.skip(message)


def counter_points(reader: object, name: str) -> dict[tuple[tuple[str, object], ...], int]:
    """A counter's values by sorted attribute pairs, from an ``InMemoryMetricReader``."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum

    assert isinstance(reader, InMemoryMetricReader)
    data = reader.get_metrics_data()
    found: dict[tuple[tuple[str, object], ...], int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    assert isinstance(metric.data, Sum)
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        found[key] = int(point.value)
    return found


def limiter_for(service: str, config: object) -> object:
    """A service's rate limiter built from ``config`` on the clock of the runtime in use."""
    from otel_resilience import ReliabilityConfig, default_runtime
    from otel_resilience._ratelimit import build_rate_limiter

    assert isinstance(config, ReliabilityConfig)
    if config.RATE_LIMIT is None:
        return None
    return build_rate_limiter(service, config, default_runtime().clock)


def classify(exc: BaseException, registry: object = None) -> object:
    """Classify ``exc`` with ``registry`` (the runtime in use's classifiers when None)."""
    import otel_resilience

    chosen = registry if registry is not None else otel_resilience.default_runtime().classifiers
    return chosen.classify(exc)  # type: ignore[attr-defined]


def without_sigalrm(target: Callable[..., Any]) -> Callable[..., Any]:
    """``target`` with ``SIGALRM`` blocked in the thread that runs it (and so in the threads it
    starts): an in-process stand-in server's threads must not take the main thread's
    interval-timer ticks (a tick's C handler could then run after the call gave the
    application, here pytest-timeout, its handler back)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if hasattr(signal, "pthread_sigmask") and hasattr(signal, "SIGALRM"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        return target(*args, **kwargs)

    return run
