"""A local OpenAI-compatible stand-in: scripted replies, every request counted by path.

``server.script(path, *replies)`` queues what the next requests to ``path`` get (then 200s):

- ``200`` / ``"ok"``: a normal reply for the path (chat completion, embeddings, response);
- ``(status, headers)`` or ``(status, headers, error_code)``: an OpenAI-style error body;
- ``("slow", seconds)``: wait, then answer normally;
- ``("slow-body", seconds)``: send the headers and half the body, wait, send the rest;
- ``"reset"``: half a reply, then a connection reset;
- ``"stream"`` (for ``"stream": true`` requests, the default): server-sent events;
  ``("stream-break", n)``: ``n`` events, then a reset.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from faultserver import LOCALHOST, _reset

_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "stand-in",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello from the stand-in"},
            "finish_reason": "stop",
        }
    ],
}
_EMBEDDINGS = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
    "model": "stand-in",
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}
_RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "stand-in",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}],
        }
    ],
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "tools": [],
}


def _body_for(path: str) -> bytes:
    if path.endswith("/embeddings"):
        return json.dumps(_EMBEDDINGS).encode()
    if path.endswith("/responses"):
        return json.dumps(_RESPONSE).encode()
    return json.dumps(_CHAT).encode()


def _chunk(content: str, finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stand-in",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.partition("?")[0]
        reply = self.server.next_reply(path, dict(self.headers))
        streaming = bool(request.get("stream"))
        if reply in (200, "ok", "stream"):
            self._answer(path, streaming)
        elif isinstance(reply, tuple) and reply[0] == "slow":
            self.server.stopping.wait(reply[1])
            self._answer(path, streaming)
        elif isinstance(reply, tuple) and reply[0] == "slow-body":
            body = _body_for(path)
            self._head(200, "application/json", len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.stopping.wait(reply[1])
            self.wfile.write(body[len(body) // 2 :])
        elif reply == "reset":
            body = _body_for(path)
            self._head(200, "application/json", len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(0.01)
            self.close_connection = True
            _reset(self.connection)
        elif isinstance(reply, tuple) and reply[0] == "stream-break":
            self._head(200, "text/event-stream", None)
            for n in range(reply[1]):
                self.wfile.write(_chunk(f"part {n} "))
            self.wfile.flush()
            time.sleep(0.05)
            self.close_connection = True
            _reset(self.connection)
        else:
            status, headers, *code = reply
            error_code = code[0] if code else None
            error_type = error_code or "fault"
            body = json.dumps(
                {
                    "error": {
                        "message": f"stand-in says {status}",
                        "type": error_type,
                        "code": error_code,
                        "param": None,
                    }
                }
            ).encode()
            self._head(status, "application/json", len(body), headers)
            self.wfile.write(body)

    do_GET = do_POST

    def _answer(self, path: str, streaming: bool) -> None:
        if not streaming:
            body = _body_for(path)
            self._head(200, "application/json", len(body))
            self.wfile.write(body)
            return
        self._head(200, "text/event-stream", None)
        for word in ("hello ", "from ", "the stand-in"):
            self.wfile.write(_chunk(word))
        self.wfile.write(_chunk("", "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def _head(
        self, status: int, kind: str, length: int | None, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((LOCALHOST, 0), _Handler)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.replies: dict[str, deque[Any]] = {}
        self.headers_seen: list[dict[str, str]] = []
        self.stopping = threading.Event()

    def next_reply(self, path: str, headers: dict[str, str]) -> Any:
        with self.lock:
            self.counts[path] += 1
            self.headers_seen.append(headers)
            queue = self.replies.get(path)
            return queue.popleft() if queue else "ok"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class LlmStandIn:
    """The stand-in; ``with LlmStandIn() as llm: openai.OpenAI(base_url=llm.url + "/v1")``."""

    def __init__(self) -> None:
        self._server = _Server()
        self.port = int(self._server.server_address[1])
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def script(self, path: str, *replies: Any) -> None:
        with self._server.lock:
            self._server.replies.setdefault(path, deque()).extend(replies)

    def count(self, path: str) -> int:
        with self._server.lock:
            return self._server.counts[path]

    def headers_seen(self) -> list[dict[str, str]]:
        with self._server.lock:
            return list(self._server.headers_seen)

    def clear(self) -> None:
        with self._server.lock:
            self._server.counts.clear()
            self._server.replies.clear()
            self._server.headers_seen.clear()

    def start(self) -> LlmStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LlmStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
