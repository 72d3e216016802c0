"""The fault servers do what their docstring promises, seen from raw sockets."""

from __future__ import annotations

import http.client
import json
import socket
import time
from email.utils import parsedate_to_datetime

import pytest

from faultserver import LOCALHOST, FaultServer


class _Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()


def _get(server: FaultServer, path: str) -> _Answer:
    connection = http.client.HTTPConnection(LOCALHOST, server.port, timeout=5)
    try:
        connection.request("GET", path)
        return _Answer(connection.getresponse())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/ok", 200, id="ok"),
        pytest.param("/503", 503, id="503"),
        pytest.param("/418", 418, id="any-status"),
        pytest.param("/429", 429, id="429"),
    ],
)
def test_status_paths_answer_with_their_status_and_a_json_body(
    fault_server: FaultServer, path: str, status: int
):
    response = _get(fault_server, path)

    assert response.status == status
    assert isinstance(json.loads(response.body), dict)
    assert fault_server.count(path) == 1


def test_retry_after_comes_from_the_query_or_a_path_segment(fault_server: FaultServer):
    assert _get(fault_server, "/429?retry_after=3").headers["Retry-After"] == "3"
    assert _get(fault_server, "/429/retry_after=4/v1/chat").headers["Retry-After"] == "4"
    assert fault_server.count("/429") == 2


def test_retry_after_date_is_an_http_date_in_the_future(fault_server: FaultServer):
    header = _get(fault_server, "/429-date?retry_after=30").headers["Retry-After"]

    assert header.endswith(" GMT")
    assert 28 <= parsedate_to_datetime(header).timestamp() - time.time() <= 30


def test_aws_segment_selects_an_xml_error_code(fault_server: FaultServer):
    response = _get(fault_server, "/503/aws/SlowDown")

    assert response.status == 503
    assert b"<Code>SlowDown</Code>" in response.body


def test_flaky_fails_the_first_requests_then_succeeds(fault_server: FaultServer):
    statuses = [_get(fault_server, "/flaky?fail=2&status=502").status for _ in range(3)]

    assert statuses == [502, 502, 200]
    assert fault_server.count("/flaky") == 3


def test_clear_forgets_the_counts(fault_server: FaultServer):
    _get(fault_server, "/ok")
    fault_server.clear()

    assert fault_server.count("/ok") == 0


def test_nothing_listens_on_the_refused_url(fault_server: FaultServer):
    port = int(fault_server.refused_url.rsplit(":", 1)[1])

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOCALHOST, port), timeout=2)


def _raw(server: FaultServer, path: str) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, server.port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def test_reset_sends_part_of_the_response_then_an_rst(fault_server: FaultServer):
    with _raw(fault_server, "/reset") as sock:
        received = b""
        with pytest.raises(ConnectionResetError):  # noqa: PT012 - read until the RST
            while chunk := sock.recv(4096):
                received += chunk
            pytest.fail("the connection ended with a FIN, not an RST")

    assert received.startswith(b"HTTP/1.1 200")


def test_close_hangs_up_without_a_byte(fault_server: FaultServer):
    with _raw(fault_server, "/close") as sock:
        assert sock.recv(4096) == b""


def test_malformed_answers_with_a_garbage_status_line(fault_server: FaultServer):
    with _raw(fault_server, "/malformed") as sock:
        assert sock.recv(4096).startswith(b"GARBAGE")


def test_slow_holds_the_status_line_back(fault_server: FaultServer):
    with _raw(fault_server, "/slow?delay=5") as sock:
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
