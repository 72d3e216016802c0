"""resilient_call: outcomes, attempt counts, retry rules, breaker interplay, errors, fallbacks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from otel_resilience import (
    CallTimeoutError,
    CircuitBreakerState,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    configure,
    get_circuit_breaker_manager,
    remaining_time,
    resilient_call,
)
from support import FakeClock

E = ExternalServiceError


class HTTPError(Exception):
    """An exception shaped like an HTTP client's: a response with a status and headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status, "headers": headers or {}})()


class Flaky:
    """Fails with the given exceptions in turn, then returns ``value``; counts calls."""

    def __init__(self, *failures: BaseException, value: Any = "ok") -> None:
        self.failures = list(failures)
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


def test_success_returns_the_value_after_one_attempt(clock: FakeClock) -> None:
    func = Flaky(value={"answer": 42})
    assert resilient_call("openai", "chat.completions", func) == {"answer": 42}
    assert func.calls == 1
    assert clock.sleeps == []


def test_transient_failures_are_retried_until_success(clock: FakeClock) -> None:
    func = Flaky(ConnectionResetError("reset"), HTTPError(503), value="done")
    assert resilient_call("gcs", "upload", func, max_retries=3) == "done"
    assert func.calls == 3
    assert len(clock.sleeps) == 2


def test_max_retries_counts_attempts_in_all(clock: FakeClock) -> None:
    func = Flaky(*[HTTPError(500)] * 10)
    with pytest.raises(ReliabilityError) as info:
        resilient_call("gcs", "upload", func, max_retries=3)
    assert func.calls == 3  # the seed's "for attempt in range(3)" == max_retries=3
    assert info.value.attempts == 3
    assert info.value.error_type is E.SERVER_ERROR


@pytest.mark.parametrize("max_retries", [0, 1], ids=["zero", "one"])
def test_zero_and_one_mean_a_single_attempt(clock: FakeClock, max_retries: int) -> None:
    func = Flaky(*[TimeoutError()] * 3)
    with pytest.raises(CallTimeoutError):
        resilient_call("gcs", "upload", func, max_retries=max_retries)
    assert func.calls == 1


def test_default_attempts_come_from_the_config(clock: FakeClock) -> None:
    configure(services={"gcs": {"HTTP_RETRIES": 5}})
    func = Flaky(*[HTTPError(502)] * 10)
    with pytest.raises(ReliabilityError):
        resilient_call("gcs", "upload", func)
    assert func.calls == 5


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (HTTPError(401), E.AUTHENTICATION_ERROR),
        (HTTPError(403), E.PERMISSION_DENIED),
        (HTTPError(404), E.NOT_FOUND),
        (HTTPError(400), E.BAD_REQUEST),
    ],
    ids=["401", "403", "404", "400"],
)
def test_client_errors_fail_fast_without_retry(
    clock: FakeClock, failure: Exception, error_type: ExternalServiceError
) -> None:
    func = Flaky(failure, value="never")
    with pytest.raises(ReliabilityError) as info:
        resilient_call("openai", "chat.completions", func, max_retries=5)
    assert func.calls == 1
    assert info.value.error_type is error_type
    assert info.value.__cause__ is failure
    assert clock.sleeps == []


def test_unknown_errors_are_retried_by_default_and_not_when_configured_off(
    clock: FakeClock,
) -> None:
    func = Flaky(RuntimeError("weird"), value="ok")
    assert resilient_call("svc", "op", func) == "ok"
    assert func.calls == 2
    configure(services={"strict": {"RETRY_UNKNOWN_ERRORS": False}})
    func = Flaky(RuntimeError("weird"), value="ok")
    with pytest.raises(ReliabilityError) as info:
        resilient_call("strict", "op", func)
    assert info.value.error_type is E.UNKNOWN_ERROR
    assert func.calls == 1


def test_error_carries_service_endpoint_attempts_and_cause(clock: FakeClock) -> None:
    original = ConnectionRefusedError("refused")
    with pytest.raises(ReliabilityError) as info:
        resilient_call("clamav", "scan", Flaky(original, original, original), max_retries=2)
    error = info.value
    assert (error.service_name, error.endpoint, error.attempts) == ("clamav", "scan", 2)
    assert error.error_type is E.CONNECTION_ERROR
    assert error.__cause__ is original


def test_backoff_follows_the_seed_formula(clock: FakeClock) -> None:
    configure(services={"s": {"HTTP_BACKOFF_BASE_MS": 1000}})
    with pytest.raises(ReliabilityError):
        resilient_call("s", "e", Flaky(*[HTTPError(503)] * 4), max_retries=4)
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps, start=1):
        base = 2 ** (n - 1)
        assert base <= slept <= base * 1.1


def test_retry_after_replaces_the_backoff(clock: FakeClock) -> None:
    func = Flaky(HTTPError(429, {"Retry-After": "7"}), value="ok")
    assert resilient_call("openai", "chat.completions", func) == "ok"
    assert clock.sleeps == [7.0]


def test_retry_after_is_capped(clock: FakeClock) -> None:
    configure(services={"openai": {"RETRY_AFTER_MAX_SEC": 5}})
    func = Flaky(HTTPError(429, {"Retry-After": "120"}), value="ok")
    assert resilient_call("openai", "chat.completions", func) == "ok"
    assert clock.sleeps == [5.0]


def test_rate_limit_error_exposes_retry_after(clock: FakeClock) -> None:
    with pytest.raises(ReliabilityError) as info:
        resilient_call("openai", "chat", Flaky(HTTPError(429, {"Retry-After": "3"})), max_retries=1)
    assert info.value.error_type is E.RATE_LIMIT
    assert info.value.retry_after == 3.0


def test_timeout_is_a_retryable_timeout_error() -> None:
    calls = []

    def slow() -> str:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(2)
        return "second try"

    configure(services={"clamav": {"HTTP_BACKOFF_BASE_MS": 1}})
    start = time.monotonic()
    assert resilient_call("clamav", "scan", slow, timeout_sec=0.1) == "second try"
    assert time.monotonic() - start < 1.0
    assert len(calls) == 2


def test_timeout_error_is_also_a_builtin_timeout_error() -> None:
    with pytest.raises(TimeoutError) as info:
        resilient_call("clamav", "scan", lambda: time.sleep(2), timeout_sec=0.05, max_retries=1)
    assert isinstance(info.value, CallTimeoutError)
    assert info.value.error_type is E.TIMEOUT


def test_remaining_time_is_visible_inside_the_function() -> None:
    seen: list[float | None] = []
    resilient_call("s", "e", lambda: seen.append(remaining_time()), timeout_sec=10)
    assert seen[0] is not None
    assert 9.0 < seen[0] <= 10.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"func": 42}, "func must be callable"),
        ({"timeout_sec": -1}, "timeout_sec"),
        ({"timeout_sec": "30"}, "timeout_sec"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"deadline_sec": 0}, "deadline_sec"),
        ({"service_name": ""}, "service_name"),
        ({"endpoint": None}, "endpoint"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "-".join(map(str, v)),
)
def test_bad_arguments_fail_before_any_attempt(kwargs: dict[str, Any], message: str) -> None:
    func = Flaky(value="x")
    args: dict[str, Any] = {"service_name": "s", "endpoint": "e", "func": func, **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        resilient_call(**args)
    assert func.calls == 0
    assert get_circuit_breaker_manager().breakers() == []  # nothing was counted either


def test_keyboard_interrupt_propagates_untouched(clock: FakeClock) -> None:
    func = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        resilient_call("s", "e", func)
    assert func.calls == 1
    assert get_circuit_breaker_manager().get_breaker("s", "e").failure_count == 0


def test_nested_call_keeps_the_inner_error_type_and_labels_the_outer(clock: FakeClock) -> None:
    def outer() -> str:
        return resilient_call("inner", "op", Flaky(HTTPError(404)))

    with pytest.raises(ReliabilityError) as info:
        resilient_call("outer", "op", outer)
    assert info.value.error_type is E.NOT_FOUND
    assert info.value.service_name == "outer"
    assert isinstance(info.value.__cause__, ReliabilityError)
    assert info.value.__cause__.service_name == "inner"


# --- breaker interplay -----------------------------------------------------------------------


def _open_breaker(service: str, endpoint: str, threshold: int) -> None:
    for _ in range(threshold):
        with pytest.raises(ReliabilityError):
            resilient_call(service, endpoint, Flaky(HTTPError(500)), max_retries=1)


def test_breaker_opens_after_threshold_and_rejects_without_calling(clock: FakeClock) -> None:
    configure(services={"clamav": {"CB_FAIL_THRESHOLD": 3, "CB_RESET_SEC": 30}})
    _open_breaker("clamav", "scan", 3)
    func = Flaky(value="never")
    with pytest.raises(CircuitOpenError) as info:
        resilient_call("clamav", "scan", func)
    assert func.calls == 0
    assert info.value.error_type is E.CIRCUIT_OPEN
    assert info.value.attempts == 0
    assert info.value.retry_after == pytest.approx(30.0)


def test_breaker_recovers_through_half_open(clock: FakeClock) -> None:
    configure(services={"clamav": {"CB_FAIL_THRESHOLD": 2, "CB_RESET_SEC": 10}})
    _open_breaker("clamav", "scan", 2)
    breaker = get_circuit_breaker_manager().get_breaker("scan")
    assert breaker.state is CircuitBreakerState.OPEN
    clock.advance(10)
    assert resilient_call("clamav", "scan", lambda: "clean") == "clean"
    assert breaker.state is CircuitBreakerState.CLOSED


def test_retries_stop_when_the_breaker_opens_mid_call(clock: FakeClock) -> None:
    configure(services={"gcs": {"CB_FAIL_THRESHOLD": 2}})
    func = Flaky(*[HTTPError(503)] * 10)
    with pytest.raises(ReliabilityError) as info:
        resilient_call("gcs", "upload", func, max_retries=5)
    assert func.calls == 2  # the third attempt was rejected by the now-open breaker
    assert info.value.error_type is E.SERVER_ERROR
    assert info.value.attempts == 2


def test_client_errors_do_not_count_against_the_breaker(clock: FakeClock) -> None:
    configure(services={"s": {"CB_FAIL_THRESHOLD": 2}})
    for _ in range(5):
        with pytest.raises(ReliabilityError):
            resilient_call("s", "e", Flaky(HTTPError(404)))
    breaker = get_circuit_breaker_manager().get_breaker("s", "e")
    assert breaker.state is CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0


def test_same_endpoint_name_in_two_services_has_two_breakers(clock: FakeClock) -> None:
    configure(services={"gcs": {"CB_FAIL_THRESHOLD": 1}})
    _open_breaker("gcs", "upload", 1)
    assert resilient_call("s3", "upload", lambda: "fine") == "fine"
    manager = get_circuit_breaker_manager()
    assert manager.get_breaker("gcs", "upload").state is CircuitBreakerState.OPEN
    assert manager.get_breaker("s3", "upload").state is CircuitBreakerState.CLOSED


# --- deadlines, budgets, fallbacks -------------------------------------------------------------


def test_deadline_stops_retries_before_a_backoff_would_pass_it(clock: FakeClock) -> None:
    configure(services={"s": {"HTTP_BACKOFF_BASE_MS": 1000}})
    func = Flaky(*[HTTPError(503)] * 10)
    with pytest.raises(ReliabilityError) as info:
        resilient_call("s", "e", func, max_retries=10, deadline_sec=4.0)
    # sleeps of ~1 s and ~2 s fit in 4 s; the next (~4 s) would pass the deadline
    assert func.calls == 3
    assert sum(clock.sleeps) < 4.0
    assert info.value.error_type is E.SERVER_ERROR


def test_deadline_from_config(clock: FakeClock) -> None:
    configure(
        services={"s": {"DEADLINE_SEC": 0.5, "HTTP_TIMEOUT_SEC": 0.5, "HTTP_BACKOFF_BASE_MS": 1000}}
    )
    func = Flaky(*[HTTPError(503)] * 10)
    with pytest.raises(ReliabilityError):
        resilient_call("s", "e", func, max_retries=10)
    assert func.calls == 1


def test_nested_call_inherits_the_tighter_deadline(clock: FakeClock) -> None:
    seen: list[float | None] = []

    def inner() -> None:
        seen.append(remaining_time())

    resilient_call("outer", "op", lambda: resilient_call("inner", "op", inner, deadline_sec=60),
                   deadline_sec=2)  # fmt: skip
    assert seen[0] is not None
    assert seen[0] <= 2.0


def test_fallback_value_serves_a_failed_call(clock: FakeClock) -> None:
    result = resilient_call(
        "s", "e", Flaky(*[HTTPError(500)] * 5), max_retries=2, fallback="cached"
    )
    assert result == "cached"


def test_fallback_callable_receives_the_error(clock: FakeClock) -> None:
    seen: list[ReliabilityError] = []

    def degrade(error: ReliabilityError) -> str:
        seen.append(error)
        return f"degraded ({error.error_type.value})"

    result = resilient_call("s", "e", Flaky(HTTPError(404)), fallback=degrade)
    assert result == "degraded (not_found)"
    assert seen[0].attempts == 1


def test_fallback_serves_a_rejected_call(clock: FakeClock) -> None:
    configure(services={"s": {"CB_FAIL_THRESHOLD": 1}})
    _open_breaker("s", "e", 1)
    func = Flaky(value="never")
    assert resilient_call("s", "e", func, fallback=lambda e: e.error_type.value) == "circuit_open"
    assert func.calls == 0


def test_retry_budget_refuses_retries_beyond_its_ratio(clock: FakeClock) -> None:
    configure(
        services={
            "s": {
                "RETRY_BUDGET_RATIO": 0.1,
                "RETRY_BUDGET_MIN_PER_SEC": 0,
                "CB_FAIL_THRESHOLD": 1000,
                "HTTP_BACKOFF_BASE_MS": 0,
            }
        }
    )
    funcs = [Flaky(*[HTTPError(503)] * 10) for _ in range(50)]
    for func in funcs:
        with pytest.raises(ReliabilityError):
            resilient_call("s", "e", func, max_retries=3)
    attempts = sum(f.calls for f in funcs)
    retries = attempts - len(funcs)
    assert retries <= 0.1 * len(funcs) + 1
    assert retries >= 1


# --- logging (the seed's messages) --------------------------------------------------------------


def test_logs_the_seed_messages(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    configure(services={"openai": {"CB_FAIL_THRESHOLD": 3, "CB_RESET_SEC": 5}})
    caplog.set_level(logging.INFO, logger="otel_resilience")
    with pytest.raises(ReliabilityError):
        resilient_call("openai", "chat.completions", Flaky(*[HTTPError(500)] * 3), max_retries=3)
    clock.advance(5)
    resilient_call("openai", "chat.completions", lambda: "ok")
    messages = [r.getMessage() for r in caplog.records]
    assert "Retrying openai (chat.completions) attempt 2/3" in messages
    assert "Retrying openai (chat.completions) attempt 3/3" in messages
    assert "All retries exhausted for openai (chat.completions)" in messages
    assert "Circuit breaker chat.completions: transitioning to OPEN" in messages
    assert "Circuit breaker chat.completions: transitioning to HALF_OPEN" in messages
    assert "Circuit breaker chat.completions: transitioning to CLOSED" in messages


def test_config_errors_surface_at_the_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_RETRIES", "abc")
    func: Callable[[], str] = Flaky(value="x")
    with pytest.raises(ValueError, match=r"HTTP_RETRIES='abc' .* integer from 0 to 100"):
        resilient_call("s", "e", func)


def test_config_object_in_code_applies_to_one_service(clock: FakeClock) -> None:
    configure(services={"gcs": ReliabilityConfig(HTTP_RETRIES=2, HTTP_BACKOFF_BASE_MS=10)})
    func = Flaky(*[HTTPError(503)] * 5)
    with pytest.raises(ReliabilityError):
        resilient_call("gcs", "upload", func)
    assert func.calls == 2
    assert clock.sleeps[0] == pytest.approx(0.010, abs=0.0011)


def test_a_function_raising_its_own_reliability_error_is_not_wrapped_twice(
    clock: FakeClock,
) -> None:
    """Seed-style code maps errors itself: ``raise map_external_error(...) from exc``."""
    from otel_resilience import map_external_error

    calls = 0

    def upload() -> None:
        nonlocal calls
        calls += 1
        raise map_external_error("gcs", "upload", ConnectionResetError("reset"))

    with pytest.raises(ReliabilityError) as info:
        resilient_call("gcs", "upload", upload, max_retries=2)
    assert calls == 2
    assert info.value.error_type is E.CONNECTION_ERROR
    assert info.value.attempts == 2
    assert not isinstance(info.value.__cause__, ReliabilityError)


@pytest.mark.parametrize(
    ("manual", "calls_reaching_service", "outcome"),
    [("forced_open", 0, "circuit_open"), ("disabled", 10, "server_error"),
     ("metrics_only", 10, "server_error")],
    ids=["forced-open", "disabled", "metrics-only"],
)  # fmt: skip
def test_manual_breaker_state_from_config(
    clock: FakeClock, manual: str, calls_reaching_service: int, outcome: str
) -> None:
    configure(services={"clamav": {"CB_MANUAL_STATE": manual, "CB_FAIL_THRESHOLD": 2}})
    func = Flaky(*[HTTPError(500)] * 10)
    outcomes = []
    for _ in range(10):
        with pytest.raises(ReliabilityError) as info:
            resilient_call("clamav", "scan", func, max_retries=1)
        outcomes.append(info.value.error_type.value)
    assert func.calls == calls_reaching_service
    assert set(outcomes) == {outcome}
    breaker = get_circuit_breaker_manager().get_breaker("clamav", "scan")
    assert breaker.status().override == manual
