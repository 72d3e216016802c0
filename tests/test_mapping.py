"""map_external_error: type first, then HTTP status, then message keywords; Retry-After."""

from __future__ import annotations

import errno
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    Classification,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
    map_external_error,
    register_classifier,
)
from otel_resilience._errors import ERROR_CLASSES
from otel_resilience._mapping import classify, parse_retry_after, status_to_error_type

E = ExternalServiceError


class Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class ClientError(Exception):
    def __init__(
        self, message: str = "", response: Response | None = None, **attrs: object
    ) -> None:
        super().__init__(message)
        self.response = response
        for key, value in attrs.items():
            setattr(self, key, value)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), E.TIMEOUT),
        (ConnectionRefusedError(), E.CONNECTION_ERROR),
        (ConnectionResetError(), E.CONNECTION_ERROR),
        (BrokenPipeError(), E.CONNECTION_ERROR),
        (socket.gaierror(-2, "Name or service not known"), E.CONNECTION_ERROR),
        (OSError(errno.EHOSTUNREACH, "No route to host"), E.CONNECTION_ERROR),
        (OSError(errno.ETIMEDOUT, "whatever"), E.TIMEOUT),
    ],
    ids=[
        "timeout",
        "refused",
        "reset",
        "pipe",
        "dns",
        "unreachable",
        "etimedout",
    ],
)
def test_builtin_exception_types(exc: BaseException, expected: ExternalServiceError) -> None:
    assert classify(exc).error_type is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, E.BAD_REQUEST), (401, E.AUTHENTICATION_ERROR), (403, E.PERMISSION_DENIED),
        (404, E.NOT_FOUND), (408, E.TIMEOUT), (409, E.BAD_REQUEST), (422, E.BAD_REQUEST),
        (429, E.RATE_LIMIT), (500, E.SERVER_ERROR), (502, E.SERVER_ERROR),
        (503, E.SERVER_ERROR), (504, E.TIMEOUT),
    ],
    ids=str,
)  # fmt: skip
def test_http_status_on_the_response(status: int, expected: ExternalServiceError) -> None:
    assert classify(ClientError("x", Response(status))).error_type is expected
    assert status_to_error_type(status) is expected


@pytest.mark.parametrize("attr", ["status_code", "status"])
def test_http_status_on_the_exception_itself(attr: str) -> None:
    assert classify(ClientError("boom", **{attr: 429})).error_type is E.RATE_LIMIT


def test_non_error_status_is_no_evidence() -> None:
    assert status_to_error_type(302) is None
    assert classify(ClientError("odd", Response(200))).error_type is E.UNKNOWN_ERROR


def test_type_beats_status_and_status_beats_message() -> None:
    # a TimeoutError whose message says "not found" is still a timeout
    assert classify(TimeoutError("resource not found")).error_type is E.TIMEOUT
    # a 503 whose message says "invalid" is a server error
    assert classify(ClientError("invalid upstream", Response(503))).error_type is E.SERVER_ERROR


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Request timed out", E.TIMEOUT),
        ("deadline exceeded", E.TIMEOUT),
        ("Rate limit reached for requests", E.RATE_LIMIT),
        ("Too Many Requests", E.RATE_LIMIT),
        ("Unauthorized", E.AUTHENTICATION_ERROR),
        ("Invalid API key provided", E.AUTHENTICATION_ERROR),
        ("Forbidden", E.PERMISSION_DENIED),
        ("object not found", E.NOT_FOUND),
        ("connection refused", E.CONNECTION_ERROR),
        ("Internal Server Error", E.SERVER_ERROR),
        ("Service Unavailable", E.SERVER_ERROR),
        ("Bad Request: missing field", E.BAD_REQUEST),
        ("something odd", E.UNKNOWN_ERROR),
    ],
    ids=lambda v: v if isinstance(v, str) else v.value,
)
def test_message_keywords_are_the_last_resort(message: str, expected: ExternalServiceError) -> None:
    assert map_external_error("svc", "op", Exception(message)).error_type is expected


def test_retry_after_seconds_from_response_headers() -> None:
    exc = ClientError("slow down", Response(429, {"Retry-After": "12"}))
    assert classify(exc) == Classification(E.RATE_LIMIT, 12.0)


def test_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    exc = ClientError(
        "slow down", Response(429, {"Retry-After": format_datetime(when, usegmt=True)})
    )
    retry_after = classify(exc).retry_after
    assert retry_after is not None
    assert 28 <= retry_after <= 31


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 2.5 ", 2.5), (b"4", 4.0), (7, 7.0), ("-5", 0.0), ("soon", None), ("", None),
     (None, None), (True, None), ("Wed, 21 Oct 2015 07:28:00", None)],
    ids=["int-text", "spaces", "bytes", "number", "negative", "junk", "empty", "none", "bool",
         "date-without-zone"],
)  # fmt: skip
def test_parse_retry_after(value: object, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_mapped_error_keeps_context_and_builds_the_right_class() -> None:
    error = map_external_error("clamav", "scan", TimeoutError("no answer"), attempts=2)
    assert isinstance(error, CallTimeoutError)
    assert isinstance(error, TimeoutError)
    assert (error.service_name, error.endpoint, error.attempts) == ("clamav", "scan", 2)
    assert "clamav (scan)" in str(error)
    assert "no answer" in str(error)


def test_a_reliability_error_is_returned_as_is() -> None:
    error = ReliabilityError(E.RATE_LIMIT, "a", "b", retry_after=3)
    assert map_external_error("c", "d", error) is error


def test_every_error_type_maps_to_a_reliability_error_class() -> None:
    """The mapping table is exhaustive: each type builds a ReliabilityError (sub)class."""
    for error_type in E:
        cls = ERROR_CLASSES.get(error_type, ReliabilityError)
        error = cls(error_type, "s", "e")
        assert isinstance(error, ReliabilityError)
        assert error.error_type is error_type
    assert ERROR_CLASSES[E.CIRCUIT_OPEN] is CircuitOpenError
    assert ERROR_CLASSES[E.THROTTLED] is ThrottledError
    assert ERROR_CLASSES[E.TIMEOUT] is CallTimeoutError


def test_registered_classifier_runs_first_and_can_be_removed() -> None:
    class QuotaError(Exception):
        pass

    remove = register_classifier(
        lambda exc: Classification(E.RATE_LIMIT, 60.0) if isinstance(exc, QuotaError) else None
    )
    try:
        assert classify(QuotaError("timeout")) == Classification(E.RATE_LIMIT, 60.0)
        assert classify(TimeoutError()).error_type is E.TIMEOUT  # others pass through
    finally:
        remove()
    assert classify(QuotaError("timeout")).error_type is E.TIMEOUT


def test_a_broken_classifier_is_skipped() -> None:
    def broken(exc: BaseException) -> Classification | None:
        raise RuntimeError("bug in classifier")

    remove = register_classifier(broken)
    try:
        assert classify(ConnectionResetError()).error_type is E.CONNECTION_ERROR
    finally:
        remove()


def test_register_classifier_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="classifier must be callable"):
        register_classifier("not a function")  # type: ignore[arg-type]


def test_errors_pickle_with_their_fields() -> None:
    import pickle

    error = CallTimeoutError(E.TIMEOUT, "clamav", "scan", "slow", attempts=3, retry_after=1.5)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CallTimeoutError
    assert (copy.error_type, copy.service_name, copy.endpoint, copy.attempts, copy.retry_after) == (
        E.TIMEOUT, "clamav", "scan", 3, 1.5,
    )  # fmt: skip
    assert "clamav" in repr(copy)


def test_retry_after_attribute_on_the_exception() -> None:
    assert classify(ClientError("busy", Response(503), retry_after="5")).retry_after == 5.0


def test_retry_after_header_found_in_lower_case() -> None:
    class Headers:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def get(self, name: str) -> str | None:
            self.asked.append(name)
            return "9" if name == "retry-after" else None

    headers = Headers()
    response = Response(429)
    response.headers = headers  # type: ignore[assignment]
    assert classify(ClientError("slow", response)).retry_after == 9.0
    assert headers.asked == ["Retry-After", "retry-after"]


@pytest.mark.parametrize(
    "headers",
    [object(), type("Broken", (), {"get": lambda self, name: 1 / 0})()],
    ids=["no-get", "get-raises"],
)
def test_odd_headers_objects_are_no_evidence(headers: object) -> None:
    response = Response(429)
    response.headers = headers  # type: ignore[assignment]
    found = classify(ClientError("slow", response))
    assert found == Classification(E.RATE_LIMIT, None)


def test_unparseable_retry_after_types_are_ignored() -> None:
    assert parse_retry_after(["3"]) is None


def test_errno_of_an_oserror_subclass() -> None:
    class DriverError(OSError):
        pass

    assert classify(DriverError(errno.ETIMEDOUT, "timed out in driver")).error_type is E.TIMEOUT
    assert classify(DriverError(errno.ENETUNREACH, "no route")).error_type is E.CONNECTION_ERROR
    assert classify(DriverError(errno.ENOSPC, "disk full")).error_type is E.UNKNOWN_ERROR


def test_a_broken_client_classifier_falls_back_to_the_generic_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from otel_resilience import _clients

    class VendorError(Exception):
        status_code = 503

    VendorError.__module__ = "vendor_sdk.errors"

    def broken(exc: BaseException) -> Classification | None:
        raise RuntimeError("bug in the vendor classifier")

    monkeypatch.setitem(_clients.CLIENT_CLASSIFIERS, "vendor_sdk", broken)
    assert classify(VendorError("unavailable")).error_type is E.SERVER_ERROR
