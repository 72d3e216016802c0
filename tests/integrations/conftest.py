"""Fixtures of the integration tests: real local servers, injected SDK telemetry, fast backoff."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_resilience
from faultserver import FaultServer
from otel_resilience import ReliabilityConfig
from support import FakeClock

from .llm_standin import LlmStandIn


@dataclass
class Otel:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def call_spans(self, service: str, endpoint: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == f"{service} {endpoint}"]

    def attempt_spans(self, service: str, endpoint: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == f"{service} {endpoint} attempt"]

    def histogram_counts(self, name: str) -> dict[tuple[tuple[str, Any], ...], int]:
        data = self.reader.get_metrics_data()
        found: dict[tuple[tuple[str, Any], ...], int] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        key = tuple(sorted((point.attributes or {}).items()))
                        found[key] = point.count
        return found

    def attempts_reported(self, service: str) -> int:
        """Attempts the library recorded for ``service`` (the attempt-duration histogram)."""
        return sum(
            n
            for key, n in self.histogram_counts("resilience.attempt.duration").items()
            if ("resilience.service", service) in key
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel_resilience.set_telemetry_providers(tracer_provider, meter_provider)
    yield Otel(exporter, reader, tracer_provider)
    otel_resilience.set_telemetry_providers(None, None)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture(autouse=True)
def fast() -> None:
    """Millisecond backoff (Retry-After waits stay real), 5 s attempts, 3 attempts."""
    otel_resilience.configure(
        default=ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1, HTTP_TIMEOUT_SEC=5, HTTP_RETRIES=3)
    )


@pytest.fixture
def breaker_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The breakers' clock, faked: a test moves past ``CB_RESET_SEC`` without waiting."""
    fake = FakeClock()
    monkeypatch.setattr(otel_resilience.get_circuit_breaker_manager(), "_clock", fake)
    return fake


@pytest.fixture(scope="session")
def _fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def server(_fault_server: FaultServer) -> FaultServer:
    _fault_server.clear()
    return _fault_server


@pytest.fixture(scope="session")
def _llm() -> Iterator[LlmStandIn]:
    with LlmStandIn() as llm:
        yield llm


@pytest.fixture
def llm(_llm: LlmStandIn) -> LlmStandIn:
    _llm.clear()
    return _llm


class Frozen:
    """A server in a child process that a test can freeze (SIGSTOP) and thaw (SIGCONT)."""

    def __init__(self, kind: str) -> None:
        script = os.path.join(os.path.dirname(__file__), "serve.py")
        self.process = subprocess.Popen(
            [sys.executable, script, kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://"), self.url

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck child
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def frozen_fault_server() -> Iterator[Frozen]:
    server = Frozen("fault")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def frozen_llm() -> Iterator[Frozen]:
    server = Frozen("llm")
    try:
        yield server
    finally:
        server.stop()
