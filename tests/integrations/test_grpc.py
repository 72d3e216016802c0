"""otel_resilience.grpc: real grpcio channels (sync and asyncio) against a gRPC server process."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import grpc
import pytest

import otel_resilience
from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    get_circuit_breaker_manager,
)
from otel_resilience._timeout import WORKER_NAME_PREFIX
from otel_resilience.grpc import (
    PREVIOUS_ATTEMPTS,
    AsyncResilienceInterceptor,
    ResilienceInterceptor,
    method_names,
    resilient_aio_channel,
    resilient_channel,
)
from support import FakeClock
from telemetry.helpers import Otel, attrs, recorded

from .grpc_support import SAY, GrpcBackend, backend, grpc_backend_process
from .otel_support import otel

__all__ = ["backend", "grpc_backend_process", "otel"]  # fixtures used by name

E = ExternalServiceError
SERVICE, ENDPOINT = "demo.Echo", "Say"


def _fast(**service: Any) -> None:
    """Millisecond backoff for the demo service, plus ``service``'s settings."""
    otel_resilience.configure(
        services={SERVICE: {"HTTP_BACKOFF_BASE_MS": 1, "HTTP_TIMEOUT_SEC": 5, **service}}
    )


def _say(channel: Any, text: bytes = b"hi", **kwargs: Any) -> Any:
    return channel.unary_unary(SAY)(text, **kwargs)


# --- success, retries, pushback, previous attempts ----------------------------------------------


def test_success_is_one_rpc_one_attempt_span_and_a_call_span(backend: GrpcBackend, otel: Otel):
    with resilient_channel(backend.target) as channel:
        assert _say(channel) == b"echo:hi"

    assert backend.stats() == {"count": 1, "previous": [None]}
    call = otel.span("demo.Echo Say")
    attempt = otel.span("demo.Echo Say attempt")
    assert call.attributes is not None
    assert call.attributes["resilience.attempts"] == 1
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id
    assert "error.type" not in (call.attributes or {})
    assert recorded(otel.metrics(), "resilience.call.duration") == {attrs(SERVICE, ENDPOINT): 1}


def test_with_call_returns_the_successful_attempts_call(backend: GrpcBackend):
    with resilient_channel(backend.target) as channel:
        response, call = channel.unary_unary(SAY).with_call(b"x")
    assert response == b"echo:x"
    assert call.code() == grpc.StatusCode.OK


def test_transient_status_is_retried_with_previous_attempts_metadata(
    backend: GrpcBackend, otel: Otel
):
    _fast()
    backend.plan("UNAVAILABLE", "INTERNAL")
    with resilient_channel(backend.target) as channel:
        assert _say(channel) == b"echo:hi"

    # the server saw exactly the attempts the library reports, each retry numbered
    assert backend.stats() == {"count": 3, "previous": [None, "1", "2"]}
    call = otel.span("demo.Echo Say")
    assert call.attributes is not None
    assert call.attributes["resilience.attempts"] == 3
    assert [e.attributes["error.type"] for e in call.events if e.attributes] == [
        "server_error",
        "server_error",
    ]
    assert recorded(otel.metrics(), "resilience.retries") == {
        attrs(SERVICE, ENDPOINT, error_type="server_error"): 2
    }


def test_pushback_metadata_replaces_the_backoff(backend: GrpcBackend, clock: FakeClock):
    otel_resilience.configure(services={SERVICE: {"HTTP_BACKOFF_BASE_MS": 5000}})
    backend.plan("RESOURCE_EXHAUSTED;pushback=300")
    with resilient_channel(backend.target) as channel:
        assert _say(channel) == b"echo:hi"
    assert clock.sleeps == [pytest.approx(0.3)]  # not the 5 s backoff
    assert backend.count() == 2


def test_exhausted_retries_raise_the_servers_last_status(backend: GrpcBackend, otel: Otel):
    """The server answered: the caller gets its last answer, as from a plain channel."""
    _fast(HTTP_RETRIES=3)
    backend.plan(default="UNAVAILABLE")
    with resilient_channel(backend.target) as channel, pytest.raises(grpc.RpcError) as caught:
        _say(channel)
    assert not isinstance(caught.value, ReliabilityError)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "planned UNAVAILABLE"
    assert backend.count() == 3
    assert (otel.span("demo.Echo Say").attributes or {})["resilience.attempts"] == 3
    metrics = otel.metrics()
    failed = attrs(SERVICE, ENDPOINT, error_type="server_error")
    assert recorded(metrics, "resilience.call.duration") == {failed: 1}
    assert recorded(metrics, "resilience.attempt.duration") == {failed: 3}
    assert recorded(metrics, "resilience.retries.exhausted") == {failed: 1}
    call = otel.span("demo.Echo Say")
    assert (call.attributes or {})["error.type"] == "server_error"


def test_a_future_call_is_resilient_too(backend: GrpcBackend):
    _fast(HTTP_RETRIES=2)
    backend.plan("UNAVAILABLE")
    with resilient_channel(backend.target) as channel:
        assert channel.unary_unary(SAY).future(b"f").result() == b"echo:f"
        backend.plan(default="NOT_FOUND")
        future = channel.unary_unary(SAY).future(b"f")
        with pytest.raises(grpc.RpcError) as caught:
            future.result()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert backend.count() == 1


def test_non_retryable_status_fails_once_without_breaker_count(backend: GrpcBackend, otel: Otel):
    _fast(CB_FAIL_THRESHOLD=1)
    backend.plan(default="INVALID_ARGUMENT")
    with resilient_channel(backend.target) as channel:
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                _say(channel)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert backend.count() == 3  # one RPC per call, and the breaker never opened
    status = get_circuit_breaker_manager().breaker_for(SERVICE, ENDPOINT).status()
    assert (status.state, status.failure_count) == ("closed", 0)
    assert recorded(otel.metrics(), "resilience.retries") == {}


def test_outage_opens_the_breaker_and_recovery_closes_it(backend: GrpcBackend, clock: FakeClock):
    otel_resilience.configure(
        services={SERVICE: {"CB_FAIL_THRESHOLD": 2, "CB_RESET_SEC": 30, "HTTP_RETRIES": 1}}
    )
    backend.plan(default="UNAVAILABLE")
    with resilient_channel(backend.target) as channel:
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                _say(channel)
        with pytest.raises(CircuitOpenError) as rejected:  # no RPC, no answer: our error
            _say(channel)
        assert rejected.value.__cause__ is None
        assert backend.count() == 2  # the rejected call sent nothing

        backend.plan(default="ok")
        clock.advance(30)
        assert _say(channel) == b"echo:hi"  # the probe
    assert get_circuit_breaker_manager().breaker_for(SERVICE, ENDPOINT).status().state == "closed"
    assert backend.count() == 1


def test_the_channels_own_retry_policy_is_off(backend: GrpcBackend, otel: Otel):
    """A service config asking gRPC for 5 attempts on UNAVAILABLE adds none under ours."""
    _fast(HTTP_RETRIES=2)
    service_config = {
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.01s",
                    "backoffMultiplier": 1,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    backend.plan(default="UNAVAILABLE")
    options = [("grpc.service_config", json.dumps(service_config))]
    with (
        resilient_channel(backend.target, options=options) as channel,
        pytest.raises(grpc.RpcError),
    ):
        _say(channel)
    assert (otel.span("demo.Echo Say").attributes or {})["resilience.attempts"] == 2
    assert backend.count() == 2


def test_the_same_service_config_retries_on_a_plain_channel(backend: GrpcBackend):
    """The control for the test above: without enable_retries=0, gRPC retries underneath."""
    service_config = {
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.01s",
                    "backoffMultiplier": 1,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    backend.plan(default="UNAVAILABLE")
    options = [("grpc.service_config", json.dumps(service_config))]
    with (
        grpc.insecure_channel(backend.target, options=options) as channel,
        pytest.raises(grpc.RpcError),
    ):
        _say(channel)
    assert backend.count() == 3


def test_enabling_grpc_retries_is_refused():
    with pytest.raises(ValueError, match=r"grpc.enable_retries=1.*second retry layer"):
        resilient_channel("127.0.0.1:1", options=[("grpc.enable_retries", 1)])
    with pytest.raises(TypeError, match="options must be"):
        resilient_channel("127.0.0.1:1", options=["grpc.enable_retries"])  # type: ignore[list-item]


# --- timeouts -----------------------------------------------------------------------------------


def test_attempt_timeout_is_the_rpc_timeout(backend: GrpcBackend):
    backend.plan("sleep=3")
    with resilient_channel(backend.target, timeout_sec=0.3, max_retries=1) as channel:
        start = time.monotonic()
        with pytest.raises(CallTimeoutError) as caught:
            _say(channel)
        elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 1.0
    # no interruption: gRPC ended the RPC at its deadline, and that late end is the timeout
    rpc_error = caught.value.__cause__.__cause__  # CallTimeoutError <- AttemptTimeout <- RpcError
    assert isinstance(rpc_error, grpc.RpcError)
    assert rpc_error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_the_callers_timeout_bounds_the_whole_call(backend: GrpcBackend):
    _fast(HTTP_RETRIES=5)
    backend.plan(default="sleep=0.2")
    with resilient_channel(backend.target, timeout_sec=0.15) as channel:
        start = time.monotonic()
        with pytest.raises(CallTimeoutError):
            _say(channel, timeout=0.5)
        elapsed = time.monotonic() - start
    assert elapsed < 0.9
    assert backend.settled_count() <= 4  # the deadline cut the retries short of 5


def _workers() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name.startswith(WORKER_NAME_PREFIX)}


def _frozen_call(target: str) -> tuple[BaseException | None, float]:
    with resilient_channel(target, timeout_sec=0.5, max_retries=2) as channel:
        start = time.monotonic()
        try:
            _say(channel)
        except BaseException as exc:
            return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
def test_a_frozen_server_times_out_on_time(backend: GrpcBackend, clock: FakeClock, where: str):
    backend.freeze()
    workers = _workers()
    if where == "main-thread":
        error, elapsed = _frozen_call(backend.target)
    else:
        found: list[tuple[BaseException | None, float]] = []
        worker = threading.Thread(target=lambda: found.append(_frozen_call(backend.target)))
        worker.start()
        worker.join(10)
        ((error, elapsed),) = found
    backend.thaw()
    assert _workers() <= workers  # cooperative: no timeout worker thread was started
    assert isinstance(error, CallTimeoutError)
    assert error.attempts == 2
    assert 0.9 <= elapsed < 2.5  # two attempts of 0.5 s (the backoff is on the fake clock)
    assert backend.settled_count() <= 2


# --- names and bad input ------------------------------------------------------------------------


def test_service_and_endpoint_can_be_overridden(backend: GrpcBackend, otel: Otel):
    with resilient_channel(backend.target, service_name="echo") as channel:
        _say(channel)
    with resilient_channel(backend.target, names=lambda m: ("svc", m.rsplit("/", 1)[1])) as ch:
        _say(ch)
    assert {s.name for s in otel.spans()} >= {"echo Say", "svc Say"}


@pytest.mark.parametrize(
    ("method", "names"),
    [
        ("/helloworld.Greeter/SayHello", ("helloworld.Greeter", "SayHello")),
        (b"/a.B/C", ("a.B", "C")),
        ("odd", ("grpc", "odd")),
        ("/", ("grpc", "unknown")),
    ],
    ids=["str", "bytes", "no-service", "empty"],
)
def test_method_names(method: str | bytes, names: tuple[str, str]):
    assert method_names(method) == names


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"service_name": ""}, "service_name must be a non-empty string"),
        ({"names": "x"}, "names must be a callable"),
        ({"timeout_sec": -1}, "timeout_sec"),
        ({"max_retries": -1}, "max_retries must be an integer from 0 to 100"),
        ({"deadline_sec": 0}, "deadline_sec"),
    ],
    ids=["empty-service", "names-not-callable", "bad-timeout", "bad-retries", "bad-deadline"],
)
@pytest.mark.parametrize("cls", [ResilienceInterceptor, AsyncResilienceInterceptor])
def test_bad_arguments_are_refused(cls: type, kwargs: dict[str, Any], match: str):
    with pytest.raises((TypeError, ValueError), match=match):
        cls(**kwargs)


def test_a_secure_channel_is_built_with_the_credentials():
    credentials = grpc.ssl_channel_credentials()
    channel = resilient_channel("127.0.0.1:1", credentials)
    channel.close()


# --- grpc.aio -----------------------------------------------------------------------------------


async def test_aio_success_and_retry_with_previous_attempts(backend: GrpcBackend, otel: Otel):
    _fast()
    backend.plan("UNAVAILABLE")
    async with resilient_aio_channel(backend.target) as channel:
        assert await channel.unary_unary(SAY)(b"hi", metadata=(("x-app", "1"),)) == b"echo:hi"
    assert backend.stats() == {"count": 2, "previous": [None, "1"]}
    call = otel.span("demo.Echo Say")
    assert call.attributes is not None
    assert call.attributes["resilience.attempts"] == 2


async def test_aio_non_retryable_status_fails_once(backend: GrpcBackend):
    _fast()
    backend.plan(default="PERMISSION_DENIED")
    async with resilient_aio_channel(backend.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(SAY)(b"hi")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert backend.count() == 1


async def test_aio_frozen_server_times_out_on_time(backend: GrpcBackend, clock: FakeClock):
    backend.freeze()
    try:
        async with resilient_aio_channel(backend.target, timeout_sec=0.5, max_retries=2) as ch:
            start = time.monotonic()
            with pytest.raises(CallTimeoutError) as caught:
                await ch.unary_unary(SAY)(b"hi")
            elapsed = time.monotonic() - start
    finally:
        backend.thaw()
    assert caught.value.attempts == 2
    assert 0.9 <= elapsed < 2.5
    assert backend.settled_count() <= 2


async def test_aio_secure_channel_and_inner_interceptors(backend: GrpcBackend):
    seen: list[str] = []

    class Inner(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(str(details.timeout is not None))
            return await continuation(details, request)

    async with resilient_aio_channel(backend.target, interceptors=[Inner()]) as channel:
        assert await channel.unary_unary(SAY)(b"hi") == b"echo:hi"
    assert seen == ["True"]  # our interceptor passed the attempt's timeout on
    channel = resilient_aio_channel("127.0.0.1:1", grpc.ssl_channel_credentials())
    await channel.close()
    await asyncio.sleep(0)


def test_previous_attempts_replaces_a_callers_value(backend: GrpcBackend):
    _fast()
    backend.plan("UNAVAILABLE")
    with resilient_channel(backend.target) as channel:
        _say(channel, metadata=((PREVIOUS_ATTEMPTS, "7"), ("x-app", "1")))
    assert backend.stats()["previous"] == ["7", "1"]


# --- the per-call timeout_mode the interceptors use ---------------------------------------------


def test_timeout_mode_applies_to_one_call_only():
    def slow() -> str:
        time.sleep(0.4)
        return "late"

    start = time.monotonic()
    with pytest.raises(CallTimeoutError):  # cooperative: ran to its end, then judged late
        otel_resilience.resilient_call("m", "e", slow, 0.1, 1, timeout_mode="cooperative")
    assert time.monotonic() - start >= 0.4
    start = time.monotonic()
    with pytest.raises(CallTimeoutError):  # the service's own mode again: interrupted on time
        otel_resilience.resilient_call("m", "e", slow, 0.1, 1)  # main thread: SIGALRM
    assert time.monotonic() - start < 0.35


async def test_timeout_mode_is_validated():
    with pytest.raises(ValueError, match="must be one of interrupt, thread, cooperative"):
        otel_resilience.resilient_call("m", "e", lambda: 1, timeout_mode="never")
    with pytest.raises(ValueError, match="must be one of interrupt, thread, cooperative"):
        await otel_resilience.resilient_call_async("m", "e", asyncio.sleep, timeout_mode="x")


# --- local failures: nothing was sent -----------------------------------------------------------


def test_a_request_the_serializer_refuses_fails_once_without_breaker_count(backend: GrpcBackend):
    _fast(CB_FAIL_THRESHOLD=1)
    with resilient_channel(backend.target) as channel:
        for _ in range(2):
            with pytest.raises(ReliabilityError, match="could not be sent: TypeError") as caught:
                channel.unary_unary(SAY)("text, not bytes")
            assert caught.value.error_type is E.BAD_REQUEST
            assert caught.value.attempts == 1
            assert isinstance(caught.value.__cause__, TypeError)
    assert backend.count() == 0
    status = get_circuit_breaker_manager().breaker_for(SERVICE, ENDPOINT).status()
    assert (status.state, status.failure_count) == ("closed", 0)


async def test_aio_a_request_the_serializer_refuses_fails_once(backend: GrpcBackend):
    _fast(CB_FAIL_THRESHOLD=1)
    async with resilient_aio_channel(backend.target) as channel:
        with pytest.raises(ReliabilityError, match="could not be sent: TypeError") as caught:
            await channel.unary_unary(SAY)("text, not bytes")
    assert caught.value.error_type is E.BAD_REQUEST
    assert caught.value.attempts == 1
    assert backend.count() == 0
    assert get_circuit_breaker_manager().breaker_for(SERVICE, ENDPOINT).status().failure_count == 0


# --- no answer: a ReliabilityError ---------------------------------------------------------------


async def _call_nothing(target: str, aio: bool) -> None:
    if aio:
        async with resilient_aio_channel(target) as channel:
            await channel.unary_unary(SAY)(b"hi")
    else:
        with resilient_channel(target) as channel:
            _say(channel)


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
async def test_no_server_is_a_connection_error(aio: bool):
    _fast(HTTP_RETRIES=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
        target = f"127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(ReliabilityError) as caught:
            await _call_nothing(target, aio)
    assert caught.value.error_type is E.CONNECTION_ERROR
    assert caught.value.attempts == 2
    assert isinstance(caught.value.__cause__, grpc.RpcError)
    assert caught.value.__cause__.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_span_made_inside_the_attempt_nests_under_it(backend: GrpcBackend, otel: Otel):
    tracer = otel.tracer_provider.get_tracer("test")

    class Tracing(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            with tracer.start_as_current_span("grpc client"):
                call = await continuation(details, request)
                await call
                return call

    _fast()
    backend.plan("UNAVAILABLE")
    async with resilient_aio_channel(backend.target, interceptors=[Tracing()]) as channel:
        assert await channel.unary_unary(SAY)(b"hi") == b"echo:hi"
    attempts = {s.context.span_id for s in otel.spans() if s.name == "demo.Echo Say attempt"}
    clients = [s for s in otel.spans() if s.name == "grpc client"]
    assert len(attempts) == len(clients) == 2
    assert {s.parent.span_id for s in clients if s.parent} == attempts
