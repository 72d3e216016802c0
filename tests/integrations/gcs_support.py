"""``gcp-storage-emulator`` in its own process (so a test can SIGSTOP it) behind an HTTP proxy
that counts the requests and can answer some of them with a planned failure instead."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from faultserver import free_port

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "content-length"}


class Emulator:
    """The emulator on a free port, in memory; its request log in ``requests.log``."""

    def __init__(self, directory: Path) -> None:
        found = shutil.which("gcp-storage-emulator") or str(
            Path(sys.executable).with_name("gcp-storage-emulator")
        )
        if not Path(found).exists():
            message = "gcp-storage-emulator not installed (pip install gcp-storage-emulator)"
            if os.environ.get("CI") == "true":
                pytest.fail(message + " -- CI=true, so this test must run")
            pytest.skip(message)
        self.port = free_port()
        self.log = directory / "requests.log"
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [found, "start", "--host=127.0.0.1", f"--port={self.port}", "--in-memory"],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self.frozen = False
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                connection.request("GET", "/storage/v1/b?project=probe")
                connection.getresponse().read()
                connection.close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gcp-storage-emulator did not start: {self.log.read_text()[-2000:]}")

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.frozen:
            self.thaw()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log_file.close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (its attempt timed out) hung up: nothing to report


class FaultProxy:
    """HTTP in front of the emulator: each request takes the next planned action (``pass``,
    ``503``, ``429;retry-after=2``, ...; ``pass`` once the plan is empty, or ``default``)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.plan_actions: list[str] = []
        self.default = "pass"
        self.seen: list[str] = []  # "METHOD path" of every request, in order
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen.append(f"{self.command} {self.path}")
                    action = proxy.plan_actions.pop(0) if proxy.plan_actions else proxy.default
                if action != "pass":
                    status, _, extra = action.partition(";")
                    payload = b'{"error": {"code": %s, "message": "planned"}}' % status.encode()
                    self.send_response(int(status))
                    if extra.startswith("retry-after="):
                        self.send_header("Retry-After", extra.partition("=")[2])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                except OSError:
                    self.close_connection = True
                    return
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def plan(self, *actions: str, default: str = "pass") -> None:
        with self.lock:
            self.plan_actions = list(actions)
            self.default = default
            self.seen = []

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for line in self.seen if line.startswith(prefix))

    def settled_count(self, prefix: str = "", within: float = 5.0) -> int:
        last, since = self.count(prefix), time.monotonic()
        end = since + within
        while time.monotonic() < end and time.monotonic() - since < 0.5:
            time.sleep(0.05)
            now = self.count(prefix)
            if now != last:
                last, since = now, time.monotonic()
        return last

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path_factory.mktemp("gcs"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def gcs_proxy(emulator_process: Emulator) -> Iterator[FaultProxy]:
    proxy = FaultProxy(emulator_process.port)
    yield proxy
    proxy.close()


@pytest.fixture
def gcs(emulator_process: Emulator, gcs_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The proxy, passing everything with an empty record; the emulator thawed afterwards."""
    gcs_proxy.plan()
    yield gcs_proxy
    if emulator_process.frozen:
        emulator_process.thaw()
