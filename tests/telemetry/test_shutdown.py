"""Telemetry shutdown is bounded with the collector down; the exporters' log-once is per outage."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_resilience import TelemetryHandle, configure_telemetry, resilient_call
from otel_resilience import telemetry_contract as tc

from .collector import closed_port, http_collector

SHUTDOWN_ENV = "RELIABILITY_TELEMETRY_SHUTDOWN_TIMEOUT_SEC"


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections, reads what is sent and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def _traffic() -> None:
    for _ in range(5):
        resilient_call("gcs", "upload", lambda: "ok")


def _timed_shutdown(handle: TelemetryHandle, **kwargs: Any) -> float:
    start = time.monotonic()
    handle.shutdown(**kwargs)
    return time.monotonic() - start


@pytest.fixture
def setup(otel_globals: list[TelemetryHandle]) -> Any:
    def configured(**kwargs: Any) -> TelemetryHandle:
        handle = configure_telemetry(metric_export_interval_sec=3600, **kwargs)
        otel_globals.append(handle)
        return handle

    return configured


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_shutdown_with_the_collector_down_takes_at_most_two_seconds(
    setup: Any, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    # no OTEL_EXPORTER_OTLP_TIMEOUT: the exporters' own 10 s timeout and retries apply
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    handle = setup()
    _traffic()
    assert handle.shutdown_timeout_sec == 2.0
    assert _timed_shutdown(handle) <= 2.3


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_shutdown_with_a_collector_that_never_answers_is_bounded(
    setup: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    with silent_server() as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        handle = setup()
        _traffic()
        took = _timed_shutdown(handle)
    assert took <= 2.3
    assert took >= 1.9  # it did wait for the export, up to the bound
    warnings = [r for r in caplog.records if "did not finish within 2 s" in r.getMessage()]
    assert len(warnings) == 1
    assert handle.tracer_provider is None
    assert handle.meter_provider is None


def test_the_bound_comes_from_the_environment(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHUTDOWN_ENV, "0.5")
    with silent_server() as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        handle = setup()
        _traffic()
        assert handle.shutdown_timeout_sec == 0.5
        assert _timed_shutdown(handle) <= 0.8


def test_the_bound_comes_from_the_arguments(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHUTDOWN_ENV, "5")
    with silent_server() as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        handle = setup(shutdown_timeout_sec=0.4)
        _traffic()
        assert handle.shutdown_timeout_sec == 0.4
        assert _timed_shutdown(handle, timeout_sec=0.2) <= 0.5


def test_a_working_collector_still_gets_the_last_export(setup: Any, monkeypatch) -> None:
    with http_collector() as (url, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        handle = setup()
        _traffic()
        took = _timed_shutdown(handle)
        assert "gcs upload" in received.span_names()
        assert tc.METRICS.call_duration.name in received.metric_names()
    assert took < 2.0


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "soon", True])
def test_a_bad_bound_is_named(otel_globals: list[TelemetryHandle], value: object) -> None:
    with pytest.raises(ValueError, match=r"shutdown_timeout_sec=.* is not accepted: expected a"):
        configure_telemetry(shutdown_timeout_sec=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"timeout_sec=.* is not accepted"):
        TelemetryHandle().shutdown(timeout_sec=value)  # type: ignore[arg-type]


def test_a_bad_bound_in_the_environment_is_named(
    otel_globals: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SHUTDOWN_ENV, "2s")
    with pytest.raises(ValueError, match=f"{SHUTDOWN_ENV}='2s' is not accepted"):
        configure_telemetry()


def test_a_provider_whose_shutdown_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def shutdown(self) -> None:
            raise RuntimeError("broken provider")

    handle = TelemetryHandle(tracer_provider=Broken())
    handle.shutdown()
    assert any("shutting down" in r.getMessage() and r.exc_info for r in caplog.records)


# --- the exporters' log-once: once per outage, never "NoneType: None" ------------------------


class Flaky(SpanExporter):
    """Raises, returns FAILURE or succeeds, as told."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.exports = 0
        self.shut = threading.Event()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.exports += 1
        if self.mode == "raise":
            raise ConnectionError("collector down")
        return SpanExportResult.FAILURE if self.mode == "fail" else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut.set()


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otel_resilience"]


def test_an_outage_is_logged_again_after_the_exporter_recovered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from otel_resilience._safe import SafeSpanExporter

    caplog.set_level(logging.INFO, logger="otel_resilience")
    recovered: list[int] = []
    inner = Flaky()
    safe = SafeSpanExporter(inner, "otlp", on_recover=lambda: recovered.append(1))
    for mode in ["raise", "raise", "fail", "ok", "ok", "raise", "ok"]:
        inner.mode = mode
        safe.export([])
    kinds = [
        "failed" if "failed to export spans" in m else "again"
        for m in _messages(caplog)
        if "failed to export spans" in m or "exports spans again" in m
    ]
    assert kinds == ["failed", "again", "failed", "again"]  # one warning per outage
    assert recovered == [1, 1]


def test_a_failure_result_is_logged_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from otel_resilience._safe import SafeSpanExporter

    inner = Flaky()
    inner.mode = "fail"
    SafeSpanExporter(inner, "otlp").export([])
    (record,) = [r for r in caplog.records if "failed to export" in r.getMessage()]
    assert not record.exc_info
    text = logging.Formatter().format(record)
    assert "NoneType: None" not in text
    assert "(it returned a failure)" in text


def test_an_exception_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from otel_resilience._safe import SafeSpanExporter

    inner = Flaky()
    inner.mode = "raise"
    SafeSpanExporter(inner, "otlp").export([])
    (record,) = [r for r in caplog.records if "failed to export" in r.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[0] is ConnectionError
    assert "ConnectionError: collector down" in logging.Formatter().format(record)


def test_an_abandoned_exporter_fails_at_once_and_stops_in_the_background() -> None:
    from otel_resilience._safe import SafeSpanExporter

    inner = Flaky()
    safe = SafeSpanExporter(inner, "otlp")
    safe.abandon()
    assert inner.shut.wait(2)
    assert safe.export([]) is SpanExportResult.FAILURE
    assert safe.force_flush() is False
    safe.shutdown()
    assert inner.exports == 0


def test_an_abandoned_metric_exporter_fails_at_once() -> None:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    from otel_resilience._safe import SafeMetricExporter

    stopped = threading.Event()

    class Inner(ConsoleMetricExporter):
        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            stopped.set()

    safe = SafeMetricExporter(Inner(), "otlp")
    safe.abandon()
    assert stopped.wait(2)
    assert safe.export(None) is MetricExportResult.FAILURE  # type: ignore[arg-type]
    assert safe.force_flush() is False
    safe.shutdown()


def test_the_sdk_log_filter_lets_messages_through_again_after_a_recovery() -> None:
    from otel_resilience._setup import _OnceFilter

    once = _OnceFilter()
    record = logging.LogRecord("opentelemetry.exporter.x", logging.WARNING, "", 0, "down", (), None)
    assert once.filter(record) is True
    assert once.filter(record) is False
    once.reset()
    assert once.filter(record) is True


def test_configure_telemetry_wires_the_recovery_to_the_sdk_log_filter(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    handle = setup()
    assert handle._exporters  # the span and the metric exporter
    record = logging.LogRecord("opentelemetry.exporter.x", logging.WARNING, "", 0, "down", (), None)
    assert handle._log_filter.filter(record) is True
    assert handle._log_filter.filter(record) is False
    for exporter in handle._exporters:
        exporter._once.failed = True
        exporter._once.ok("spans")
    assert handle._log_filter.filter(record) is True


def test_a_recovery_without_a_callback_and_a_failing_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from otel_resilience._safe import SafeSpanExporter

    class FlushRaises(Flaky):
        def force_flush(self, timeout_millis: int = 30000) -> bool:
            raise ConnectionError("flush failed")

    inner = FlushRaises()
    safe = SafeSpanExporter(inner, "otlp")
    assert safe.force_flush() is False
    safe.export([])  # works again: the end of the outage, no callback to call
    messages = _messages(caplog)
    assert any("failed to export spans (flush)" in m for m in messages)


@pytest.mark.parametrize("value", ["1_0", "\u0663", "infinity", "1e999", "86401", "-1"])
def test_odd_numerals_for_the_bound_in_the_environment_are_refused(
    otel_globals: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(SHUTDOWN_ENV, value)
    with pytest.raises(ValueError, match=f"{SHUTDOWN_ENV}=.* is not accepted: expected a number"):
        configure_telemetry()


@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf"), "soon", 10**400])
def test_a_bad_export_interval_is_refused_before_anything_is_installed(
    otel_globals: list[TelemetryHandle], value: object
) -> None:
    from opentelemetry import trace

    with pytest.raises(ValueError, match=r"metric_export_interval_sec=.* is not accepted"):
        configure_telemetry(traces_exporter="console", metric_export_interval_sec=value)  # type: ignore[arg-type]
    # no half setup: the tracer provider was not installed either
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@pytest.mark.parametrize("value", ["1_0", "\u0663\u0664", "0x10"])
def test_odd_numerals_for_the_prometheus_port_are_refused(
    otel_globals: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", value)
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_PROMETHEUS_PORT=.* is not accepted"):
        configure_telemetry(metrics_exporter="prometheus")


def _refuse_our_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Python 3.12 does in an atexit handler: no new thread may start (ours, here)."""
    start = threading.Thread.start

    def refusing(self: threading.Thread) -> None:
        if self.name.startswith("otel-resilience-"):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", refusing)


def test_shutdown_at_interpreter_exit_runs_inline(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_resilience import _safe

    with http_collector() as (url, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        handle = setup()
        _traffic()
        _refuse_our_threads(monkeypatch)
        handle.shutdown()  # no RuntimeError, and the last export still happens
        assert "gcs upload" in received.span_names()
    inner = Flaky()
    _safe.SafeSpanExporter(inner, "otlp").abandon()  # no RuntimeError either
    assert not inner.shut.is_set()


def test_shutdown_registered_with_atexit_works_in_a_real_process(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(
        "import atexit\n"
        "from otel_resilience import configure_telemetry, resilient_call\n"
        "handle = configure_telemetry(traces_exporter='console', metrics_exporter='none')\n"
        "atexit.register(handle.shutdown)\n"
        "resilient_call('gcs', 'upload', lambda: 'ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert '"name": "gcs upload"' in done.stdout


def test_a_broken_record_factory_never_reaches_the_sdk_thread() -> None:
    from otel_resilience._safe import SafeSpanExporter

    def broken(*args: Any, **kwargs: Any) -> logging.LogRecord:
        raise RuntimeError("the application's factory is broken")

    original = logging.getLogRecordFactory()
    logging.setLogRecordFactory(broken)
    try:
        inner = Flaky()
        safe = SafeSpanExporter(inner, "otlp")
        inner.mode = "raise"
        assert safe.export([]) is SpanExportResult.FAILURE  # the warning could not be logged
        inner.mode = "ok"
        assert safe.export([]) is SpanExportResult.SUCCESS  # nor the recovery
    finally:
        logging.setLogRecordFactory(original)
