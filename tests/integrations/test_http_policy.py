"""The shared HTTP logic: names, waits, verdicts, idempotency, the cardinality cap; and the
client's own HTTP span nesting under the attempt span."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_resilience import ExternalServiceError
from otel_resilience._http_integration import (
    OVERFLOW_ROUTE,
    HttpPolicy,
    dotted_route,
    io_timeout,
    is_id_like,
    parse_duration,
    retry_after_of,
    route_of,
)
from otel_resilience.httpx import ResilientTransport

E = ExternalServiceError


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/users/42", "GET /users/{id}"),
        ("/v1/files/file-abc123/content", "GET /v1/files/{id}/content"),
        ("/items/9f1c2e3a-1b2c-4d5e-8f90-123456789abc", "GET /items/{id}"),
        ("/blobs/0123456789abcdef0123", "GET /blobs/{id}"),
        ("/models/gpt-4o", "GET /models/gpt-4o"),
        ("/", "GET /"),
    ],
)
def test_routes_collapse_id_like_segments(path, route):
    assert route_of("get", path) == route


@pytest.mark.parametrize(
    ("path", "prefix", "name"),
    [
        ("/v1/chat/completions", "/v1", "chat.completions"),
        ("/v1/embeddings", "/v1/", "embeddings"),
        ("/v1/responses/resp_67ccd2bed1ec8190", "/v1", "responses"),
        ("/openai/v1/audio/transcriptions", "/openai/v1", "audio.transcriptions"),
        ("/v1", "/v1", "root"),
        ("/v2/models", "/v1", "v2.models"),
    ],
)
def test_dotted_routes_name_endpoints_like_the_seed(path, prefix, name):
    assert dotted_route(path, prefix) == name


@given(st.lists(st.text(st.characters(codec="ascii", exclude_characters="/"), max_size=12)))
@example(["users", "12345678"])
@settings(max_examples=80)
def test_a_route_is_stable_and_never_keeps_a_number(segments):
    path = "/" + "/".join(segments)
    route = route_of("GET", path)
    assert route == route_of("GET", route.removeprefix("GET "))  # naming a name changes nothing
    assert not any(s.isdigit() for s in route.split("/"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("20ms", 0.02), ("1.5", 1.5), ("0", 0.0)],
)
def test_durations_parse(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@given(st.one_of(st.text(max_size=12), st.none(), st.integers()))
@example("1x")
@example("x1s")
@example("s1")
@example("-1")
@example("nan")
@settings(max_examples=100)
def test_parse_duration_is_total(value):
    seconds = parse_duration(value)
    assert seconds is None or seconds >= 0.0


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        (503, {"retry-after": "2"}, 2.0),
        (429, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "3s"}, 3.0),
        (
            429,
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "4s",
            },
            4.0,
        ),
        (429, {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "5s"}, 2.0),
        (503, {"x-ratelimit-reset-requests": "2s"}, None),  # only a 429 reads the limits
        (429, {}, None),
    ],
)
def test_the_wait_a_response_asks_for(status, headers, wait):
    assert retry_after_of(status, httpx.Headers(headers)) == wait


@pytest.mark.parametrize(
    ("status", "body", "error_type", "retry_after"),
    [
        (429, b'{"error": {"code": "insufficient_quota"}}', E.PERMISSION_DENIED, None),
        (
            429,
            b'{"error": {"type": "insufficient_quota", "code": null}}',
            E.PERMISSION_DENIED,
            None,
        ),
        (429, b"insufficient_quota but not json", E.RATE_LIMIT, 7.0),
        (429, b'["insufficient_quota"]', E.RATE_LIMIT, 7.0),
        (429, b'{"error": "insufficient_quota"}', E.RATE_LIMIT, 7.0),
        (500, b"", E.SERVER_ERROR, 7.0),
        (400, b"", E.BAD_REQUEST, 7.0),
    ],
)
def test_the_verdict_on_an_error_response(status, body, error_type, retry_after):
    failure = HttpPolicy().failure(
        "svc", "ep", status, "Reason", httpx.Headers({"Retry-After": "7"}), body, "the response"
    )
    assert failure.error_type is error_type
    assert failure.retry_after == retry_after
    assert failure.response == "the response"
    assert f"HTTP {status} Reason" in failure.message


def test_idempotency_decides_the_attempts():
    policy = HttpPolicy(max_retries=4)
    assert policy.attempts_for(None, "GET", {}) == 4
    assert policy.attempts_for(None, "put", {}) == 4
    assert policy.attempts_for(None, "POST", {}) == 1
    assert policy.attempts_for(None, "PATCH", {"Idempotency-Key": "k"}) == 4
    assert HttpPolicy(idempotent=False).attempts_for(None, "GET", {}) == 1
    assert HttpPolicy(idempotent=True, max_retries=2).attempts_for(None, "POST", {}) == 2
    by_request = HttpPolicy(idempotent=lambda request: request == "safe", max_retries=3)
    assert by_request.attempts_for("safe", "POST", {}) == 3
    assert by_request.attempts_for("other", "GET", {}) == 1


def test_default_route_names_are_capped_per_policy():
    policy = HttpPolicy(max_routes=2)
    names = [policy.endpoint_for(None, "GET", p) for p in ("/a", "/b", "/c", "/a", "/d")]
    assert names == ["GET /a", "GET /b", OVERFLOW_ROUTE, "GET /a", OVERFLOW_ROUTE]


def test_given_names_and_naming_callables_win():
    policy = HttpPolicy(service="billing", endpoint=lambda request: f"op-{request}")
    assert policy.service_for(None, "host:1") == "billing"
    assert policy.endpoint_for("x", "GET", "/a") == "op-x"
    by_callable = HttpPolicy(service=lambda request: f"svc-{request}", endpoint="fixed")
    assert by_callable.service_for("y", "host:1") == "svc-y"
    assert by_callable.endpoint_for(None, "GET", "/a") == "fixed"
    assert HttpPolicy().service_for(None, "host:1") == "host:1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"service": ""}, "service must be a non-empty string"),
        ({"endpoint": 3}, "endpoint must be a non-empty string"),
        ({"idempotent": "yes"}, "idempotent must be None"),
        ({"max_routes": 0}, "max_routes must be an integer >= 1"),
        ({"max_routes": True}, "max_routes must be an integer >= 1"),
    ],
)
def test_bad_options_name_the_culprit(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        HttpPolicy(**options)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ResilientTransport(object()), "transport must be a sync httpx transport"),
        (lambda: ResilientTransport(buffer="no"), "buffer must be True, False or a callable"),
    ],
)
def test_bad_transport_options_name_the_culprit(build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_async_transport_refuses_a_sync_inner_transport():
    from otel_resilience.httpx import AsyncResilientTransport

    with pytest.raises(TypeError, match="async httpx transport"):
        AsyncResilientTransport(httpx.HTTPTransport())


@pytest.mark.parametrize(
    ("own", "left", "expected"),
    [(None, 2.0, 2.0), (5.0, 2.0, 2.0), (1.0, 2.0, 1.0), (3.0, None, 3.0), (None, None, None)],
)
def test_the_io_timeout_is_the_clients_own_cut_to_the_attempt(own, left, expected):
    assert io_timeout(own, left) == expected


def test_is_id_like_keeps_short_words():
    assert not is_id_like("v1")
    assert is_id_like("2024-01-01")


def test_the_clients_own_http_span_nests_under_the_attempt_span(server, otel):
    from opentelemetry.instrumentation.httpx import SyncOpenTelemetryTransport

    inner = SyncOpenTelemetryTransport(httpx.HTTPTransport(), tracer_provider=otel.tracer_provider)
    with httpx.Client(transport=ResilientTransport(inner)) as client:
        assert client.get(f"{server.url}/flaky/n?fail=1").status_code == 200

    attempts = {s.context.span_id: s for s in otel.spans() if s.name.endswith(" attempt")}
    http_spans = [s for s in otel.spans() if s.name == "GET"]
    assert len(attempts) == 2 == len(http_spans) == server.count("/flaky/n")
    for span in http_spans:
        assert span.parent is not None
        assert span.parent.span_id in attempts
    resend = sorted(a.attributes.get("http.request.resend_count", 0) for a in attempts.values())
    assert resend == [0, 1]
