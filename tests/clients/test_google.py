"""google-api-core and google-auth errors built from real responses of the fault servers."""

from __future__ import annotations

import warnings

import google.auth.exceptions
import google.auth.transport.requests
import grpc
import pytest
import requests

from faultserver import GRPC_METHOD, FaultServer, GrpcFaultServer

with warnings.catch_warnings():  # google-api-core asks for grpcio-status, an optional extra
    warnings.simplefilter("ignore", ImportWarning)
    from google.api_core import exceptions as gexc

from otel_resilience._classify import CLIENT_CLASSIFIERS

from ._cases import TIMEOUT_SEC, E, Fault, assert_classified, expect_hits

GOOGLE_HTTP_FAULTS = [
    pytest.param(Fault("429?retry_after=2", E.RATE_LIMIT, (2, 2)), id="429-retry-after-seconds"),
    pytest.param(
        Fault("429-date?retry_after=30", E.RATE_LIMIT, (27, 30)), id="429-retry-after-date"
    ),
    pytest.param(Fault("503", E.SERVER_ERROR), id="503-service-unavailable"),
    pytest.param(Fault("500", E.SERVER_ERROR), id="500-internal"),
    pytest.param(Fault("502", E.SERVER_ERROR), id="502-bad-gateway"),
    pytest.param(Fault("504", E.TIMEOUT), id="504-gateway-timeout"),
    pytest.param(Fault("401", E.AUTHENTICATION_ERROR), id="401-unauthorized"),
    pytest.param(Fault("403", E.PERMISSION_DENIED), id="403-forbidden"),
    pytest.param(Fault("404", E.NOT_FOUND), id="404-not-found"),
    pytest.param(Fault("400", E.BAD_REQUEST), id="400-bad-request"),
    pytest.param(Fault("409", E.BAD_REQUEST), id="409-conflict"),
]


@pytest.mark.parametrize("fault", GOOGLE_HTTP_FAULTS)
def test_google_http_error_is_classified(fault_server: FaultServer, fault: Fault):
    response = requests.get(f"{fault_server.url}/{fault.path}", timeout=TIMEOUT_SEC)
    error = gexc.from_http_response(response)

    assert isinstance(error, gexc.GoogleAPICallError)
    assert_classified(error, "google", fault)
    expect_hits(fault_server, fault)


GOOGLE_GRPC_FAULTS = [
    pytest.param("DEADLINE_EXCEEDED", Fault("-", E.TIMEOUT), id="deadline-exceeded"),
    pytest.param("UNAVAILABLE", Fault("-", E.SERVER_ERROR), id="unavailable"),
    pytest.param(
        "RESOURCE_EXHAUSTED;retry_info=1.5",
        Fault("-", E.RATE_LIMIT, (1.5, 1.5)),
        id="resource-exhausted-retry-info",
    ),
    pytest.param("UNAUTHENTICATED", Fault("-", E.AUTHENTICATION_ERROR), id="unauthenticated"),
    pytest.param("PERMISSION_DENIED", Fault("-", E.PERMISSION_DENIED), id="permission-denied"),
    pytest.param("NOT_FOUND", Fault("-", E.NOT_FOUND), id="not-found"),
    pytest.param("INVALID_ARGUMENT", Fault("-", E.BAD_REQUEST), id="invalid-argument"),
    pytest.param("FAILED_PRECONDITION", Fault("-", E.BAD_REQUEST), id="failed-precondition"),
    pytest.param("INTERNAL", Fault("-", E.SERVER_ERROR), id="internal"),
    pytest.param("ABORTED", Fault("-", E.SERVER_ERROR), id="aborted"),
]


@pytest.mark.filterwarnings("ignore:Please install grpcio-status:ImportWarning")
@pytest.mark.parametrize(("request_bytes", "fault"), GOOGLE_GRPC_FAULTS)
def test_google_error_from_grpc_is_classified(
    grpc_server: GrpcFaultServer, request_bytes: str, fault: Fault
):
    with grpc.insecure_channel(grpc_server.target) as channel:
        call = channel.unary_unary(GRPC_METHOD)
        with pytest.raises(grpc.RpcError) as caught:
            call(request_bytes.encode(), timeout=2)
    error = gexc.from_grpc_error(caught.value)

    assert isinstance(error, gexc.GoogleAPICallError)
    assert_classified(error, "google", fault)


def test_google_retry_info_detail_gives_the_retry_delay():
    from google.protobuf import duration_pb2
    from google.rpc import error_details_pb2

    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=2, nanos=5 * 10**8)
    )
    error = gexc.ResourceExhausted("quota", details=[info])

    assert_classified(error, "google", Fault("-", E.RATE_LIMIT, (2.5, 2.5)))


def test_google_retry_error_is_classified_by_its_last_cause(fault_server: FaultServer):
    response = requests.get(f"{fault_server.url}/503", timeout=TIMEOUT_SEC)
    error = gexc.RetryError("Timeout of 1.0s exceeded", cause=gexc.from_http_response(response))

    assert_classified(error, "google", Fault("-", E.SERVER_ERROR))


def test_a_retry_error_cause_goes_through_the_registry_of_the_call():
    from otel_resilience._classify import Classification, Classifiers
    from support import classify

    class QuotaError(Exception):  # the application's own error, retried by google's retry
        pass

    registry = Classifiers()
    registry.register(
        lambda exc: Classification(E.RATE_LIMIT, 3.0) if isinstance(exc, QuotaError) else None
    )
    error = gexc.RetryError("Timeout of 1.0s exceeded", cause=QuotaError("over"))

    assert classify(error, registry) == Classification(E.RATE_LIMIT, 3.0)
    assert classify(error) == Classification(E.UNKNOWN_ERROR)  # not registered by default


def test_a_retry_error_of_another_library_s_cause_is_classified_through_the_whole_chain():
    import httpx

    from otel_resilience._classify import Classification
    from support import classify

    error = gexc.RetryError("Timeout of 1.0s exceeded", cause=httpx.ReadTimeout("slow"))

    assert classify(error) == Classification(E.TIMEOUT)  # httpx's classifier decided
    # google's classifier on its own falls back to the built-in rules for a foreign cause
    assert CLIENT_CLASSIFIERS["google"](
        gexc.RetryError("x", cause=ConnectionResetError("reset"))
    ) == Classification(E.CONNECTION_ERROR)


def test_google_retry_error_without_a_cause_is_a_timeout():
    assert_classified(
        gexc.RetryError("Timeout of 1.0s exceeded", cause=None), "google", Fault("-", E.TIMEOUT)
    )


def test_google_auth_transport_failure_is_a_connection_error(fault_server: FaultServer):
    transport = google.auth.transport.requests.Request()
    with pytest.raises(google.auth.exceptions.TransportError) as caught:
        transport(url=f"{fault_server.refused_url}/token", method="GET", timeout=TIMEOUT_SEC)

    assert_classified(caught.value, "google", Fault("-", E.CONNECTION_ERROR))


@pytest.mark.parametrize(
    ("retryable", "expected"),
    [
        pytest.param(False, E.AUTHENTICATION_ERROR, id="rejected"),
        pytest.param(True, E.SERVER_ERROR, id="server-failed-retryable"),
    ],
)
def test_google_auth_refresh_error_is_authentication_unless_retryable(retryable: bool, expected):
    error = google.auth.exceptions.RefreshError("invalid_grant", retryable=retryable)

    assert_classified(error, "google", Fault("-", expected))


def test_other_google_exceptions_are_left_to_the_generic_rules():
    from google.protobuf.message import DecodeError

    assert CLIENT_CLASSIFIERS["google"](DecodeError("truncated")) is None
