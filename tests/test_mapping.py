"""map_external_error: type first, then HTTP status, then message keywords; Retry-After."""

from __future__ import annotations

import errno
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import ClassVar

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
from otel_resilience._classify import parse_retry_after, status_to_error_type
from otel_resilience._errors import ERROR_CLASSES
from support import FakeClock, classify

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


def test_a_broken_client_classifier_falls_back_to_the_generic_rules() -> None:
    from otel_resilience._classify import CLIENT_CLASSIFIERS, Classifiers

    class VendorError(Exception):
        status_code = 503

    VendorError.__module__ = "vendor_sdk.errors"

    def broken(exc: BaseException) -> Classification | None:
        raise RuntimeError("bug in the vendor classifier")

    registry = Classifiers(libraries={**CLIENT_CLASSIFIERS, "vendor_sdk": broken})
    assert classify(VendorError("unavailable"), registry).error_type is E.SERVER_ERROR


# --- classification is total: nothing raised while classifying reaches the caller -----------


class Hostile(Exception):
    """An exception whose every helper raises: str, repr, status, response and headers."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ raises")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ raises")

    @property
    def status_code(self) -> int:
        raise ValueError("status_code raises")

    @property
    def status(self) -> int:
        raise KeyError("status")

    @property
    def response(self) -> object:
        raise RuntimeError("response raises")

    @property
    def retry_after(self) -> object:
        raise OverflowError("retry_after raises")


class RaisingHeaders:
    def get(self, name: str) -> str:
        raise RuntimeError(f"no header {name}")


_HUGE_DATE = "Wed, 21 Oct 99999999999999999999 07:28:00 GMT"


def _str_raises(message: str) -> Exception:
    class StrRaises(Exception):
        def __str__(self) -> str:
            raise RuntimeError("boom")

    return StrRaises(message)


def test_an_exception_whose_str_raises_is_unknown_and_named_by_its_type() -> None:
    mapped = map_external_error("svc", "op", _str_raises("x"))
    assert mapped.error_type is E.UNKNOWN_ERROR
    assert "StrRaises" in str(mapped)  # the repr stands in for the message


def test_an_exception_whose_str_and_repr_raise_still_maps() -> None:
    mapped = map_external_error("svc", "op", Hostile())
    assert mapped.error_type is E.UNKNOWN_ERROR
    assert mapped.retry_after is None
    assert str(mapped) == "unknown_error calling svc (op): Hostile [unknown_error; attempts=1]"


def test_a_raising_status_property_falls_back_to_the_message() -> None:
    class StatusRaises(Exception):
        @property
        def status_code(self) -> int:
            raise AttributeError("a property that raises AttributeError is just absent")

        @property
        def status(self) -> int:
            raise RuntimeError("status raises")

    assert classify(StatusRaises("Service Unavailable")).error_type is E.SERVER_ERROR


def test_a_raising_response_property_still_reads_the_exception_itself() -> None:
    class ResponseRaises(Exception):
        status_code = 429
        headers: ClassVar[dict[str, str]] = {"Retry-After": "4"}

        @property
        def response(self) -> object:
            raise RuntimeError("response raises")

    assert classify(ResponseRaises("x")) == Classification(E.RATE_LIMIT, 4.0)


def test_a_retry_after_date_that_overflows_is_no_delay() -> None:
    exc = ClientError("slow down", Response(429, {"Retry-After": _HUGE_DATE}))
    assert classify(exc) == Classification(E.RATE_LIMIT, None)


def test_a_headers_object_whose_get_raises_is_no_evidence() -> None:
    response = Response(503)
    response.headers = RaisingHeaders()  # type: ignore[assignment]
    assert classify(ClientError("x", response)) == Classification(E.SERVER_ERROR, None)


def test_an_exception_whose_class_attribute_raises_maps_to_unknown() -> None:
    class ClassRaises(Exception):
        @property  # type: ignore[misc]
        def __class__(self) -> type:  # isinstance() consults it and raises
            raise RuntimeError("__class__ raises")

    mapped = map_external_error("svc", "op", ClassRaises("connection refused"))
    assert mapped.error_type is E.CONNECTION_ERROR  # the message still says what happened
    assert isinstance(mapped, ReliabilityError)


def test_an_exception_whose_class_attribute_raises_in_the_client_lookup() -> None:
    from otel_resilience._classify import _registry as _mapping

    class ClassRaises(Exception):
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("__class__ raises")

    def boom(exc: BaseException) -> Classification:
        raise RuntimeError("the whole chain fails")

    original = _mapping._classify
    _mapping._classify = boom  # type: ignore[assignment]
    try:
        assert classify(ClassRaises("x")) == Classification(E.UNKNOWN_ERROR)
    finally:
        _mapping._classify = original


@pytest.mark.parametrize(
    "answer",
    [
        "rate_limit",
        Classification("rate_limit", 1.0),  # type: ignore[arg-type]
        42,
    ],
    ids=["a-string", "a-foreign-error-type", "a-number"],
)
def test_a_classifier_answer_that_is_not_a_classification_is_skipped(answer: object) -> None:
    remove = register_classifier(lambda exc: answer)  # type: ignore[arg-type,return-value]
    try:
        assert classify(Exception("Forbidden")).error_type is E.PERMISSION_DENIED
    finally:
        remove()


@pytest.mark.parametrize(
    ("delay", "expected"),
    [(float("inf"), None), (float("nan"), None), (-3.0, 0.0), (10**400, None), (2, 2.0)],
    ids=["inf", "nan", "negative", "huge-int", "int"],
)
def test_a_classifier_delay_is_made_finite_and_non_negative(
    delay: float, expected: float | None
) -> None:
    remove = register_classifier(lambda exc: Classification(E.RATE_LIMIT, delay))
    try:
        assert classify(Exception("x")) == Classification(E.RATE_LIMIT, expected)
    finally:
        remove()


def test_a_reliability_error_with_a_bad_delay_is_cleaned() -> None:
    err = ReliabilityError(E.RATE_LIMIT, "svc", "op", retry_after=float("inf"))
    assert classify(err) == Classification(E.RATE_LIMIT, None)
    err.error_type = "nonsense"  # type: ignore[assignment]
    assert classify(err) == Classification(E.UNKNOWN_ERROR, None)


def test_a_client_classifier_returning_an_infinite_delay_is_cleaned() -> None:
    from otel_resilience._classify import CLIENT_CLASSIFIERS, Classifiers

    class VendorError(Exception):
        pass

    VendorError.__module__ = "vendor_sdk.errors"
    registry = Classifiers(
        libraries={
            **CLIENT_CLASSIFIERS,
            "vendor_sdk": lambda exc: Classification(E.RATE_LIMIT, float("inf")),
        }
    )
    assert classify(VendorError("x"), registry) == Classification(E.RATE_LIMIT, None)


def test_the_client_classifiers_are_total_on_hostile_real_client_errors() -> None:
    import httpx
    import requests

    for cls in (httpx.HTTPStatusError, requests.HTTPError):
        exc = cls.__new__(cls)  # no __init__: none of the attributes the classifier reads
        mapped = map_external_error("svc", "op", exc)
        assert isinstance(mapped, ReliabilityError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (_HUGE_DATE, None),
        ("1e400", None),
        ("inf", None),
        ("nan", None),
        (float("inf"), None),
        (float("nan"), None),
        (10**400, None),
        (bytearray(b"3"), None),
    ],
    ids=["huge-year", "1e400", "inf", "nan", "float-inf", "float-nan", "huge-int",
         "bytearray"],
)  # fmt: skip
def test_parse_retry_after_is_total(value: object, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_survives_a_hostile_str_subclass() -> None:
    class Weird(str):
        def strip(self, chars: str | None = None) -> str:
            raise RuntimeError("strip raises")

        def __float__(self) -> float:
            raise RuntimeError("float raises")

    assert parse_retry_after(Weird("3")) == 3.0


from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_http_dates = st.builds(
    lambda day, year, hour, zone: f"{day}, 21 Oct {year} {hour:02d}:28:00 {zone}",
    st.sampled_from(["Wed", "Mon", "Xyz"]),
    st.integers(min_value=-10, max_value=10**30),
    st.integers(min_value=0, max_value=99),
    st.sampled_from(["GMT", "+9999", "-2359", "UTC", "", "+0000"]),
)
_texts = st.one_of(
    st.text(max_size=40),
    _http_dates,
    st.sampled_from(["429", "order 84017 failed", "1e400", "nan", "-1", "  7 ", "Bearer x"]),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_texts, st.binary(max_size=20), st.floats(), st.integers(), st.none()))
@example(_HUGE_DATE)
@example("Wed, 21 Oct 9999 23:59:59 -2359")
@example(10**400)
def test_parse_retry_after_property(value: object) -> None:
    result = parse_retry_after(value)
    assert result is None or (isinstance(result, float) and 0.0 <= result < float("inf"))


class _Raises:
    """A marker: the attribute is a property that raises this exception type."""

    def __init__(self, exc_type: type[Exception]) -> None:
        self.exc_type = exc_type


_raising = st.sampled_from([RuntimeError, ValueError, KeyError, AttributeError, OverflowError]).map(
    _Raises
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([100, 401, 404, 429, 503, 599, 600]),
    st.floats(),
    _texts,
    st.binary(max_size=10),
    _raising,
)
_headers = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["Retry-After", "retry-after", "retry-after-ms", "X"]), _scalars, max_size=3
    ),
    st.just(RaisingHeaders()),
    _raising,
    _scalars,
)
_BASES: tuple[type[BaseException], ...] = (
    Exception,
    OSError,
    TimeoutError,
    ConnectionError,
    ReliabilityError,
)


def _holder(attrs: dict[str, object], base: type = object) -> type:
    namespace: dict[str, object] = {}
    for name, value in attrs.items():
        if isinstance(value, _Raises):
            exc_type = value.exc_type

            def get(self: object, exc_type: type[Exception] = exc_type) -> object:
                raise exc_type("raised by a property")

            namespace[name] = property(get)
        else:
            namespace[name] = value
    return type("Built", (base,), namespace)


@st.composite
def hostile_exceptions(draw: st.DrawFn) -> BaseException:
    base = draw(st.sampled_from(_BASES + _client_bases()))
    response_attrs = draw(
        st.fixed_dictionaries(
            {},
            optional={"status_code": _scalars, "status": _scalars, "headers": _headers},
        )
    )
    response = draw(st.one_of(st.none(), _raising, st.just(_holder(response_attrs)())))
    attrs = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "status_code": _scalars,
                "status": _scalars,
                "headers": _headers,
                "retry_after": _scalars,
                "errno": _scalars,
                "code": _scalars,
                "reason": _scalars,
            },
        )
    )
    if response is not None:
        attrs["response"] = response
    for dunder in ("__str__", "__repr__"):
        if draw(st.booleans()):
            attrs[dunder] = _raising_method(draw(st.sampled_from([RuntimeError, ValueError])))
    cls = _holder(attrs, base)
    exc: BaseException = cls.__new__(cls)
    if draw(st.booleans()):
        BaseException.__init__(exc, draw(_texts))
    return exc


def _raising_method(exc_type: type[Exception]) -> object:
    def method(self: object) -> str:
        raise exc_type("raised by a dunder")

    return method


def _client_bases() -> tuple[type[BaseException], ...]:
    import httpx
    import openai
    import requests

    return (httpx.HTTPStatusError, requests.HTTPError, openai.APIStatusError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_exceptions(), st.lists(st.sampled_from(["raise", "none", "junk"]), max_size=2))
def test_map_external_error_is_total(exc: BaseException, user: list[str]) -> None:
    removers = []
    for kind in user:

        def classifier(exc: BaseException, kind: str = kind) -> object:
            if kind == "raise":
                raise RuntimeError("a broken user classifier")
            return None if kind == "none" else "junk"

        removers.append(register_classifier(classifier))  # type: ignore[arg-type]
    try:
        mapped = map_external_error("svc", "op", exc)
    finally:
        for remove in removers:
            remove()
    assert isinstance(mapped, ReliabilityError)
    assert isinstance(mapped.error_type, ExternalServiceError)
    retry_after = mapped.retry_after
    assert retry_after is None or 0.0 <= retry_after < float("inf")
    assert isinstance(str(mapped), str)


# --- keywords: status codes match as whole numbers only -------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("order 84017 failed", E.UNKNOWN_ERROR),
        ("request 5030 failed", E.UNKNOWN_ERROR),
        ("job 14290 rejected", E.UNKNOWN_ERROR),
        ("took 4040 ms", E.UNKNOWN_ERROR),
        ("upstream said 401", E.AUTHENTICATION_ERROR),
        ("HTTP 503: try later", E.SERVER_ERROR),
        ("status=429", E.RATE_LIMIT),
        ("error(404)", E.NOT_FOUND),
        ("E403 for bucket", E.PERMISSION_DENIED),
    ],
)
def test_status_codes_in_messages_match_as_whole_numbers(
    message: str, expected: ExternalServiceError
) -> None:
    assert classify(Exception(message)).error_type is expected


def test_a_reliability_error_missing_its_fields_is_rebuilt() -> None:
    class Careless(ReliabilityError):
        def __init__(self) -> None:  # skips ReliabilityError.__init__
            Exception.__init__(self)

    mapped = map_external_error("svc", "op", Careless())
    assert mapped.error_type is E.UNKNOWN_ERROR
    assert (mapped.service_name, mapped.endpoint) == ("svc", "op")
    assert "Careless" in str(mapped)


def test_a_reliability_error_with_an_infinite_delay_is_rebuilt_with_none() -> None:
    err = ReliabilityError(E.RATE_LIMIT, "svc", "op", retry_after=float("inf"))
    mapped = map_external_error("svc", "op", err)
    assert mapped is not err
    assert (mapped.error_type, mapped.retry_after) == (E.RATE_LIMIT, None)


def test_a_hostile_exception_settles_the_half_open_probe(clock: FakeClock) -> None:
    """The issue's stuck breaker: a probe failing with a raising __str__ must settle its permit."""
    from otel_resilience import (
        CircuitBreakerState,
        configure,
        get_circuit_breaker_manager,
        resilient_call,
    )

    configure(services={"hostile": {"CB_FAIL_THRESHOLD": 1, "CB_RESET_SEC": 10}})
    calls = []

    def failing() -> str:
        calls.append(1)
        raise Hostile()

    with pytest.raises(ReliabilityError) as info:
        resilient_call("hostile", "op", failing, max_retries=1)
    assert info.value.error_type is E.UNKNOWN_ERROR
    breaker = get_circuit_breaker_manager().get_breaker("hostile", "op")
    assert breaker.state is CircuitBreakerState.OPEN
    clock.advance(10)
    with pytest.raises(ReliabilityError) as info:  # the half-open probe fails the same way
        resilient_call("hostile", "op", failing, max_retries=1)
    assert info.value.error_type is E.UNKNOWN_ERROR
    assert breaker.state is CircuitBreakerState.OPEN  # settled: re-opened, no probe in flight
    clock.advance(10)
    assert resilient_call("hostile", "op", lambda: "healthy") == "healthy"
    assert breaker.state is CircuitBreakerState.CLOSED
    assert len(calls) == 2
