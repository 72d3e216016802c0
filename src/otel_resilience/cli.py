"""The ``otel-resilience`` command: ``demo``, ``status`` and ``drill``.

``otel-resilience demo`` runs a realistic workload against flaky stand-ins of an LLM, object
storage and an antivirus, with a live terminal view, Prometheus metrics at 127.0.0.1:9464,
breaker health as JSON at 127.0.0.1:9465/health, and OTLP export when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
``otel-resilience status`` shows every breaker of a running process.
``otel-resilience drill ALERT`` makes a shipped alert fire with injected faults and watches it
reach Alertmanager (``--list`` shows the drills).

Usage errors print one line and exit with status 2. The demo's own modules (rich, httpx) are
imported only when the demo runs, so ``status`` works with the core package alone.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import math
import os
import signal
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeAlias

from . import HealthServer, health_report_from_prometheus

if TYPE_CHECKING:
    from . import TelemetryHandle
    from .demo import DemoRunner, Knobs, RunOptions, RunResult, Scenario, View

    Subcommands: TypeAlias = "argparse._SubParsersAction[_Parser]"

__all__ = ["main"]

PROG = "otel-resilience"
SCENARIO_NAMES = ("steady", "outage", "rate-limited", "degraded")
DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the command line: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --- argument types ----------------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0 seconds (0 = until Ctrl-C)")
    return value


def _int_range(low: int, high: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value}: {what} must be from {low} to {high}")
        return value

    return parse


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.05 <= value <= 100):
        raise argparse.ArgumentTypeError(f"{text!r}: must be from 0.05 to 100")
    return value


def _url(text: str) -> str:
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// URL")
    try:
        parsed.port  # noqa: B018 - validates the port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has an invalid port") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Resilient, observable calls to external dependencies: demo and health.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_demo_command(sub)
    _add_status_command(sub)
    _add_drill_command(sub)
    return parser


def _add_drill_command(sub: Subcommands) -> None:
    drill = sub.add_parser(
        "drill",
        help="make a shipped alert fire with injected faults, and watch it reach Alertmanager",
        description=(
            "Run a short workload with chaos injected (CHAOS_* settings: refused where"
            " OTEL_RESOURCE_ATTRIBUTES says deployment.environment=production unless"
            " CHAOS_FORCE=true), export its metrics, and watch Prometheus and Alertmanager until"
            " ALERT is firing and routed. See docs/chaos.md."
        ),
    )
    drill.add_argument(
        "alert", nargs="?", metavar="ALERT", help="the alert, e.g. ResilienceErrorBudgetBurn"
    )
    drill.add_argument("--list", action="store_true", help="list the drills and exit")
    drill.add_argument("--prometheus", type=_url, default="http://127.0.0.1:9090", metavar="URL")
    drill.add_argument(
        "--alertmanager", type=_url, default=None, metavar="URL",
        help="also check the alert was routed by this Alertmanager",
    )  # fmt: skip
    drill.add_argument(
        "--export", choices=("prometheus", "otlp"), default="prometheus",
        help="serve /metrics for Prometheus to scrape (default) or push OTLP"
        " (OTEL_EXPORTER_OTLP_ENDPOINT)",
    )  # fmt: skip
    drill.add_argument("--metrics-host", default=DEFAULT_METRICS_HOST, metavar="HOST")
    drill.add_argument(
        "--metrics-port", type=_int_range(1, 65535, "port"), default=DEFAULT_METRICS_PORT,
        metavar="PORT",
    )  # fmt: skip
    drill.add_argument(
        "--timeout", type=_duration, default=1200.0, metavar="SECONDS",
        help="give up after this long (default 1200: the shipped for: durations are minutes)",
    )  # fmt: skip


def run_drill(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """``otel-resilience drill``: list the drills, or run one."""
    from . import configure_telemetry
    from .drill import Watch, find_drill, list_drills
    from .drill import run_drill as drive

    out = sys.stdout if out is None else out
    if args.list:
        out.write("\n".join(list_drills()) + "\n")
        return EXIT_OK
    if args.alert is None:
        raise UsageError("name the alert to drill (see --list)")
    try:
        drill = find_drill(args.alert)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    if args.export == "prometheus":
        handle = configure_telemetry(
            traces_exporter="none", metrics_exporter="prometheus",
            prometheus_host=args.metrics_host, prometheus_port=args.metrics_port,
        )  # fmt: skip
    else:
        handle = configure_telemetry(
            traces_exporter="none", metrics_exporter="otlp", metric_export_interval_sec=1.0
        )
    try:
        watch = Watch(args.prometheus.rstrip("/"), _stripped(args.alertmanager), drill)
        out.write(f"drilling {drill.alert}: {drill.what}\n")
        out.flush()
        return drive(drill, watch, args.timeout, out)
    finally:
        handle.shutdown()


def _stripped(url: str | None) -> str | None:
    return None if url is None else url.rstrip("/")


def _add_demo_command(sub: Subcommands) -> None:
    demo = sub.add_parser(
        "demo",
        help="run a workload against flaky stand-in services, with a live view and metrics",
        description=(
            "Run a realistic workload (LLM completions, storage uploads and downloads, antivirus"
            " scans) against flaky stand-in HTTP services on 127.0.0.1, every call made through"
            " resilient_call. Serves Prometheus metrics and breaker health while it runs."
        ),
    )
    _add_workload_options(demo)
    _add_endpoint_options(demo)
    demo.add_argument("--plain", action="store_true", help="plain line output even on a terminal")
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="show the library's log (retries, breakers)"
    )
    # for tests and tinkering; documented in docs/demo.md
    demo.add_argument("--time-scale", type=_time_scale, default=None, help=argparse.SUPPRESS)
    demo.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    demo.add_argument("--knob", action="append", default=[], help=argparse.SUPPRESS)
    demo.add_argument("--summary-json", default=None, help=argparse.SUPPRESS)


def _add_workload_options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--duration",
        type=_duration,
        default=60.0,
        metavar="SECONDS",
        help="how long to run (default 60; 0 = until interrupted). Shorter runs play the"
        " scenario faster, so the outage still happens and recovers",
    )
    demo.add_argument(
        "--scenario",
        choices=SCENARIO_NAMES,
        default="outage",
        help="what goes wrong (default: outage)",
    )
    demo.add_argument(
        "--concurrency",
        type=_int_range(1, 256, "concurrency"),
        default=8,
        metavar="N",
        help="worker threads making calls (default 8)",
    )


def _add_endpoint_options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        metavar="HOST",
        help="address the metrics and health endpoints listen on (default 127.0.0.1;"
        " 0.0.0.0 in a container)",
    )
    demo.add_argument(
        "--metrics-port",
        type=_int_range(1, 65535, "port"),
        default=DEFAULT_METRICS_PORT,
        metavar="PORT",
        help="Prometheus endpoint port (default 9464)",
    )
    demo.add_argument(
        "--health-port",
        type=_int_range(1, 65535, "port"),
        default=None,
        metavar="PORT",
        help="breaker health JSON endpoint port (default: metrics port + 1)",
    )
    demo.add_argument(
        "--no-metrics", action="store_true", help="do not serve the Prometheus endpoint"
    )
    demo.add_argument("--no-health", action="store_true", help="do not serve the health endpoint")


def _add_status_command(sub: Subcommands) -> None:
    status = sub.add_parser(
        "status",
        help="show every circuit breaker of a running process",
        description=(
            "Show the circuit breakers of a running process: from its health endpoint when"
            " reachable (state, failure count, time to next probe), else from the breaker state"
            " gauge on its Prometheus endpoint."
        ),
    )
    status.add_argument(
        "--url",
        type=_url,
        default=f"http://{DEFAULT_METRICS_HOST}:{DEFAULT_METRICS_PORT}",
        help="the process's metrics endpoint (default http://127.0.0.1:9464)",
    )
    status.add_argument(
        "--health-url",
        type=_url,
        default=None,
        help="its health endpoint (default: the metrics port + 1, path /health)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--timeout", type=_duration, default=3.0, metavar="SECONDS", help=argparse.SUPPRESS
    )


# --- demo --------------------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound for listening right now (a bind test)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UsageError(
            f"cannot resolve host {host!r}; choose another with --metrics-host"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HTTP servers do
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return True


def _parse_knobs(assignments: list[str], base: Knobs) -> Knobs:
    """Apply ``--knob name=value`` to the scenario's knobs."""
    known = [f.name for f in fields(base)]
    changes = dict(_knob_change(item, known, base) for item in assignments)
    try:
        return replace(base, **changes)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--knob: {exc}") from None


def _knob_change(item: str, known: list[str], base: Knobs) -> tuple[str, Any]:
    """``(name, value)`` of one ``--knob NAME=VALUE``, the value typed like the knob's."""
    name, sep, text = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in known:
        raise UsageError(
            f"--knob {item!r}: expected NAME=VALUE with NAME one of {', '.join(known)}"
        )
    try:
        return name, _knob_value(getattr(base, name), text)
    except ValueError:
        raise UsageError(f"--knob {item!r}: {text!r} is not a number") from None


def _knob_value(current: object, text: str) -> Any:
    """A number, or for a tuple-valued knob ``a,b`` (or ``a:b``; empty = None)."""
    if not isinstance(current, tuple) and current is not None:
        return float(text)
    parts = [float(p) for p in text.replace(":", ",").split(",")] if text else []
    return tuple(parts) if parts else None


class _Stopper:
    """SIGTERM (docker stop) ends the run like Ctrl-C: summary, then a clean exit."""

    def __init__(self) -> None:
        self.runner: Any = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.runner is not None:
            self.runner.stop()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Stopper]:
        try:
            previous = signal.signal(signal.SIGTERM, self)
        except ValueError:  # not the main thread (an in-process test): nothing to install
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record (the live view redirects it)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        """The stream is always the current ``sys.stderr``."""


@contextlib.contextmanager
def _demo_logging(verbose: bool, stream: IO[str] | None = None) -> Iterator[None]:
    """The library's log during the demo: quiet (the view shows retries and breaker changes),
    or with ``--verbose`` INFO and up on ``stream`` (default: whatever ``sys.stderr`` is when a
    record is written, so the live view can show log lines above itself). The logger is restored
    afterwards."""
    logger = logging.getLogger("otel_resilience")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    handler = _CurrentStderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.setLevel(logging.INFO if verbose else logging.CRITICAL)
    logger.handlers = [handler]
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]


def _telemetry(args: argparse.Namespace) -> tuple[TelemetryHandle, list[str]]:
    """Start telemetry; returns the handle and lines for the header."""
    from . import configure_telemetry

    otlp = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    exporters = ([] if args.no_metrics else ["prometheus"]) + (["otlp"] if otlp else [])
    handle = configure_telemetry(
        service_name=os.environ.get("OTEL_SERVICE_NAME") or "otel-resilience-demo",
        metrics_exporter=",".join(exporters) or "none",
        traces_exporter="otlp" if otlp else "none",
        prometheus_host=args.metrics_host,
        prometheus_port=args.metrics_port,
        # OTLP every 5 s unless OTEL_METRIC_EXPORT_INTERVAL says otherwise: a demo is short
        metric_export_interval_sec=None if "OTEL_METRIC_EXPORT_INTERVAL" in os.environ else 5.0,
    )
    lines = [] if args.no_metrics else [_metrics_line(handle, args)]
    if otlp:
        lines.append(f"OTLP export to {otlp}")
    lines.extend(f"telemetry: {problem}" for problem in handle.problems)
    return handle, lines


def _metrics_line(handle: TelemetryHandle, args: argparse.Namespace) -> str:
    """The header line of the Prometheus endpoint; a usage error when it did not start."""
    if handle.prometheus_address is None:
        handle.shutdown()
        problems = "; ".join(handle.problems) or "the exporter did not start"
        raise UsageError(
            f"cannot serve metrics on {args.metrics_host}:{args.metrics_port} ({problems});"
            " choose another with --metrics-port"
        )
    return f"metrics: http://{args.metrics_host}:{args.metrics_port}/metrics"


def run_demo(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = sys.stdout if out is None else out
    _require_demo_extra()
    from .demo import DemoRunner, get_scenario

    scenario = get_scenario(args.scenario)
    knobs = _parse_knobs(args.knob, scenario.knobs) if args.knob else None
    health_port = _check_ports(args)
    runner = DemoRunner(_run_options(args, scenario, knobs))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_demo_logging(args.verbose))
        handle, lines = _telemetry(args)
        stack.callback(handle.shutdown)
        if not args.no_health:
            health = stack.enter_context(_health_server(args.metrics_host, health_port))
            lines.append(f"health:  {health.url}   (otel-resilience status)")
        view = _make_view(args, out, runner.scale)
        result = _play(runner, view, [*_header(args, scenario, runner.scale), *lines])
        if args.summary_json:
            from .demo import write_summary_json

            write_summary_json(result, args.summary_json)
    return EXIT_OK


def _require_demo_extra() -> None:
    try:
        import httpx  # noqa: F401 - only checking the extra is installed
        import rich  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"the demo needs {exc.name}: pip install 'otel-resilience[demo]'"
        ) from None


def _check_ports(args: argparse.Namespace) -> int:
    """The health port; a usage error naming the flag when a port is out of range or taken."""
    health_port: int = args.health_port or (args.metrics_port + 1)
    if health_port > 65535:
        raise UsageError(
            f"health port {health_port} is out of range; choose one with --health-port"
        )
    if not args.no_metrics and not _port_free(args.metrics_host, args.metrics_port):
        raise UsageError(
            f"port {args.metrics_port} on {args.metrics_host} is in use;"
            " choose another with --metrics-port"
        )
    if not args.no_health and not _port_free(args.metrics_host, health_port):
        raise UsageError(
            f"port {health_port} on {args.metrics_host} is in use;"
            " choose another with --health-port (or --no-health)"
        )
    return health_port


def _run_options(args: argparse.Namespace, scenario: Scenario, knobs: Knobs | None) -> RunOptions:
    from .demo import RunOptions

    return RunOptions(
        scenario=scenario,
        duration_sec=args.duration,
        concurrency=args.concurrency,
        time_scale=args.time_scale,
        seed=args.seed,
        knobs=knobs,
    )


def _health_server(host: str, port: int) -> HealthServer:
    try:
        return HealthServer(host, port)
    except OSError as exc:
        raise UsageError(
            f"port {port} on {host} is in use ({exc.strerror});"
            " choose another with --health-port (or --no-health)"
        ) from None


def _header(args: argparse.Namespace, scenario: Scenario, scale: float) -> list[str]:
    length = f"{args.duration:g}s" if args.duration else "until Ctrl-C"
    return [
        f"otel-resilience demo: scenario {scenario.name!r}, {length},"
        f" {args.concurrency} workers (time scale {scale:.3g})",
        scenario.description,
    ]


def _make_view(args: argparse.Namespace, out: IO[str], scale: float) -> View:
    """Plain lines when asked or when ``out`` is not a terminal, else the live view."""
    from .demo import LiveView, PlainView

    if args.plain or not out.isatty():
        return PlainView(out, interval_sec=max(1.0, 10.0 * scale))
    from rich.console import Console

    return LiveView(Console(file=out), footer=["Ctrl-C to stop"])


def _play(runner: DemoRunner, view: View, header: list[str]) -> RunResult:
    """Run the workload into ``view``; SIGTERM stops it like Ctrl-C. Returns the run's result."""
    stopper = _Stopper()
    stopper.runner = runner
    with stopper.installed():
        view.start(header)
        try:
            result = runner.run(lambda r: view.tick(r.snapshot()), tick_sec=1.0)
        except BaseException:
            view.abort()  # never leave the terminal in live mode
            raise
        view.finish(result)
    return result


# --- status ------------------------------------------------------------------------------------


def _health_url_for(metrics_url: str) -> str:
    parts = urllib.parse.urlsplit(metrics_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or DEFAULT_METRICS_HOST
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port + 1}{HealthServer.PATH}"


def _metrics_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path="/metrics"))
    return url


def _get(url: str, timeout: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "application/json, text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()
        return body.decode("utf-8", "replace")


def fetch_status(
    url: str, health_url: str | None = None, *, timeout: float = 3.0
) -> dict[str, Any]:
    """Breaker status of a running process: from its health endpoint, else from /metrics.

    Raises ``OSError`` (with the metrics URL in the message) when neither answers.
    """
    health = health_url or _health_url_for(url)
    try:
        report = json.loads(_get(health, timeout))
        if isinstance(report, dict) and isinstance(report.get("breakers"), list):
            return {
                "source": "health",
                "url": health,
                "status": str(report.get("status", "unknown")),
                "breakers": report["breakers"],
            }
    except (OSError, ValueError):
        pass  # not there (or not ours): read the metrics instead
    metrics = _metrics_url(url)
    try:
        text = _get(metrics, timeout)
    except urllib.error.HTTPError as exc:
        raise OSError(f"{metrics} answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise OSError(f"cannot reach {metrics} ({reason})") from None
    report = health_report_from_prometheus(text)
    return {
        "source": "metrics",
        "url": metrics,
        "status": report["status"],
        "breakers": report["breakers"],
    }


def format_status(report: dict[str, Any]) -> list[str]:
    """A plain table of the breakers."""
    breakers: list[dict[str, Any]] = report["breakers"]
    lines = [f"{report['status'].upper()}: {len(breakers)} breaker(s), from {report['url']}"]
    if not breakers:
        lines.append("no circuit breakers yet (no call has been made)")
        return lines
    header = ("SERVICE", "ENDPOINT", "STATE", "FAILURES", "NEXT PROBE")
    table = [header]
    for b in breakers:
        probe = b.get("seconds_until_probe")
        failures = b.get("failure_count")
        table.append(
            (
                str(b.get("service_name", "")),
                str(b.get("endpoint", "")),
                str(b.get("state", "")),
                "-" if failures is None else str(failures),
                "-" if probe is None else f"{float(probe):.1f}s",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines.extend(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
    if report["source"] == "metrics":
        lines.append("(from /metrics: failure counts and probe times need the health endpoint)")
    return lines


def run_status(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = sys.stdout if out is None else out
    try:
        report = fetch_status(args.url, args.health_url, timeout=args.timeout)
    except OSError as exc:
        print(f"{PROG} status: {exc}; is `{PROG} demo` running?", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write("\n".join(format_status(report)) + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-resilience`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return run_demo(args)
        if args.command == "drill":
            return run_drill(args)
        return run_status(args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `otel-resilience demo | head`: the reader left, so do we
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
