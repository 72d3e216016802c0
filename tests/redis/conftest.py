"""A real redis-server on a free 127.0.0.1 port for the shared-state tests.

The server is started once per session (no persistence, in a temp dir) and flushed before each
test; :class:`RedisServer` can stop and restart it mid-test (same port, empty data, as after a
crash of a cache-only Redis). Without ``/usr/bin/redis-server`` the tests skip, unless CI=true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis_support import RedisServer

from otel_resilience import _redis
from support import require_binary

REDIS_SERVER = "/usr/bin/redis-server"


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
