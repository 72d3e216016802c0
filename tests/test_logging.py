"""The library's log records: namespaced extra keys, and logging that never breaks a call."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otel_resilience import (
    CircuitBreakerState,
    ExternalServiceError,
    ReliabilityError,
    configure,
    get_circuit_breaker_manager,
    resilient_call,
)
from support import FakeClock

E = ExternalServiceError
LOGGER = logging.getLogger("otel_resilience")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = Collect()
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG)
    yield handler.records
    LOGGER.removeHandler(handler)
    LOGGER.setLevel(level)


@pytest.fixture
def record_factory() -> Iterator[Callable[[Callable[..., logging.LogRecord]], None]]:
    original = logging.getLogRecordFactory()

    def install(factory: Callable[..., logging.LogRecord]) -> None:
        logging.setLogRecordFactory(factory)

    yield install
    logging.setLogRecordFactory(original)


def _with_service_name(original: Callable[..., logging.LogRecord]) -> Callable[..., Any]:
    """An application's factory that stamps its own service name on every record."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        record.service_name = "checkout-app"
        record.endpoint = "/cart"
        record.error_type = "app"
        return record

    return factory


def _failing(calls: list[int]) -> Callable[[], str]:
    def func() -> str:
        calls.append(1)
        raise ConnectionResetError("reset by peer")

    return func


def test_a_record_factory_setting_service_name_does_not_break_retries_or_breakers(
    clock: FakeClock,
    records: list[logging.LogRecord],
    record_factory: Callable[[Callable[..., logging.LogRecord]], None],
) -> None:
    record_factory(_with_service_name(logging.getLogRecordFactory()))
    configure(services={"gcs": {"CB_FAIL_THRESHOLD": 3, "HTTP_BACKOFF_BASE_MS": 10}})
    calls: list[int] = []
    with pytest.raises(ReliabilityError) as info:
        resilient_call("gcs", "upload", _failing(calls), max_retries=3)
    assert info.value.error_type is E.CONNECTION_ERROR
    assert len(calls) == 3
    breaker = get_circuit_breaker_manager().get_breaker("gcs", "upload")
    assert breaker.state is CircuitBreakerState.OPEN
    messages = [record.getMessage() for record in records]
    assert messages == [
        "Retrying gcs (upload) attempt 2/3",
        "Retrying gcs (upload) attempt 3/3",
        "Circuit breaker upload: transitioning to OPEN",
        "All retries exhausted for gcs (upload)",
    ]
    for record in records:
        assert record.service_name == "checkout-app"  # the application's attribute is kept
        assert record.resilience_service == "gcs"  # ours sits next to it
        assert record.resilience_endpoint == "upload"
    retry = records[0]
    assert retry.resilience_error_type == "connection_error"
    assert retry.resilience_retry_delay_s == pytest.approx(0.01, rel=0.11)
    assert retry.funcName == "announce"  # the record points at the library, not the helper
    assert records[-1].resilience_stop_reason == "exhausted"


def test_a_record_factory_that_raises_never_reaches_the_call(
    clock: FakeClock,
    records: list[logging.LogRecord],
    record_factory: Callable[[Callable[..., logging.LogRecord]], None],
) -> None:
    def broken(*args: Any, **kwargs: Any) -> logging.LogRecord:
        raise RuntimeError("the application's factory is broken")

    record_factory(broken)
    configure(services={"gcs": {"CB_FAIL_THRESHOLD": 2}})
    calls: list[int] = []
    with pytest.raises(ReliabilityError) as info:
        resilient_call("gcs", "upload", _failing(calls), max_retries=3)
    assert info.value.error_type is E.CONNECTION_ERROR  # not RuntimeError
    assert len(calls) == 2
    assert get_circuit_breaker_manager().get_breaker("gcs", "upload").state is (
        CircuitBreakerState.OPEN
    )
    assert records == []  # nothing could be logged, nothing escaped


def test_a_filter_that_raises_never_reaches_the_call(
    clock: FakeClock, records: list[logging.LogRecord]
) -> None:
    class Broken(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise ValueError("filter bug")

    broken = Broken()
    LOGGER.addFilter(broken)
    try:
        outcomes = iter([ConnectionResetError("reset"), "ok"])

        def func() -> str:
            outcome = next(outcomes)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        assert resilient_call("gcs", "upload", func, max_retries=3) == "ok"
    finally:
        LOGGER.removeFilter(broken)


def test_a_colliding_extra_key_is_logged_without_the_extras(
    records: list[logging.LogRecord],
    record_factory: Callable[[Callable[..., logging.LogRecord]], None],
) -> None:
    from otel_resilience._log import log_event

    def stamps_ours(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)
        record.resilience_service = "taken"
        return record

    record_factory(stamps_ours)
    log_event(LOGGER, logging.WARNING, "hello %s", "world", extra={"resilience_service": "x"})
    assert [record.getMessage() for record in records] == ["hello world"]
    assert records[0].resilience_service == "taken"


def test_a_listener_failure_is_logged_with_its_traceback(
    clock: FakeClock, records: list[logging.LogRecord]
) -> None:
    def listener(*args: object) -> None:
        raise RuntimeError("listener bug")

    manager = get_circuit_breaker_manager()
    manager.add_listener(listener)
    configure(services={"gcs": {"CB_FAIL_THRESHOLD": 1}})
    try:
        with pytest.raises(ReliabilityError):
            resilient_call("gcs", "upload", _failing([]), max_retries=1)
    finally:
        manager.remove_listener(listener)
    failed = [r for r in records if r.getMessage().startswith("circuit breaker listener")]
    assert len(failed) == 1
    assert failed[0].exc_info is not None
    assert failed[0].exc_info[0] is RuntimeError


def test_disabled_levels_build_no_record(
    record_factory: Callable[[Callable[..., logging.LogRecord]], None],
) -> None:
    from otel_resilience._log import log_event

    made: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(1)
        return logging.LogRecord(*args, **kwargs)

    record_factory(counting)
    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)
    try:
        log_event(LOGGER, logging.DEBUG, "quiet")
    finally:
        LOGGER.setLevel(level)
    assert made == []


def test_a_telemetry_warning_with_a_broken_record_factory_never_reaches_the_call(
    record_factory: Callable[[Callable[..., logging.LogRecord]], None],
) -> None:
    import otel_resilience

    class BrokenTracerProvider:
        def get_tracer(self, *args: object, **kwargs: object) -> object:
            raise RuntimeError("broken tracer provider")

    def broken(*args: Any, **kwargs: Any) -> logging.LogRecord:
        raise RuntimeError("the application's factory is broken")

    otel_resilience.set_telemetry_providers(tracer_provider=BrokenTracerProvider())
    record_factory(broken)
    try:
        assert resilient_call("gcs", "upload", lambda: "ok") == "ok"  # telemetry warns, silently
    finally:
        otel_resilience.set_telemetry_providers(None, None)
