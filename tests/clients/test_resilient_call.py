"""The whole resilient_call path with real client libraries against the fault servers.

Backoff sleeps go to the fake clock (``clock`` fixture): ``clock.sleeps`` is every delay the
library chose, so Retry-After is checked without waiting for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import botocore.config
import botocore.exceptions
import botocore.session
import grpc
import grpc.aio
import httpx
import openai
import pytest
import redis
import requests
from redis.backoff import NoBackoff

from faultserver import GRPC_METHOD, LOCALHOST, FaultServer, GrpcFaultServer, RespFaultServer
from otel_resilience import (
    CallTimeoutError,
    Classification,
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    configure,
    get_circuit_breaker_manager,
    register_classifier,
    resilient_call,
    resilient_call_async,
)
from support import FakeClock

E = ExternalServiceError
CLIENT_TIMEOUT = 5.0  # generous: a loaded machine must not turn a 503 into a timeout
SLOW_TIMEOUT = 0.25  # for the slow modes, where the timeout is the point

# --- one "GET this fault path" per client library --------------------------------------------
# each takes a base URL and a fault path with its query ("flaky?fail=2"), returns a JSON dict


def _httpx(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    with httpx.Client(timeout=timeout) as client:
        response = client.get(f"{base}/{path}")
        response.raise_for_status()
        return response.json()


def _requests(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    with requests.Session() as session:
        response = session.get(f"{base}/{path}", timeout=timeout)
        response.raise_for_status()
        return response.json()


def _segments(path: str) -> str:
    base, _, query = path.partition("?")
    return "/".join([base, *query.split("&")]) if query else base


def _openai(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    base_url = f"{base}/{_segments(path)}"
    with openai.OpenAI(
        base_url=base_url, api_key="sk-fault", max_retries=0, timeout=timeout
    ) as client:
        response = client.models.list()
        return {"ok": True, "data": response.data}


_S3_CLIENTS: dict[tuple[str, float], Any] = {}


def _botocore(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    bucket, _, rest = _segments(path).partition("/")
    if (base, timeout) not in _S3_CLIENTS:  # a client costs ~0.2 s: one per endpoint and timeout
        _S3_CLIENTS[base, timeout] = botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=base,
            aws_access_key_id="AKIAFAULT",
            aws_secret_access_key="fault",
            config=botocore.config.Config(
                retries={"total_max_attempts": 1},
                connect_timeout=timeout,
                read_timeout=timeout,
                s3={"addressing_style": "path"},
            ),
        )
    body = _S3_CLIENTS[base, timeout].get_object(Bucket=bucket, Key=rest or "k")["Body"].read()
    return {"ok": True, "body": body}


@pytest.fixture(autouse=True, scope="module")
def _close_s3_clients() -> Iterator[None]:
    yield
    for client in _S3_CLIENTS.values():
        client.close()
    _S3_CLIENTS.clear()


SYNC_CLIENTS = [
    pytest.param(_httpx, id="httpx"),
    pytest.param(_requests, id="requests"),
    pytest.param(_openai, id="openai"),
    pytest.param(_botocore, id="botocore"),
]


async def _httpx_async(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.get(f"{base}/{path}")
        response.raise_for_status()
        return response.json()


async def _aiohttp(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout, raise_for_status=True) as session,
        session.get(f"{base}/{path}") as response,
    ):
        return await response.json()


async def _openai_async(base: str, path: str, timeout: float = CLIENT_TIMEOUT) -> Any:
    base_url = f"{base}/{_segments(path)}"
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="sk-fault", max_retries=0, timeout=timeout
    ) as client:
        response = await client.models.list()
        return {"ok": True, "data": response.data}


ASYNC_CLIENTS = [
    pytest.param(_httpx_async, id="httpx-async"),
    pytest.param(_aiohttp, id="aiohttp"),
    pytest.param(_openai_async, id="openai-async"),
]

SyncClient = Callable[[str, str], Any]
AsyncClient = Callable[[str, str], Awaitable[Any]]


def _failures(service: str, endpoint: str) -> int:
    return get_circuit_breaker_manager().get_breaker(service, endpoint).status().failure_count


# --- sync ------------------------------------------------------------------------------------


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_two_503s_then_success_takes_three_attempts(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    result = resilient_call(
        "svc", "flaky", lambda: get(fault_server.url, "flaky?fail=2&status=503")
    )

    assert result["ok"] is True
    assert fault_server.count("/flaky") == 3
    assert len(clock.sleeps) == 2
    assert _failures("svc", "flaky") == 0  # the success reset the breaker's count


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_401_fails_after_one_attempt_without_counting_against_the_breaker(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("svc", "auth", lambda: get(fault_server.url, "401/aws/InvalidAccessKeyId"))

    assert caught.value.error_type is E.AUTHENTICATION_ERROR
    assert caught.value.attempts == 1
    assert caught.value.__cause__ is not None
    assert fault_server.count("/401") == 1
    assert clock.sleeps == []
    assert _failures("svc", "auth") == 0


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_404_is_not_retried(fault_server: FaultServer, clock: FakeClock, get: SyncClient):
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("svc", "missing", lambda: get(fault_server.url, "404/aws/NoSuchKey"))

    assert caught.value.error_type is E.NOT_FOUND
    assert fault_server.count("/404") == 1


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_429_retry_after_seconds_is_the_backoff(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    path = "flaky?fail=1&status=429&retry_after=7"

    result = resilient_call("svc", "limited", lambda: get(fault_server.url, path))

    assert result["ok"] is True
    assert fault_server.count("/flaky") == 2
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize("get", [SYNC_CLIENTS[0], SYNC_CLIENTS[1]])
def test_429_retry_after_http_date_is_the_backoff(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        resilient_call(
            "svc",
            "limited",
            lambda: get(fault_server.url, "429-date?retry_after=30"),
            max_retries=2,
        )

    assert caught.value.error_type is E.RATE_LIMIT
    assert fault_server.count("/429-date") == 2
    assert len(clock.sleeps) == 1
    assert 27 <= clock.sleeps[0] <= 30
    assert caught.value.retry_after is not None
    assert 27 <= caught.value.retry_after <= 30


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_connection_reset_is_retried_until_attempts_run_out(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("svc", "reset", lambda: get(fault_server.url, "reset"), max_retries=3)

    assert caught.value.error_type is E.CONNECTION_ERROR
    assert caught.value.attempts == 3
    assert fault_server.count("/reset") == 3
    assert len(clock.sleeps) == 2
    assert _failures("svc", "reset") == 3


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_refused_connection_is_retried(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("svc", "refused", lambda: get(fault_server.refused_url, "ok"), max_retries=2)

    assert caught.value.error_type is E.CONNECTION_ERROR
    assert caught.value.attempts == 2
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize("get", SYNC_CLIENTS)
def test_client_read_timeout_is_a_retried_timeout(
    fault_server: FaultServer, clock: FakeClock, get: SyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        resilient_call(
            "svc",
            "slow",
            lambda: get(fault_server.url, "slow?delay=5", SLOW_TIMEOUT),
            max_retries=2,
        )

    assert caught.value.error_type is E.TIMEOUT
    assert caught.value.attempts == 2
    assert fault_server.settled_count("/slow", 2) == 2


def test_attempt_timeout_of_the_library_cuts_a_slow_response(fault_server: FaultServer):
    # real clock: the main-thread attempt timeout reads the clock the ``clock`` fixture fakes
    configure(ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1))

    def get_without_client_timeout() -> Any:
        with httpx.Client(timeout=None) as client:
            return client.get(f"{fault_server.url}/slow?delay=5").json()

    with pytest.raises(CallTimeoutError) as caught:
        resilient_call("svc", "slow", get_without_client_timeout, timeout_sec=0.2, max_retries=2)

    assert caught.value.error_type is E.TIMEOUT
    assert caught.value.attempts == 2
    assert fault_server.settled_count("/slow", 2) == 2


# --- async -----------------------------------------------------------------------------------


@pytest.mark.parametrize("get", ASYNC_CLIENTS)
async def test_async_two_503s_then_success_takes_three_attempts(
    fault_server: FaultServer, clock: FakeClock, get: AsyncClient
):
    result = await resilient_call_async(
        "svc", "flaky", lambda: get(fault_server.url, "flaky?fail=2&status=503")
    )

    assert result["ok"] is True
    assert fault_server.count("/flaky") == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("get", ASYNC_CLIENTS)
async def test_async_401_fails_after_one_attempt(
    fault_server: FaultServer, clock: FakeClock, get: AsyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        await resilient_call_async("svc", "auth", lambda: get(fault_server.url, "401"))

    assert caught.value.error_type is E.AUTHENTICATION_ERROR
    assert caught.value.attempts == 1
    assert fault_server.count("/401") == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("get", ASYNC_CLIENTS)
async def test_async_429_retry_after_is_the_backoff(
    fault_server: FaultServer, clock: FakeClock, get: AsyncClient
):
    path = "flaky?fail=1&status=429&retry_after=7"

    result = await resilient_call_async("svc", "limited", lambda: get(fault_server.url, path))

    assert result["ok"] is True
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize("get", ASYNC_CLIENTS)
async def test_async_connection_reset_is_retried_until_attempts_run_out(
    fault_server: FaultServer, clock: FakeClock, get: AsyncClient
):
    with pytest.raises(ReliabilityError) as caught:
        await resilient_call_async(
            "svc", "reset", lambda: get(fault_server.url, "reset"), max_retries=3
        )

    assert caught.value.error_type is E.CONNECTION_ERROR
    assert caught.value.attempts == 3
    assert fault_server.count("/reset") == 3


async def test_async_attempt_timeout_cancels_a_slow_response(
    fault_server: FaultServer, clock: FakeClock
):
    async def get_without_client_timeout() -> Any:
        async with httpx.AsyncClient(timeout=None) as client:
            return (await client.get(f"{fault_server.url}/slow?delay=5")).json()

    with pytest.raises(CallTimeoutError) as caught:
        await resilient_call_async(
            "svc", "slow", get_without_client_timeout, timeout_sec=0.2, max_retries=2
        )

    assert caught.value.attempts == 2
    assert fault_server.settled_count("/slow", 2) == 2


# --- gRPC and redis ----------------------------------------------------------------------------

OPTIONS = [("grpc.enable_http_proxy", 0)]


def test_grpc_resource_exhausted_retry_info_is_the_backoff(
    grpc_server: GrpcFaultServer, clock: FakeClock
):
    def call() -> bytes:
        with grpc.insecure_channel(grpc_server.target, options=OPTIONS) as channel:
            return channel.unary_unary(GRPC_METHOD)(b"RESOURCE_EXHAUSTED;retry_info=1.5", timeout=5)

    with pytest.raises(ReliabilityError) as caught:
        resilient_call("grpc-svc", "call", call, max_retries=3)

    assert caught.value.error_type is E.RATE_LIMIT
    assert caught.value.attempts == 3
    assert grpc_server.count("RESOURCE_EXHAUSTED") == 3
    assert clock.sleeps == [1.5, 1.5]
    assert isinstance(caught.value.__cause__, grpc.RpcError)


async def test_grpc_aio_unauthenticated_is_not_retried(
    grpc_server: GrpcFaultServer, clock: FakeClock
):
    async def call() -> bytes:
        async with grpc.aio.insecure_channel(grpc_server.target, options=OPTIONS) as channel:
            return await channel.unary_unary(GRPC_METHOD)(b"UNAUTHENTICATED", timeout=5)

    with pytest.raises(ReliabilityError) as caught:
        await resilient_call_async("grpc-svc", "call", call, max_retries=3)

    assert caught.value.error_type is E.AUTHENTICATION_ERROR
    assert caught.value.attempts == 1
    assert grpc_server.count("UNAUTHENTICATED") == 1


@pytest.mark.parametrize(
    ("key", "expected", "attempts"),
    [
        pytest.param("loading", E.SERVER_ERROR, 3, id="LOADING-retried"),
        pytest.param("wrongpass", E.AUTHENTICATION_ERROR, 1, id="WRONGPASS-not-retried"),
        pytest.param("wrongtype", E.BAD_REQUEST, 1, id="WRONGTYPE-not-retried"),
    ],
)
def test_redis_errors_are_retried_by_their_meaning(
    resp_server: RespFaultServer, clock: FakeClock, key: str, expected, attempts: int
):
    client = redis.Redis(
        host=LOCALHOST,
        port=resp_server.port,
        socket_timeout=CLIENT_TIMEOUT,
        retry=redis.retry.Retry(NoBackoff(), 0),
    )
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("redis", "get", lambda: client.get(key), max_retries=3)
    client.close()

    assert caught.value.error_type is expected
    assert caught.value.attempts == attempts
    assert resp_server.count(key) == attempts


def test_a_registered_classifier_overrides_the_library_classifier(
    fault_server: FaultServer, clock: FakeClock
):
    def conflicts_are_transient(exc: BaseException) -> Classification | None:
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 409:
            return Classification(E.SERVER_ERROR, retry_after=0.5)
        return None

    remove = register_classifier(conflicts_are_transient)
    try:
        result = resilient_call(
            "svc", "conflict", lambda: _httpx(fault_server.url, "flaky?fail=1&status=409")
        )
    finally:
        remove()

    assert result["ok"] is True
    assert fault_server.count("/flaky") == 2
    assert clock.sleeps == [0.5]
