"""``otel-resilience demo`` as a user runs it: a real process, the outage scenario, a few seconds.

One run (module fixture) is observed from outside while it goes: ``otel-resilience status``
against it, its ``/metrics`` page scraped, then its output, summary and exit status. Each test
checks one thing that run must have shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from otel_resilience import _names as names

from .conftest import free_port, free_port_pair

CLI = Path(sys.executable).with_name("otel-resilience")
DURATION = 6  # seconds: the outage scenario compressed ten times (time scale 0.1)


@dataclass
class Observed:
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""
    summary: dict = field(default_factory=dict)
    metrics_page: str = ""
    status_health: dict = field(default_factory=dict)
    status_metrics: dict = field(default_factory=dict)
    status_table: str = ""
    took: float = 0.0


def _status(*args):
    done = subprocess.run(
        [str(CLI), "status", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def outage_run(tmp_path_factory):
    port = free_port_pair()
    summary_path = tmp_path_factory.mktemp("demo") / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            str(CLI),
            "demo",
            "--duration",
            str(DURATION),
            "--scenario",
            "outage",
            "--metrics-port",
            str(port),
            # a few antivirus timeouts for sure, so the timeout counter is exported too
            "--knob",
            "av_timeout=0.1",
            "--summary-json",
            str(summary_path),
        ],
        stdout=subprocess.PIPE,  # not a terminal: the demo must fall back to plain output
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen = Observed()
    metrics_url = f"http://127.0.0.1:{port}"
    try:
        deadline = started + 20
        while time.monotonic() < deadline and proc.poll() is None:  # wait for the endpoints
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        # the endpoint answers before the workers' first calls made their breakers: read the
        # status once the demo is running calls (the test then asserts what it reports)
        while True:
            seen.status_health = json.loads(_status("--url", metrics_url, "--json"))
            breakers = seen.status_health.get("breakers") or []
            named = {(b["service_name"], b["endpoint"]) for b in breakers}
            if ("clamav", "scan") in named or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        seen.status_table = _status("--url", metrics_url)
        nowhere = f"http://127.0.0.1:{free_port()}/health"
        seen.status_metrics = json.loads(
            _status("--url", metrics_url, "--health-url", nowhere, "--json")
        )
        # scrape until the run ends: the last page has the whole story (open, then closed)
        while proc.poll() is None and time.monotonic() - started < DURATION - 0.3:
            try:
                with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=2) as response:
                    seen.metrics_page = response.read().decode()
            except OSError:
                break
            time.sleep(0.3)
        seen.stdout, seen.stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    seen.took = time.monotonic() - started
    seen.returncode = proc.returncode
    seen.summary = json.loads(summary_path.read_text())
    return seen


def test_the_process_exits_cleanly_on_time(outage_run):
    assert outage_run.returncode == 0, outage_run.stderr
    assert outage_run.stderr == ""  # no traceback, no stray log or thread warning
    assert DURATION <= outage_run.took < DURATION + 8


def test_output_falls_back_to_plain_lines_without_a_terminal(outage_run):
    out = outage_run.stdout
    assert "\x1b[" not in out  # no ANSI escapes
    assert out.splitlines()[0].startswith("otel-resilience demo: scenario 'outage', 6s")
    assert "Summary: scenario 'outage' ran for" in out


def test_antivirus_breaker_opened_during_the_outage_and_closed_again(outage_run):
    start, end = outage_run.summary["outage_window_sec"]
    episodes = [b for b in outage_run.summary["breakers"] if b["service"] == "clamav"]
    # the episode that spans the outage (a stray antivirus timeout on a loaded machine may
    # have opened it once more; that is allowed, missing the outage is not)
    (outage,) = [
        e for e in episodes if e["opened_at_sec"] < end and start < (e["closed_at_sec"] or 1e9)
    ]
    assert outage["opened_at_sec"] >= start - 0.5
    assert outage["closed_at_sec"] is not None
    assert outage["closed_at_sec"] >= end  # it recovered once the service was back
    assert "breaker clamav/scan: closed -> open" in outage_run.stdout
    assert "breaker clamav/scan: half_open -> closed" in outage_run.stdout
    (scan,) = [e for e in outage_run.summary["endpoints"] if e["endpoint"] == "scan"]
    assert scan["rejected_by_breaker"] > 0  # calls failed fast while it was open


def test_rate_limited_llm_calls_were_retried_after_the_servers_retry_after(outage_run):
    info = outage_run.summary["retry_after"]["openai/chat.completions"]
    assert info["retries"] >= 1
    assert info["retry_after_sec"] == [1.0]
    assert info["honoured"] == info["retries"]
    assert info["waited_min_sec"] >= 0.95
    assert "rate-limited attempts retried after the server's Retry-After of 1s" in (
        outage_run.stdout
    )


def test_metrics_endpoint_served_the_telemetry_names(outage_run):
    page = outage_run.metrics_page
    served = {line.split("{")[0].split(" ")[0] for line in page.splitlines() if line[:1] != "#"}
    expected = {
        f"{names.PROM_CALL_DURATION}_bucket",
        f"{names.PROM_CALL_DURATION}_count",
        f"{names.PROM_ATTEMPT_DURATION}_bucket",
        f"{names.PROM_ATTEMPT_DURATION}_sum",
        names.PROM_RETRIES,
        f"{names.PROM_RETRY_DELAY}_count",
        names.PROM_TIMEOUTS,
        names.PROM_BREAKER_STATE,
        names.PROM_BREAKER_TRANSITIONS,
        names.PROM_BREAKER_REJECTIONS,
    }
    assert expected <= served, sorted(expected - served)
    assert any(
        f'{names.PROM_SERVICE}="clamav"' in line and f'{names.PROM_ENDPOINT}="scan"' in line
        for line in page.splitlines()
        if line.startswith(names.PROM_BREAKER_TRANSITIONS)
    )
    # the retry delay the library recorded for the LLM includes the 1 s Retry-After waits
    delays = [
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith(f"{names.PROM_RETRY_DELAY}_sum") and '"openai"' in line
    ]
    assert delays
    assert max(delays) >= 1.0


def test_status_reads_the_running_demo_from_its_health_endpoint(outage_run):
    report = outage_run.status_health
    assert report["source"] == "health"
    endpoints = {(b["service_name"], b["endpoint"]) for b in report["breakers"]}
    assert ("clamav", "scan") in endpoints
    for breaker in report["breakers"]:
        assert breaker["state"] in {"closed", "open", "half_open"}
        assert isinstance(breaker["failure_count"], int)
    assert "SERVICE" in outage_run.status_table
    assert "clamav" in outage_run.status_table


def test_status_falls_back_to_the_running_demos_metrics(outage_run):
    report = outage_run.status_metrics
    assert report["source"] == "metrics"
    assert report["breakers"]
    assert all(b["failure_count"] is None for b in report["breakers"])
    assert {b["state"] for b in report["breakers"]} <= {"closed", "open", "half_open"}
