"""What the telemetry tests share: the contract's names, and readers of the SDK.

The names come from ``otel_resilience.telemetry_contract``; ``test_contract.py`` checks that
module against the contract documents (their markdown tables), so these tests check the
instrumentation against the contract without typing its names out again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_resilience import telemetry_contract as tc

SCOPE = tc.SCOPE

SERVICE = tc.ATTRIBUTES.service.key
ENDPOINT = tc.ATTRIBUTES.endpoint.key
ERROR_TYPE = tc.ATTRIBUTES.error_type.key
STATE = tc.ATTRIBUTES.breaker_state.key
ATTEMPT = tc.ATTRIBUTES.attempt.key
OVERRIDE = tc.ATTRIBUTES.breaker_override.key
ATTEMPTS = tc.ATTRIBUTES.attempts.key
RETRY_DELAY_S = tc.ATTRIBUTES.retry_delay_s.key

#: the kind :func:`instrument_kind` reads from the SDK's data, per contract instrument
KIND = {
    tc.Instrument.HISTOGRAM: "histogram",
    tc.Instrument.COUNTER: "counter",
    tc.Instrument.UP_DOWN_COUNTER: "updowncounter",
    tc.Instrument.OBSERVABLE_GAUGE: "gauge",
}
#: the metrics every kind of call (success, failure, retry, timeout, rejection) gives points
CORE = (
    "call_duration",
    "attempt_duration",
    "retries",
    "retry_delay",
    "retries_exhausted",
    "timeouts",
    "breaker_state",
    "breaker_transitions",
    "breaker_rejections",
    "breaker_override",
)
#: OTel name -> (instrument, unit, attribute keys allowed, Prometheus name) of the core metrics
METRICS: Mapping[str, tuple[str, str, frozenset[str], str]] = {
    m.name: (KIND[m.instrument], m.unit, frozenset(m.attributes), m.prometheus)
    for m in (getattr(tc.METRICS, field) for field in CORE)
}

#: attributes that must be on every metric point of the core metrics
REQUIRED = frozenset({SERVICE, ENDPOINT})

#: every ``error.type`` value the contract allows
ERROR_TYPES = frozenset(tc.ATTRIBUTES.error_type.values)

DURATION_HISTOGRAMS = (tc.METRICS.call_duration.name, tc.METRICS.attempt_duration.name)


@dataclass
class Otel:
    """The in-memory SDK behind one test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]

    def metrics(self) -> dict[str, Metric]:
        """Our scope's metrics by name (one collection)."""
        data = self.reader.get_metrics_data()
        found: dict[str, Metric] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name != SCOPE:
                    continue
                for metric in scope_metrics.metrics:
                    found[metric.name] = metric
        return found


def points(metrics: Mapping[str, Metric], name: str) -> dict[frozenset[tuple[str, Any]], Any]:
    """The data points of one metric keyed by their attribute set ({} when never recorded)."""
    metric = metrics.get(name)
    if metric is None:
        return {}
    return {frozenset(dict(p.attributes or {}).items()): p for p in metric.data.data_points}


def attrs(service: str, endpoint: str, **extra: str) -> frozenset[tuple[str, Any]]:
    """An attribute set key: service, endpoint and e.g. ``error_type="timeout"``."""
    found: dict[str, Any] = {SERVICE: service, ENDPOINT: endpoint}
    for key, value in extra.items():
        found[{"error_type": ERROR_TYPE, "state": STATE}[key]] = value
    return frozenset(found.items())


def value(metrics: Mapping[str, Metric], name: str, key: frozenset[tuple[str, Any]]) -> Any:
    """A counter's value or a histogram's count at one attribute set (0 when absent)."""
    point = points(metrics, name).get(key)
    if point is None:
        return 0
    return point.count if isinstance(metrics[name].data, Histogram) else point.value


def instrument_kind(metric: Metric) -> str:
    data = metric.data
    if isinstance(data, Histogram):
        return "histogram"
    if isinstance(data, Sum):
        return "counter" if data.is_monotonic else "updowncounter"
    if isinstance(data, Gauge):
        return "gauge"
    return type(data).__name__  # pragma: no cover - a kind the contract does not use


def http_error(status: int, headers: Mapping[str, str] | None = None) -> httpx.HTTPStatusError:
    """The exception ``response.raise_for_status()`` raises for ``status``."""
    request = httpx.Request("GET", "http://127.0.0.1:9/resource")
    response = httpx.Response(status, request=request, headers=dict(headers or {}))
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError(f"status {status} is not an error")  # pragma: no cover


def failing(*errors: BaseException, result: Any = "ok") -> Callable[[], Any]:
    """A function that raises ``errors`` one per call, then returns ``result``; counts calls."""
    pending = list(errors)

    def func() -> Any:
        func.calls += 1  # type: ignore[attr-defined]
        if pending:
            raise pending.pop(0)
        return result

    func.calls = 0  # type: ignore[attr-defined]
    return func


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of the span's parent (None for a root span)."""
    return None if span.parent is None else span.parent.span_id


def recorded(metrics: Mapping[str, Metric], name: str) -> dict[frozenset[tuple[str, Any]], Any]:
    """Counter values / histogram counts by attribute set, leaving out series still at 0.

    (Series may be started at 0 on purpose, so that the first increase is visible to rate().)
    """
    found = {}
    for key, point in points(metrics, name).items():
        amount = point.count if isinstance(metrics[name].data, Histogram) else point.value
        if amount:
            found[key] = amount
    return found
