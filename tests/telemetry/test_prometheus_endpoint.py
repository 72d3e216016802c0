"""The Prometheus pull endpoint of ``configure_telemetry``: the real ``/metrics`` text.

The names and labels checked are TELEMETRY.md's "Prometheus name" column, typed out here.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bundle.servers import Prom, start_prometheus, wait_until
from otel_resilience import (
    CircuitOpenError,
    ReliabilityError,
    TelemetryHandle,
    configure_telemetry,
    resilient_call,
)
from otel_resilience import telemetry_contract as tc

from .conftest import FakeTime
from .helpers import METRICS, failing, http_error

pytestmark = pytest.mark.usefixtures("fast")

LABELS = {"resilience_service", tc.ATTRIBUTES.endpoint.label}


def scrape(handle: TelemetryHandle) -> str:
    assert handle.prometheus_address is not None
    host, port = handle.prometheus_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.fixture
def endpoint(otel_globals: list[TelemetryHandle]) -> TelemetryHandle:
    handle = configure_telemetry(
        traces_exporter="none", metrics_exporter="prometheus", prometheus_port=0
    )
    otel_globals.append(handle)
    assert handle.problems == []
    return handle


def every_outcome(fast: FakeTime) -> None:
    resilient_call("openai", "chat.completions", lambda: "ok")
    resilient_call("openai", "chat.completions", failing(http_error(429)), max_retries=2)
    with pytest.raises(ReliabilityError):
        resilient_call("openai", "chat.completions", failing(*[http_error(503)] * 2), max_retries=2)
    with pytest.raises(ReliabilityError):
        resilient_call("gcs", "upload", lambda: time.sleep(1), timeout_sec=0.02, max_retries=1)
    for _ in range(2):  # the clamav breaker opens after 2 failures in the ``fast`` config
        with pytest.raises(ReliabilityError):
            resilient_call("clamav", "scan", failing(ConnectionError()), max_retries=1)
    with pytest.raises(CircuitOpenError):
        resilient_call("clamav", "scan", lambda: "rejected")


def test_metrics_text_has_every_prometheus_name_of_the_contract(
    endpoint: TelemetryHandle, fast: FakeTime
) -> None:
    every_outcome(fast)

    found = samples(scrape(endpoint))

    names = {s.name for s in found}
    for otel_name, (kind, _unit, _attrs, prometheus) in METRICS.items():
        if kind == "histogram":
            expected = {f"{prometheus}_bucket", f"{prometheus}_sum", f"{prometheus}_count"}
        else:
            expected = {prometheus}
        assert expected <= names, (otel_name, sorted(n for n in names if "resilience" in n))
    ours = [s for s in found if s.name.startswith("resilience_")]
    assert all(set(s.labels) >= LABELS for s in ours)
    assert not [s for s in ours if tc.ATTRIBUTES.attempt.label in s.labels]
    assert not [n for n in names if n.endswith("_ratio")]  # no unit "1" anywhere


def test_labels_are_the_attributes_with_underscores(
    endpoint: TelemetryHandle, fast: FakeTime
) -> None:
    every_outcome(fast)

    found = samples(scrape(endpoint))

    def value(name: str, **labels: str) -> float:
        matching = [s.value for s in found if s.name == name and labels.items() <= s.labels.items()]
        assert len(matching) == 1, (name, labels, matching)
        return matching[0]

    chat = {"resilience_service": "openai", tc.ATTRIBUTES.endpoint.label: "chat.completions"}
    assert value(tc.METRICS.retries.prometheus, **chat, error_type="rate_limit") == 1
    assert value(tc.METRICS.retries.prometheus, **chat, error_type="server_error") == 1
    assert value(tc.METRICS.retries_exhausted.prometheus, **chat, error_type="server_error") == 1
    assert value("resilience_call_duration_seconds_count", **chat, error_type="server_error") == 1
    successes = [
        s
        for s in found
        if s.name == "resilience_call_duration_seconds_count"
        and s.labels.get(tc.ATTRIBUTES.endpoint.label) == "chat.completions"
        # absent, or "" (Prometheus: the same thing)
        and not s.labels.get(tc.ATTRIBUTES.error_type.label)
    ]
    assert [s.value for s in successes] == [2]  # the plain and the retried success
    scan = {"resilience_service": "clamav", tc.ATTRIBUTES.endpoint.label: "scan"}
    assert (
        value("resilience_circuit_breaker_state", **scan, resilience_circuit_breaker_state="open")
        == 1
    )
    assert (
        value("resilience_circuit_breaker_state", **scan, resilience_circuit_breaker_state="closed")
        == 0
    )
    assert (
        value(
            tc.METRICS.breaker_transitions.prometheus,
            **scan,
            resilience_circuit_breaker_state="open",
        )
        == 1
    )
    assert value(tc.METRICS.breaker_rejections.prometheus, **scan) == 1
    assert (
        value(
            tc.METRICS.timeouts.prometheus,
            **{"resilience_service": "gcs", "resilience_endpoint": "upload"},
        )
        == 1
    )
    buckets = [
        float(s.labels["le"])
        for s in found
        if s.name == "resilience_call_duration_seconds_bucket"
        and s.labels.items() >= chat.items()
        and not s.labels.get(tc.ATTRIBUTES.error_type.label)
    ]
    assert min(buckets) == pytest.approx(0.005)  # second-scale boundaries reach Prometheus
    assert 60.0 in buckets


@pytest.mark.integration
def test_a_real_prometheus_scrapes_the_contract_names(
    endpoint: TelemetryHandle, fast: FakeTime, tmp_path: Path
) -> None:
    every_outcome(fast)
    assert endpoint.prometheus_address is not None
    host, port = endpoint.prometheus_address
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: app\n    static_configs: [{{targets: ['{host}:{port}']}}]\n"
    )
    prometheus = start_prometheus(config, tmp_path)
    try:
        prom = Prom(prometheus.url)
        wait_until(
            lambda: prom.query(tc.METRICS.breaker_rejections.prometheus),
            30,
            what="the first scrape",
        )
        names = {s["__name__"] for s in prom.series('{__name__=~"resilience_.+"}')}
        rate = prom.query(
            'sum by (error_type) (resilience_retries_total{resilience_service="openai"})'
        )
    finally:
        prometheus.stop()

    for kind, _unit, _attrs, prometheus_name in METRICS.values():
        family = {f"{prometheus_name}_count"} if kind == "histogram" else {prometheus_name}
        assert family <= names, prometheus_name
    assert {r["metric"][tc.ATTRIBUTES.error_type.label]: float(r["value"][1]) for r in rate} == {
        "rate_limit": 1.0,
        "server_error": 1.0,
    }
