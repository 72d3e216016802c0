"""``otel_resilience._names`` (what dashboards, alerts and the code import) matches TELEMETRY.md."""

from __future__ import annotations

from otel_resilience import _names as n

from .helpers import ATTEMPT, ENDPOINT, ERROR_TYPE, METRICS, SERVICE, STATE


def test_every_contract_metric_has_its_otel_and_prometheus_constant() -> None:
    pairs = {
        getattr(n, name): getattr(n, f"PROM_{name}")
        for name in dir(n)
        if name.isupper() and hasattr(n, f"PROM_{name}") and not name.startswith("PROM_")
    }

    for otel_name, (_kind, _unit, _attrs, prometheus) in METRICS.items():
        assert pairs.get(otel_name) == prometheus, otel_name
    assert set(n.PROM_METRICS) >= {prometheus for *_, prometheus in METRICS.values()}


def test_attribute_and_label_constants_are_the_contract_names() -> None:
    assert (n.ATTR_SERVICE, n.ATTR_ENDPOINT, n.ATTR_ERROR_TYPE) == (SERVICE, ENDPOINT, ERROR_TYPE)
    assert (n.ATTR_BREAKER_STATE, n.ATTR_ATTEMPT) == (STATE, ATTEMPT)
    assert (n.PROM_SERVICE, n.PROM_ENDPOINT, n.PROM_ERROR_TYPE, n.PROM_BREAKER_STATE_LABEL) == (
        "resilience_service",
        "resilience_endpoint",
        "error_type",
        "resilience_circuit_breaker_state",
    )
    assert n.SCOPE == "otel_resilience"
    assert n.EVENT_RETRY == "retry"
    assert n.OVERFLOW_ENDPOINT == "_other"
