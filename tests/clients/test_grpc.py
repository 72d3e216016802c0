"""grpcio (sync and asyncio) against the gRPC fault server: status codes and retry hints."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from faultserver import GRPC_METHOD, GrpcFaultServer

from ._cases import E, Fault, assert_classified, timeout_for

# (request, expected): the request names the status the server aborts with
GRPC_FAULTS = [
    pytest.param("DEADLINE_EXCEEDED", Fault("-", E.TIMEOUT), id="deadline-exceeded-by-server"),
    pytest.param("slow:5", Fault("-", E.TIMEOUT), id="slow-client-deadline"),
    pytest.param("UNAVAILABLE", Fault("-", E.SERVER_ERROR), id="unavailable-from-server"),
    pytest.param(
        "UNAVAILABLE;retry_after=2", Fault("-", E.SERVER_ERROR, (2, 2)), id="retry-after-metadata"
    ),
    pytest.param("RESOURCE_EXHAUSTED", Fault("-", E.RATE_LIMIT), id="resource-exhausted"),
    pytest.param(
        "RESOURCE_EXHAUSTED;retry_info=1.5",
        Fault("-", E.RATE_LIMIT, (1.5, 1.5)),
        id="resource-exhausted-retry-info",
    ),
    pytest.param(
        "RESOURCE_EXHAUSTED;pushback_ms=300",
        Fault("-", E.RATE_LIMIT, (0.3, 0.3)),
        id="resource-exhausted-pushback",
    ),
    pytest.param("UNAUTHENTICATED", Fault("-", E.AUTHENTICATION_ERROR), id="unauthenticated"),
    pytest.param("PERMISSION_DENIED", Fault("-", E.PERMISSION_DENIED), id="permission-denied"),
    pytest.param("NOT_FOUND", Fault("-", E.NOT_FOUND), id="not-found"),
    pytest.param("INVALID_ARGUMENT", Fault("-", E.BAD_REQUEST), id="invalid-argument"),
    pytest.param("FAILED_PRECONDITION", Fault("-", E.BAD_REQUEST), id="failed-precondition"),
    pytest.param("OUT_OF_RANGE", Fault("-", E.BAD_REQUEST), id="out-of-range"),
    pytest.param("ALREADY_EXISTS", Fault("-", E.BAD_REQUEST), id="already-exists"),
    pytest.param("UNIMPLEMENTED", Fault("-", E.BAD_REQUEST), id="unimplemented"),
    pytest.param("INTERNAL", Fault("-", E.SERVER_ERROR), id="internal"),
    pytest.param("UNKNOWN", Fault("-", E.SERVER_ERROR), id="unknown"),
    pytest.param("DATA_LOSS", Fault("-", E.SERVER_ERROR), id="data-loss"),
    pytest.param("ABORTED", Fault("-", E.SERVER_ERROR), id="aborted"),
    pytest.param("CANCELLED", Fault("-", E.UNKNOWN_ERROR), id="cancelled"),
]

OPTIONS = [("grpc.enable_http_proxy", 0)]


def _mode(request: str) -> str:
    return request.split(";")[0]


@pytest.mark.parametrize(("request_text", "fault"), GRPC_FAULTS)
def test_grpc_status_is_classified(grpc_server: GrpcFaultServer, request_text: str, fault: Fault):
    with grpc.insecure_channel(grpc_server.target, options=OPTIONS) as channel:
        call = channel.unary_unary(GRPC_METHOD)
        with pytest.raises(grpc.RpcError) as caught:
            call(request_text.encode(), timeout=timeout_for(request_text))

    assert_classified(caught.value, "grpc", fault)
    assert grpc_server.count(_mode(request_text)) == 1


@pytest.mark.parametrize(("request_text", "fault"), GRPC_FAULTS)
async def test_grpc_aio_status_is_classified(
    grpc_server: GrpcFaultServer, request_text: str, fault: Fault
):
    async with grpc.aio.insecure_channel(grpc_server.target, options=OPTIONS) as channel:
        call = channel.unary_unary(GRPC_METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request_text.encode(), timeout=timeout_for(request_text))

    assert_classified(caught.value, "grpc", fault)
    assert grpc_server.count(_mode(request_text)) == 1


def test_grpc_refused_connection_is_a_connection_error(grpc_server: GrpcFaultServer):
    with (
        grpc.insecure_channel(grpc_server.refused_target, options=OPTIONS) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(GRPC_METHOD)(b"OK", timeout=2)

    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert_classified(caught.value, "grpc", Fault("-", E.CONNECTION_ERROR))


async def test_grpc_aio_refused_connection_is_a_connection_error(grpc_server: GrpcFaultServer):
    async with grpc.aio.insecure_channel(grpc_server.refused_target, options=OPTIONS) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(GRPC_METHOD)(b"OK", timeout=2)

    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert_classified(caught.value, "grpc", Fault("-", E.CONNECTION_ERROR))


def test_grpc_unknown_method_is_a_bad_request(grpc_server: GrpcFaultServer):
    with (
        grpc.insecure_channel(grpc_server.target, options=OPTIONS) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary("/fault.Fault/NoSuchMethod")(b"OK", timeout=5)

    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert_classified(caught.value, "grpc", Fault("-", E.BAD_REQUEST))


def test_grpc_successful_call_reaches_the_server(grpc_server: GrpcFaultServer):
    with grpc.insecure_channel(grpc_server.target, options=OPTIONS) as channel:
        assert channel.unary_unary(GRPC_METHOD)(b"OK", timeout=5) == b"ok"

    assert grpc_server.count("OK") == 1


def test_every_grpc_status_code_but_ok_has_an_error_type():
    from otel_resilience._classify._rpc import GRPC_CODES as _GRPC_CODES

    codes = {code.name for code in grpc.StatusCode} - {"OK"}

    assert set(_GRPC_CODES) == codes
