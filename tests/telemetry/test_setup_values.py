"""``configure_telemetry()``'s reading of single values: ports, resource attributes, endpoints."""

from __future__ import annotations

import pytest
from opentelemetry import metrics, trace

from otel_resilience import TelemetryHandle, configure_telemetry
from otel_resilience._setup import _otlp_endpoint

Handles = list[TelemetryHandle]


@pytest.mark.parametrize(
    ("kwargs", "environ", "culprit"),
    [
        pytest.param(
            {},
            {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "70000"},
            "OTEL_EXPORTER_PROMETHEUS_PORT='70000' is not accepted",
            id="variable-above-65535",
        ),
        pytest.param(
            {"metrics_exporter": "prometheus", "prometheus_port": -1},
            {},
            "prometheus_port=-1 is not accepted",
            id="argument-negative",
        ),
        pytest.param(
            {"metrics_exporter": "prometheus", "prometheus_port": True},
            {},
            "prometheus_port=True is not accepted",
            id="argument-bool",
        ),
    ],
)
def test_a_port_out_of_range_is_a_value_error_naming_its_source_and_installs_nothing(
    otel_globals: Handles, kwargs: dict[str, object], environ: dict[str, str], culprit: str
) -> None:
    with pytest.raises(ValueError, match=culprit) as raised:
        configure_telemetry(traces_exporter="none", environ=environ, **kwargs)  # type: ignore[arg-type]

    assert "expected a port number from 0 to 65535" in str(raised.value)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"


def test_resource_attribute_items_without_a_key_are_skipped(otel_globals: Handles) -> None:
    environ = {"OTEL_RESOURCE_ATTRIBUTES": "=orphan,team=pay%20ments,novalue, ,region = eu "}
    handle = configure_telemetry(
        traces_exporter="console", metrics_exporter="none", environ=environ
    )
    otel_globals.append(handle)

    attributes = dict(handle.tracer_provider.resource.attributes)
    assert attributes["team"] == "pay ments"
    assert attributes["region"] == "eu"
    assert "" not in attributes
    assert "novalue" not in attributes
    assert "orphan" not in attributes.values()


@pytest.mark.parametrize(
    ("signal", "protocol", "environ", "expected"),
    [
        pytest.param("TRACES", "http/protobuf", {}, None, id="none-set-exporter-default"),
        pytest.param(
            "TRACES", "http/protobuf", {"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, None, id="blank"
        ),
        pytest.param(
            "METRICS",
            "http/protobuf",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            "http://collector:4318/v1/metrics",
            id="http-base-gets-the-signal-path",
        ),
        pytest.param(
            "TRACES",
            "grpc",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317/"},
            "http://collector:4317/",
            id="grpc-base-unchanged",
        ),
        pytest.param(
            "TRACES",
            "http/protobuf",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/x",
            },
            "http://traces:9999/x",
            id="signal-specific-wins",
        ),
    ],
)
def test_the_otlp_endpoint_of_a_signal_follows_the_otel_rules(
    signal: str, protocol: str, environ: dict[str, str], expected: str | None
) -> None:
    assert _otlp_endpoint(signal, protocol, environ) == expected
