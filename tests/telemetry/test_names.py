"""``otel_resilience._names``, the flat constants some modules use, says what the contract says."""

from __future__ import annotations

from otel_resilience import _names as n
from otel_resilience import telemetry_contract as tc


def _constants() -> dict[str, object]:
    return {name: getattr(n, name) for name in dir(n) if name.isupper()}


def test_every_constant_is_a_name_of_the_contract() -> None:
    keys = {a.key for a in tc.ATTRIBUTES}
    labels = {a.label for a in tc.ATTRIBUTES}
    prometheus = {m.prometheus for m in tc.METRICS}
    for name, value in _constants().items():
        if name.startswith("ATTR_"):
            assert value in keys, name
        elif name.startswith("PROM_") and name.endswith(("_LABEL", "_SERVICE", "_ENDPOINT")):
            assert value in labels, name
        elif name.startswith("PROM_"):
            assert value in prometheus, name


def test_the_spelled_out_constants_are_the_contracts() -> None:
    assert (
        tc.ATTRIBUTES.service.key,
        tc.ATTRIBUTES.endpoint.key,
        tc.ATTRIBUTES.error_type.key,
    ) == (n.ATTR_SERVICE, n.ATTR_ENDPOINT, n.ATTR_ERROR_TYPE)
    assert (n.PROM_SERVICE, n.PROM_ENDPOINT, n.PROM_BREAKER_STATE_LABEL) == (
        "resilience_service",
        "resilience_endpoint",
        "resilience_circuit_breaker_state",
    )
    assert tc.METRICS.breaker_state.prometheus == n.PROM_BREAKER_STATE
    assert (n.SCOPE, n.EVENT_RETRY, n.OVERFLOW_ENDPOINT, n.OVERRIDE_NONE) == (
        "otel_resilience",
        "retry",
        "_other",
        "none",
    )
    assert n.DURATION_BUCKETS_S is tc.DURATION_BUCKETS_S
