"""Flaky stand-ins of the seed's three services, served over real HTTP on 127.0.0.1.

* ``openai``: ``POST /v1/chat/completions`` -- 50-800 ms latency, ``429`` with ``Retry-After``,
  occasional ``5xx``.
* ``gcs``: ``PUT /upload/<name>`` and ``GET /download/<name>`` -- connection resets, slow reads
  (the body trickles in for longer than the client waits).
* ``clamav``: ``POST /scan`` -- requests that hang past the caller's timeout, and an outage window
  in which every connection is reset, after which the service recovers.

Each service is a :class:`http.server.ThreadingHTTPServer` on a free port. Handler threads are not
daemons and every sleep waits on the server's stop event, so :meth:`StandInServices.close` returns
quickly and leaves no thread behind.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from ._scenarios import NOMINAL_PERIOD_SEC, Knobs

Clock = Callable[[], float]


class _StandInServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its knobs and can drop its open connections."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], owner: StandInServices, name: str
    ) -> None:
        self.owner = owner
        self.service = name
        self.stop_event = owner.stop_event
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (the demo's attempt timeouts do) is no traceback on stderr."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Wake every handler blocked on a keep-alive connection so it can finish."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """What every stand-in shares: JSON replies, interruptible sleeps, connection resets."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real services
    server: _StandInServer
    timeout = 10  # a client that vanishes mid-request does not pin a thread for long
    routes: ClassVar[dict[tuple[str, str], str]] = {}

    # -- plumbing --------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        """The demo has its own view; stand-in request logs would only scroll it away."""

    @property
    def knobs(self) -> Knobs:
        return self.server.owner.knobs

    @property
    def rng(self) -> random.Random:
        return self.server.owner.rng

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def pause_ms(self, low: float, high: float | None = None) -> bool:
        """Sleep a scaled number of milliseconds; False when the services are shutting down."""
        millis = low if high is None else self.rng.uniform(low, high)
        return not self.server.stop_event.wait(millis * self.server.owner.time_scale / 1000.0)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def reset_connection(self) -> None:
        """Abort the TCP connection (RST), as a crashed or overloaded service does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.server.owner.count(self.server.service, "reset")
        with contextlib.suppress(OSError):
            self.connection.close()

    def route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        prefix = "/" + path.strip("/").split("/", 1)[0]
        action = self.routes.get((method, prefix))
        body = self.read_body()
        if action is None:
            self.reply(404, {"error": f"no route {method} {path}"})
            return
        try:
            getattr(self, action)(path, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first: fine
            self.close_connection = True

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def do_PUT(self) -> None:
        self.route("PUT")


class _LLMHandler(_Handler):
    routes: ClassVar[dict[tuple[str, str], str]] = {("POST", "/v1"): "chat"}

    def chat(self, path: str, body: bytes) -> None:
        if path != "/v1/chat/completions":
            self.reply(404, {"error": {"message": f"unknown path {path}"}})
            return
        k = self.knobs
        owner = self.server.owner
        if not self.pause_ms(*k.llm_latency_ms):
            self.reply(503, {"error": {"message": "shutting down"}})
            return
        if self.chance(k.llm_rate_limit):
            retry_after = owner.retry_after_header()
            owner.count("openai", "rate_limited")
            self.reply(
                429,
                {"error": {"type": "rate_limit_exceeded", "message": "Rate limit reached"}},
                {"Retry-After": retry_after},
            )
            return
        if self.chance(k.llm_server_error):
            owner.count("openai", "server_error")
            status = self.rng.choice((500, 502, 503))
            self.reply(status, {"error": {"message": "The server had an error"}})
            return
        try:
            prompt = json.loads(body or b"{}").get("messages", [{}])[-1].get("content", "")
        except (ValueError, AttributeError, IndexError):
            self.reply(400, {"error": {"message": "invalid JSON body"}})
            return
        owner.count("openai", "ok")
        self.reply(
            200,
            {
                "object": "chat.completion",
                "model": "stand-in",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"summary of {prompt[:40]}"},
                        "finish_reason": "stop",
                    }
                ],
            },
        )


class _StorageHandler(_Handler):
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("PUT", "/upload"): "upload",
        ("GET", "/download"): "download",
    }

    def upload(self, path: str, body: bytes) -> None:
        k = self.knobs
        if not self.pause_ms(*k.storage_latency_ms):
            self.reply(503, {"error": "shutting down"})
            return
        if self.chance(k.storage_reset):
            self.reset_connection()
            return
        self.server.owner.store(path.removeprefix("/upload/"), body)
        self.server.owner.count("gcs", "ok")
        self.reply(200, {"name": path.removeprefix("/upload/"), "size": len(body)})

    def download(self, path: str, body: bytes) -> None:
        k = self.knobs
        if not self.pause_ms(*k.storage_latency_ms):
            self.reply(503, {"error": "shutting down"})
            return
        if self.chance(k.storage_reset):
            self.reset_connection()
            return
        data = self.server.owner.load(path.removeprefix("/download/"))
        slow = self.chance(k.storage_slow_read)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not slow:
            self.server.owner.count("gcs", "ok")
            self.wfile.write(data)
            return
        # a slow read: the body trickles in over storage_slow_read_ms
        self.server.owner.count("gcs", "slow_read")
        chunks = 10
        step = max(1, len(data) // chunks)
        for offset in range(0, len(data), step):
            self.wfile.write(data[offset : offset + step])
            self.wfile.flush()
            if not self.pause_ms(k.storage_slow_read_ms / chunks):
                self.close_connection = True
                return


class _AntivirusHandler(_Handler):
    routes: ClassVar[dict[tuple[str, str], str]] = {("POST", "/scan"): "scan"}

    def scan(self, path: str, body: bytes) -> None:
        k = self.knobs
        owner = self.server.owner
        if owner.antivirus_down():
            self.reset_connection()
            return
        if self.chance(k.av_timeout):
            owner.count("clamav", "hang")
            if not self.pause_ms(k.av_hang_ms):
                self.close_connection = True
                return
        elif not self.pause_ms(*k.av_latency_ms):
            self.close_connection = True
            return
        infected = b"EICAR" in body
        owner.count("clamav", "ok")
        self.reply(200, {"result": "infected" if infected else "clean", "bytes": len(body)})


class StandInServices:
    """The three stand-in services; a context manager that starts and stops them.

    ``knobs`` may be replaced while running (``services.knobs = replace(services.knobs, ...)``).
    """

    def __init__(
        self,
        knobs: Knobs,
        *,
        time_scale: float = 1.0,
        seed: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.knobs = knobs
        self.time_scale = time_scale
        self.rng = random.Random(seed)
        self.clock = clock
        self.stop_event = threading.Event()
        self.started_at = clock()
        self.counters: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._objects: dict[str, bytes] = {}
        self._servers: dict[str, _StandInServer] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> StandInServices:
        handlers: dict[str, type[_Handler]] = {
            "openai": _LLMHandler,
            "gcs": _StorageHandler,
            "clamav": _AntivirusHandler,
        }
        try:
            for name, handler in handlers.items():
                server = _StandInServer(handler, self, name)
                self._servers[name] = server
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name=f"stand-in-{name}",
                )
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.close()
            raise
        self.started_at = self.clock()
        return self

    def close(self) -> None:
        """Stop serving, wake sleeping handlers, drop connections and join every thread."""
        self.stop_event.set()
        for server in self._servers.values():
            server.shutdown()
        for server in self._servers.values():
            server.drop_connections()
            server.server_close()  # joins the handler threads (block_on_close)
        for thread in self._threads:
            thread.join()
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> StandInServices:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the handlers ask ----------------------------------------------------------------
    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each service, e.g. ``{"openai": "http://127.0.0.1:40123", ...}``."""
        return {
            name: f"http://127.0.0.1:{server.server_address[1]}"
            for name, server in self._servers.items()
        }

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    def antivirus_down(self) -> bool:
        """Whether now falls in the outage window (the story repeats every period)."""
        window = self.knobs.av_outage
        if window is None:
            return False
        period = NOMINAL_PERIOD_SEC * self.time_scale
        phase = (self.elapsed() % period) / period
        return window[0] <= phase < window[1]

    def retry_after_header(self) -> str:
        """Whole seconds, as HTTP says, scaled with the run but never below one."""
        return str(max(1, round(self.knobs.llm_retry_after_sec * self.time_scale)))

    def count(self, service: str, what: str) -> None:
        with self._lock:
            key = (service, what)
            self.counters[key] = self.counters.get(key, 0) + 1

    def store(self, name: str, data: bytes) -> None:
        with self._lock:
            if len(self._objects) >= 256:  # a stand-in, not a storage service: keep it small
                self._objects.pop(next(iter(self._objects)))
            self._objects[name] = data

    def load(self, name: str) -> bytes:
        with self._lock:
            found = self._objects.get(name)
        return found if found is not None else (name.encode() * 64)[:4096] or b"x"
