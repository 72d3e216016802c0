"""``configure_telemetry()``: SDK providers from the ``OTEL_*`` variables; never replacing any."""

from __future__ import annotations

import io
import time
import urllib.request
import uuid
from collections.abc import Callable

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_resilience import TelemetryHandle, configure_telemetry, resilient_call
from otel_resilience import telemetry_contract as tc

from .collector import Received, closed_port, grpc_collector, http_collector

Handles = list[TelemetryHandle]


def configure(handles: Handles, **kwargs) -> TelemetryHandle:
    handle = configure_telemetry(**kwargs)
    handles.append(handle)
    return handle


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def test_resource_comes_from_otel_variables_with_a_service_instance_id(
    otel_globals: Handles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=payments")

    handle = configure(otel_globals, traces_exporter="console", metrics_exporter="console")

    assert trace.get_tracer_provider() is handle.tracer_provider
    assert metrics.get_meter_provider() is handle.meter_provider
    for provider in (handle.tracer_provider, handle.meter_provider):
        resource = (
            provider.resource if hasattr(provider, "resource") else provider._sdk_config.resource
        )
        assert resource.attributes["service.name"] == "checkout"
        assert resource.attributes["deployment.environment"] == "test"
        assert resource.attributes["team"] == "payments"
        uuid.UUID(str(resource.attributes["service.instance.id"]))  # a real id, not a placeholder


def test_each_process_gets_its_own_service_instance_id(otel_globals: Handles) -> None:
    first = configure(otel_globals, traces_exporter="console", metrics_exporter="none")
    instance = first.tracer_provider.resource.attributes["service.instance.id"]
    first.shutdown()
    with pytest.MonkeyPatch.context() as mp:  # a second, independent setup
        mp.setattr(trace, "_TRACER_PROVIDER", None)
        mp.setattr(trace, "_PROXY_TRACER_PROVIDER", trace.ProxyTracerProvider())
        from opentelemetry.util._once import Once

        mp.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
        second = configure(otel_globals, traces_exporter="console", metrics_exporter="none")
        assert second.tracer_provider.resource.attributes["service.instance.id"] != instance


def test_service_name_argument_wins_over_the_variable(
    otel_globals: Handles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")

    handle = configure(
        otel_globals, service_name="from-arg", traces_exporter="console", metrics_exporter="none"
    )

    assert handle.tracer_provider.resource.attributes["service.name"] == "from-arg"


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the console span exporter prints (it binds ``sys.stdout`` at import, before capsys)."""
    from opentelemetry.sdk.trace import export

    out = io.StringIO()

    class Console(export.ConsoleSpanExporter):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("out", out)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(export, "ConsoleSpanExporter", Console)
    return out


def test_console_exporter_prints_the_call_spans(otel_globals: Handles, console) -> None:
    configure(otel_globals, traces_exporter="console", metrics_exporter="none")

    assert resilient_call("openai", "chat.completions", lambda: 42) == 42

    out = console.getvalue()
    assert '"name": "openai chat.completions attempt"' in out
    assert '"name": "openai chat.completions"' in out


def test_none_installs_nothing(otel_globals: Handles) -> None:
    handle = configure(otel_globals, traces_exporter="none", metrics_exporter="none")

    assert handle.tracer_provider is None
    assert handle.meter_provider is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert resilient_call("gcs", "upload", lambda: "ok") == "ok"


def test_providers_the_application_set_are_never_replaced(otel_globals: Handles) -> None:
    exporter = InMemorySpanExporter()
    app_tracer_provider = TracerProvider()
    app_tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    app_meter_provider = MeterProvider()
    trace.set_tracer_provider(app_tracer_provider)
    metrics.set_meter_provider(app_meter_provider)

    handle = configure(otel_globals, traces_exporter="console", metrics_exporter="console")

    assert handle.tracer_provider is None
    assert handle.meter_provider is None
    assert trace.get_tracer_provider() is app_tracer_provider
    assert metrics.get_meter_provider() is app_meter_provider
    resilient_call("openai", "embeddings", lambda: [0.5])
    assert {s.name for s in exporter.get_finished_spans()} == {
        "openai embeddings",
        "openai embeddings attempt",
    }
    app_meter_provider.shutdown()


@pytest.mark.parametrize(
    ("protocol", "collector"),
    [
        pytest.param(None, http_collector, id="default-http-protobuf"),
        pytest.param("http/protobuf", http_collector, id="http-protobuf"),
        pytest.param("grpc", grpc_collector, id="grpc"),
    ],
)
def test_otlp_exports_spans_and_metrics_to_the_collector_endpoint(
    otel_globals: Handles, monkeypatch: pytest.MonkeyPatch, protocol, collector
) -> None:
    with collector() as (endpoint, received):
        received: Received
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
        if protocol is not None:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        handle = configure(otel_globals)  # otlp is the default of both variables

        assert resilient_call("openai", "chat.completions", lambda: "ok") == "ok"
        handle.shutdown()  # flushes

        assert {"openai chat.completions", "openai chat.completions attempt"} <= (
            received.span_names()
        )
        assert {"resilience.call.duration", tc.METRICS.attempt_duration.name} <= (
            received.metric_names()
        )
        assert received.resource_attributes()["service.name"] == "checkout"


def test_prometheus_endpoint_address_comes_from_the_variables(
    otel_globals: Handles, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))

    handle = configure(otel_globals)
    resilient_call("gcs", "upload", lambda: "ok")

    assert handle.prometheus_address == ("127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert "resilience_call_duration_seconds_count" in response.read().decode()
    handle.shutdown()
    assert handle.prometheus_address is None
    with pytest.raises(OSError, match="Connection refused"):  # the endpoint is gone
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_prometheus_endpoint_defaults_to_localhost_9464(
    otel_globals: Handles, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prometheus_client

    bound: list[tuple[int, str]] = []

    class FakeServer:
        server_address = ("127.0.0.1", 9464)

        def shutdown(self) -> None: ...

        def server_close(self) -> None: ...

    def fake_start_http_server(port, addr="0.0.0.0", registry=None, **kwargs):
        bound.append((port, addr))
        return FakeServer(), None

    monkeypatch.setattr(prometheus_client, "start_http_server", fake_start_http_server)

    handle = configure(otel_globals, traces_exporter="none", metrics_exporter="prometheus")

    assert bound == [(9464, "127.0.0.1")]  # localhost, not every interface
    assert handle.prometheus_address == ("127.0.0.1", 9464)


@pytest.mark.parametrize(
    ("variables", "culprit"),
    [
        pytest.param({"OTEL_METRICS_EXPORTER": "statsd"}, "OTEL_METRICS_EXPORTER", id="metrics"),
        pytest.param({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", id="traces"),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "prometheus"}, "OTEL_TRACES_EXPORTER", id="prom-traces"
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL", id="proto"
        ),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "json"},
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            id="metrics-proto",
        ),
        pytest.param(
            {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "ninety"},
            "OTEL_EXPORTER_PROMETHEUS_PORT",
            id="port",
        ),
    ],
)
def test_a_value_that_is_not_accepted_is_a_value_error_naming_the_variable(
    otel_globals: Handles, monkeypatch: pytest.MonkeyPatch, variables, culprit
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=culprit):
        configure(otel_globals)

    # nothing half set up: a bad value fails before any provider is installed
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"


def test_shutdown_is_idempotent_and_leaves_calls_working(otel_globals: Handles) -> None:
    handle = configure(otel_globals, traces_exporter="console", metrics_exporter="console")

    handle.shutdown()
    handle.shutdown()

    assert resilient_call("gcs", "upload", lambda: "still ok") == "still ok"


def test_resilient_call_picks_up_providers_installed_after_its_first_use(
    otel_globals: Handles, console
) -> None:
    resilient_call("gcs", "upload", lambda: "before")  # telemetry off: no SDK yet
    handle = configure(
        otel_globals, traces_exporter="console", metrics_exporter="prometheus", prometheus_port=0
    )

    resilient_call("gcs", "upload", lambda: "after")

    assert console.getvalue().count('"name": "gcs upload"') == 1
    host, port = handle.prometheus_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = [
        line
        for line in text.splitlines()
        if line.startswith("resilience_call_duration_seconds_count")
    ]
    assert len(counts) == 1
    assert counts[0].endswith(" 1.0")  # the call after the setup, not the one before


def test_an_app_tracer_provider_is_kept_while_metrics_get_ours(otel_globals: Handles) -> None:
    app_tracer_provider = TracerProvider()
    trace.set_tracer_provider(app_tracer_provider)

    handle = configure(otel_globals, traces_exporter="console", metrics_exporter="console")

    assert handle.tracer_provider is None
    assert trace.get_tracer_provider() is app_tracer_provider
    assert isinstance(handle.meter_provider, MeterProvider)
    assert metrics.get_meter_provider() is handle.meter_provider


@pytest.mark.parametrize(
    ("protocol", "collector"),
    [
        pytest.param("http/protobuf", http_collector, id="http-protobuf"),
        pytest.param("grpc", grpc_collector, id="grpc"),
    ],
)
def test_an_environ_mapping_is_read_like_the_process_environment(
    otel_globals: Handles, protocol, collector
) -> None:
    """``configure_telemetry(environ=...)`` takes the variables from the mapping, all of them."""
    with collector() as (endpoint, received):
        received: Received
        handle = configure(
            otel_globals,
            environ={
                "OTEL_SERVICE_NAME": "from-mapping",
                "OTEL_RESOURCE_ATTRIBUTES": "team=payments",
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_METRICS_EXPORTER": "none",
            },
        )

        resilient_call("gcs", "upload", lambda: "ok")
        handle.shutdown()

        assert "gcs upload" in received.span_names()
        assert received.resource_attributes()["service.name"] == "from-mapping"
        assert received.resource_attributes()["team"] == "payments"
