"""Library exceptions no fault server produces on demand, built directly: the type decides.

Complements the fault-server tests (which cover everything a real request can trigger) with
the rest of each classifier's table, and the cases where a classifier must pass.
"""

from __future__ import annotations

import sys
import warnings

import aiohttp
import botocore.exceptions
import google.auth.exceptions
import grpc
import httpx
import openai
import pytest
import redis
import requests
import urllib3

from otel_resilience import ExternalServiceError
from otel_resilience._classify import CLIENT_CLASSIFIERS, Classification, classifier_for

with warnings.catch_warnings():  # google-api-core asks for grpcio-status, an optional extra
    warnings.simplefilter("ignore", ImportWarning)
    from google.api_core import exceptions as gexc

E = ExternalServiceError
REQUEST = httpx.Request("GET", "http://127.0.0.1/x")

TYPE_CASES = [
    pytest.param(httpx.DecodingError("bad gzip"), E.SERVER_ERROR, id="httpx-decoding"),
    pytest.param(httpx.WriteTimeout("slow upload"), E.TIMEOUT, id="httpx-write-timeout"),
    pytest.param(httpx.PoolTimeout("pool"), E.TIMEOUT, id="httpx-pool-timeout"),
    pytest.param(httpx.ProxyError("proxy down"), E.CONNECTION_ERROR, id="httpx-proxy"),
    pytest.param(
        requests.exceptions.ContentDecodingError("bad gzip"), E.SERVER_ERROR, id="requests-decoding"
    ),
    pytest.param(
        requests.exceptions.TooManyRedirects("loop"), E.BAD_REQUEST, id="requests-redirects"
    ),
    pytest.param(requests.exceptions.SSLError("cert"), E.CONNECTION_ERROR, id="requests-ssl"),
    pytest.param(
        requests.exceptions.ConnectTimeout("connect"), E.TIMEOUT, id="requests-connect-timeout"
    ),
    pytest.param(urllib3.exceptions.DecodeError("bad gzip"), E.SERVER_ERROR, id="urllib3-decode"),
    pytest.param(
        urllib3.exceptions.LocationParseError("http://["), E.BAD_REQUEST, id="urllib3-bad-url"
    ),
    pytest.param(
        urllib3.exceptions.MaxRetryError(None, "/x", reason=None),  # type: ignore[arg-type]
        E.CONNECTION_ERROR,
        id="urllib3-max-retry-without-reason",
    ),
    pytest.param(
        aiohttp.ClientPayloadError("incomplete"), E.CONNECTION_ERROR, id="aiohttp-payload"
    ),
    pytest.param(
        aiohttp.ServerDisconnectedError(), E.CONNECTION_ERROR, id="aiohttp-server-disconnected"
    ),
    pytest.param(
        aiohttp.ConnectionTimeoutError("connect"), E.TIMEOUT, id="aiohttp-connection-timeout"
    ),
    pytest.param(botocore.exceptions.NoRegionError(), E.BAD_REQUEST, id="botocore-no-region"),
    pytest.param(
        botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1"),
        E.TIMEOUT,
        id="botocore-connect-timeout",
    ),
    pytest.param(
        botocore.exceptions.ClientError(
            {"Error": {"Code": "ExpiredTokenException"}, "ResponseMetadata": {}}, "GetItem"
        ),
        E.AUTHENTICATION_ERROR,
        id="botocore-code-without-status",
    ),
    pytest.param(
        openai.APIConnectionError(request=REQUEST), E.CONNECTION_ERROR, id="openai-connection"
    ),
    pytest.param(openai.APITimeoutError(request=REQUEST), E.TIMEOUT, id="openai-timeout"),
    pytest.param(
        google.auth.exceptions.DefaultCredentialsError("no ADC"),
        E.AUTHENTICATION_ERROR,
        id="google-auth-no-credentials",
    ),
    pytest.param(google.auth.exceptions.TimeoutError("slow"), E.TIMEOUT, id="google-auth-timeout"),
    pytest.param(gexc.DeadlineExceeded("late"), E.TIMEOUT, id="google-deadline-exceeded"),
    pytest.param(gexc.ServiceUnavailable("down"), E.SERVER_ERROR, id="google-unavailable"),
    pytest.param(gexc.Unauthenticated("who"), E.AUTHENTICATION_ERROR, id="google-unauthenticated"),
    pytest.param(gexc.PermissionDenied("no"), E.PERMISSION_DENIED, id="google-permission-denied"),
    pytest.param(gexc.InvalidArgument("bad"), E.BAD_REQUEST, id="google-invalid-argument"),
    pytest.param(gexc.MethodNotImplemented("no"), E.BAD_REQUEST, id="google-unimplemented"),
    pytest.param(gexc.Cancelled("stop"), E.UNKNOWN_ERROR, id="google-cancelled"),
    pytest.param(
        gexc.GoogleAPICallError("no code at all"), E.UNKNOWN_ERROR, id="google-without-code"
    ),
    pytest.param(redis.exceptions.DataError("bad value"), E.BAD_REQUEST, id="redis-data"),
    pytest.param(redis.exceptions.TimeoutError("slow"), E.TIMEOUT, id="redis-timeout"),
    pytest.param(
        redis.exceptions.AuthorizationError("acl"), E.PERMISSION_DENIED, id="redis-authorization"
    ),
    pytest.param(
        redis.exceptions.MaxConnectionsError("pool"), E.CONNECTION_ERROR, id="redis-max-connections"
    ),
]


@pytest.mark.parametrize(("error", "expected"), TYPE_CASES)
def test_library_exception_type_maps_to_its_error_type(error: BaseException, expected):
    classifier = classifier_for(error)

    assert classifier is not None
    assert classifier(error) == Classification(expected)


PASS_CASES = [
    pytest.param("httpx", httpx.ResponseNotRead(), id="httpx-misuse"),
    pytest.param("requests", requests.exceptions.StreamConsumedError(), id="requests-misuse"),
    pytest.param("urllib3", urllib3.exceptions.TimeoutStateError("reused"), id="urllib3-misuse"),
    pytest.param("aiohttp", aiohttp.WSMessageTypeError("text"), id="aiohttp-misuse"),
    pytest.param("botocore", botocore.exceptions.DataNotFoundError(data_path="x"), id="botocore"),
    pytest.param(
        "botocore",
        botocore.exceptions.ClientError.__new__(botocore.exceptions.ClientError),
        id="botocore-client-error-without-response",
    ),
    pytest.param("openai", openai.OpenAIError("api_key must be set"), id="openai-base"),
    pytest.param("grpc", grpc.RpcError(), id="grpc-rpc-error-without-code"),
    pytest.param("redis", redis.exceptions.LockError("not owned"), id="redis-lock"),
]


@pytest.mark.parametrize(("library", "error"), PASS_CASES)
def test_classifier_passes_on_exceptions_it_has_no_evidence_for(library: str, error):
    assert CLIENT_CLASSIFIERS[library](error) is None


def test_a_library_that_was_never_imported_is_never_matched(monkeypatch: pytest.MonkeyPatch):
    # the classifier reads classes from sys.modules; without the module nothing matches
    monkeypatch.delitem(sys.modules, "httpx")

    assert CLIENT_CLASSIFIERS["httpx"](httpx.ReadTimeout("slow")) is None


def test_grpc_status_details_are_ignored_without_googleapis_protos(
    monkeypatch: pytest.MonkeyPatch,
):
    from otel_resilience._classify._rpc import metadata_retry_after

    monkeypatch.setitem(sys.modules, "google.rpc.status_pb2", None)  # import fails

    assert metadata_retry_after([("grpc-status-details-bin", b"\x08\x08")]) is None
    assert metadata_retry_after([("retry-after", "4")]) == 4.0
    assert metadata_retry_after(None) is None


def _rpc_error(code_name: str, metadata: object) -> BaseException:
    import grpc

    class Rpc(grpc.RpcError):
        def code(self) -> object:
            return getattr(grpc.StatusCode, code_name)

        def details(self) -> str:
            return "over quota"

        def trailing_metadata(self) -> object:
            return metadata

    return Rpc()


def test_a_malformed_grpc_status_details_blob_keeps_the_status_code() -> None:
    from otel_resilience import ExternalServiceError
    from support import classify

    metadata = [("grpc-status-details-bin", b"\xff\xfe not a protobuf")]
    found = classify(_rpc_error("RESOURCE_EXHAUSTED", metadata))
    assert found.error_type is ExternalServiceError.RATE_LIMIT
    assert found.retry_after is None


def test_endless_grpc_trailing_metadata_is_read_bounded() -> None:
    import itertools

    from otel_resilience import ExternalServiceError
    from support import classify

    endless = ((f"k{i}", "v") for i in itertools.count())
    found = classify(_rpc_error("UNAVAILABLE", endless))  # used to loop forever
    assert found.error_type is ExternalServiceError.SERVER_ERROR


def test_google_retry_errors_caused_by_each_other_are_a_timeout() -> None:
    from support import classify

    first = gexc.RetryError("first", None)
    second = gexc.RetryError("second", first)
    first._cause = second  # a cycle: no cause says more than "retries ran out"
    assert classify(first).error_type is ExternalServiceError.TIMEOUT


def test_nested_google_retry_errors_are_judged_by_the_innermost_cause() -> None:
    from support import classify

    inner = gexc.RetryError("inner", gexc.TooManyRequests("slow down"))
    assert classify(gexc.RetryError("outer", inner)).error_type is ExternalServiceError.RATE_LIMIT


def test_a_grpc_status_code_without_an_error_type_is_no_evidence() -> None:
    assert CLIENT_CLASSIFIERS["grpc"](_rpc_error("OK", [])) is None


def test_grpc_retry_hints_skip_what_they_cannot_read() -> None:
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    from otel_resilience._classify._rpc import metadata_retry_after, retry_info_delay

    class RetryInfo:  # a parsed detail whose delay is not a protobuf Duration
        retry_delay = "soon"

    assert retry_info_delay([object(), RetryInfo()]) is None
    other = any_pb2.Any()
    other.Pack(error_details_pb2.ErrorInfo(reason="QUOTA"))
    blob = status_pb2.Status(code=8, details=[other]).SerializeToString()
    assert metadata_retry_after([("grpc-status-details-bin", blob)]) is None  # no RetryInfo
    assert metadata_retry_after([(7, "x"), ("retry-after", "2")]) == 2.0  # a non-str key


def test_a_grpc_exception_that_is_not_an_rpc_error_is_no_evidence() -> None:
    assert CLIENT_CLASSIFIERS["grpc"](grpc.FutureTimeoutError()) is None
