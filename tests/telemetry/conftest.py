"""Fixtures of the telemetry tests: SDK providers injected (never the global ones), fast retries."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

import otel_resilience
from otel_resilience import ReliabilityConfig, TelemetryHandle
from support import FakeClock

from .helpers import Otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    """SDK providers with in-memory exporters, injected with ``set_telemetry_providers``."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel_resilience.set_telemetry_providers(tracer_provider, meter_provider)
    yield Otel(exporter, reader, tracer_provider, meter_provider)
    otel_resilience.set_telemetry_providers(None, None)
    tracer_provider.shutdown()
    meter_provider.shutdown()


#: the breakers' clock and the backoff sleeps, faked (attempt timeouts keep real time)
FakeTime = FakeClock


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    """Millisecond backoff slept on the fake clock (nothing really sleeps).

    The ``clamav`` service's breaker opens after 2 failures and probes after 10 s (fake) seconds;
    the others' after 5 failures. An isolated runtime on the fake clock, sharing the telemetry
    of the one in use.
    """
    fake = FakeTime()
    shared = otel_resilience.default_runtime().telemetry
    with otel_resilience.use_runtime(otel_resilience.Runtime(clock=fake, telemetry=shared)):
        otel_resilience.configure(
            default=ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1, HTTP_TIMEOUT_SEC=5),
            services={
                "clamav": ReliabilityConfig(
                    HTTP_BACKOFF_BASE_MS=1, HTTP_TIMEOUT_SEC=5, CB_FAIL_THRESHOLD=2, CB_RESET_SEC=10
                )
            },
        )
        yield fake


@pytest.fixture
def otel_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[TelemetryHandle]]:
    """Unset global providers and no ``OTEL_*`` variables, for ``configure_telemetry`` tests.

    ``configure_telemetry`` exists to install global providers; this gives each test a fresh,
    never-set pair and puts the process's own back afterwards. Append handles to the yielded
    list to have them shut down.
    """
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_PROXY_TRACER_PROVIDER", trace.ProxyTracerProvider())
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", None)
    monkeypatch.setattr(
        metrics_internal, "_PROXY_METER_PROVIDER", metrics_internal._ProxyMeterProvider()
    )
    handles: list[TelemetryHandle] = []
    yield handles
    for handle in handles:
        handle.shutdown()
