"""``configure_telemetry()``: one call for applications that have no OpenTelemetry setup yet.

Builds SDK providers from the standard ``OTEL_*`` environment variables, installs them as the
global providers unless the application already set its own (never replaced), and returns a
handle to flush and stop them. Needs the ``otel`` extra: ``pip install 'otel-resilience[otel]'``.

Exporters (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``; comma-separated lists allowed):

* ``otlp`` (the OpenTelemetry default): to ``OTEL_EXPORTER_OTLP_ENDPOINT`` over
  ``OTEL_EXPORTER_OTLP_PROTOCOL`` = ``http/protobuf`` (default) or ``grpc``;
* ``prometheus`` (metrics only): a pull endpoint on ``OTEL_EXPORTER_PROMETHEUS_HOST``:
  ``OTEL_EXPORTER_PROMETHEUS_PORT`` (default 127.0.0.1:9464), path ``/metrics``;
* ``console``: printed to stdout; ``none``: off.

Nothing here may break the application: an exporter that raises, a collector that is down or a
Prometheus port already taken is logged once (per outage) and recorded in
``TelemetryHandle.problems``. ``TelemetryHandle.shutdown()`` is bounded: it waits at most
``shutdown_timeout_sec`` (argument, else ``RELIABILITY_TELEMETRY_SHUTDOWN_TIMEOUT_SEC``, else 2 s)
for the last export, then gives up on a collector that does not answer.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

logger = logging.getLogger("otel_resilience")

_EXPORTERS: Final = ("otlp", "prometheus", "console", "none")
_PROTOCOLS: Final = ("http/protobuf", "grpc")
#: the environment variable of the shutdown bound, and its default (seconds)
SHUTDOWN_TIMEOUT_ENV: Final = "RELIABILITY_TELEMETRY_SHUTDOWN_TIMEOUT_SEC"
DEFAULT_SHUTDOWN_TIMEOUT_SEC: Final = 2.0
_INSTALL_HINT: Final = (
    "configure_telemetry() needs the OpenTelemetry SDK and exporters:"
    " pip install 'otel-resilience[otel]'"
)


@dataclass
class TelemetryHandle:
    """What :func:`configure_telemetry` set up, and how to stop it."""

    tracer_provider: Any = None  #: the SDK tracer provider we installed (None: app's own kept)
    meter_provider: Any = None  #: the SDK meter provider we installed (None: app's own kept)
    traces_exporters: tuple[str, ...] = ()
    metrics_exporters: tuple[str, ...] = ()
    #: (host, port) of the Prometheus pull endpoint, None when not serving
    prometheus_address: tuple[str, int] | None = None
    #: problems met while setting up (logged once each); telemetry works around them
    problems: list[str] = field(default_factory=list)
    _server: Any = field(default=None, repr=False)
    _server_thread: Any = field(default=None, repr=False)
    _filters: list[tuple[logging.Logger, logging.Filter]] = field(default_factory=list, repr=False)

    #: longest :meth:`shutdown` waits for the last export, in seconds
    shutdown_timeout_sec: float = DEFAULT_SHUTDOWN_TIMEOUT_SEC
    _exporters: list[Any] = field(default_factory=list, repr=False)
    _log_filter: Any = field(default=None, repr=False)

    def shutdown(self, timeout_sec: float | None = None) -> None:
        """Flush pending telemetry and stop exporters and the Prometheus endpoint (idempotent).

        Waits at most ``timeout_sec`` (default: :attr:`shutdown_timeout_sec`) for the last
        export; past it, what is still pending is dropped and the exporters are stopped in the
        background, so a collector that is down or never answers cannot hold up the exit.
        """
        budget = self.shutdown_timeout_sec
        if timeout_sec is not None:
            budget = _check_seconds("timeout_sec", timeout_sec)
        self._stop_providers(budget)
        self._stop_server()
        for log, flt in self._filters:
            log.removeFilter(flt)
        self._filters.clear()

    def _stop_providers(self, budget: float) -> None:
        """Shut both providers down at once, against one deadline ``budget`` seconds away."""
        deadline = time.monotonic() + budget
        started = []
        if self.tracer_provider is not None:
            started.append(_stopping(self.tracer_provider.shutdown, self.tracer_provider))
        if self.meter_provider is not None:
            meter_provider = self.meter_provider
            started.append(
                _stopping(
                    lambda: meter_provider.shutdown(timeout_millis=budget * 1000), meter_provider
                )
            )
        workers = [worker for worker in started if worker is not None]
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(worker.is_alive() for worker in workers):
            logger.warning(
                "telemetry: shutting down did not finish within %g s (is the collector down?);"
                " the telemetry still pending is dropped",
                budget,
            )
            for exporter in self._exporters:
                exporter.abandon()
        self.tracer_provider = self.meter_provider = None

    def _stop_server(self) -> None:
        """Stop the Prometheus pull endpoint, if serving."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self._server = self._server_thread = None
        self.prometheus_address = None


def _stopping(shutdown: Any, provider: Any) -> threading.Thread | None:
    """``shutdown()`` running on a daemon thread (it may block on a collector that is down).

    None when it ran inline: no thread can start at interpreter shutdown (Python 3.12 refuses
    one in an ``atexit`` handler, where ``handle.shutdown`` is often registered).
    """

    def stop() -> None:
        try:
            shutdown()
        except Exception:  # shutting down must not raise into the application
            logger.warning("telemetry: shutting down %r failed", provider, exc_info=True)

    worker = threading.Thread(target=stop, name="otel-resilience-shutdown", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown"
        stop()
        return None
    return worker


_SECONDS_TEXT: Final = re.compile(r"\s*([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", re.ASCII)
_MAX_SECONDS: Final = 86_400.0


def _check_seconds(source: str, value: object) -> float:
    try:
        if isinstance(value, bool) or (
            isinstance(value, str) and _SECONDS_TEXT.fullmatch(value) is None
        ):
            raise ValueError(value)  # float() takes "1_0", "infinity" and non-ASCII digits
        seconds = float(value)  # type: ignore[arg-type]
        if not (math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS):
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{source}={value!r} is not accepted: expected a number of seconds > 0 and"
            f" <= {_MAX_SECONDS:g}"
        ) from None
    return seconds


class _OnceFilter(logging.Filter):
    """Let each distinct message template of the exporters' loggers through once per outage."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, object]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        return True

    def reset(self) -> None:
        """An exporter recovered: the messages of the next outage are let through again."""
        with self._lock:
            self._seen.clear()


def _exporter_list(
    name: str, value: str | Sequence[str] | None, env: Mapping[str, str]
) -> list[str]:
    raw: Sequence[str]
    if value is None:
        raw = env.get(name, "otlp").split(",")
    elif isinstance(value, str):
        raw = value.split(",")
    else:
        raw = value
    chosen = [item.strip().lower() for item in raw if item.strip()]
    for item in chosen:
        if item not in _EXPORTERS:
            raise ValueError(
                f"{name}={item!r} is not accepted: expected a comma-separated list of"
                f" {', '.join(_EXPORTERS)}"
            )
    return [item for item in chosen if item != "none"]


def _protocol(signal: str, env: Mapping[str, str]) -> str:
    var = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    source = var if var in env else "OTEL_EXPORTER_OTLP_PROTOCOL"
    value = env.get(source, "http/protobuf").strip().lower()
    if value not in _PROTOCOLS:
        raise ValueError(
            f"{source}={value!r} is not accepted: expected one of {', '.join(_PROTOCOLS)}"
        )
    return value


def _otlp_endpoint(signal: str, protocol: str, env: Mapping[str, str]) -> str | None:
    """The OTLP endpoint of one signal from ``env``, as the exporters derive it from os.environ.

    None leaves the exporter's default. Passed explicitly so an ``environ`` mapping is honoured.
    """
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return None
    if protocol == "grpc":
        return base
    return f"{base.rstrip('/')}/v1/{signal.lower()}"


def _resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,...``, values percent-encoded) from ``env``."""
    found: dict[str, str] = {}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            found[key.strip()] = urllib.parse.unquote(value.strip())
    return found


def _port(value: int | str | None, env: Mapping[str, str]) -> int:
    source = "prometheus_port"
    if value is None:
        source = "OTEL_EXPORTER_PROMETHEUS_PORT"
        value = env.get(source, "9464")
    try:
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value, re.ASCII) is None:
            raise ValueError(value)  # int() takes "1_0" and non-ASCII digits
        port = int(value)
        if isinstance(value, bool) or not 0 <= port <= 65535:
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{source}={value!r} is not accepted: expected a port number from 0 to 65535"
        ) from None
    return port


def configure_telemetry(
    *,
    service_name: str | None = None,
    traces_exporter: str | Sequence[str] | None = None,
    metrics_exporter: str | Sequence[str] | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    metric_export_interval_sec: float | None = None,
    environ: Mapping[str, str] | None = None,
    shutdown_timeout_sec: float | None = None,
) -> TelemetryHandle:
    """Set up OpenTelemetry SDK providers and exporters from the ``OTEL_*`` variables.

    Arguments override the matching variables. Providers the application already installed
    are kept; the handle then holds None for them. Call ``handle.shutdown()`` at exit.

    ``shutdown_timeout_sec`` (else ``RELIABILITY_TELEMETRY_SHUTDOWN_TIMEOUT_SEC``, else 2 s)
    bounds ``handle.shutdown()``.

    Raises:
        ImportError: the ``otel`` extra is not installed (the message says what to install).
        ValueError: an exporter, protocol, port or timeout that is not accepted (named in the
            message).
    """
    env = os.environ if environ is None else environ
    traces = _exporter_list("OTEL_TRACES_EXPORTER", traces_exporter, env)
    metric_kinds = _exporter_list("OTEL_METRICS_EXPORTER", metrics_exporter, env)
    # every value is checked before anything is installed: a bad one leaves no half setup
    _check_exporters(traces, metric_kinds, prometheus_port, env)
    if metric_export_interval_sec is not None:
        metric_export_interval_sec = _check_seconds(
            "metric_export_interval_sec", metric_export_interval_sec
        )
    handle = TelemetryHandle(
        traces_exporters=tuple(traces),
        metrics_exporters=tuple(metric_kinds),
        shutdown_timeout_sec=_shutdown_budget(shutdown_timeout_sec, env),
    )
    resource = _resource(service_name, env, from_environ=environ is not None)
    handle._log_filter = _OnceFilter()
    if traces:
        _install_tracer_provider(traces, env, handle, resource)
    if metric_kinds:
        reader_args = (prometheus_host, prometheus_port, metric_export_interval_sec)
        _install_meter_provider(metric_kinds, env, handle, resource, reader_args)
    _log_once(handle)
    return handle


def _check_exporters(
    traces: list[str], metric_kinds: list[str], port: int | None, env: Mapping[str, str]
) -> None:
    """Refuse a traces exporter, protocol or Prometheus port that is not accepted."""
    if "prometheus" in traces:
        raise ValueError(
            "OTEL_TRACES_EXPORTER='prometheus' is not accepted: Prometheus has no traces"
        )
    if "otlp" in traces:
        _protocol("TRACES", env)
    if "otlp" in metric_kinds:
        _protocol("METRICS", env)
    if "prometheus" in metric_kinds:
        _port(port, env)


def _shutdown_budget(value: float | None, env: Mapping[str, str]) -> float:
    """The shutdown bound: the argument, else the environment variable, else the default."""
    if value is not None:
        return _check_seconds("shutdown_timeout_sec", value)
    if env.get(SHUTDOWN_TIMEOUT_ENV, "").strip():
        return _check_seconds(SHUTDOWN_TIMEOUT_ENV, env[SHUTDOWN_TIMEOUT_ENV].strip())
    return DEFAULT_SHUTDOWN_TIMEOUT_SEC


def _sdk() -> Any:
    """The SDK's ``Resource`` (importing the SDK), or ImportError naming the extra."""
    try:
        from opentelemetry.sdk.resources import Resource
    except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
        raise ImportError(_INSTALL_HINT) from exc
    return Resource


def _resource(service_name: str | None, env: Mapping[str, str], *, from_environ: bool) -> Any:
    """The SDK resource: a fresh instance id, the ``OTEL_*`` resource variables, the name."""
    resource_class = _sdk()
    attributes: dict[str, Any] = {"service.instance.id": str(uuid.uuid4())}
    if from_environ:  # the SDK's detector reads os.environ only
        attributes.update(_resource_attributes(env))
    resource = resource_class.create(attributes)  # reads OTEL_SERVICE_NAME, ..._ATTRIBUTES
    if service_name is None and from_environ and "OTEL_SERVICE_NAME" in env:
        service_name = env["OTEL_SERVICE_NAME"]
    if service_name is not None:
        resource = resource.merge(resource_class.create({"service.name": service_name}))
    return resource


def _install_tracer_provider(
    traces: list[str], env: Mapping[str, str], handle: TelemetryHandle, resource: Any
) -> None:
    """Install an SDK tracer provider with the chosen exporters, unless the app set one."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        logger.info("telemetry: the application set a tracer provider already; keeping it")
        return
    tracer_provider = TracerProvider(resource=resource)
    for kind in traces:
        processor = _span_processor(kind, env, handle)
        if processor is not None:
            tracer_provider.add_span_processor(processor)
    trace.set_tracer_provider(tracer_provider)
    handle.tracer_provider = tracer_provider


def _install_meter_provider(
    metric_kinds: list[str],
    env: Mapping[str, str],
    handle: TelemetryHandle,
    resource: Any,
    reader_args: tuple[str | None, int | None, float | None],
) -> None:
    """Install an SDK meter provider with the chosen readers, unless the app set one.

    ``reader_args``: Prometheus host and port, export interval (seconds).
    """
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    from ._telemetry import _is_noop_meter_provider

    if not _is_noop_meter_provider(metrics.get_meter_provider()):
        logger.info("telemetry: the application set a meter provider already; keeping it")
        return
    readers = []
    for kind in metric_kinds:
        reader = _metric_reader(kind, env, handle, *reader_args)
        if reader is not None:
            readers.append(reader)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(meter_provider)
    handle.meter_provider = meter_provider


_NOISY_LOGGERS: Final = ("opentelemetry.exporter", "opentelemetry.sdk")


def _log_once(handle: TelemetryHandle) -> None:
    """Let each message of the SDK's and exporters' loggers through once.

    A logger's filters only see records created on that very logger (not those propagated from
    its children), so the filter goes on every module logger under the two packages; the
    exporters are imported by now, so their loggers exist.
    """
    once = handle._log_filter
    for name, log in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(log, logging.Logger) and name.startswith(_NOISY_LOGGERS):
            log.addFilter(once)
            handle._filters.append((log, once))


def _problem(handle: TelemetryHandle, message: str) -> None:
    handle.problems.append(message)
    logger.warning("telemetry: %s", message)


def _span_processor(kind: str, env: Mapping[str, str], handle: TelemetryHandle) -> Any:
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    if kind == "console":
        return SimpleSpanProcessor(_safe_span(handle, ConsoleSpanExporter(), "console"))
    exporter: Any
    try:
        if _protocol("TRACES", env) == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_traces

            exporter = grpc_traces.OTLPSpanExporter(endpoint=_otlp_endpoint("TRACES", "grpc", env))
        else:
            from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_traces

            exporter = http_traces.OTLPSpanExporter(endpoint=_otlp_endpoint("TRACES", "http", env))
    except ImportError:  # pragma: no cover - needs a venv without the extra
        _problem(handle, f"OTLP span exporter missing; {_INSTALL_HINT}")
        return None
    return BatchSpanProcessor(_safe_span(handle, exporter, "otlp"))


def _safe_span(handle: TelemetryHandle, exporter: Any, name: str) -> Any:
    from ._safe import SafeSpanExporter

    safe = SafeSpanExporter(exporter, name, on_recover=handle._log_filter.reset)
    handle._exporters.append(safe)
    return safe


def _metric_reader(
    kind: str,
    env: Mapping[str, str],
    handle: TelemetryHandle,
    host: str | None,
    port: int | None,
    interval_sec: float | None,
) -> Any:
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    from ._safe import SafeMetricExporter

    interval_ms: float | None = None if interval_sec is None else interval_sec * 1000
    if kind == "prometheus":
        return _prometheus_reader(env, handle, host, port)
    if kind == "console":
        exporter: Any = ConsoleMetricExporter()
    else:
        try:
            if _protocol("METRICS", env) == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc import metric_exporter as grpc_m

                exporter = grpc_m.OTLPMetricExporter(
                    endpoint=_otlp_endpoint("METRICS", "grpc", env)
                )
            else:
                from opentelemetry.exporter.otlp.proto.http import metric_exporter as http_m

                exporter = http_m.OTLPMetricExporter(
                    endpoint=_otlp_endpoint("METRICS", "http", env)
                )
        except ImportError:  # pragma: no cover - needs a venv without the extra
            _problem(handle, f"OTLP metric exporter missing; {_INSTALL_HINT}")
            return None
    safe = SafeMetricExporter(exporter, kind, on_recover=handle._log_filter.reset)
    handle._exporters.append(safe)
    return PeriodicExportingMetricReader(safe, export_interval_millis=interval_ms)


def _prometheus_reader(
    env: Mapping[str, str], handle: TelemetryHandle, host: str | None, port: int | None
) -> Any:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:  # pragma: no cover - needs a venv without the extra
        _problem(handle, f"Prometheus exporter missing; {_INSTALL_HINT}")
        return None
    bind_host = host or env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    bind_port = _port(port, env)
    registry = CollectorRegistry()
    try:
        server, thread = start_http_server(bind_port, addr=bind_host, registry=registry)
    except OSError as exc:
        _problem(
            handle,
            f"cannot serve Prometheus metrics on {bind_host}:{bind_port} ({exc.strerror or exc});"
            " metrics are not exported there (set OTEL_EXPORTER_PROMETHEUS_PORT or"
            " prometheus_port to another port)",
        )
        return None
    handle._server, handle._server_thread = server, thread
    handle.prometheus_address = (bind_host, server.server_address[1])
    return PrometheusMetricReader(registry=registry)
