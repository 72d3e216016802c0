"""Soak: thousands of tiny main-thread timeouts around real clients against real local servers.

Every call is ``resilient_call(..., timeout_sec=<random 20 us .. 3 ms>)`` from the main thread
(every tenth with 5 s instead, so that calls return right after cut ones;
``TIMEOUT_MODE=interrupt``: SIGALRM interrupts the client wherever it stands). Each returned value
must be the one asked for (GET of key k returns k's value, GET /ok/k answers for /ok/k, the chat
stand-in echoes the prompt), no internal exception may escape, and afterwards the client must be
healthy: a burst of normal calls all return the right values and the pool holds no connection in
use. Calls per client: ``SOAK_CALLS`` (default 1500; 2500 when CI=true; half of it for the
OpenAI SDK, ~10 ms a call): the whole file stays under ~60 s in CI.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from redis_support import RedisServer

import otel_resilience
from faultserver import FaultServer
from otel_resilience import ReliabilityError, _timeout, resilient_call
from otel_resilience import _redis as redis_module
from support import require_binary, without_sigalrm

CALLS = int(os.environ.get("SOAK_CALLS") or (2500 if os.environ.get("CI") == "true" else 1500))
KEYS = 64
SHORTEST, LONGEST = 20e-6, 3e-3
GENEROUS_EVERY, GENEROUS_SEC = 10, 5.0
SEED = int(os.environ.get("SOAK_SEED") or 1234)


@dataclass
class Tally:
    """What a soak saw; ``wrong`` and ``escaped`` must stay empty."""

    calls: int = 0
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    wrong: list[tuple[int, object]] = field(default_factory=list)
    escaped: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"calls={self.calls} ok={self.ok} failed={dict(self.failed)} "
            f"wrong={len(self.wrong)} escaped={self.escaped[:3]} leftovers={self.leftovers[:3]} "
            f"samples={self.samples}"
        )


def soak(
    service: str,
    get: Callable[[int], Any],
    expected: Callable[[int], Any],
    longest: float = LONGEST,
    calls: int = CALLS,
) -> Tally:
    """``CALLS`` calls of ``get(k)`` for random keys under random timeouts (20 us - longest),
    every ``GENEROUS_EVERY``-th with a generous one instead.

    A wrong answer can only show on a call that returns: the generous calls return right after
    cut ones, on whatever the cuts left. Without them, a client slower than ``longest`` on a
    loaded machine (requests: 0 of 2,500 calls under 3 ms in a CI run) tested nothing."""
    rng = random.Random(SEED)
    tally = Tally()
    for index in range(calls):
        key = rng.randrange(KEYS)
        drawn = rng.uniform(SHORTEST, longest)  # drawn either way: the same cuts as before
        timeout = GENEROUS_SEC if index % GENEROUS_EVERY == GENEROUS_EVERY - 1 else drawn
        tally.calls += 1
        try:
            value = resilient_call(
                service, "get", lambda key=key: get(key), timeout_sec=timeout, max_retries=1
            )
        except ReliabilityError as error:
            tally.failed[error.error_type.value] += 1
            cause = error.__cause__
            tally.samples.setdefault(error.error_type.value, f"{error}; cause: {cause!r}")
        except BaseException as exc:  # whatever escapes is the finding
            tally.escaped.append(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
        else:
            if value == expected(key):
                tally.ok += 1
            else:
                tally.wrong.append((key, value))
        left = _timeout._leftovers()
        if left:
            tally.leftovers.extend(left)
    return tally


def healthy_burst(get: Callable[[int], Any], expected: Callable[[int], Any]) -> list[int]:
    """Keys whose normal call (generous timeout) did not return the right value."""
    bad = []
    for key in range(KEYS):
        try:
            value = resilient_call("burst", "get", lambda key=key: get(key), timeout_sec=5.0)
        except ReliabilityError:
            bad.append(key)
            continue
        if value != expected(key):
            bad.append(key)
    return bad


def assert_clean(tally: Tally) -> None:
    print(tally.summary())
    assert tally.escaped == [], tally.summary()
    assert tally.wrong == [], tally.summary()
    assert tally.leftovers == [], tally.summary()
    assert tally.ok > 0, "no call succeeded: the timeouts are too short for this client"
    assert sum(tally.failed.values()) > 0, "no call timed out: the timeouts are too long"


@pytest.fixture(autouse=True)
def _never_open() -> None:
    """Breakers that never open: every call really reaches the client."""
    otel_resilience.configure(
        services={
            name: {"CB_FAIL_THRESHOLD": 1_000_000, "HTTP_RETRIES": 1}
            for name in ("redis", "http", "httpx", "openai", "sqlite", "store", "burst")
        }
    )


# --- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_binary("/usr/bin/redis-server", "redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("soak-redis"))
    server.start()
    client = server.client()
    for key in range(KEYS):
        client.set(f"k{key}", f"value-{key}")
    client.close()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


class _ChatHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible ``/v1/chat/completions`` that echoes the last message."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = request["messages"][-1]["content"]
        body = json.dumps(
            {
                "id": "chatcmpl-soak",
                "object": "chat.completion",
                "created": 0,
                "model": request["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"echo:{text}"},
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-reply is the point of the soak


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(
        target=without_sigalrm(server.serve_forever), kwargs={"poll_interval": 0.05}
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- the clients -------------------------------------------------------------------------------


def test_redis_py_never_returns_another_keys_value(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis(port=redis_server.port, socket_timeout=5)

    def get(key: int) -> Any:
        return client.get(f"k{key}")

    def expected(key: int) -> bytes:
        return f"value-{key}".encode()

    tally = soak("redis", get, expected)

    assert_clean(tally)
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 0, "a connection never went back to the pool"
    assert healthy_burst(get, expected) == []
    assert len(pool._in_use_connections) == 0
    client.close()


def _urllib3_in_use(session: Any) -> int:
    pools = session.adapters["http://"].poolmanager.pools
    return sum(pools[key].pool.maxsize - pools[key].pool.qsize() for key in list(pools.keys()))


# Known gap (docs/timeouts.md): an interruption can still make http.client drop a response
# whose socket was closed but whose file object was not, so the descriptor is only released by
# the garbage collector ("unclosed <socket.socket [closed]"). Any other unclosed socket fails.
@pytest.mark.filterwarnings(r"ignore:unclosed <socket\.socket \[closed\]:ResourceWarning")
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <socket\.socket \[closed\]"
    ":pytest.PytestUnraisableExceptionWarning"
)
def test_requests_never_returns_another_paths_answer(http_server: FaultServer) -> None:
    import requests

    session = requests.Session()

    def get(key: int) -> Any:
        return session.get(f"{http_server.url}/ok/k{key}", timeout=5).json()["path"]

    def expected(key: int) -> str:
        return f"/ok/k{key}"

    try:
        tally = soak("http", get, expected)

        assert_clean(tally)
        assert _urllib3_in_use(session) == 0, "a connection never went back to urllib3's pool"
        assert healthy_burst(get, expected) == []
        assert _urllib3_in_use(session) == 0
    finally:
        session.close()
        # the known gap's sockets are garbage by now, pass or fail: collected here, under this
        # test's filter, not later in whichever test runs next (where any unclosed socket fails)
        gc.collect()


def _httpcore_busy(client: Any) -> tuple[int, int]:
    """(requests queued or in flight, connections not idle) of an httpx client's pool."""
    pool = client._transport._pool
    busy = [c for c in pool.connections if not (c.is_idle() or c.is_closed())]
    return len(pool._requests), len(busy)


def test_httpx_never_returns_another_paths_answer(http_server: FaultServer) -> None:
    import httpx

    client = httpx.Client(timeout=5)

    def get(key: int) -> Any:
        return client.get(f"{http_server.url}/ok/k{key}").json()["path"]

    def expected(key: int) -> str:
        return f"/ok/k{key}"

    tally = soak("httpx", get, expected)

    assert_clean(tally)
    assert _httpcore_busy(client) == (0, 0), "httpcore's pool kept requests or connections"
    assert healthy_burst(get, expected) == []
    assert _httpcore_busy(client) == (0, 0)
    client.close()


def test_openai_sdk_never_returns_another_prompts_answer(chat_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=chat_url, api_key="soak", max_retries=0, timeout=5)

    def get(key: int) -> Any:
        reply = client.chat.completions.create(
            model="soak", messages=[{"role": "user", "content": f"k{key}"}]
        )
        return reply.choices[0].message.content

    def expected(key: int) -> str:
        return f"echo:k{key}"

    tally = soak(
        "openai", get, expected, longest=0.03, calls=CALLS // 2
    )  # the SDK alone takes ~2-5 ms a call

    assert_clean(tally)
    assert _httpcore_busy(client._client) == (0, 0), "stuck connections or orphaned requests"
    assert healthy_burst(get, expected) == []
    assert _httpcore_busy(client._client) == (0, 0)
    client.close()


def test_sqlite3_never_returns_another_rows_value(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "soak.db")
    connection.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
    connection.executemany("INSERT INTO kv VALUES (?, ?)", [(k, f"v{k}") for k in range(KEYS)])
    connection.commit()

    def get(key: int) -> Any:
        return connection.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()[0]

    def expected(key: int) -> str:
        return f"v{key}"

    tally = soak("sqlite", get, expected)

    assert_clean(tally)
    assert not connection.in_transaction
    assert healthy_burst(get, expected) == []
    connection.close()


def test_library_redis_store_survives_interrupted_breaker_round_trips(
    redis_server: RedisServer,
) -> None:
    """Inner calls on the Redis backend, cut by the outer call's tiny deadline anywhere (in the
    breaker's Redis round trips too); the inner service's breaker must stay usable."""
    redis_module.close_stores()
    otel_resilience.configure(
        otel_resilience.ReliabilityConfig(
            STATE_BACKEND="redis",
            REDIS_URL=redis_server.url,
            REDIS_TIMEOUT_MS=1000,
            CB_FAIL_THRESHOLD=1_000_000,
            HTTP_RETRIES=1,
        )
    )
    values = {key: f"stored-{key}" for key in range(KEYS)}

    def get(key: int) -> Any:
        return resilient_call("store-inner", "get", lambda: values[key], timeout_sec=5.0)

    def expected(key: int) -> str:
        return values[key]

    try:
        tally = soak("store", get, expected, longest=5e-4)

        assert_clean(tally)
        assert healthy_burst(get, expected) == []
        for store in redis_module.stores():
            assert len(store.pool._in_use_connections) == 0
        state = otel_resilience.get_circuit_breaker_manager().breaker_for("store-inner", "get")
        assert state.state.name == "CLOSED"
    finally:
        redis_module.close_stores()
