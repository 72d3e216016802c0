"""`--duration 0` runs until stopped: Ctrl-C (SIGINT) and `docker stop` (SIGTERM) end it well."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import free_port_pair

CLI = Path(sys.executable).with_name("otel-resilience")


@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGINT, id="ctrl-c"), pytest.param(signal.SIGTERM, id="docker-stop")],
)
def test_an_unlimited_run_stops_on_a_signal_with_a_summary_and_status_0(signum):
    port = free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [str(CLI), "demo", "--duration", "0", "--scenario", "steady", "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)  # let some calls happen
        proc.send_signal(signum)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == ""
    assert "until Ctrl-C" in out.splitlines()[0]
    summary = [line for line in out.splitlines() if line.startswith("Summary:")]
    assert len(summary) == 1
    assert " calls, " in summary[0]
    # in-flight calls finish (an LLM call may wait out a 2 s Retry-After), then it exits
    assert took < 10


def test_a_reader_that_goes_away_ends_the_demo_quietly():
    """`otel-resilience demo | head -1`: no BrokenPipeError traceback, status 1."""
    port = free_port_pair()
    proc = subprocess.Popen(
        [str(CLI), "demo", "--duration", "5", "--scenario", "steady", "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader leaves
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert first.startswith("otel-resilience demo:")
    assert proc.returncode == 1
    assert err == ""
