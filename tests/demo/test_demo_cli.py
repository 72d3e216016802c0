"""``otel-resilience demo`` and ``status``: argument handling, bad input, status output."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from otel_resilience import HealthServer, get_circuit_breaker_manager
from otel_resilience.cli import _health_url_for, build_parser, main, run_demo

from .conftest import free_port, free_port_pair

pytestmark = pytest.mark.usefixtures("clean_library")


def _one_line_error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["demo", "--scenario", "chaos"],
            "argument --scenario: invalid choice: 'chaos'",
            id="unknown-scenario",
        ),
        pytest.param(
            ["demo", "--duration", "-5"],
            "argument --duration: '-5': must be >= 0 seconds",
            id="negative-duration",
        ),
        pytest.param(
            ["demo", "--duration", "soon"], "'soon' is not a number of seconds", id="bad-duration"
        ),
        pytest.param(
            ["demo", "--concurrency", "0"], "0: concurrency must be from 1 to 256", id="concurrency"
        ),
        pytest.param(
            ["demo", "--metrics-port", "70000"], "70000: port must be from 1 to 65535", id="port"
        ),
        pytest.param(["status", "--url", "ftp://x"], "'ftp://x' is not an http:// URL", id="url"),
        pytest.param(["launch"], "invalid choice: 'launch'", id="unknown-command"),
        pytest.param([], "the following arguments are required: COMMAND", id="no-command"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    line = _one_line_error(capsys)
    assert line.startswith("otel-resilience")
    assert message in line


def test_defaults_match_the_documented_contract():
    args = build_parser().parse_args(["demo"])
    assert (args.duration, args.scenario, args.concurrency) == (60.0, "outage", 8)
    assert (args.metrics_host, args.metrics_port, args.health_port) == ("127.0.0.1", 9464, None)
    assert (args.no_metrics, args.plain) == (False, False)
    status = build_parser().parse_args(["status"])
    assert (status.url, status.json) == ("http://127.0.0.1:9464", False)


@pytest.fixture
def listening():
    """A socket listening on a free 127.0.0.1 port (someone else's server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_metrics_port_in_use_names_the_flag_that_changes_it(capsys, listening):
    code = main(["demo", "--duration", "1", "--metrics-port", str(listening)])
    assert code == 2
    assert _one_line_error(capsys) == (
        f"otel-resilience demo: error: port {listening} on 127.0.0.1 is in use;"
        " choose another with --metrics-port"
    )


def test_health_port_in_use_names_the_flag_that_changes_it(capsys, listening):
    code = main(
        [
            "demo",
            "--duration",
            "1",
            "--metrics-port",
            str(free_port()),
            "--health-port",
            str(listening),
        ]
    )
    assert code == 2
    line = _one_line_error(capsys)
    assert f"port {listening} on 127.0.0.1 is in use; choose another with --health-port" in line


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        pytest.param("nope=1", "--knob 'nope=1': expected NAME=VALUE with NAME one of", id="name"),
        pytest.param("av_timeout=lots", "'lots' is not a number", id="value"),
        pytest.param(
            "av_timeout=2", "av_timeout=2.0: a probability must be between 0 and 1", id="range"
        ),
    ],
)
def test_bad_knobs_are_usage_errors(capsys, knob, message):
    code = main(["demo", "--duration", "1", "--no-metrics", "--no-health", "--knob", knob])
    assert code == 2
    assert message in _one_line_error(capsys)


def test_health_url_defaults_to_the_port_after_the_metrics_port():
    assert _health_url_for("http://127.0.0.1:9464") == "http://127.0.0.1:9465/health"
    assert _health_url_for("http://localhost:8000/metrics") == "http://localhost:8001/health"
    assert _health_url_for("http://[::1]:9464") == "http://[::1]:9465/health"


def _open_scan_breaker():
    breaker = get_circuit_breaker_manager().get_breaker("clamav", "scan")
    for _ in range(5):
        breaker.record_failure(breaker.try_acquire())
    get_circuit_breaker_manager().get_breaker("openai", "chat.completions")


def test_status_prefers_the_health_endpoint_and_prints_a_table(capsys):
    _open_scan_breaker()
    port = free_port_pair()
    with HealthServer("127.0.0.1", port + 1):
        code = main(["status", "--url", f"http://127.0.0.1:{port}"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == f"DEGRADED: 2 breaker(s), from http://127.0.0.1:{port + 1}/health"
    assert out[1].split() == ["SERVICE", "ENDPOINT", "STATE", "FAILURES", "NEXT", "PROBE"]
    assert out[2].split()[:4] == ["clamav", "scan", "open", "5"]
    assert out[2].split()[4].endswith("s")
    assert out[3].split() == ["openai", "chat.completions", "closed", "0", "-"]


def test_status_json_has_the_health_report(capsys):
    _open_scan_breaker()
    with HealthServer("127.0.0.1", 0) as health:
        code = main(["status", "--url", "http://127.0.0.1:1", "--health-url", health.url, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["source"] == "health"
    assert report["status"] == "degraded"
    assert [(b["endpoint"], b["state"], b["failure_count"]) for b in report["breakers"]] == [
        ("scan", "open", 5),
        ("chat.completions", "closed", 0),
    ]


class _MetricsOnly(BaseHTTPRequestHandler):
    page = (
        'resilience_circuit_breaker_state{resilience_service="clamav",resilience_endpoint="scan",'
        'resilience_circuit_breaker_state="half_open"} 1.0\n'
    )

    def do_GET(self):
        body = self.page.encode() if self.path == "/metrics" else b"nothing here"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_only_server():
    server = HTTPServer(("127.0.0.1", 0), _MetricsOnly)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_status_falls_back_to_the_metrics_endpoint(capsys, metrics_only_server):
    port = metrics_only_server
    code = main(
        [
            "status",
            "--url",
            f"http://127.0.0.1:{port}",
            "--health-url",
            f"http://127.0.0.1:{free_port()}/health",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["source"] == "metrics"
    assert report["url"] == f"http://127.0.0.1:{port}/metrics"
    assert report["breakers"] == [
        {
            "service_name": "clamav",
            "endpoint": "scan",
            "state": "half_open",
            "failure_count": None,
            "seconds_until_probe": None,
            "override": None,
        }
    ]


def test_status_of_nothing_running_is_one_line_and_exit_1(capsys):
    port = free_port()
    code = main(
        [
            "status",
            "--url",
            f"http://127.0.0.1:{port}",
            "--health-url",
            f"http://127.0.0.1:{port}/health",
        ]
    )
    assert code == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"otel-resilience status: cannot reach http://127.0.0.1:{port}/metrics")
    assert line.endswith("is `otel-resilience demo` running?")


class _Terminal(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def no_otlp(monkeypatch):
    """No OTLP export and no Prometheus endpoint: these in-process runs install no global
    OpenTelemetry provider (the subprocess tests cover the exporters)."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_otlp")
def test_demo_without_a_terminal_prints_plain_lines_and_writes_the_summary(capsys, tmp_path):
    summary = tmp_path / "summary.json"
    port = free_port_pair()
    code = main(
        [
            "demo",
            "--duration",
            "2",
            "--no-metrics",
            "--metrics-port",
            str(port),
            "--summary-json",
            str(summary),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out
    assert f"health:  http://127.0.0.1:{port + 1}/health" in out
    assert "metrics:" not in out  # --no-metrics
    assert "Summary: scenario 'outage' ran for" in out
    data = json.loads(summary.read_text())
    assert data["scenario"] == "outage"
    assert data["calls"] > 0
    assert data["time_scale"] == 0.05  # the floor: 2 s would be 1/30


@pytest.mark.usefixtures("no_otlp")
def test_demo_on_a_terminal_draws_the_live_view_then_the_summary_table():
    out = _Terminal()
    # time scale 0.2, not the 0.05 a 2 s run would get: the steady scenario's scaled attempt
    # timeouts (50 ms at 0.05) are too tight for a loaded CI machine to keep every breaker closed
    args = build_parser().parse_args(
        ["demo", "--duration", "2", "--scenario", "steady", "--no-metrics", "--no-health",
         "--time-scale", "0.2"]
    )  # fmt: skip
    assert run_demo(args, out) == 0
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with rich, in place
    assert "service / endpoint" in text
    assert "Summary (whole run)" in text
    assert "breakers: all stayed closed" in text


@pytest.mark.usefixtures("no_otlp")
def test_demo_restores_the_library_logger_it_quietened(capsys):
    logger = logging.getLogger("otel_resilience")
    before = (logger.level, logger.propagate, list(logger.handlers))
    args = ["demo", "--duration", "1", "--scenario", "steady", "--no-metrics", "--no-health"]
    assert main(args) == 0
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    assert capsys.readouterr().err == ""  # quiet without --verbose


@pytest.mark.usefixtures("no_otlp")
def test_verbose_shows_the_librarys_retry_log_on_stderr(capsys):
    args = ["demo", "--duration", "1", "--scenario", "steady", "--no-metrics", "--no-health"]
    assert main([*args, "--verbose", "--knob", "llm_rate_limit=1"]) == 0
    err = capsys.readouterr().err
    assert "WARNING otel_resilience: Retrying openai (chat.completions) attempt 2/3" in err


@pytest.mark.parametrize(
    ("report", "status"),
    [
        pytest.param({"status": "degraded", "breakers": []}, "degraded", id="the-server-says"),
        pytest.param({"breakers": []}, "unknown", id="not-said"),
    ],
)
def test_status_from_a_health_endpoint_is_the_status_it_reports(capsys, report, status):
    with HealthServer("127.0.0.1", 0, report=lambda: report) as health:
        code = main(["status", "--url", "http://127.0.0.1:1", "--health-url", health.url, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "source": "health",
        "url": health.url,
        "status": status,
        "breakers": [],
    }


def test_status_from_metrics_is_degraded_when_a_breaker_is_not_closed(capsys, metrics_only_server):
    port = metrics_only_server
    unused = f"http://127.0.0.1:{free_port()}/health"
    code = main(["status", "--url", f"http://127.0.0.1:{port}", "--health-url", unused])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"DEGRADED: 1 breaker(s), from http://127.0.0.1:{port}/metrics"
    assert out[-1] == "(from /metrics: failure counts and probe times need the health endpoint)"
