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

import functools
import importlib
import logging
import math
import os
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
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
        self._remove_filters()

    def _stop_providers(self, budget: float) -> None:
        """Shut both providers down at once, against one deadline ``budget`` seconds away."""
        deadline = time.monotonic() + budget
        if not _joined(_started(self._shutdowns(budget)), deadline):
            self._abandon(budget)
        self.tracer_provider = self.meter_provider = None

    def _shutdowns(self, budget: float) -> list[tuple[Callable[[], object], Any]]:
        """The shutdown call of each provider we installed, and the provider."""
        shutdowns: list[tuple[Callable[[], object], Any]] = []
        if self.tracer_provider is not None:
            shutdowns.append((self.tracer_provider.shutdown, self.tracer_provider))
        if self.meter_provider is not None:
            stop = functools.partial(self.meter_provider.shutdown, timeout_millis=budget * 1000)
            shutdowns.append((stop, self.meter_provider))
        return shutdowns

    def _abandon(self, budget: float) -> None:
        """Drop what the exporters still hold: the last export did not finish in time."""
        logger.warning(
            "telemetry: shutting down did not finish within %g s (is the collector down?);"
            " the telemetry still pending is dropped",
            budget,
        )
        for exporter in self._exporters:
            exporter.abandon()

    def _remove_filters(self) -> None:
        for log, flt in self._filters:
            log.removeFilter(flt)
        self._filters.clear()

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


def _started(shutdowns: list[tuple[Callable[[], object], Any]]) -> list[threading.Thread]:
    """Each shutdown started on its own thread; the threads (none for those that ran inline)."""
    return list(filter(None, (_stopping(stop, provider) for stop, provider in shutdowns)))


def _joined(workers: list[threading.Thread], deadline: float) -> bool:
    """True when every worker finished by ``deadline`` (a ``time.monotonic()`` reading)."""
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return not any(worker.is_alive() for worker in workers)


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
        seconds = float(_number_like(value, _SECONDS_TEXT))
        if not _seconds_in_range(seconds):
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{source}={value!r} is not accepted: expected a number of seconds > 0 and"
            f" <= {_MAX_SECONDS:g}"
        ) from None
    return seconds


def _seconds_in_range(seconds: float) -> bool:
    return math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS


def _number_like(value: object, text: re.Pattern[str]) -> Any:
    """``value`` for ``float()``/``int()``; ValueError for a bool or text not matching ``text``.

    ``float()`` and ``int()`` alone take "1_0", "infinity" and non-ASCII digits.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str) and text.fullmatch(value) is None:
        raise ValueError(value)
    return value


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
    chosen = [_exporter(name, item) for item in _raw_exporters(name, value, env) if item.strip()]
    return [item for item in chosen if item != "none"]


def _raw_exporters(
    name: str, value: str | Sequence[str] | None, env: Mapping[str, str]
) -> Sequence[str]:
    """The exporters as given: the argument, else the variable ``name``, else ``otlp``."""
    text = env.get(name, "otlp") if value is None else value
    return text.split(",") if isinstance(text, str) else text


def _exporter(name: str, item: str) -> str:
    kind = item.strip().lower()
    if kind not in _EXPORTERS:
        raise ValueError(
            f"{name}={kind!r} is not accepted: expected a comma-separated list of"
            f" {', '.join(_EXPORTERS)}"
        )
    return kind


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
    return specific or _endpoint_from_base(signal, protocol, env)


def _endpoint_from_base(signal: str, protocol: str, env: Mapping[str, str]) -> str | None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` as the signal's endpoint (HTTP: with its path)."""
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return None
    return base if protocol == "grpc" else f"{base.rstrip('/')}/v1/{signal.lower()}"


def _resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,...``, values percent-encoded) from ``env``."""
    pairs = (_attribute(item) for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","))
    return dict(filter(None, pairs))


def _attribute(item: str) -> tuple[str, str] | None:
    """One ``key=value`` item (the value percent-decoded); None when it has no key."""
    key, sep, value = item.partition("=")
    if sep and key.strip():
        return key.strip(), urllib.parse.unquote(value.strip())
    return None


_PORT_TEXT: Final = re.compile(r"\s*[0-9]+\s*", re.ASCII)


def _port(value: int | str | None, env: Mapping[str, str]) -> int:
    source, given = _port_source(value, env)
    try:
        port = int(_number_like(given, _PORT_TEXT))
        if not 0 <= port <= 65535:
            raise ValueError(given)
    except (TypeError, ValueError):
        raise ValueError(
            f"{source}={given!r} is not accepted: expected a port number from 0 to 65535"
        ) from None
    return port


def _port_source(value: int | str | None, env: Mapping[str, str]) -> tuple[str, object]:
    """Where the Prometheus port comes from (argument or variable), and its value."""
    if value is None:
        return "OTEL_EXPORTER_PROMETHEUS_PORT", env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
    return "prometheus_port", value


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
    interval_ms = _interval_ms(metric_export_interval_sec)
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
        reader_args = (prometheus_host, prometheus_port, interval_ms)
        _install_meter_provider(metric_kinds, env, handle, resource, reader_args)
    _log_once(handle)
    return handle


def _interval_ms(interval_sec: float | None) -> float | None:
    """The metric export interval in milliseconds (None: the SDK's default)."""
    if interval_sec is None:
        return None
    return _check_seconds("metric_export_interval_sec", interval_sec) * 1000


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
    # reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    resource = resource_class.create(_base_attributes(env, from_environ=from_environ))
    name = _service_name(service_name, env, from_environ=from_environ)
    if name is not None:
        resource = resource.merge(resource_class.create({"service.name": name}))
    return resource


def _base_attributes(env: Mapping[str, str], *, from_environ: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {"service.instance.id": str(uuid.uuid4())}
    if from_environ:  # the SDK's detector reads os.environ only
        attributes.update(_resource_attributes(env))
    return attributes


def _service_name(
    service_name: str | None, env: Mapping[str, str], *, from_environ: bool
) -> str | None:
    """The argument, else ``OTEL_SERVICE_NAME`` of an ``environ`` mapping (the SDK reads
    os.environ's itself)."""
    if service_name is None and from_environ:
        return env.get("OTEL_SERVICE_NAME")
    return service_name


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
    for processor in filter(None, [_span_processor(kind, env, handle) for kind in traces]):
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

    ``reader_args``: Prometheus host and port, export interval (milliseconds).
    """
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    from ._telemetry import _is_noop_meter_provider

    if not _is_noop_meter_provider(metrics.get_meter_provider()):
        logger.info("telemetry: the application set a meter provider already; keeping it")
        return
    readers = [_metric_reader(kind, env, handle, *reader_args) for kind in metric_kinds]
    meter_provider = MeterProvider(resource=resource, metric_readers=list(filter(None, readers)))
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
    exporter = _otlp_exporter("TRACES", env, handle)
    if exporter is None:  # pragma: no cover - needs a venv without the extra
        return None
    return BatchSpanProcessor(_safe_span(handle, exporter, "otlp"))


#: the OTLP exporter of each signal and protocol: (module, class), and its name in a problem
_OTLP_EXPORTERS: Final = MappingProxyType(
    {
        ("TRACES", "grpc"): (
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
            "OTLPSpanExporter",
        ),
        ("TRACES", "http/protobuf"): (
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "OTLPSpanExporter",
        ),
        ("METRICS", "grpc"): (
            "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
            "OTLPMetricExporter",
        ),
        ("METRICS", "http/protobuf"): (
            "opentelemetry.exporter.otlp.proto.http.metric_exporter",
            "OTLPMetricExporter",
        ),
    }
)
_OTLP_NOUNS: Final = MappingProxyType({"TRACES": "span", "METRICS": "metric"})


def _otlp_exporter(signal: str, env: Mapping[str, str], handle: TelemetryHandle) -> Any:
    """The OTLP exporter of ``signal`` over the configured protocol; None (a problem) if missing."""
    protocol = _protocol(signal, env)
    module_name, class_name = _OTLP_EXPORTERS[signal, protocol]
    try:
        exporter_class = getattr(importlib.import_module(module_name), class_name)
        return exporter_class(endpoint=_otlp_endpoint(signal, protocol, env))
    except ImportError:  # pragma: no cover - needs a venv without the extra
        _problem(handle, f"OTLP {_OTLP_NOUNS[signal]} exporter missing; {_INSTALL_HINT}")
        return None


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
    interval_ms: float | None,
) -> Any:
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    from ._safe import SafeMetricExporter

    if kind == "prometheus":
        return _prometheus_reader(env, handle, host, port)
    exporter = (
        ConsoleMetricExporter() if kind == "console" else _otlp_exporter("METRICS", env, handle)
    )
    if exporter is None:  # pragma: no cover - needs a venv without the extra
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
    registry = CollectorRegistry()
    if not _serve(handle, start_http_server, registry, (bind_host, _port(port, env))):
        return None
    return PrometheusMetricReader(registry=registry)


def _serve(handle: TelemetryHandle, start: Any, registry: Any, address: tuple[str, int]) -> bool:
    """Serve ``registry`` on ``address`` with ``start`` (prometheus_client's
    ``start_http_server``); False, a problem recorded, when the port cannot be had."""
    bind_host, bind_port = address
    try:
        server, thread = start(bind_port, addr=bind_host, registry=registry)
    except OSError as exc:
        _problem(
            handle,
            f"cannot serve Prometheus metrics on {bind_host}:{bind_port} ({exc.strerror or exc});"
            " metrics are not exported there (set OTEL_EXPORTER_PROMETHEUS_PORT or"
            " prometheus_port to another port)",
        )
        return False
    handle._server, handle._server_thread = server, thread
    handle.prometheus_address = (bind_host, server.server_address[1])
    return True
