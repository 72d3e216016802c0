"""Series and memory stay bounded with endless distinct endpoint names."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_resilience
from otel_resilience import get_circuit_breaker_manager, resilient_call
from otel_resilience import telemetry_contract as tc
from otel_resilience._runtime import get_telemetry
from otel_resilience._telemetry import MAX_ENDPOINTS, SDK_CARDINALITY_LIMIT

GAUGE = "resilience.circuit_breaker.state"


def _gauge_points(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    found: dict[tuple[str, str], int] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == GAUGE:
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        if "otel.metric.overflow" in attrs:
                            found[("overflow", "")] = int(point.value)
                            continue
                        key = (
                            attrs[tc.ATTRIBUTES.endpoint.key],
                            attrs["resilience.circuit_breaker.state"],
                        )
                        found[key] = int(point.value)
    return found


def test_every_capped_pair_keeps_its_state_series_inside_the_sdk_limit() -> None:
    # the real SDK with its default cardinality limit: nothing injected lowers it
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel_resilience.set_telemetry_providers(meter_provider=provider)
    try:
        manager = get_circuit_breaker_manager()
        manager.max_idle_breakers = 10 * MAX_ENDPOINTS  # keep every breaker for the gauge
        for i in range(MAX_ENDPOINTS + 300):
            resilient_call("crawler", f"page-{i}", lambda: "ok")
        last_capped = f"page-{MAX_ENDPOINTS - 1}"
        manager.get_breaker("crawler", last_capped).force_open()
        manager.get_breaker("crawler", f"page-{MAX_ENDPOINTS + 100}").force_open()

        points = _gauge_points(reader)
    finally:
        otel_resilience.set_telemetry_providers(None, None)
        provider.shutdown()

    assert ("overflow", "") not in points  # the SDK never had to drop a series
    assert points[(last_capped, "open")] == 1
    assert points[(last_capped, "closed")] == 0
    assert points[("_other", "open")] == 1  # an open breaker behind "_other" still shows
    assert len(points) <= SDK_CARDINALITY_LIMIT


def test_endless_distinct_endpoints_keep_breakers_and_telemetry_pairs_bounded(otel) -> None:
    manager = get_circuit_breaker_manager()
    for i in range(20_000):
        resilient_call("crawler", f"page-{i}", lambda: "ok")
    assert len(manager.breakers()) <= 2 * manager.max_idle_breakers
    pairs = get_telemetry()._pairs
    assert len(pairs) <= 2 * MAX_ENDPOINTS + 1000 + 1
    health = otel_resilience.health_report()
    assert len(health["breakers"]) <= 2 * manager.max_idle_breakers
