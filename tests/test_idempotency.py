"""Retry safety: a call made with idempotent=False is re-sent only when the failure proves the
request was not processed (the side effect is counted server-side)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import requests
from hypothesis import example, given
from hypothesis import strategies as st

import otel_resilience
from otel_resilience import (
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    configure,
    resilient,
    resilient_call,
)
from otel_resilience._idempotency import request_not_processed

E = ExternalServiceError


class ProcessThenReset:
    """An HTTP server that does the work of each POST, then resets the connection unanswered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.processed = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.processed += 1  # the side effect happened
                # RST instead of an answer: the client cannot know the work was done
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def server() -> Iterator[ProcessThenReset]:
    srv = ProcessThenReset()
    yield srv
    srv.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _quick_backoff() -> None:
    configure(ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1, HTTP_TIMEOUT_SEC=5, CB_FAIL_THRESHOLD=50))


def _post(port: int) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{port}/tickets", json={"title": "disk full"}, timeout=5)


def test_a_non_idempotent_post_reset_after_processing_happens_exactly_once(
    server: ProcessThenReset,
) -> None:
    for _ in range(5):
        with pytest.raises(ReliabilityError) as raised:
            resilient_call(
                "tickets", "create", lambda: _post(server.port), max_retries=3, idempotent=False
            )
        assert raised.value.error_type is E.CONNECTION_ERROR
        assert raised.value.attempts == 1
    assert server.processed == 5  # once per call: never duplicated


def test_an_idempotent_call_reset_mid_response_is_retried(server: ProcessThenReset) -> None:
    with pytest.raises(ReliabilityError) as raised:
        resilient_call("tickets", "read", lambda: _post(server.port), max_retries=3)
    assert raised.value.attempts == 3
    assert server.processed == 3


def test_retry_non_idempotent_setting_allows_the_resend(server: ProcessThenReset) -> None:
    configure(services={"tickets": {"RETRY_NON_IDEMPOTENT": True, "HTTP_BACKOFF_BASE_MS": 1}})
    with pytest.raises(ReliabilityError) as raised:
        resilient_call(
            "tickets", "create", lambda: _post(server.port), max_retries=2, idempotent=False
        )
    assert raised.value.attempts == 2
    assert server.processed == 2


def test_a_refused_connection_is_retried_even_when_not_idempotent() -> None:
    port = _closed_port()
    attempts = []

    def post() -> requests.Response:
        attempts.append(1)
        return _post(port)

    with pytest.raises(ReliabilityError) as raised:
        resilient_call("tickets", "create", post, max_retries=3, idempotent=False)
    assert raised.value.error_type is E.CONNECTION_ERROR
    assert len(attempts) == 3  # refused: the request was never sent, so resending is safe


def test_a_timeout_of_a_non_idempotent_call_is_not_retried() -> None:
    attempts = []

    def slow() -> None:
        attempts.append(1)
        raise TimeoutError("read timed out")

    with pytest.raises(ReliabilityError) as raised:
        resilient_call("tickets", "create", slow, max_retries=3, idempotent=False)
    assert raised.value.error_type is E.TIMEOUT
    assert attempts == [1]


def test_a_429_with_retry_after_is_retried_when_not_idempotent() -> None:
    attempts = []

    def limited() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ReliabilityError(
                E.RATE_LIMIT, "tickets", "create", "slow down", retry_after=0.001
            )

    resilient_call("tickets", "create", limited, max_retries=3, idempotent=False)
    assert len(attempts) == 3


def test_the_decorator_passes_idempotent_and_checks_it(server: ProcessThenReset) -> None:
    @resilient("tickets", "create", max_retries=3, idempotent=False)
    def create() -> requests.Response:
        return _post(server.port)

    with pytest.raises(ReliabilityError):
        create()
    assert server.processed == 1
    with pytest.raises(TypeError, match="idempotent must be True or False, got 'no'"):
        resilient("tickets", "create", idempotent="no")
    with pytest.raises(TypeError, match="idempotent must be True or False, got 0"):
        resilient_call("tickets", "create", lambda: 1, idempotent=0)  # type: ignore[arg-type]


def test_stopping_for_idempotency_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def reset() -> None:
        raise ConnectionResetError("reset by peer")

    with caplog.at_level("INFO", logger="otel_resilience"), pytest.raises(ReliabilityError):
        resilient_call("tickets", "create", reset, max_retries=3, idempotent=False)
    assert "Not retrying tickets (create): not idempotent" in caplog.text
    assert "All retries exhausted" not in caplog.text


# --- the proof, as a property ---------------------------------------------------------------

_NOT_SENT = [ConnectionRefusedError, socket.gaierror]
_AMBIGUOUS = [ConnectionResetError, TimeoutError, BrokenPipeError, OSError, RuntimeError]


def _chain(kinds: list[type[BaseException]]) -> BaseException:
    """kinds[0] raised from kinds[1] raised from ... (the first is the outermost)."""
    inner: BaseException | None = None
    for kind in reversed(kinds):
        outer = kind("x")
        outer.__cause__ = inner
        inner = outer
    assert inner is not None
    return inner


@given(st.lists(st.sampled_from(_NOT_SENT + _AMBIGUOUS), min_size=1, max_size=6))
@example([ConnectionResetError, ConnectionRefusedError])  # a wrapper around a refusal
@example([TimeoutError])
def test_only_a_chain_with_a_never_sent_failure_proves_not_processed(
    kinds: list[type[BaseException]],
) -> None:
    error = ReliabilityError(E.CONNECTION_ERROR, "s", "e", "x")
    expected = any(kind in _NOT_SENT for kind in kinds)
    assert request_not_processed(error, _chain(kinds)) is expected


def test_real_client_errors_of_a_refused_port_prove_not_processed() -> None:
    import httpx

    port = _closed_port()
    error = ReliabilityError(E.CONNECTION_ERROR, "s", "e", "x")
    with pytest.raises(requests.ConnectionError) as from_requests:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(httpx.ConnectError) as from_httpx:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert request_not_processed(error, from_requests.value)
    assert request_not_processed(error, from_httpx.value)


def test_a_hostile_exception_does_not_break_the_proof() -> None:
    class Hostile(Exception):
        @property
        def reason(self) -> object:
            raise RuntimeError("no reason")

        @property  # type: ignore[override]
        def args(self) -> tuple[object, ...]:
            raise RuntimeError("no args")

    error = ReliabilityError(E.CONNECTION_ERROR, "s", "e", "x")
    assert request_not_processed(error, Hostile()) is False
    cyclic = ConnectionResetError("a")
    cyclic.__context__ = ConnectionResetError("b")
    cyclic.__context__.__context__ = cyclic
    assert request_not_processed(error, cyclic) is False
    assert request_not_processed(ReliabilityError(E.THROTTLED, "s", "e", "x"), None) is True
    assert otel_resilience.get_config().RETRY_NON_IDEMPOTENT is False
