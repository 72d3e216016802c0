"""Start and stop real Prometheus and Alertmanager binaries on free 127.0.0.1 ports, in temp dirs,
and receive Alertmanager's webhooks in a thread. Shared by the bundle's tests.

A missing binary skips the test with the reason locally and fails it under ``CI=true``, where
``.ci/run`` installs Debian's ``prometheus`` and ``prometheus-alertmanager``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: where Debian's packages put the binaries, when they are not on PATH
BINARIES = {
    "prometheus": ("prometheus", "/usr/bin/prometheus"),
    "alertmanager": ("prometheus-alertmanager", "alertmanager", "/usr/bin/prometheus-alertmanager"),
    "promtool": ("promtool", "/usr/bin/promtool"),
    "amtool": ("amtool", "/usr/bin/amtool"),
}
PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}
#: vmagent with OTLP ingestion (the OTLP path's bridge to remote write):
#: ``$OTEL_RESILIENCE_VMAGENT``, else where ``.ci/install-vmagent`` unpacks Debian trixie's
#: ``victoria-metrics``. Not PATH: Debian 12's own vmagent (1.79) cannot ingest OTLP.
VMAGENT_ENV = "OTEL_RESILIENCE_VMAGENT"
VMAGENT_PATH = "/opt/otel-resilience-tools/victoria-metrics/usr/bin/vmagent"
VMAGENT_OTLP_FLAG = "-opentelemetry.usePrometheusNaming"


def find_binary(name: str) -> str | None:
    for candidate in BINARIES[name]:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require(name: str) -> str:
    """The binary's path; skip the test when it is missing, unless CI=true (then fail)."""
    found = find_binary(name)
    if found:
        return found
    _missing(
        f"{name} is not installed (Debian package {PACKAGES[name]!r}: "
        f"apt-get install {PACKAGES[name]}); .ci/run installs it"
    )


def find_vmagent(environ: dict[str, str] | None = None) -> str | None:
    """vmagent's path from ``$OTEL_RESILIENCE_VMAGENT`` or the known install path, if it is an
    executable file (whether it ingests OTLP is ``require_vmagent``'s question)."""
    env = os.environ if environ is None else environ
    for candidate in (env.get(VMAGENT_ENV, ""), VMAGENT_PATH):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_vmagent() -> str:
    """A vmagent that ingests OTLP; skip when there is none, unless CI=true (then fail)."""
    found = find_vmagent()
    where = f"${VMAGENT_ENV} or {VMAGENT_PATH}"
    if not found:
        _missing(
            f"no vmagent at {where} (.ci/install-vmagent unpacks Debian trixie's "
            "victoria-metrics package there; .ci/run runs it)"
        )
    helped = run(found, "-help", timeout=30)
    if VMAGENT_OTLP_FLAG not in helped.stdout + helped.stderr:
        _missing(f"{found} has no OTLP ingestion ({VMAGENT_OTLP_FLAG}): use trixie's 1.112+")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    *cmd: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def http_get(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")


@dataclass
class Server:
    """A started server process with its log file; ``stop()`` ends it (and only it)."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        try:
            wait_until(ready, timeout, what=f"{self.name} at {self.url}/-/ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _spawn(name: str, cmd: list[str], port: int, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(name, process, port, log)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_prometheus(config: Path, workdir: Path, *extra: str) -> Server:
    """Prometheus with ``config`` (rule paths relative to it), its TSDB in ``workdir``, and
    ``extra`` flags (``--web.enable-remote-write-receiver``, say)."""
    port = free_port()
    cmd = [
        require("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
        *extra,
    ]
    return _spawn("prometheus", cmd, port, workdir)


#: vmagent's relabelling of the OTLP resource into job/instance, as Prometheus's OTLP receiver
#: does (the committed file, for users of this path; see its comments)
VMAGENT_RELABEL = ROOT / "deploy/vmagent/relabel.yml"


def start_vmagent(remote_write_url: str, workdir: Path) -> Server:
    """vmagent receiving OTLP/HTTP at ``<url>/opentelemetry/v1/metrics`` and remote-writing it to
    ``remote_write_url`` every second, with Prometheus naming and ``VMAGENT_RELABEL``."""
    port = free_port()
    cmd = [
        require_vmagent(),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-remoteWrite.url={remote_write_url}",
        f"-remoteWrite.tmpDataPath={workdir / 'vmagent-queue'}",
        f"-remoteWrite.relabelConfig={VMAGENT_RELABEL}",
        "-remoteWrite.flushInterval=1s",
        VMAGENT_OTLP_FLAG,
        "-loggerLevel=WARN",
    ]
    return _spawn("vmagent", cmd, port, workdir)


def start_alertmanager(config: Path, workdir: Path) -> Server:
    """Alertmanager with ``config``, clustering off (no gossip port), data in ``workdir``."""
    port = free_port()
    cmd = [
        require("alertmanager"),
        f"--config.file={config}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    return _spawn("alertmanager", cmd, port, workdir)


def alertmanager_test_config(
    source: Path,
    workdir: Path,
    webhook_url: str,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1m",
) -> Path:
    """A copy of the Alertmanager config ``source`` for a test: the same routes, grouping and
    inhibition, but every route's timers replaced and every webhook posting to ``webhook_url``
    (same paths: /page, /ticket, /heartbeat)."""
    import yaml  # the tests' dependency, not the helpers'

    config = yaml.safe_load(source.read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(
            group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval
        )
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = "/" + hook["url"].split("://", 1)[1].split("/", 1)[1]
            hook["url"] = webhook_url + path
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def post_alerts(alertmanager_url: str, alerts: list[dict[str, Any]]) -> None:
    """Send ``alerts`` (``labels``/``annotations`` dicts) to Alertmanager as Prometheus does."""
    body = json.dumps(alerts).encode()
    request = urllib.request.Request(
        f"{alertmanager_url}/api/v2/alerts",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        if response.status != 200:  # pragma: no cover - Alertmanager answers 200 or raises
            raise RuntimeError(f"Alertmanager answered {response.status}")


@dataclass
class Prom:
    """A little client for Prometheus's HTTP API."""

    url: str

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = http_get(f"{self.url}/api/v1/{path}?{query}")
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: str) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=step)
        return list(data["result"])

    def series(self, match: str) -> list[dict[str, str]]:
        return list(self.api("series", **{"match[]": match}))

    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["state"] == "firing"]


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict[str, Any]]] = []


class Webhook:
    """Receives Alertmanager notifications on 127.0.0.1 in a thread; ``alerts()`` lists them."""

    def __init__(self) -> None:
        self._server = _WebhookServer()
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def notifications(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, body) of every notification received so far, in order."""
        with self._server.lock:
            return list(self._server.received)

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(path the notification was posted to, alert) for every alert received so far."""
        with self._server.lock:
            return [(path, a) for path, body in self._server.received for a in body["alerts"]]
