"""With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the demo exports traces and metrics over OTLP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import free_port_pair

CLI = Path(sys.executable).with_name("otel-resilience")


class _Collector(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP posts and remembers which signal paths were posted to."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.received.append((self.path, self.headers.get("Content-Type"), len(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_demo_exports_otlp_traces_and_metrics_when_the_endpoint_is_set(collector):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    port = free_port_pair()
    done = subprocess.run(
        [str(CLI), "demo", "--duration", "3", "--scenario", "steady", "--metrics-port", str(port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"OTLP export to http://127.0.0.1:{collector.server_address[1]}" in done.stdout
    assert f"metrics: http://127.0.0.1:{port}/metrics" in done.stdout  # and Prometheus too
    paths = {path for path, _, size in collector.received if size > 0}
    assert {"/v1/metrics", "/v1/traces"} <= paths
    assert {ctype for _, ctype, _ in collector.received} == {"application/x-protobuf"}
