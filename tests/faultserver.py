"""Fault-injecting servers on real 127.0.0.1 sockets, for testing against real client libraries.

:class:`FaultServer` speaks HTTP/1.1. The first path segment picks the fault; parameters come from
the query string or from ``name=value`` path segments (for clients such as openai, whose base URL
cannot carry a query string: ``/429/retry_after=0/chat/completions`` is ``/429?retry_after=0``).

=================  =============================================================================
path               behaviour
=================  =============================================================================
``/ok``            200 with a small JSON body
``/<status>``      that status (``/400``, ``/401``, ``/403``, ``/404``, ``/500``, ``/503`` ...)
                   with a JSON error body ``{"error": {"message", "type", "code"}}``; with
                   ``/aws/<Code>`` among the later segments an S3-style XML ``<Error><Code>``
``/429``           429; ``retry_after=N`` adds ``Retry-After: N`` (any status accepts it, and
                   ``retry_after_ms=N`` adds ``retry-after-ms``)
``/429-date``      429 with ``Retry-After`` as an HTTP-date ``retry_after`` seconds from now
``/flaky``         the first ``fail`` requests to this exact path get ``status`` (503), then 200
``/slow``          waits ``delay`` seconds (default 5) before the status line: a read timeout
``/slow-body``     sends the headers and half the body, then waits ``delay`` seconds
``/reset``         sends half a response, then resets the connection (RST, ``SO_LINGER`` 0)
``/close``         closes the connection without sending anything
``/malformed``     answers with a garbage status line
``/redirect-loop`` 302 to itself, forever
``/not-json``      200 with ``Content-Type: application/json`` and a body that is not JSON
=================  =============================================================================

``refused_url`` points at a port that was bound and released, so nothing listens there.
Every request is counted by its path (without the query): :meth:`FaultServer.count`.

:class:`GrpcFaultServer` answers one raw-bytes unary method; the request names the status code
(``b"UNAVAILABLE"``, ``b"OK"``, ``b"slow:2"``) and optional ``;retry_after=N`` /
``;retry_info=N`` / ``;pushback_ms=N`` put a retry hint in the trailing metadata.

:class:`RespFaultServer` speaks enough RESP for redis-py: the key of ``GET <key>`` picks the fault
(``ok``, ``loading``, ``tryagain``, ``noauth``, ``wrongpass``, ``noperm``, ``wrongtype``,
``err``, ``readonly``, ``oom``, ``clusterdown``, ``masterdown``, ``slow``, ``reset``, ``close``,
``garbage``).
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from support import without_sigalrm

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago (bound, then released: nothing listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Counts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: Counter[str] = Counter()

    def hit(self, key: str) -> int:
        with self._lock:
            self._hits[key] += 1
            return self._hits[key]

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(
                n
                for key, n in self._hits.items()
                if key == prefix or key.startswith(prefix.rstrip("/") + "/")
            )

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


# --- HTTP ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        split = urlsplit(self.path)
        path = unquote(split.path)
        segments = [s for s in path.split("/") if s]
        params = dict(parse_qsl(split.query))
        params.update(s.split("=", 1) for s in segments if "=" in s)
        hits = self.server.counts.hit(path)
        mode = segments[0] if segments else "ok"
        aws = segments.index("aws") if "aws" in segments[1:-1] else None
        aws_code = segments[aws + 1] if aws is not None else None
        fault = self.server.faults

        if mode == "ok":
            self._send(200, {"ok": True, "path": path})
        elif mode == "flaky":
            if hits <= int(params.get("fail", "2")):
                self._error(int(params.get("status", "503")), params, aws_code)
            else:
                self._send(200, {"ok": True, "attempt": hits})
        elif mode.isdigit():
            self._error(int(mode), params, aws_code)
        elif mode == "429-date":
            when = time.time() + float(params.get("retry_after", "2"))
            self._error(429, params, aws_code, retry_after=formatdate(when, usegmt=True))
        elif mode == "slow":
            fault.wait(float(params.get("delay", "5")))
            self._send(200, {"ok": True, "slow": True})
        elif mode == "slow-body":
            body = b'{"ok": true, "padding": "' + b"x" * 64 + b'"}'
            self._head(200, len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            fault.wait(float(params.get("delay", "5")))
            self.wfile.write(body[len(body) // 2 :])
        elif mode == "reset":
            body = b'{"ok": true, "padding": "' + b"x" * 64 + b'"}'
            self._head(200, len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(0.01)  # let the client start reading the body before the RST
            self.close_connection = True
            _reset(self.connection)
        elif mode == "close":
            self.close_connection = True
            self.connection.close()
        elif mode == "redirect-loop":
            self._send(302, {"again": True}, {"Location": path})
        elif mode == "not-json":
            body = b"{this is not json"
            self._head(200, len(body))
            self.wfile.write(body)
        elif mode == "malformed":
            self.close_connection = True
            self.wfile.write(b"GARBAGE\x00 not http at all\r\n\r\n")
        else:
            self._error(400, {"message": f"unknown fault mode {mode!r}"}, aws_code)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def _head(self, status: int, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, payload: object, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._head(status, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(
        self,
        status: int,
        params: dict[str, str],
        aws_code: str | None,
        *,
        retry_after: str | None = None,
    ) -> None:
        extra: dict[str, str] = {}
        if retry_after is None:
            retry_after = params.get("retry_after")
        if retry_after is not None:
            extra["Retry-After"] = retry_after
        if "retry_after_ms" in params:
            extra["retry-after-ms"] = params["retry_after_ms"]
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Fault"
        message = params.get("message", f"fault server says {status} {reason}")
        if aws_code is None:
            self._send(
                status,
                {"error": {"message": message, "type": "fault", "code": status}},
                extra,
            )
            return
        body = (
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            f"<Error><Code>{aws_code}</Code><Message>{message}</Message>"
            "<RequestId>fault-1</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    counts: _Counts
    faults: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-fault is the point of this server


class FaultServer:
    """The HTTP fault server; ``with FaultServer() as server: ...`` or ``start()`` / ``stop()``."""

    def __init__(self) -> None:
        self._httpd = _HTTPServer((LOCALHOST, 0), _Handler)
        self._httpd.counts = _Counts()
        self._httpd.faults = threading.Event()  # set on stop: wakes every slow response
        self._thread = threading.Thread(
            target=without_sigalrm(self._httpd.serve_forever),
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.refused_url = f"http://{LOCALHOST}:{free_port()}"

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.faults.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, path: str) -> int:
        """Requests seen for ``path`` and any path below it (query strings ignored)."""
        return self._httpd.counts.count(path)

    def settled_count(self, path: str, expected: int, within: float = 2.0) -> int:
        """:meth:`count` once it reaches ``expected`` or ``within`` seconds passed.

        A client that gave up on a slow response returns before the server thread may have
        counted the request it already sent; this waits for the server to catch up.
        """
        end = time.monotonic() + within
        while (found := self.count(path)) < expected and time.monotonic() < end:
            time.sleep(0.01)
        return found

    def clear(self) -> None:
        """Forget the request counts (``/flaky`` starts failing again)."""
        self._httpd.counts.clear()


# --- gRPC ----------------------------------------------------------------------------------

GRPC_METHOD = "/fault.Fault/Call"


class GrpcFaultServer:
    """A gRPC server whose one method answers with the status code named in the request."""

    def __init__(self) -> None:
        import grpc

        self._grpc = grpc
        self.counts = _Counts()
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=8)
        self._server = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
        handler = grpc.method_handlers_generic_handler(
            "fault.Fault",
            {"Call": grpc.unary_unary_rpc_method_handler(self._call)},
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port(f"{LOCALHOST}:0")
        self.target = f"{LOCALHOST}:{self.port}"
        self.refused_target = f"{LOCALHOST}:{free_port()}"

    def _call(self, request: bytes, context: Any) -> bytes:
        grpc = self._grpc
        mode, *options = request.decode().split(";")
        self.counts.hit(mode)
        params = dict(option.split("=", 1) for option in options)
        if mode.startswith("slow:"):
            self._stopping.wait(float(mode.partition(":")[2]))
            return b"slow ok"
        code = grpc.StatusCode[mode]
        if code is grpc.StatusCode.OK:
            return b"ok"
        metadata: list[tuple[str, str | bytes]] = []
        if "retry_after" in params:
            metadata.append(("retry-after", params["retry_after"]))
        if "pushback_ms" in params:
            metadata.append(("grpc-retry-pushback-ms", params["pushback_ms"]))
        message = f"fault server says {code.name}"
        if "retry_info" in params:
            # a real server's rich status repeats the status message (grpcio-status checks)
            details = _status_with_retry_info(code, message, params)
            metadata.append(("grpc-status-details-bin", details))
        if metadata:
            context.set_trailing_metadata(metadata)
        context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    def count(self, mode: str) -> int:
        return self.counts.count(mode)

    def start(self) -> GrpcFaultServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop(grace=None).wait(5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> GrpcFaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _status_with_retry_info(code: Any, message: str, params: dict[str, str]) -> bytes:
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    seconds = float(params["retry_info"])
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return bytes(status.SerializeToString())


# --- RESP (redis) --------------------------------------------------------------------------

_RESP_ERRORS = {
    "loading": b"-LOADING Redis is loading the dataset in memory\r\n",
    "tryagain": b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
    "noauth": b"-NOAUTH Authentication required.\r\n",
    "wrongpass": b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    "noperm": b"-NOPERM User default has no permissions to run the 'get' command\r\n",
    "wrongtype": b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    "err": b"-ERR unknown command 'FAULT'\r\n",
    "readonly": b"-READONLY You can't write against a read only replica.\r\n",
    "oom": b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    "clusterdown": b"-CLUSTERDOWN The cluster is down\r\n",
    "masterdown": b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is no\r\n",
}


class _RespHandler(socketserver.StreamRequestHandler):
    server: _RespServer

    def _read_command(self) -> list[bytes] | None:
        line = self.rfile.readline()
        if not line.startswith(b"*"):
            return None
        parts = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            parts.append(self.rfile.read(size + 2)[:-2])
        return parts

    def handle(self) -> None:
        while True:
            command = self._read_command()
            if command is None:
                return
            name = command[0].upper()
            if name == b"PING":
                self.wfile.write(b"+PONG\r\n")
            elif name == b"HELLO":  # redis-py >= 8 speaks RESP3 by default
                proto = command[1] if len(command) > 1 else b"2"
                fields = b"$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:" + proto + b"\r\n"
                self.wfile.write((b"%2\r\n" if proto == b"3" else b"*4\r\n") + fields)
            elif name != b"GET" or len(command) < 2:
                self.wfile.write(b"+OK\r\n")  # CLIENT SETINFO, SELECT, AUTH ... on connect
            elif not self._get(command[1].decode()):
                return
            self.wfile.flush()

    def _get(self, key: str) -> bool:
        mode, _, arg = key.partition(":")
        self.server.counts.hit(mode)
        if mode == "ok":
            self.wfile.write(b"$5\r\nvalue\r\n")
        elif mode in _RESP_ERRORS:
            self.wfile.write(_RESP_ERRORS[mode])
        elif mode == "slow":
            self.server.stopping.wait(float(arg or "5"))
            self.wfile.write(b"$4\r\nslow\r\n")
        elif mode == "reset":
            self.wfile.write(b"$100\r\npartial")
            self.wfile.flush()
            _reset(self.connection)
            return False
        elif mode == "close":
            self.connection.close()
            return False
        elif mode == "garbage":
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        else:
            self.wfile.write(f"-ERR unknown fault {mode}\r\n".encode())
        return True


class _RespServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    counts: _Counts
    stopping: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class RespFaultServer:
    """A RESP server for redis-py whose ``GET <key>`` answers with the fault named by the key."""

    def __init__(self) -> None:
        self._server = _RespServer((LOCALHOST, 0), _RespHandler)
        self._server.counts = _Counts()
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(
            target=without_sigalrm(self._server.serve_forever),
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self.port = int(self._server.server_address[1])
        self.refused_port = free_port()

    def count(self, mode: str) -> int:
        return self._server.counts.count(mode)

    def clear(self) -> None:
        self._server.counts.clear()

    def start(self) -> RespFaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RespFaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running(server: Any) -> Iterator[Any]:
    """Start ``server`` and stop it afterwards."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
