"""Shared fixtures: a clean library state per test, a fake clock, fake backoff sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_resilience
from otel_resilience import _timeout
from support import FakeClock


@pytest.fixture(autouse=True)
def _clean_library() -> Iterator[None]:
    """Every test starts and ends with default config, no breakers, global telemetry."""
    otel_resilience.reset()
    yield
    otel_resilience.reset()


@pytest.fixture
def metric_reader() -> Iterator[InMemoryMetricReader]:
    """An SDK meter provider injected into the library, read in memory."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel_resilience.set_telemetry_providers(meter_provider=provider)
    yield reader
    otel_resilience.set_telemetry_providers(None, None)
    provider.shutdown()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """A fake clock behind breakers, deadlines and backoff sleeps (nothing really sleeps).

    An isolated runtime on the fake clock (sharing the telemetry of the one in use, so
    ``metric_reader`` works in either order). Attempt timeouts still use real time: the clock
    only replaces what the library reads.
    """
    fake = FakeClock()
    monkeypatch.setattr(_timeout, "_monotonic", fake)
    shared = otel_resilience.default_runtime().telemetry
    with otel_resilience.use_runtime(otel_resilience.Runtime(clock=fake, telemetry=shared)):
        yield fake
