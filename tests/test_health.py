"""HealthServer under hostile clients: idle and slow connections never block /health."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import pytest

from otel_resilience import HealthServer


def _get(url: str, timeout: float = 3.0) -> tuple[int, dict[str, Any], float]:
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.loads(response.read())
        return response.status, body, time.monotonic() - start


@contextmanager
def _raw(address: tuple[str, int], send: bytes = b"") -> Iterator[socket.socket]:
    with closing(socket.create_connection(address, timeout=5)) as sock:
        if send:
            sock.sendall(send)
        yield sock


def test_an_idle_connection_does_not_block_health_for_others() -> None:
    with HealthServer("127.0.0.1", 0) as server, _raw(server.address):
        time.sleep(0.2)  # the idle connection is accepted before the GET
        status, body, took = _get(server.url)
    assert status == 200
    assert body["status"] == "ok"
    assert took < 1.0


def test_a_slowloris_client_does_not_block_health_for_others() -> None:
    with HealthServer("127.0.0.1", 0) as server, _raw(server.address, b"GET /hea") as slow:
        results = []
        for _ in range(5):
            slow.sendall(b"l")  # trickles its request line, one byte at a time
            results.append(_get(server.url))
        assert [status for status, _, _ in results] == [200] * 5
        assert max(took for _, _, took in results) < 1.0


def test_a_silent_connection_is_dropped_after_the_timeout() -> None:
    with HealthServer("127.0.0.1", 0, timeout=0.3) as server, _raw(server.address) as idle:
        start = time.monotonic()
        assert idle.recv(1024) == b""  # the server closed it
        took = time.monotonic() - start
    assert 0.2 <= took < 2.0


def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    with (
        HealthServer("127.0.0.1", 0, max_connections=2, timeout=0.5) as server,
        _raw(server.address),
        _raw(server.address),
    ):
        time.sleep(0.2)  # both slots taken by silent clients
        with _raw(server.address) as third:
            start = time.monotonic()
            try:
                data = third.recv(1024)
            except ConnectionResetError:
                data = b""
            assert data == b""
            assert time.monotonic() - start < 0.4  # refused, not queued behind the idle two
        time.sleep(0.6)  # the two are dropped after their timeout: the slots are free again
        assert _get(server.url)[0] == 200


def test_many_concurrent_clients_are_all_served() -> None:
    with HealthServer("127.0.0.1", 0) as server:
        statuses: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            status = _get(server.url)[0]
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=client) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert statuses == [200] * 20


def test_close_does_not_wait_for_an_idle_connection() -> None:
    server = HealthServer("127.0.0.1", 0, timeout=30).start()
    with _raw(server.address):
        time.sleep(0.1)
        start = time.monotonic()
        server.close()
        assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout=0 is not accepted: expected seconds > 0"),
        ({"timeout": "5"}, "timeout='5' is not accepted"),
        ({"timeout": True}, "timeout=True is not accepted"),
        ({"max_connections": 0}, "max_connections=0 is not accepted: expected an integer >= 1"),
        ({"max_connections": 2.5}, "max_connections=2.5 is not accepted"),
        ({"max_connections": True}, "max_connections=True is not accepted"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HealthServer("127.0.0.1", 0, **kwargs)


def test_a_client_error_prints_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with HealthServer("127.0.0.1", 0) as server:
        try:
            raise BrokenPipeError("client went away")
        except BrokenPipeError:
            server._server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""


def _error_body(url: str) -> tuple[int, dict[str, Any]]:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=3)
    with caught.value:
        return caught.value.code, json.loads(caught.value.read())


def test_a_report_whose_error_str_raises_is_still_a_500() -> None:
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("__str__ raises")

    def report() -> dict[str, Any]:
        raise Hostile()

    with HealthServer("127.0.0.1", 0, report=report) as server:
        status, body = _error_body(server.url)
    assert status == 500
    assert body["status"] == "error"
    assert body["error"].startswith("Hostile: ")


def test_a_report_error_is_redacted() -> None:
    def report() -> dict[str, Any]:
        raise ConnectionError("redis://app:hunter2@cache:6379/0 refused")

    with HealthServer("127.0.0.1", 0, report=report) as server:
        status, body = _error_body(server.url)
    assert status == 500
    assert body["error"] == "ConnectionError: redis://app:***@cache:6379/0 refused"


def test_a_report_that_is_not_plain_json_is_served() -> None:
    import datetime

    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)

    def report() -> dict[str, Any]:
        return {"status": "ok", "since": when}

    with HealthServer("127.0.0.1", 0, report=report) as server:
        status, body, _ = _get(server.url)
    assert (status, body) == (200, {"status": "ok", "since": str(when)})


def test_a_report_that_cannot_be_serialised_is_a_500() -> None:
    def report() -> dict[str, Any]:
        return {("a", "tuple"): "keys are not JSON"}

    with HealthServer("127.0.0.1", 0, report=report) as server:
        status, body = _error_body(server.url)
    assert status == 500
    assert body["error"].startswith("TypeError: keys must be")


def test_an_ipv6_address_is_served() -> None:
    if not socket.has_ipv6:  # pragma: no cover - depends on the machine
        pytest.skip("no IPv6 here")
    try:
        server = HealthServer("::1", 0)
    except OSError as exc:  # pragma: no cover - IPv6 loopback not configured
        pytest.skip(f"no IPv6 loopback: {exc}")
    with server:
        assert server.url.startswith("http://[::1]:")
        status, body, _ = _get(server.url)
    assert (status, body["status"]) == (200, "ok")
