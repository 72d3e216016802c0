"""The gRPC backend process of the gRPC integration tests, and its fixture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

SAY = "/demo.Echo/Say"
BACKEND = Path(__file__).with_name("grpc_backend.py")


class GrpcBackend:
    """``grpc_backend.py`` in a child process, driven through its control service."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BACKEND)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.target = f"127.0.0.1:{self.port}"
        self._control = grpc.insecure_channel(self.target, options=[("grpc.enable_retries", 0)])
        self.frozen = False

    def _rpc(self, method: str, payload: dict[str, Any] | None = None) -> Any:
        call = self._control.unary_unary(method)
        return json.loads(call(json.dumps(payload or {}).encode(), timeout=10))

    def plan(self, *actions: str, default: str = "ok") -> None:
        """The next answers of ``/demo.Echo/Say`` (then ``default``); clears the record."""
        self._rpc("/ctl.Control/Set", {"plan": list(actions), "default": default})

    def stats(self) -> dict[str, Any]:
        return self._rpc("/ctl.Control/Stats")  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(self.stats()["count"])

    def settled_count(self, within: float = 3.0) -> int:
        """The request count once it stopped changing (a thawed server catches up)."""
        last, stable_since = self.count(), time.monotonic()
        end = time.monotonic() + within
        while time.monotonic() < end and time.monotonic() - stable_since < 0.5:
            time.sleep(0.05)
            now = self.count()
            if now != last:
                last, stable_since = now, time.monotonic()
        return last

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.frozen:
            self.thaw()
        self._control.close()
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture(scope="module")
def grpc_backend_process() -> Iterator[GrpcBackend]:
    backend = GrpcBackend()
    yield backend
    backend.stop()


@pytest.fixture
def backend(grpc_backend_process: GrpcBackend) -> Iterator[GrpcBackend]:
    """The module's backend, answering ``ok`` with an empty record (thawed after the test)."""
    grpc_backend_process.plan()
    yield grpc_backend_process
    if grpc_backend_process.frozen:
        grpc_backend_process.thaw()
