"""In-memory OpenTelemetry SDK for the integration tests (spans and metrics they assert)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_resilience
from telemetry.helpers import Otel


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
