"""What the telemetry tests share: the contract of TELEMETRY.md typed out, and readers of the SDK.

The expected names below are copied from ``../shared/TELEMETRY.md`` by hand on purpose: the tests
prove the contract, so they do not import the names they check from the code under test.
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

SCOPE = "otel_resilience"

SERVICE = "resilience.service"
ENDPOINT = "resilience.endpoint"
ERROR_TYPE = "error.type"
STATE = "resilience.circuit_breaker.state"
ATTEMPT = "resilience.attempt"
OVERRIDE = "resilience.circuit_breaker.override"
ATTEMPTS = "resilience.attempts"
RETRY_DELAY_S = "resilience.retry.delay_s"

#: OTel name -> (instrument, unit, attribute keys allowed, Prometheus name); TELEMETRY.md "Metrics"
METRICS: Mapping[str, tuple[str, str, frozenset[str], str]] = {
    "resilience.call.duration": (
        "histogram",
        "s",
        frozenset({SERVICE, ENDPOINT, ERROR_TYPE}),
        "resilience_call_duration_seconds",
    ),
    "resilience.attempt.duration": (
        "histogram",
        "s",
        frozenset({SERVICE, ENDPOINT, ERROR_TYPE}),
        "resilience_attempt_duration_seconds",
    ),
    "resilience.retries": (
        "counter",
        "{retry}",
        frozenset({SERVICE, ENDPOINT, ERROR_TYPE}),
        "resilience_retries_total",
    ),
    "resilience.retry.delay": (
        "histogram",
        "s",
        frozenset({SERVICE, ENDPOINT}),
        "resilience_retry_delay_seconds",
    ),
    "resilience.retries.exhausted": (
        "counter",
        "{call}",
        frozenset({SERVICE, ENDPOINT, ERROR_TYPE}),
        "resilience_retries_exhausted_total",
    ),
    "resilience.timeouts": (
        "counter",
        "{timeout}",
        frozenset({SERVICE, ENDPOINT}),
        "resilience_timeouts_total",
    ),
    "resilience.circuit_breaker.state": (
        "gauge",
        "",
        frozenset({SERVICE, ENDPOINT, STATE}),
        "resilience_circuit_breaker_state",
    ),
    "resilience.circuit_breaker.transitions": (
        "counter",
        "{transition}",
        frozenset({SERVICE, ENDPOINT, STATE}),
        "resilience_circuit_breaker_transitions_total",
    ),
    "resilience.circuit_breaker.rejections": (
        "counter",
        "{call}",
        frozenset({SERVICE, ENDPOINT}),
        "resilience_circuit_breaker_rejections_total",
    ),
    # TELEMETRY.md, second round
    "resilience.circuit_breaker.override": (
        "gauge",
        "",
        frozenset({SERVICE, ENDPOINT, OVERRIDE}),
        "resilience_circuit_breaker_override",
    ),
}

#: attributes that must be on every metric point of the core metrics
REQUIRED = frozenset({SERVICE, ENDPOINT})

#: every ``error.type`` value TELEMETRY.md allows
ERROR_TYPES = frozenset(
    {
        "timeout",
        "connection_error",
        "rate_limit",
        "authentication_error",
        "permission_denied",
        "not_found",
        "bad_request",
        "server_error",
        "unknown_error",
        "circuit_open",
        "throttled",
        "concurrency_limited",  # WIRE(load control)
    }
)

DURATION_HISTOGRAMS = ("resilience.call.duration", "resilience.attempt.duration")


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
