"""A gRPC server in its own process (so a test can SIGSTOP it), with generic handlers (no protoc).

``python grpc_backend.py`` prints its port, then serves:

- ``/demo.Echo/Say``: answers by a plan set through the control service: each request takes the
  next action of the plan (the default action once it is empty): ``ok`` (echo the request),
  ``sleep=S`` (answer after S seconds), or a status code name such as ``UNAVAILABLE``, optionally
  ``;pushback=MS`` (``grpc-retry-pushback-ms`` in the trailing metadata);
- ``/ctl.Control/Set`` (JSON ``{"plan": [...], "default": "ok"}``: also clears the record) and
  ``/ctl.Control/Stats`` (JSON: requests seen and the ``grpc-previous-rpc-attempts`` of each).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc


class Backend:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plan: list[str] = []
        self.default = "ok"
        self.previous: list[str | None] = []

    def say(self, request: bytes, context: Any) -> bytes:
        metadata = dict(context.invocation_metadata())
        with self.lock:
            self.previous.append(metadata.get("grpc-previous-rpc-attempts"))
            action = self.plan.pop(0) if self.plan else self.default
        if action == "ok":
            return b"echo:" + request
        if action.startswith("sleep="):
            time.sleep(float(action.partition("=")[2]))
            return b"late:" + request
        code, _, extra = action.partition(";")
        if extra.startswith("pushback="):
            context.set_trailing_metadata((("grpc-retry-pushback-ms", extra.partition("=")[2]),))
        context.abort(getattr(grpc.StatusCode, code), f"planned {code}")
        raise AssertionError("abort returns only by raising")

    def set(self, request: bytes, context: Any) -> bytes:
        settings = json.loads(request)
        with self.lock:
            self.plan = list(settings.get("plan", []))
            self.default = settings.get("default", "ok")
            self.previous = []
        return b"{}"

    def stats(self, request: bytes, context: Any) -> bytes:
        with self.lock:
            return json.dumps({"count": len(self.previous), "previous": self.previous}).encode()


def main() -> None:
    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    unary = grpc.unary_unary_rpc_method_handler
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("demo.Echo", {"Say": unary(backend.say)}),
            grpc.method_handlers_generic_handler(
                "ctl.Control", {"Set": unary(backend.set), "Stats": unary(backend.stats)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # runs until the test closes stdin (or kills it)
    server.stop(0)


if __name__ == "__main__":
    main()
