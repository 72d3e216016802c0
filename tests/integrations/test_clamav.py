"""otel_resilience.clamav and the clamd classifier: the ``clamd`` package against a real clamd."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from pathlib import Path
from typing import Any

import clamd
import pytest

import otel_resilience
from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    get_circuit_breaker_manager,
    map_external_error,
    resilient_call,
)
from otel_resilience._timeout import WORKER_NAME_PREFIX
from otel_resilience.clamav import ClamdScanner, ScanResponse, ScanResult
from support import FakeClock
from telemetry.helpers import Otel, attrs, recorded

from .clamd_support import (
    INFECTED,
    SIGNATURE,
    STREAM_MAX,
    ClamdServer,
    Proxy,
    clamd_process,
    clamd_server,
    proxy,
)
from .otel_support import otel

__all__ = ["clamd_process", "clamd_server", "otel", "proxy"]  # fixtures used by name

E = ExternalServiceError


def _fast(**service: Any) -> None:
    otel_resilience.configure(
        services={"clamav": {"HTTP_BACKOFF_BASE_MS": 1, "HTTP_TIMEOUT_SEC": 5, **service}}
    )


# --- verdicts are values ------------------------------------------------------------------------


def test_clean_and_infected_are_values_not_errors(clamd_server: ClamdServer, otel: Otel):
    scanner = ClamdScanner("127.0.0.1", clamd_server.port)
    before = clamd_server.scans()

    assert scanner.scan_bytes(b"just a harmless document") == ScanResponse(ScanResult.CLEAN)
    infected = scanner.scan_bytes(INFECTED)

    assert infected.result is ScanResult.INFECTED
    assert infected.signature is not None
    assert infected.signature.startswith(SIGNATURE)
    assert not infected.clean
    assert clamd_server.scans() - before == 2
    calls = [s for s in otel.spans() if s.name == "clamav scan"]
    assert len(calls) == 2
    assert all("error.type" not in (s.attributes or {}) for s in calls)
    assert recorded(otel.metrics(), "resilience.call.duration") == {attrs("clamav", "scan"): 2}
    status = get_circuit_breaker_manager().breaker_for("clamav", "scan").status()
    assert (status.state, status.failure_count) == ("closed", 0)


def test_a_file_and_a_stream_are_scanned_by_instream(clamd_server: ClamdServer, tmp_path: Path):
    scanner = ClamdScanner("127.0.0.1", clamd_server.port)
    path = tmp_path / "upload.bin"
    path.write_bytes(b"prefix " + INFECTED)  # matched by MD5 of the whole file: clean
    assert scanner.scan_file(path).clean
    path.write_bytes(INFECTED)
    assert scanner.scan_file(path).result is ScanResult.INFECTED
    assert scanner.scan_bytes(memoryview(b"clean bytes")).clean
    scanner.ping()


def test_the_seeds_scan_function_works_as_written(clamd_server: ClamdServer):
    """The seed's ``_scan_with_clamd``, with plain clamd inside and its millisecond timeout."""

    class Config:
        AV_TIMEOUT_MS = 5000

    def _scan_with_clamd(data: bytes, config: Any) -> ScanResult:
        def _clamd_scan() -> ScanResult:
            client = clamd.ClamdNetworkSocket("127.0.0.1", clamd_server.port, timeout=5)
            ((status, _),) = client.instream(io.BytesIO(data)).values()
            return ScanResult.INFECTED if status == "FOUND" else ScanResult.CLEAN

        return resilient_call(
            service_name="clamav",
            endpoint="scan",
            func=_clamd_scan,
            timeout_sec=config.AV_TIMEOUT_MS / 1000.0,
        )

    assert _scan_with_clamd(b"fine", Config()) is ScanResult.CLEAN
    assert _scan_with_clamd(INFECTED, Config()) is ScanResult.INFECTED


# --- classification by type ---------------------------------------------------------------------


def _timed_out_connection_error() -> clamd.ConnectionError:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as exc:
            raise clamd.ConnectionError(f"Error while reading from socket: {exc.args}") from None
    except clamd.ConnectionError as error:
        return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (clamd.ConnectionError("Error 111 connecting 127.0.0.1:1. Refused."), E.CONNECTION_ERROR),
        (clamd.ConnectionError("nothing to go by"), E.CONNECTION_ERROR),
        (_timed_out_connection_error(), E.TIMEOUT),
        (clamd.BufferTooLongError("INSTREAM size limit exceeded. ERROR"), E.BAD_REQUEST),
        (clamd.ResponseError("timeout while reading"), E.SERVER_ERROR),  # type, not message
        (clamd.ClamdError("odd"), E.UNKNOWN_ERROR),
    ],
    ids=["refused", "message-without-keywords", "read-timeout", "too-long", "response", "base"],
)
def test_clamd_exceptions_are_classified_by_type(error: BaseException, expected: E):
    assert map_external_error("clamav", "scan", error).error_type is expected


def test_a_refused_connection_is_a_connection_error_without_delay():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        _fast(HTTP_RETRIES=1)
        with pytest.raises(ReliabilityError) as caught:
            ClamdScanner("127.0.0.1", port).scan_bytes(b"x")
    assert caught.value.error_type is E.CONNECTION_ERROR
    assert isinstance(caught.value.__cause__, clamd.ConnectionError)


# --- retries, non-retryable errors, the breaker -------------------------------------------------


def test_a_broken_connection_is_retried_and_the_daemon_sees_every_attempt(
    clamd_server: ClamdServer, proxy: Proxy, otel: Otel
):
    _fast(HTTP_RETRIES=3)
    proxy.reset_next(2)
    before = clamd_server.scans()
    assert ClamdScanner("127.0.0.1", proxy.port).scan_bytes(INFECTED).result is ScanResult.INFECTED
    assert proxy.connections == 3  # the attempts the library reports
    call = otel.span("clamav scan")
    assert (call.attributes or {})["resilience.attempts"] == 3
    assert clamd_server.scans() - before == 1  # the two reset ones never reached the daemon
    assert recorded(otel.metrics(), "resilience.retries") == {
        attrs("clamav", "scan", error_type="connection_error"): 2
    }


def test_data_over_the_stream_limit_fails_once_without_breaker_count(
    clamd_server: ClamdServer, proxy: Proxy
):
    _fast(CB_FAIL_THRESHOLD=1)
    scanner = ClamdScanner("127.0.0.1", proxy.port)
    for _ in range(2):
        with pytest.raises(ReliabilityError) as caught:
            scanner.scan_bytes(b"a" * (STREAM_MAX * 2))
        assert caught.value.error_type is E.BAD_REQUEST
        assert caught.value.attempts == 1
    assert proxy.connections == 2
    status = get_circuit_breaker_manager().breaker_for("clamav", "scan").status()
    assert (status.state, status.failure_count) == ("closed", 0)
    assert scanner.scan_bytes(b"small").clean  # the breaker never opened


def test_an_outage_opens_the_breaker_and_recovery_closes_it(
    clamd_server: ClamdServer, proxy: Proxy, clock: FakeClock
):
    _fast(HTTP_RETRIES=2, CB_FAIL_THRESHOLD=2, CB_RESET_SEC=20)
    scanner = ClamdScanner("127.0.0.1", proxy.port)
    proxy.reset_next(None)
    with pytest.raises(ReliabilityError) as caught:
        scanner.scan_bytes(b"x")  # two attempts: the breaker's two failures
    assert caught.value.attempts == 2
    with pytest.raises(CircuitOpenError):
        scanner.scan_bytes(b"x")
    assert proxy.connections == 2  # the rejected call connected nowhere

    proxy.reset_next(0)
    clock.advance(20)
    assert scanner.scan_bytes(b"x").clean
    assert get_circuit_breaker_manager().breaker_for("clamav", "scan").status().state == "closed"
    assert proxy.connections == 1


# --- a frozen daemon ----------------------------------------------------------------------------


def _frozen_scan(port: int) -> tuple[BaseException | None, float]:
    scanner = ClamdScanner("127.0.0.1", port, timeout_sec=0.5, max_retries=2)
    start = time.monotonic()
    try:
        scanner.scan_bytes(b"y" * 10_000)
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
def test_a_frozen_daemon_times_out_on_time(clamd_server: ClamdServer, clock: FakeClock, where: str):
    before = clamd_server.scans()
    clamd_server.freeze()
    workers = {t.ident for t in threading.enumerate() if t.name.startswith(WORKER_NAME_PREFIX)}
    if where == "main-thread":
        error, elapsed = _frozen_scan(clamd_server.port)
    else:
        found: list[tuple[BaseException | None, float]] = []
        worker = threading.Thread(target=lambda: found.append(_frozen_scan(clamd_server.port)))
        worker.start()
        worker.join(10)
        ((error, elapsed),) = found
    clamd_server.thaw()
    after = {t.ident for t in threading.enumerate() if t.name.startswith(WORKER_NAME_PREFIX)}
    assert after <= workers  # cooperative: no timeout worker thread was started
    assert isinstance(error, CallTimeoutError)
    assert error.attempts == 2
    assert 0.9 <= elapsed < 2.5  # two attempts of 0.5 s (the backoff is on the fake clock)
    # thawed, the daemon reads the two streams waiting for it: it saw both attempts
    assert clamd_server.scans() - before == 2


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"host": ""}, TypeError, "host must be a non-empty string"),
        ({"port": 0}, ValueError, "port must be an integer from 1 to 65535"),
        ({"port": True}, ValueError, "port must be"),
        ({"service_name": ""}, TypeError, "service_name must be"),
        ({"timeout_sec": 0}, ValueError, "timeout_sec"),
        ({"max_retries": 101}, ValueError, "max_retries must be an integer from 0 to 100"),
        ({"deadline_sec": -1}, ValueError, "deadline_sec"),
    ],
    ids=["host", "port-zero", "port-bool", "service", "timeout", "retries", "deadline"],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type, match: str):
    with pytest.raises(error, match=match):
        ClamdScanner(**kwargs)


def test_data_of_the_wrong_type_is_refused():
    with pytest.raises(TypeError, match="data must be bytes, bytearray, memoryview or a seekable"):
        ClamdScanner().scan_bytes("text")  # type: ignore[arg-type]


# --- the edges, without a daemon ----------------------------------------------------------------


class _FakeClient:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def instream(self, buffer: Any) -> object:
        return self.answer

    def ping(self) -> object:
        return self.answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, E.CONNECTION_ERROR),  # clamd's answer to a connection closed without a verdict
        ({"stream": ("ERROR", "Can't allocate memory")}, E.SERVER_ERROR),
        ({}, E.CONNECTION_ERROR),
    ],
    ids=["no-answer", "error-verdict", "empty"],
)
def test_answers_that_are_not_verdicts_are_failures(
    monkeypatch: pytest.MonkeyPatch, answer: object, expected: E
):
    _fast(HTTP_RETRIES=1)
    scanner = ClamdScanner()
    monkeypatch.setattr(scanner, "client", lambda: _FakeClient(answer))
    with pytest.raises(ReliabilityError) as caught:
        scanner.scan_bytes(b"x")
    assert caught.value.error_type is expected


def test_a_ping_without_pong_is_a_server_error(monkeypatch: pytest.MonkeyPatch):
    _fast(HTTP_RETRIES=1)
    scanner = ClamdScanner()
    monkeypatch.setattr(scanner, "client", lambda: _FakeClient("NOPE"))
    with pytest.raises(ReliabilityError) as caught:
        scanner.ping()
    assert caught.value.error_type is E.SERVER_ERROR
    assert caught.value.endpoint == "ping"


def test_the_socket_stops_sending_once_the_daemon_hung_up():
    from otel_resilience.clamav import _DeadlineSocket

    ours, theirs = socket.socketpair()
    theirs.close()
    wrapped = _DeadlineSocket(ours)
    assert wrapped.send(b"x" * 1_000_000) == 1_000_000  # broken pipe: nothing more is sent
    assert wrapped.send(b"more") == 4
    wrapped.settimeout(None)  # clamd's own timeout is ignored
    wrapped.close()


def test_the_socket_refuses_to_wait_past_the_attempts_deadline():
    from otel_resilience._timeout import deadline_scope
    from otel_resilience.clamav import _DeadlineSocket

    ours, theirs = socket.socketpair()
    with deadline_scope(0.01):
        time.sleep(0.02)
        with pytest.raises(TimeoutError, match="no time left"):
            _DeadlineSocket(ours).send(b"x")
    ours.close()
    theirs.close()


def test_the_classifier_passes_on_other_exceptions():
    from otel_resilience._classify._clamd import classify_clamd

    assert classify_clamd(ValueError("timeout")) is None


def test_the_socket_stops_sending_once_the_daemon_answered_mid_stream():
    from otel_resilience.clamav import _DeadlineSocket

    ours, theirs = socket.socketpair()
    theirs.sendall(b"INSTREAM size limit exceeded. ERROR\n")  # the answer, before the end
    wrapped = _DeadlineSocket(ours)
    for _ in range(40):
        assert wrapped.send(b"c" * 1024) == 1024
    theirs.settimeout(1)
    theirs.settimeout(0.2)
    received = b""
    with contextlib.suppress(TimeoutError):
        while chunk := theirs.recv(65536):
            received += chunk
    assert received == b""  # the first send saw the answer: nothing went out after it
    with wrapped.makefile("rb") as answer:
        assert answer.readline() == b"INSTREAM size limit exceeded. ERROR\n"
    wrapped.close()
    theirs.close()
