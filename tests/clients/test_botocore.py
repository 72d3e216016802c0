"""A real botocore S3 client against the fault server: AWS error codes and transport faults."""

from __future__ import annotations

from collections.abc import Iterator

import botocore.config
import botocore.exceptions
import botocore.session
import pytest

from faultserver import FaultServer

from ._cases import SLOW_TIMEOUT_SEC, TIMEOUT_SEC, E, Fault, assert_classified, expect_hits


def _s3(endpoint_url: str, timeout: float = TIMEOUT_SEC):
    config = botocore.config.Config(
        retries={"total_max_attempts": 1},  # botocore's own retries off: one request per call
        connect_timeout=timeout,
        read_timeout=timeout,
        s3={"addressing_style": "path"},
    )
    return botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="AKIAFAULT",
        aws_secret_access_key="fault",
        config=config,
    )


@pytest.fixture(scope="module")
def s3(_http_fault_server: FaultServer) -> Iterator[object]:
    client = _s3(_http_fault_server.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def s3_impatient(_http_fault_server: FaultServer) -> Iterator[object]:
    """A client whose read timeout is short, for the slow modes."""
    client = _s3(_http_fault_server.url, SLOW_TIMEOUT_SEC)
    yield client
    client.close()


# (bucket, key): the bucket is the fault mode, "aws/<Code>" in the key the error code in the body
AWS_FAULTS = [
    pytest.param("503", "aws/SlowDown", Fault("503", E.RATE_LIMIT), id="SlowDown-503"),
    pytest.param("400", "aws/ThrottlingException", Fault("400", E.RATE_LIMIT), id="Throttling"),
    pytest.param(
        "429",
        "retry_after=3/aws/TooManyRequestsException",
        Fault("429", E.RATE_LIMIT, (3, 3)),
        id="TooManyRequests-retry-after",
    ),
    pytest.param("400", "aws/RequestLimitExceeded", Fault("400", E.RATE_LIMIT), id="RequestLimit"),
    pytest.param("403", "aws/AccessDenied", Fault("403", E.PERMISSION_DENIED), id="AccessDenied"),
    pytest.param(
        "403", "aws/InvalidAccessKeyId", Fault("403", E.AUTHENTICATION_ERROR), id="InvalidAccessKey"
    ),
    pytest.param(
        "403",
        "aws/SignatureDoesNotMatch",
        Fault("403", E.AUTHENTICATION_ERROR),
        id="SignatureDoesNotMatch",
    ),
    pytest.param(
        "400", "aws/ExpiredToken", Fault("400", E.AUTHENTICATION_ERROR), id="ExpiredToken"
    ),
    pytest.param("404", "aws/NoSuchKey", Fault("404", E.NOT_FOUND), id="NoSuchKey"),
    pytest.param("404", "aws/NoSuchBucket", Fault("404", E.NOT_FOUND), id="NoSuchBucket"),
    pytest.param("404", "plain", Fault("404", E.NOT_FOUND), id="404-without-code"),
    pytest.param("400", "aws/RequestTimeout", Fault("400", E.TIMEOUT), id="RequestTimeout"),
    pytest.param("500", "aws/InternalError", Fault("500", E.SERVER_ERROR), id="InternalError"),
    pytest.param(
        "503", "aws/ServiceUnavailable", Fault("503", E.SERVER_ERROR), id="ServiceUnavailable"
    ),
    pytest.param("409", "aws/SomethingNew", Fault("409", E.BAD_REQUEST), id="unknown-code-409"),
    pytest.param("502", "aws/SomethingNew", Fault("502", E.SERVER_ERROR), id="unknown-code-502"),
    pytest.param("400", "aws/InvalidArgument", Fault("400", E.BAD_REQUEST), id="InvalidArgument"),
]


@pytest.mark.parametrize(("bucket", "key", "fault"), AWS_FAULTS)
def test_botocore_client_error_is_classified_by_code_then_status(
    fault_server: FaultServer, s3, bucket: str, key: str, fault: Fault
):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key=key)

    assert_classified(caught.value, "botocore", fault)
    expect_hits(fault_server, fault)


TRANSPORT_FAULTS = [
    pytest.param(Fault("slow", E.TIMEOUT), id="read-timeout"),
    pytest.param(Fault("malformed", E.CONNECTION_ERROR), id="malformed-status-line"),
    pytest.param(Fault("close", E.CONNECTION_ERROR), id="closed-without-response"),
]


@pytest.mark.parametrize("fault", TRANSPORT_FAULTS)
def test_botocore_transport_fault_is_classified(
    fault_server: FaultServer, s3_impatient, fault: Fault
):
    with pytest.raises(botocore.exceptions.BotoCoreError) as caught:
        s3_impatient.get_object(Bucket=fault.path, Key="k")

    assert_classified(caught.value, "botocore", fault)
    expect_hits(fault_server, fault)


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        pytest.param("reset", E.CONNECTION_ERROR, id="reset-mid-body"),
        pytest.param("slow-body", E.TIMEOUT, id="slow-body-read-timeout"),
    ],
)
def test_botocore_streaming_body_fault_is_classified(
    fault_server: FaultServer, s3_impatient, bucket: str, expected
):
    body = s3_impatient.get_object(Bucket=bucket, Key="k")["Body"]
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the library picks the type
        body.read()

    assert_classified(caught.value, "botocore", Fault(bucket, expected))
    expect_hits(fault_server, Fault(bucket, expected))


def test_botocore_refused_connection_is_a_connection_error(fault_server: FaultServer):
    client = _s3(fault_server.refused_url)
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        client.get_object(Bucket="b", Key="k")
    client.close()

    assert_classified(caught.value, "botocore", Fault("refuse", E.CONNECTION_ERROR))


def test_botocore_invalid_parameters_are_a_bad_request(s3):
    with pytest.raises(botocore.exceptions.ParamValidationError) as caught:
        s3.get_object(Bucket="b")

    assert_classified(caught.value, "botocore", Fault("-", E.BAD_REQUEST))


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(botocore.exceptions.NoCredentialsError(), id="no-credentials"),
        pytest.param(
            botocore.exceptions.PartialCredentialsError(provider="env", cred_var="secret"),
            id="partial-credentials",
        ),
    ],
)
def test_botocore_missing_credentials_are_an_authentication_error(error: Exception):
    # raised before any request is signed; no server can produce them
    assert_classified(error, "botocore", Fault("-", E.AUTHENTICATION_ERROR))
