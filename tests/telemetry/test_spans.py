"""Spans of TELEMETRY.md: a call span, one child span per attempt, ``retry`` events, error rules."""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    resilient_call,
    resilient_call_async,
)
from otel_resilience import telemetry_contract as tc

from .helpers import (
    ATTEMPT,
    ATTEMPTS,
    ENDPOINT,
    ERROR_TYPE,
    RETRY_DELAY_S,
    SERVICE,
    STATE,
    Otel,
    failing,
    http_error,
    parent_id,
)

pytestmark = pytest.mark.usefixtures("fast")


def attempt_spans(otel: Otel, name: str = "openai chat.completions attempt") -> list[ReadableSpan]:
    found = [s for s in otel.spans() if s.name == name]
    return sorted(found, key=lambda s: s.attributes[ATTEMPT])


def assert_ok(span: ReadableSpan) -> None:
    assert span.status.status_code is not StatusCode.ERROR
    assert ERROR_TYPE not in span.attributes
    assert not [e for e in span.events if e.name == "exception"]


def test_success_is_a_call_span_with_one_child_attempt_span(otel: Otel) -> None:
    assert resilient_call("openai", "chat.completions", lambda: "answer") == "answer"

    call = otel.span("openai chat.completions")
    (attempt,) = attempt_spans(otel)
    assert call.kind is SpanKind.INTERNAL
    assert attempt.kind is SpanKind.INTERNAL
    assert dict(call.attributes) == {
        SERVICE: "openai",
        ENDPOINT: "chat.completions",
        ATTEMPTS: 1,
        STATE: "closed",
    }
    assert attempt.attributes[ATTEMPT] == 1
    assert attempt.attributes[SERVICE] == "openai"
    assert attempt.attributes[ENDPOINT] == "chat.completions"
    assert parent_id(attempt) == call.context.span_id
    assert attempt.context.trace_id == call.context.trace_id
    assert_ok(call)
    assert_ok(attempt)
    assert [e.name for e in call.events] == []
    assert len(otel.spans()) == 2


def test_retried_success_has_no_error_on_the_call_but_on_each_failed_attempt(
    otel: Otel, fast
) -> None:
    func = failing(ConnectionError("refused"), http_error(503), result="late answer")

    assert resilient_call("openai", "chat.completions", func, max_retries=3) == "late answer"

    call = otel.span("openai chat.completions")
    attempts = attempt_spans(otel)
    assert [s.attributes[ATTEMPT] for s in attempts] == [1, 2, 3]
    assert all(parent_id(s) == call.context.span_id for s in attempts)
    assert call.attributes[ATTEMPTS] == 3
    assert_ok(call)  # semantic conventions: a retried-then-successful call is a success
    for span, error_type in zip(attempts[:2], ["connection_error", "server_error"], strict=True):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes[ERROR_TYPE] == error_type
        (exception,) = [e for e in span.events if e.name == "exception"]
        assert exception.attributes["exception.type"] in (
            "ConnectionError",
            "httpx.HTTPStatusError",
        )
    assert_ok(attempts[2])
    retries = [e for e in call.events if e.name == "retry"]
    assert [dict(e.attributes) for e in retries] == [
        {ATTEMPT: 1, RETRY_DELAY_S: fast.sleeps[0], ERROR_TYPE: "connection_error"},
        {ATTEMPT: 2, RETRY_DELAY_S: fast.sleeps[1], ERROR_TYPE: "server_error"},
    ]
    # each retry event sits between the attempt that failed and the next one
    for event, before, after in zip(retries, attempts, attempts[1:], strict=False):
        assert before.end_time <= event.timestamp <= after.start_time


def test_exhausted_retries_mark_the_call_span_failed_with_the_last_error_type(otel: Otel) -> None:
    func = failing(ConnectionError("a"), TimeoutError("b"), http_error(502))

    with pytest.raises(ReliabilityError) as raised:
        resilient_call("openai", "chat.completions", func, max_retries=3)

    assert raised.value.error_type is ExternalServiceError.SERVER_ERROR
    call = otel.span("openai chat.completions")
    assert call.status.status_code is StatusCode.ERROR
    assert call.attributes[ERROR_TYPE] == "server_error"
    assert call.attributes[ATTEMPTS] == 3
    assert [s.attributes[ERROR_TYPE] for s in attempt_spans(otel)] == [
        "connection_error",
        "timeout",
        "server_error",
    ]
    assert [e.attributes[ERROR_TYPE] for e in call.events if e.name == "retry"] == [
        "connection_error",
        "timeout",
    ]


@pytest.mark.parametrize(
    ("status", tc.ATTRIBUTES.error_type.label),
    [
        pytest.param(400, "bad_request", id="400-bad_request"),
        pytest.param(401, "authentication_error", id="401-authentication_error"),
        pytest.param(403, "permission_denied", id="403-permission_denied"),
        pytest.param(404, "not_found", id="404-not_found"),
    ],
)
def test_non_retryable_error_is_one_failed_attempt_and_no_retry_event(
    otel: Otel, status: int, error_type: str
) -> None:
    func = failing(http_error(status))

    with pytest.raises(ReliabilityError):
        resilient_call("openai", "chat.completions", func, max_retries=3)

    assert func.calls == 1
    call = otel.span("openai chat.completions")
    (attempt,) = attempt_spans(otel)
    assert call.attributes[ERROR_TYPE] == error_type
    assert call.attributes[ATTEMPTS] == 1
    assert call.status.status_code is StatusCode.ERROR
    assert attempt.attributes[ERROR_TYPE] == error_type
    assert attempt.status.status_code is StatusCode.ERROR
    assert [e for e in call.events if e.name == "retry"] == []


@pytest.mark.parametrize(
    ("raised", tc.ATTRIBUTES.error_type.label),
    [
        pytest.param(TimeoutError("slow"), "timeout", id="timeout"),
        pytest.param(ConnectionRefusedError("down"), "connection_error", id="connection_error"),
        pytest.param(http_error(429), "rate_limit", id="rate_limit"),
        pytest.param(http_error(401), "authentication_error", id="authentication_error"),
        pytest.param(http_error(403), "permission_denied", id="permission_denied"),
        pytest.param(http_error(404), "not_found", id="not_found"),
        pytest.param(http_error(400), "bad_request", id="bad_request"),
        pytest.param(http_error(500), "server_error", id="server_error"),
        pytest.param(RuntimeError("no idea"), "unknown_error", id="unknown_error"),
    ],
)
def test_error_type_is_the_external_service_error_value(
    otel: Otel, raised: BaseException, error_type: str
) -> None:
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("gcs", "upload", failing(raised), max_retries=1)

    assert caught.value.error_type.value == error_type
    call = otel.span("gcs upload")
    (attempt,) = attempt_spans(otel, "gcs upload attempt")
    assert call.attributes[ERROR_TYPE] == error_type
    assert attempt.attributes[ERROR_TYPE] == error_type


def test_attempt_timeout_is_error_type_timeout_on_attempt_and_call(otel: Otel) -> None:
    with pytest.raises(ReliabilityError) as raised:
        resilient_call("clamav", "scan", lambda: time.sleep(2), timeout_sec=0.05, max_retries=1)

    assert raised.value.error_type is ExternalServiceError.TIMEOUT
    call = otel.span("clamav scan")
    (attempt,) = attempt_spans(otel, "clamav scan attempt")
    assert call.attributes[ERROR_TYPE] == "timeout"
    assert attempt.attributes[ERROR_TYPE] == "timeout"
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.end_time - attempt.start_time < 1.5e9  # ended at the timeout, not the sleep


def test_breaker_cycle_spans_open_rejection_half_open_probe_closed(otel: Otel, fast) -> None:
    for _ in range(2):  # CB_FAIL_THRESHOLD=2
        with pytest.raises(ReliabilityError):
            resilient_call("clamav", "scan", failing(ConnectionError("down")), max_retries=1)
    otel.exporter.clear()

    with pytest.raises(CircuitOpenError):
        resilient_call("clamav", "scan", lambda: "never runs")
    (rejected,) = otel.spans()  # the call span alone, no attempt span
    assert rejected.name == "clamav scan"
    assert rejected.attributes[ERROR_TYPE] == "circuit_open"
    assert rejected.attributes[STATE] == "open"
    assert rejected.status.status_code is StatusCode.ERROR
    otel.exporter.clear()

    fast.advance(10)  # CB_RESET_SEC: the next call is a half-open probe
    assert resilient_call("clamav", "scan", lambda: "clean") == "clean"
    probe = otel.span("clamav scan")
    assert probe.attributes[STATE] == "half_open"
    assert_ok(probe)
    otel.exporter.clear()

    assert resilient_call("clamav", "scan", lambda: "clean") == "clean"
    assert otel.span("clamav scan").attributes[STATE] == "closed"


async def test_async_call_has_the_same_span_tree_as_a_sync_call(otel: Otel, fast) -> None:
    errors = [ConnectionError("reset"), http_error(503)]

    async def fetch() -> str:
        if errors:
            raise errors.pop(0)
        return "async answer"

    assert await resilient_call_async("openai", "embeddings", fetch, max_retries=3) == (
        "async answer"
    )

    call = otel.span("openai embeddings")
    attempts = attempt_spans(otel, "openai embeddings attempt")
    assert call.kind is SpanKind.INTERNAL
    assert [s.attributes[ATTEMPT] for s in attempts] == [1, 2, 3]
    assert all(parent_id(s) == call.context.span_id for s in attempts)
    assert call.attributes[ATTEMPTS] == 3
    assert_ok(call)
    assert [s.attributes.get(ERROR_TYPE) for s in attempts] == [
        "connection_error",
        "server_error",
        None,
    ]
    assert [e.attributes[RETRY_DELAY_S] for e in call.events if e.name == "retry"] == fast.sleeps


async def test_async_rejected_call_is_the_call_span_alone(otel: Otel) -> None:
    otel_resilience.get_circuit_breaker_manager().get_breaker("gcs", "upload").force_open()

    async def upload() -> str:
        return "never runs"

    with pytest.raises(CircuitOpenError):
        await resilient_call_async("gcs", "upload", upload)

    (span,) = otel.spans()
    assert span.name == "gcs upload"
    assert span.attributes[ERROR_TYPE] == "circuit_open"
    assert span.status.status_code is StatusCode.ERROR


def test_call_span_nests_under_the_callers_span_and_client_spans_under_the_attempt(
    otel: Otel,
) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    errors = [ConnectionError("once")]

    def http_client_call() -> str:
        with tracer.start_as_current_span("GET /v1/chat"):
            if errors:
                raise errors.pop(0)
            return "ok"

    with tracer.start_as_current_span("handle request"):
        resilient_call("openai", "chat.completions", http_client_call, max_retries=2)

    request = otel.span("handle request")
    call = otel.span("openai chat.completions")
    attempts = attempt_spans(otel)
    clients = sorted(
        (s for s in otel.spans() if s.name == "GET /v1/chat"), key=lambda s: s.start_time
    )
    assert parent_id(call) == request.context.span_id
    assert len(attempts) == len(clients) == 2
    for attempt, client in zip(attempts, clients, strict=True):
        assert parent_id(client) == attempt.context.span_id
    assert {s.context.trace_id for s in otel.spans()} == {request.context.trace_id}
    # the attempt's context does not leak: after the call the caller's span is current again
    with tracer.start_as_current_span("after"):
        pass
    assert parent_id(otel.span("after")) is None


async def test_async_client_spans_nest_under_the_attempt_span(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")

    async def fetch() -> str:
        with tracer.start_as_current_span("GET /object"):
            return "bytes"

    await resilient_call_async("gcs", "download", fetch)

    client = otel.span("GET /object")
    (attempt,) = attempt_spans(otel, "gcs download attempt")
    assert parent_id(client) == attempt.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_no_attribute_work_on_spans_that_are_not_recording(monkeypatch, fast) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    touched: list[str] = []
    for method in ("set_attribute", "set_attributes", "add_event", "record_exception"):
        monkeypatch.setattr(
            trace.NonRecordingSpan,
            method,
            lambda self, *args, _m=method, **kwargs: touched.append(_m),
        )
    otel_resilience.set_telemetry_providers(TracerProvider(sampler=ALWAYS_OFF), None)
    func = failing(ConnectionError(), http_error(503), http_error(500))

    with pytest.raises(ReliabilityError):
        resilient_call("openai", "chat.completions", func, max_retries=3)
    assert resilient_call("openai", "chat.completions", lambda: "ok") == "ok"

    assert func.calls == 3
    assert touched == []


def test_spans_carry_the_otel_resilience_scope_and_package_version(otel: Otel) -> None:
    resilient_call("gcs", "upload", lambda: "ok")

    scopes = {(s.instrumentation_scope.name, s.instrumentation_scope.version) for s in otel.spans()}
    assert scopes == {("otel_resilience", otel_resilience.__version__)}


def test_rejected_call_span_says_no_attempt_ran(otel: Otel) -> None:
    otel_resilience.get_circuit_breaker_manager().get_breaker("gcs", "upload").force_open()

    with pytest.raises(CircuitOpenError):
        resilient_call("gcs", "upload", lambda: "never runs")

    assert otel.span("gcs upload").attributes[ATTEMPTS] == 0


def test_client_spans_nest_under_the_attempt_in_a_worker_thread(otel: Otel) -> None:
    """Off the main thread the attempt runs in the timeout's worker pool: context must follow."""
    import threading

    tracer = otel.tracer_provider.get_tracer("app")

    def client() -> str:
        with tracer.start_as_current_span("GET /blob"):
            return "blob"

    results: list[str] = []
    thread = threading.Thread(
        target=lambda: results.append(
            resilient_call("gcs", "download", client, timeout_sec=5, max_retries=1)
        )
    )
    thread.start()
    thread.join(10)

    assert results == ["blob"]
    (attempt,) = attempt_spans(otel, "gcs download attempt")
    assert parent_id(otel.span("GET /blob")) == attempt.context.span_id
    assert parent_id(attempt) == otel.span("gcs download").context.span_id


def test_concurrent_calls_in_threads_keep_their_own_span_trees(otel: Otel) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tracer = otel.tracer_provider.get_tracer("app")

    def request(i: int) -> int:
        with tracer.start_as_current_span(f"request {i}"):

            def client() -> int:
                with tracer.start_as_current_span(f"client {i}"):
                    time.sleep(0.001)
                    return i

            return resilient_call("search", "query", client)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(request, range(32))) == list(range(32))

    spans = otel.spans()
    by_id = {s.context.span_id: s for s in spans}
    for i in range(32):
        client = otel.span(f"client {i}")
        attempt = by_id[parent_id(client)]
        call = by_id[parent_id(attempt)]
        assert attempt.name == "search query attempt"
        assert call.name == "search query"
        assert by_id[parent_id(call)].name == f"request {i}"
        assert len({client.context.trace_id, call.context.trace_id}) == 1


def test_a_nested_resilient_call_nests_under_the_outer_attempt(otel: Otel) -> None:
    def outer() -> str:
        return resilient_call("vectordb", "search", lambda: "hits")

    assert resilient_call("rag", "answer", outer) == "hits"

    (outer_attempt,) = attempt_spans(otel, "rag answer attempt")
    assert parent_id(otel.span("vectordb search")) == outer_attempt.context.span_id


def test_retry_event_reports_the_retry_after_the_service_asked_for(otel: Otel, fast) -> None:
    func = failing(http_error(429, {"Retry-After": "3"}), result="ok")

    assert resilient_call("openai", "chat.completions", func, max_retries=2) == "ok"

    (event,) = [e for e in otel.span("openai chat.completions").events if e.name == "retry"]
    assert event.attributes[RETRY_DELAY_S] == 3.0
    assert event.attributes[ERROR_TYPE] == "rate_limit"
    assert fast.sleeps == [3.0]


async def test_a_cancelled_async_call_still_ends_and_exports_its_call_span(otel: Otel) -> None:
    import asyncio

    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    task = asyncio.create_task(
        resilient_call_async("gcs", "upload", slow, timeout_sec=30, max_retries=1)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (attempt,) = attempt_spans(otel, "gcs upload attempt")
    assert attempt.status.status_code is StatusCode.ERROR
    call = otel.span("gcs upload")  # not lost: the attempt span's parent is exported too
    assert parent_id(attempt) == call.context.span_id
    assert call.status.status_code is StatusCode.ERROR


def test_a_keyboard_interrupt_still_ends_and_exports_the_call_span(otel: Otel) -> None:
    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resilient_call("gcs", "upload", interrupted)

    (attempt,) = attempt_spans(otel, "gcs upload attempt")
    assert attempt.status.status_code is StatusCode.ERROR
    call = otel.span("gcs upload")
    assert parent_id(attempt) == call.context.span_id
