"""Telemetry never harms a call: broken exporters, a collector that is down, a taken port,
instruments that raise. The call returns (or raises) exactly as without telemetry, and each
problem is logged once, not per call.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.metrics import export as metrics_export
from opentelemetry.sdk.trace import export as trace_export

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ReliabilityError,
    TelemetryHandle,
    configure_telemetry,
    resilient_call,
)

from .collector import closed_port
from .conftest import FakeTime
from .helpers import failing, http_error

pytestmark = pytest.mark.usefixtures("fast")


def scenarios() -> list[Any]:
    """One round of calls of every kind; what each returned or raised, comparably."""
    outcomes: list[Any] = []

    def run(*args: Any, **kwargs: Any) -> None:
        try:
            outcomes.append(("returned", resilient_call(*args, **kwargs)))
        except ReliabilityError as error:
            outcomes.append(
                (
                    type(error).__name__,
                    error.error_type.value,
                    error.attempts,
                    type(error.__cause__),
                )
            )

    run("openai", "chat.completions", lambda: {"answer": 42})
    run("openai", "chat.completions", failing(ConnectionError(), http_error(503), result=[1, 2]))
    run("openai", "chat.completions", failing(*[http_error(502)] * 3), max_retries=3)
    run("gcs", "download", failing(http_error(404)))
    run("gcs", "upload", lambda: time.sleep(1), timeout_sec=0.02, max_retries=1)
    for _ in range(3):  # the clamav breaker opens after 2 failures: the third call is rejected
        run("clamav", "scan", failing(ConnectionError()), max_retries=1)
    outcomes.append(
        ("states", [s.state for s in otel_resilience.get_circuit_breaker_manager().status()])
    )
    return outcomes


def two_rounds(between: Any = None) -> list[Any]:
    """The scenarios twice, breakers dropped in between; ``between()`` runs between rounds."""
    outcomes = scenarios()
    if between is not None:
        between()
    otel_resilience.get_circuit_breaker_manager().reset()
    outcomes += scenarios()
    otel_resilience.get_circuit_breaker_manager().reset()
    return outcomes


@pytest.fixture
def baseline(fast: FakeTime) -> list[Any]:
    """The scenarios' outcomes with no telemetry at all (API only, nothing configured)."""
    return two_rounds()


def repeated_messages(records: list[logging.LogRecord]) -> dict[tuple[str, str], int]:
    """Log messages (by logger and text) that appeared more than once."""
    counts = Counter((r.name, r.getMessage()) for r in records if r.levelno >= logging.WARNING)
    return {key: n for key, n in counts.items() if n > 1}


def ours(records: list[logging.LogRecord], text: str) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "otel_resilience" and text in r.getMessage()]


def telemetry_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Warnings about telemetry (not the library's retry and breaker messages)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and (r.name != "otel_resilience" or r.getMessage().startswith("telemetry"))
    ]


@pytest.fixture
def configured(otel_globals: list[TelemetryHandle]) -> Any:
    def setup(**kwargs: Any) -> TelemetryHandle:
        handle = configure_telemetry(**kwargs)
        otel_globals.append(handle)
        return handle

    return setup


def test_span_exporter_that_raises_is_logged_once(
    baseline, configured, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    exported: list[int] = []

    def explode(self, spans) -> Any:
        exported.append(len(spans))
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(trace_export.ConsoleSpanExporter, "export", explode)
    handle = configured(traces_exporter="console", metrics_exporter="none")

    outcomes = two_rounds()
    handle.tracer_provider.force_flush()

    assert outcomes == baseline
    assert len(exported) > 10  # the exporter really was called, and raised, many times
    assert len(ours(caplog.records, "exporter failed")) == 1
    assert repeated_messages(telemetry_warnings(caplog)) == {}


def test_metric_exporter_that_raises_is_logged_once(
    baseline, configured, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> Any:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(metrics_export.ConsoleMetricExporter, "export", explode)
    handle = configured(traces_exporter="none", metrics_exporter="console")

    outcomes = two_rounds(between=handle.meter_provider.force_flush)
    handle.meter_provider.force_flush()
    handle.meter_provider.force_flush()

    assert outcomes == baseline
    assert len(ours(caplog.records, "exporter failed")) == 1
    assert repeated_messages(telemetry_warnings(caplog)) == {}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_collector_down_changes_nothing_and_is_logged_once(
    baseline,
    configured,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    caplog.set_level(logging.WARNING)
    handle = configured()

    def flush() -> None:
        handle.tracer_provider.force_flush()
        handle.meter_provider.force_flush()

    started = time.perf_counter()
    scenarios()
    elapsed = time.perf_counter() - started
    otel_resilience.get_circuit_breaker_manager().reset()
    outcomes = two_rounds(between=flush)
    handle.tracer_provider.force_flush()
    handle.meter_provider.force_flush()

    assert outcomes == baseline
    assert elapsed < 2.0  # nothing waits for the collector on the call path
    assert len(ours(caplog.records, "the otlp exporter failed to export spans")) == 1
    assert len(ours(caplog.records, "the otlp exporter failed to export metrics")) == 1
    assert repeated_messages(telemetry_warnings(caplog)) == {}


def test_prometheus_port_taken_is_a_problem_not_an_exception(
    baseline, configured, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        handle = configured(
            traces_exporter="none", metrics_exporter="prometheus", prometheus_port=port
        )
        outcomes = two_rounds()

    assert outcomes == baseline
    assert handle.prometheus_address is None
    assert len(handle.problems) == 1
    assert str(port) in handle.problems[0]
    assert len(ours(caplog.records, str(port))) == 1


class Explodes:
    """Anything at all: every attribute is a function that raises."""

    def __getattr__(self, name: str) -> Any:
        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"broken telemetry: {name}")

        return boom


class BrokenSpans:
    """A tracer provider whose spans raise from every method (recording, by their own word)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        span = Explodes()
        span.is_recording = lambda: True  # type: ignore[attr-defined]
        return span


class BrokenInstruments:
    """A meter provider whose instruments raise on every recording."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("create_"):
            return lambda *args, **kwargs: Explodes()
        raise AttributeError(name)


@pytest.mark.parametrize(
    ("tracer_provider", "meter_provider"),
    [
        pytest.param(Explodes(), Explodes(), id="get-tracer-and-get-meter-raise"),
        pytest.param(BrokenSpans(), None, id="spans-raise"),
        pytest.param(None, BrokenInstruments(), id="instruments-raise"),
        pytest.param(BrokenSpans(), BrokenInstruments(), id="everything-raises"),
    ],
)
def test_instrumentation_that_raises_changes_nothing_and_is_logged_once_per_step(
    baseline, caplog: pytest.LogCaptureFixture, tracer_provider, meter_provider
) -> None:
    otel_resilience.set_telemetry_providers(tracer_provider, meter_provider)

    outcomes = two_rounds()

    assert outcomes == baseline
    problems = [r for r in caplog.records if r.getMessage().startswith("telemetry:")]
    assert problems  # the breakage was reported...
    assert len({r.getMessage() for r in problems}) == len(problems)  # ...once per kind


async def test_async_call_with_raising_instrumentation_returns_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    otel_resilience.set_telemetry_providers(BrokenSpans(), BrokenInstruments())

    async def fetch() -> str:
        return "value"

    async def missing() -> str:
        raise http_error(404)

    for _ in range(3):
        assert await otel_resilience.resilient_call_async("gcs", "download", fetch) == "value"
        with pytest.raises(ReliabilityError) as raised:
            await otel_resilience.resilient_call_async("gcs", "download", missing)
        assert raised.value.error_type.value == "not_found"
    otel_resilience.get_circuit_breaker_manager().get_breaker("gcs", "download").force_open()
    with pytest.raises(CircuitOpenError):
        await otel_resilience.resilient_call_async("gcs", "download", fetch)
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("telemetry:")]
    assert len(set(messages)) == len(messages)


def test_exporters_that_raise_on_flush_and_shutdown_do_not_break_the_shutdown(
    configured, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(self, *args, **kwargs) -> Any:
        raise RuntimeError("exporter bug")

    for cls in (trace_export.ConsoleSpanExporter, metrics_export.ConsoleMetricExporter):
        for method in ("export", "force_flush", "shutdown"):
            monkeypatch.setattr(cls, method, explode)
    handle = configured(traces_exporter="console", metrics_exporter="console")
    assert resilient_call("gcs", "upload", lambda: "ok") == "ok"

    handle.tracer_provider.force_flush()
    handle.meter_provider.force_flush()
    handle.shutdown()  # must not raise
    handle.shutdown()

    assert resilient_call("gcs", "upload", lambda: "still ok") == "still ok"
    assert len(ours(caplog.records, "console exporter failed to export spans")) == 1
    assert len(ours(caplog.records, "console exporter failed to export metrics")) == 1
