"""The redis-server process of the shared-state tests, and its fixtures.

The server is started once per session (no persistence, in a temp dir) and flushed before each
test; :class:`RedisServer` can stop and restart it mid-test (same port, empty data, as after a
crash of a cache-only Redis). Without ``/usr/bin/redis-server`` the tests skip, unless CI=true.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from otel_resilience import _redis
from support import require_binary

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process the tests own: ``url``, ``client()``, ``stop()``, ``start()``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again) on the same port and wait until it answers PING."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, no save) and wait until it is gone."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - redis stops on SIGTERM
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def client(self) -> redis.Redis:
        """A plain client for assertions (not the library's pool)."""
        return redis.Redis(port=self.port, socket_timeout=5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server (skips without the binary, unless CI=true)."""
    binary = require_binary(REDIS_SERVER, "redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The server's URL, running and empty; the library's Redis stores are fresh."""
    if not redis_server.running:
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    _redis.close_stores()
    yield redis_server.url
    _redis.close_stores()
    if not redis_server.running:  # a test stopped it and failed before restarting it
        redis_server.start()


@pytest.fixture
def rclient(redis_server: RedisServer, redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the test server, for setting up and checking keys."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
async def async_clients(redis_url: str) -> AsyncIterator[str]:
    """``redis_url``, and the library's asyncio clients of this test's loop closed at the end."""
    yield redis_url
    await _redis.aclose_async_clients()
