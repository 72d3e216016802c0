"""Health: every circuit breaker's state, failure count and time to the next probe.

The seed's "Circuit Breaker Status" check, for all breakers at once, as JSON-able data::

    >>> from otel_resilience import health_report
    >>> health_report()["status"]   # no breaker yet, so nothing is open
    'ok'

:class:`HealthServer` serves the same report over HTTP (``GET /health``) for a running process, and
:func:`health_report_from_prometheus` reads it back from a Prometheus ``/metrics`` page for a
process that only exports metrics. ``otel-resilience status`` uses both. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, ClassVar, Final

from ._names import PROM_BREAKER_STATE, PROM_BREAKER_STATE_LABEL, PROM_ENDPOINT, PROM_SERVICE

HEALTH_PATH: Final = "/health"


def breaker_status() -> list[dict[str, Any]]:
    """One dict per breaker (``service_name``, ``endpoint``, ``state``, ``failure_count``,
    ``seconds_until_probe``, ``override``), sorted by service and endpoint."""
    from ._runtime import get_circuit_breaker_manager  # the drivers' layer: health is above it

    rows = []
    for status in get_circuit_breaker_manager().status():
        row = status.to_dict()
        probe = status.seconds_until_probe
        row["seconds_until_probe"] = None if probe is None else round(probe, 3)
        rows.append(row)
    rows.sort(key=lambda row: (row["service_name"], row["endpoint"]))
    return rows


def overall_status(breakers: list[dict[str, Any]]) -> str:
    """``ok`` when every breaker is closed, ``degraded`` when some are open or half-open."""
    return "ok" if all(b.get("state") == "closed" for b in breakers) else "degraded"


def health_report() -> dict[str, Any]:
    """``{"status": "ok"|"degraded", "time": <unix seconds>, "breakers": [...]}``."""
    breakers = breaker_status()
    return {"status": overall_status(breakers), "time": time.time(), "breakers": breakers}


# --- reading breaker states back from /metrics ---------------------------------------------------

_SAMPLE: Final = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\}\s+(?P<value>\S+)"
)
_LABEL: Final = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE: Final = MappingProxyType({"\\\\": "\\", '\\"': '"', "\\n": "\n"})


def _labels(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _LABEL.finditer(text):
        value = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], match.group(2))
        found[match.group(1)] = value
    return found


def breakers_from_prometheus(text: str) -> list[dict[str, Any]]:
    """Breaker states from a Prometheus exposition page (``resilience_circuit_breaker_state``).

    The failure count, the time to the next probe and any override are not exported as metrics:
    they are None.

    >>> state = 'resilience_circuit_breaker_state{resilience_service="clamav",'
    >>> page = "\\n".join([
    ...     state + 'resilience_endpoint="scan",resilience_circuit_breaker_state="open"} 1.0',
    ...     state + 'resilience_endpoint="scan",resilience_circuit_breaker_state="closed"} 0.0',
    ... ])
    >>> [(b["service_name"], b["endpoint"], b["state"]) for b in breakers_from_prometheus(page)]
    [('clamav', 'scan', 'open')]
    """
    states: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        if not line.startswith(PROM_BREAKER_STATE + "{"):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group("name") != PROM_BREAKER_STATE:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = _labels(match.group("labels"))
        key = (labels.get(PROM_SERVICE, ""), labels.get(PROM_ENDPOINT, ""))
        if value >= 1.0 and PROM_BREAKER_STATE_LABEL in labels:
            states[key] = labels[PROM_BREAKER_STATE_LABEL]
        else:
            states.setdefault(key, "unknown")
    return [
        {
            "service_name": service,
            "endpoint": endpoint,
            "state": state,
            "failure_count": None,
            "seconds_until_probe": None,
            "override": None,
        }
        for (service, endpoint), state in sorted(states.items())
    ]


def health_report_from_prometheus(text: str) -> dict[str, Any]:
    """:func:`health_report` of another process, read from its Prometheus ``/metrics`` page.

    Only the breaker states are exported as metrics: each breaker's ``failure_count``,
    ``seconds_until_probe`` and ``override`` are ``None``.

    >>> page = (
    ...     'resilience_circuit_breaker_state{resilience_service="clamav",'
    ...     'resilience_endpoint="scan",resilience_circuit_breaker_state="open"} 1.0'
    ... )
    >>> report = health_report_from_prometheus(page)
    >>> report["status"], [(b["endpoint"], b["state"]) for b in report["breakers"]]
    ('degraded', [('scan', 'open')])
    """
    breakers = breakers_from_prometheus(text)
    return {"status": overall_status(breakers), "time": time.time(), "breakers": breakers}


# --- a tiny JSON endpoint ---------------------------------------------------------------------


#: seconds a connection may stay silent (per read or write) before the server drops it
DEFAULT_TIMEOUT_SEC: Final = 5.0
#: connections served at once; more are closed at once instead of queueing behind them
DEFAULT_MAX_CONNECTIONS: Final = 64


class _HealthHandler(BaseHTTPRequestHandler):
    server: _HealthHTTPServer

    def setup(self) -> None:
        # the socket timeout of every read and write of this connection
        self.request.settimeout(self.server.connection_timeout)
        super().setup()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") not in ("", HEALTH_PATH):
            self._send(404, {"error": f"not found; try {HEALTH_PATH}"})
            return
        try:
            data = json.dumps(self.server.report(), default=str).encode()
        except Exception as exc:  # the endpoint reports its own failure instead of dying
            from ._classify import safe_str
            from ._scrub import DEFAULT, MESSAGE_LIMIT, redact

            error = redact(f"{type(exc).__name__}: {safe_str(exc)}", (DEFAULT,), MESSAGE_LIMIT)
            self._send(500, {"status": "error", "error": error})
            return
        self._send_data(200, data)

    def _send(self, status: int, body: object) -> None:
        self._send_data(status, json.dumps(body).encode())

    def _send_data(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Health probes are frequent and dull: no access log."""


class _HealthHTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection (so an idle client blocks nobody), a bounded number."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        report: Callable[[], dict[str, Any]],
        *,
        connection_timeout: float,
        max_connections: int,
    ) -> None:
        self.report = report
        self.connection_timeout = connection_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        #: the connections being served and their (daemon) threads, which server_close does
        #: not join
        self._serving: list[tuple[threading.Thread, socket.socket]] = []
        if ":" in address[0]:  # an IPv6 address such as "::1" or "::"
            self.address_family = socket.AF_INET6
        super().__init__(address, _HealthHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: refuse rather than pile up threads
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        # only the serving thread appends, and close() reads after it stopped: no lock needed
        self._serving = [(t, r) for t, r in self._serving if t.is_alive()]
        self._serving.append((thread, request))
        try:
            thread.start()
        except BaseException:  # pragma: no cover - the thread could not start
            self._slots.release()
            raise

    def end_connections(self, timeout: float) -> None:
        """End the connections being served and join their threads (``timeout`` in all).

        Reading is shut down, so an idle or trickling client is dropped at once; a request
        already read still gets its answer.
        """
        deadline = time.monotonic() + timeout
        for thread, request in self._serving:
            with contextlib.suppress(OSError):  # already closed by its thread
                request.shutdown(socket.SHUT_RD)
            thread.join(max(0.0, deadline - time.monotonic()))

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client's mistake is not worth a traceback on stderr."""


class HealthServer:
    """Serve :func:`health_report` as JSON at ``http://host:port/health``.

    Each connection is served by its own daemon thread, so a client that connects and sends
    nothing (or trickles its request) does not hold up the others; it is dropped after
    ``timeout`` seconds of silence. At most ``max_connections`` are served at once; more are
    closed at once.

    >>> server = HealthServer("127.0.0.1", 0).start()
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.close()
    """

    #: the path the report is served at
    PATH: ClassVar[str] = HEALTH_PATH

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        report: Callable[[], dict[str, Any]] = health_report,
        timeout: float = DEFAULT_TIMEOUT_SEC,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout={timeout!r} is not accepted: expected seconds > 0")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(
                f"max_connections={max_connections!r} is not accepted: expected an integer >= 1"
            )
        # OSError if the port is taken
        self._server = _HealthHTTPServer(
            (host, port),
            report,
            connection_timeout=float(timeout),
            max_connections=max_connections,
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def url(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{HEALTH_PATH}"

    def start(self) -> HealthServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="otel-resilience-health",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and join the server thread; idle connections are dropped, a request
        being answered is finished, and no connection thread outlives this."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server.end_connections(self._server.connection_timeout)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
