"""Every example of the seed document (../shared/seed/reliability-engineering.md), run as written.

The one change: the seed imports from ``app.services.reliability``; the library is
``otel_resilience`` (and so is its logger).
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import fields
from typing import Any

import pytest

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerState,
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    create_retry_decorator,
    get_circuit_breaker_manager,
    map_external_error,
    resilient_call,
    with_timeout,
)
from support import FakeClock


def test_configuration_class_fields_and_defaults() -> None:
    config = ReliabilityConfig()
    assert config.HTTP_TIMEOUT_SEC == 30
    assert config.HTTP_RETRIES == 3
    assert config.HTTP_BACKOFF_BASE_MS == 1000
    assert config.CB_FAIL_THRESHOLD == 5
    assert config.CB_RESET_SEC == 60


def test_environment_variables_block(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "HTTP_TIMEOUT_SEC": "30", "HTTP_RETRIES": "3", "HTTP_BACKOFF_BASE_MS": "1000",
        "CB_FAIL_THRESHOLD": "5", "CB_RESET_SEC": "60",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert ReliabilityConfig.from_env() == ReliabilityConfig()


def test_error_types_enum_has_the_seed_values() -> None:
    seed = {
        "TIMEOUT": "timeout", "CONNECTION_ERROR": "connection_error", "RATE_LIMIT": "rate_limit",
        "AUTHENTICATION_ERROR": "authentication_error", "PERMISSION_DENIED": "permission_denied",
        "NOT_FOUND": "not_found", "BAD_REQUEST": "bad_request", "SERVER_ERROR": "server_error",
        "UNKNOWN_ERROR": "unknown_error",
    }  # fmt: skip
    for name, value in seed.items():
        assert ExternalServiceError[name].value == value


@pytest.mark.parametrize("message", ["timeout", "Read timed out", "deadline exceeded"])
def test_error_mapping_by_message(message: str) -> None:
    error = map_external_error("service", "endpoint", Exception(message))
    assert isinstance(error, ReliabilityError)
    assert error.error_type == ExternalServiceError.TIMEOUT


def test_circuit_breaker_dataclass_shape() -> None:
    breaker = CircuitBreaker(endpoint="upload", failure_threshold=5, reset_timeout_sec=60)
    assert breaker.endpoint == "upload"
    assert breaker.failure_threshold == 5
    assert breaker.reset_timeout_sec == 60
    assert breaker.state == CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0
    assert breaker.last_failure_time == 0.0
    assert isinstance(breaker.lock, type(threading.Lock()))
    assert [s.name for s in CircuitBreakerState] == ["CLOSED", "OPEN", "HALF_OPEN"]


def test_jittered_backoff_formula() -> None:
    from otel_resilience._retry import backoff_delay

    base_delay_ms = 1000
    for attempt in (1, 2, 3):
        rng = random.Random(attempt)
        delay_ms = base_delay_ms * (2 ** (attempt - 1))
        jitter_ms = random.Random(attempt).randint(0, int(delay_ms * 0.1))
        total_delay_ms = delay_ms + jitter_ms
        assert backoff_delay(attempt, base_delay_ms, 30_000, rng) == total_delay_ms / 1000


def test_with_timeout_decorator_and_message() -> None:
    @with_timeout(1)
    def quick() -> str:
        return "fast"

    assert quick() == "fast"

    @with_timeout(0.05)
    def slow() -> None:
        import time

        time.sleep(2)

    with pytest.raises(TimeoutError, match=r"^Function slow timed out after 0.05 seconds$"):
        slow()


def test_with_timeout_works_outside_the_main_thread() -> None:
    """The seed's SIGALRM version raises ValueError here."""
    import time

    @with_timeout(0.05)
    def slow() -> None:
        time.sleep(2)

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            slow()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert isinstance(outcome[0], TimeoutError)


def test_llm_client_integration(clock: FakeClock) -> None:
    class Message:
        content = '{"summary": "ok"}'

    class Choice:
        message = Message()

    class Response:
        choices = (Choice(),)

    def _create_chat_completion(params: dict[str, Any]) -> str:
        def _call_openai() -> str:
            resp = Response()
            return resp.choices[0].message.content or ""

        return resilient_call(service_name="openai", endpoint="chat.completions", func=_call_openai)

    assert _create_chat_completion({}) == '{"summary": "ok"}'


def test_storage_service_integration() -> None:
    uploaded: list[bytes] = []

    def _write_bytes_gcs(path: str, data: bytes, request_id: str) -> None:
        def _upload_to_gcs() -> bool:
            uploaded.append(data)
            return True

        resilient_call(service_name="gcs", endpoint="upload", func=_upload_to_gcs)

    _write_bytes_gcs("a/b", b"payload", "req-1")
    assert uploaded == [b"payload"]


def test_antivirus_integration_with_millisecond_timeout() -> None:
    """The seed divides milliseconds by 1000.0: a float timeout (signal.alarm refuses it)."""

    class Config:
        AV_TIMEOUT_MS = 500

    def _scan_with_clamd(file_path: str, config: Config) -> str:
        def _clamd_scan() -> str:
            return "CLEAN"

        return resilient_call(
            service_name="clamav",
            endpoint="scan",
            func=_clamd_scan,
            timeout_sec=config.AV_TIMEOUT_MS / 1000.0,
        )

    assert _scan_with_clamd("/tmp/file", Config()) == "CLEAN"


def test_basic_usage() -> None:
    def make_api_call() -> dict[str, int]:
        return {"rows": 3}

    def call_external_api() -> dict[str, int]:
        return resilient_call(
            service_name="external_api",
            endpoint="data",
            func=make_api_call,
            timeout_sec=30,
            max_retries=3,
        )

    assert call_external_api() == {"rows": 3}


def test_custom_retry_decorator(clock: FakeClock) -> None:
    calls = 0

    @create_retry_decorator("my_service", "my_endpoint", max_retries=5)
    def my_function() -> None:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError("flaky")

    assert my_function() is None
    assert calls == 4


@pytest.mark.parametrize(
    ("failure", "branch"),
    [(TimeoutError(), "timeout"), (Exception("429 Too Many Requests"), "rate_limit"),
     (Exception("403 Forbidden"), "other")],
    ids=["timeout", "rate-limit", "other"],
)  # fmt: skip
def test_error_handling(clock: FakeClock, failure: Exception, branch: str) -> None:
    def func() -> None:
        raise failure

    handled = None
    try:
        result = resilient_call("service", "endpoint", func)
    except ReliabilityError as e:
        if e.error_type == ExternalServiceError.TIMEOUT:
            handled = "timeout"
        elif e.error_type == ExternalServiceError.RATE_LIMIT:
            handled = "rate_limit"
        else:
            handled = "other"
    else:  # pragma: no cover - the function always fails
        pytest.fail(f"expected a ReliabilityError, got {result!r}")
    assert handled == branch


def test_migration_from_manual_error_handling(clock: FakeClock) -> None:
    def external_api_call() -> str:
        raise ConnectionResetError("reset")

    with pytest.raises(ReliabilityError) as info:
        resilient_call("external_api", "endpoint", external_api_call)
    assert info.value.error_type is ExternalServiceError.CONNECTION_ERROR


def test_migration_from_manual_retries(clock: FakeClock) -> None:
    attempts = 0

    def api_call() -> str:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    # before: for attempt in range(3): ... -- three attempts in all
    with pytest.raises(ReliabilityError):
        resilient_call("api", "endpoint", api_call, max_retries=3)
    assert attempts == 3


def test_debug_mode_logger(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("otel_resilience").setLevel(logging.DEBUG)
    try:
        assert logging.getLogger("otel_resilience").isEnabledFor(logging.DEBUG)
    finally:
        logging.getLogger("otel_resilience").setLevel(logging.NOTSET)


def test_circuit_breaker_status(capsys: pytest.CaptureFixture[str]) -> None:
    resilient_call("external_api", "endpoint", lambda: "warm up")
    manager = get_circuit_breaker_manager()
    breaker = manager.get_breaker("endpoint")
    print(f"State: {breaker.state}, Failures: {breaker.failure_count}")
    assert capsys.readouterr().out == "State: CircuitBreakerState.CLOSED, Failures: 0\n"


def test_reliability_config_is_a_dataclass_with_the_seed_fields_first() -> None:
    names = [f.name for f in fields(ReliabilityConfig)]
    assert names[:5] == [
        "HTTP_TIMEOUT_SEC", "HTTP_RETRIES", "HTTP_BACKOFF_BASE_MS", "CB_FAIL_THRESHOLD",
        "CB_RESET_SEC",
    ]  # fmt: skip
