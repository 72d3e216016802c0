"""Chaos injection (issue 16): test faults, CHAOS_* settings, the whole pipeline, telemetry."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import otel_resilience
from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    Classification,
    ConfigError,
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    Runtime,
    resilient_call,
    resilient_call_async,
    use_runtime,
)
from otel_resilience._chaos import production
from otel_resilience.testing import CapturedTelemetry, Faults, set_testing

KIND = "resilience.chaos.kind"
INJECTIONS = "resilience.chaos.injections"


def counting() -> tuple[list[int], object]:
    seen: list[int] = []

    def func() -> str:
        seen.append(1)
        return "ok"

    return seen, func


# --- test faults: the whole pipeline ------------------------------------------------------------


def test_an_injected_fault_is_retried_like_a_real_one() -> None:
    with set_testing(environ={}) as mode:
        rule = mode.faults.inject("clamav", "scan", error="connection_error", times=2)
        seen, func = counting()
        assert resilient_call("clamav", "scan", func) == "ok"
        call = mode.call("clamav", "scan")
        assert len(seen) == 1  # the two faulted attempts never reached the function
        assert rule.injected == 2
        assert call.attempts == 3
        assert call.error_types == ("connection_error", "connection_error", None)
        assert call.chaos == ("fault", "fault")
        assert mode.counter(INJECTIONS, {KIND: "fault", "resilience.endpoint": "scan"}) == 2
        assert mode.counter("resilience.retries", {"error.type": "connection_error"}) == 2
        assert len(mode.clock.sleeps) == 2
        events = [
            (e.name, dict(e.attributes or {}))
            for s in mode.telemetry.spans()  # type: ignore[union-attr]
            for e in s.events
            if e.name == "chaos"
        ]
        assert events == [("chaos", {KIND: "fault"})] * 2


def test_injected_faults_open_the_breaker() -> None:
    with set_testing(environ={}) as mode:
        mode.configure(clamav={"CB_FAIL_THRESHOLD": 3, "HTTP_RETRIES": 1})
        mode.faults.inject("clamav", "scan", error="server_error")
        seen, func = counting()
        for _ in range(3):
            with pytest.raises(ReliabilityError) as caught:
                resilient_call("clamav", "scan", func)
            assert caught.value.error_type is ExternalServiceError.SERVER_ERROR
            assert "injected by chaos" in str(caught.value)
        with pytest.raises(CircuitOpenError):
            resilient_call("clamav", "scan", func)
        assert seen == []
        assert mode.breaker("clamav", "scan").state.value == "open"
        assert mode.counter(INJECTIONS) == 3  # the rejected call made no attempt
        mode.faults.clear("clamav")
        mode.advance(60)
        assert resilient_call("clamav", "scan", func) == "ok"  # recovery closes it
        assert mode.breaker("clamav", "scan").state.value == "closed"


def test_an_injected_exception_goes_through_the_classifiers() -> None:
    class QuotaExceeded(Exception):
        pass

    with set_testing(environ={}) as mode:
        mode.runtime.classifiers.register(
            lambda exc: (
                Classification(ExternalServiceError.BAD_REQUEST)
                if isinstance(exc, QuotaExceeded)
                else None
            )
        )
        mode.configure(billing={"CB_FAIL_THRESHOLD": 1})
        mode.faults.inject("billing", None, error=QuotaExceeded("over quota"))
        for _ in range(2):
            with pytest.raises(ReliabilityError) as caught:
                resilient_call("billing", "charge", counting()[1])
            assert caught.value.error_type is ExternalServiceError.BAD_REQUEST
            assert isinstance(caught.value.__cause__, QuotaExceeded)
        # a client error: not retried, and neutral for the breaker
        assert [c.attempts for c in mode.calls("billing")] == [1, 1]
        assert mode.breaker("billing", "charge").state.value == "closed"


def test_an_injected_timeout_is_a_timeout() -> None:
    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("ocr", "read", error=ExternalServiceError.TIMEOUT)
        with pytest.raises(CallTimeoutError):
            resilient_call("ocr", "read", counting()[1])
        assert mode.counter("resilience.timeouts") == 1  # as a real timeout would
        assert mode.call("ocr", "read").error_type == "timeout"


def test_latency_moves_the_fake_clock_and_is_recorded() -> None:
    with set_testing(environ={}) as mode:
        mode.faults.inject("gcs", "*", error=None, latency=0.5, times=1)
        seen, func = counting()
        started = time.perf_counter()
        assert resilient_call("gcs", "upload", func) == "ok"
        assert resilient_call("gcs", "download", func) == "ok"
        assert time.perf_counter() - started < 0.4
        assert seen == [1, 1]
        assert mode.clock.sleeps == [0.5]
        assert [c.chaos for c in mode.calls("gcs")] == [("latency",), ()]
        assert mode.counter(INJECTIONS, {KIND: "latency"}) == 1
        assert mode.counter(INJECTIONS, {KIND: "fault"}) == 0


def test_a_rule_may_add_latency_and_fail() -> None:
    with set_testing(environ={}) as mode:
        mode.faults.inject("gcs", "upload", error="rate_limit", latency=0.25, times=1)
        assert resilient_call("gcs", "upload", counting()[1]) == "ok"
        assert mode.call("gcs", "upload").chaos == ("latency", "fault")
        assert mode.clock.sleeps[0] == 0.25


def test_rules_match_their_endpoint_only_and_clear_removes_them() -> None:
    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("clamav", "scan")
        mode.faults.inject("redis", None)
        assert resilient_call("clamav", "ping", counting()[1]) == "ok"
        assert resilient_call("other", "scan", counting()[1]) == "ok"
        for service, endpoint in (("clamav", "scan"), ("redis", "get"), ("redis", "set")):
            with pytest.raises(ReliabilityError):
                resilient_call(service, endpoint, counting()[1])
        assert mode.runtime.service("other").injector is None
        mode.faults.clear()
        assert mode.runtime.service("clamav").injector is None
        assert resilient_call("clamav", "scan", counting()[1]) == "ok"


async def test_async_calls_get_the_same_injections() -> None:
    seen: list[int] = []

    async def func() -> str:
        seen.append(1)
        return "ok"

    with set_testing(environ={}) as mode:
        mode.faults.inject("llm", "chat", error="server_error", latency=1.5, times=2)
        started = time.perf_counter()
        assert await resilient_call_async("llm", "chat", func) == "ok"
        assert time.perf_counter() - started < 0.5
        call = mode.call("llm", "chat")
        assert call.attempts == 3
        assert call.chaos == ("latency", "fault") * 2
        assert seen == [1]
        assert mode.clock.sleeps[0] == 1.5


async def test_async_latency_only() -> None:
    async def func() -> str:
        return "ok"

    with set_testing(environ={}) as mode:
        mode.faults.inject("llm", "chat", error=None, latency=0.1)
        assert await resilient_call_async("llm", "chat", func) == "ok"
        assert mode.call("llm", "chat").chaos == ("latency",)


def test_rate_0_3_over_2000_calls() -> None:
    """The issue's figure: 0.3 +- 0.03 of the calls injected, every one counted."""
    with set_testing(attempts=1, environ={"CB_FAIL_THRESHOLD": "1000000"}) as mode:
        rule = mode.faults.inject("clamav", "scan", rate=0.3)
        failed = 0
        for _ in range(2000):
            try:
                resilient_call("clamav", "scan", counting()[1])
            except ReliabilityError:
                failed += 1
        assert 0.27 <= failed / 2000 <= 0.33
        assert rule.injected == failed
        assert mode.counter(INJECTIONS, {KIND: "fault"}) == failed
        assert sum(len(c.chaos) for c in mode.calls("clamav")) == failed


def _pattern(seed: int, rate: float, n: int = 60) -> list[bool]:
    with set_testing(attempts=1, seed=seed, environ={"CB_FAIL_THRESHOLD": "1000"}) as mode:
        mode.faults.inject("svc", "op", rate=rate)
        out = []
        for _ in range(n):
            try:
                resilient_call("svc", "op", counting()[1])
                out.append(False)
            except ReliabilityError:
                out.append(True)
        return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), rate=st.floats(0.05, 0.95))
def test_the_same_seed_injects_the_same_faults(seed: int, rate: float) -> None:
    assert _pattern(seed, rate) == _pattern(seed, rate)


def test_rate_zero_never_fires_and_one_always_fires() -> None:
    assert not any(_pattern(1, 0.0, 30))
    assert all(_pattern(1, 1.0, 30))


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"error": "boom"}, ValueError, r"error must be an error type \(timeout, connection_error"),
        ({"error": "circuit_open"}, ValueError, "got 'circuit_open'"),
        ({"error": 3}, ValueError, "got 3"),
        ({"rate": 1.5}, ValueError, "rate must be a number from 0 to 1, got 1.5"),
        ({"rate": True}, ValueError, "got True"),
        ({"rate": float("nan")}, ValueError, "got nan"),
        ({"latency": -1}, ValueError, "latency must be a number of seconds >= 0, got -1"),
        ({"latency": float("inf")}, ValueError, "got inf"),
        ({"times": 0}, ValueError, r"times must be an integer >= 1 or None \(no limit\), got 0"),
        ({"times": 1.5}, ValueError, "got 1.5"),
        ({"error": None}, ValueError, "inject needs an error or a latency > 0"),
        ({"service": ""}, TypeError, "service must be a non-empty string, got ''"),
        ({"endpoint": ""}, TypeError, "endpoint must be a non-empty string or None, got ''"),
    ],
)
def test_bad_injections_are_refused(kwargs: dict[str, object], error: type, message: str) -> None:
    args = {"service": "svc", "endpoint": "op", **kwargs}
    with set_testing(environ={}) as mode:
        with pytest.raises(error, match=message):
            mode.faults.inject(args.pop("service"), args.pop("endpoint"), **args)  # type: ignore[arg-type]
        assert mode.faults.rules("svc") == ()


def test_a_rule_reads_back() -> None:
    with set_testing(environ={}) as mode:
        rule = mode.faults.inject("svc", "*", rate=0.5, latency=1, times=3)
        assert repr(rule) == (
            "<chaos rule *: error='connection_error' rate=0.5 latency=1 times=3 injected=0>"
        )
        assert mode.faults.rules("svc") == (rule,)


# --- CHAOS_* settings (staging) -----------------------------------------------------------------


def _runtime(environ: dict[str, str]) -> tuple[Runtime, CapturedTelemetry]:
    runtime = Runtime(environ=environ)
    captured = CapturedTelemetry()
    runtime.telemetry.set_providers(captured.tracer_provider, captured.meter_provider)
    return runtime, captured


def test_chaos_is_off_by_default() -> None:
    assert ReliabilityConfig().CHAOS_ENABLED is False
    runtime = Runtime(environ={"CHAOS_FAULT_RATE": "1"})  # rates alone do nothing
    assert runtime.service("svc").injector is None
    with use_runtime(runtime):
        assert resilient_call("svc", "op", lambda: "ok") == "ok"


def test_chaos_settings_inject_faults_per_service() -> None:
    runtime, captured = _runtime(
        {
            "RELIABILITY_CLAMAV_CHAOS_ENABLED": "true",
            "RELIABILITY_CLAMAV_CHAOS_FAULT_RATE": "1",
            "RELIABILITY_CLAMAV_CHAOS_FAULT_ERROR": "server_error",
            "HTTP_RETRIES": "1",
        }
    )
    with use_runtime(runtime):
        with pytest.raises(ReliabilityError) as caught:
            resilient_call("clamav", "scan", lambda: "clean")
        assert caught.value.error_type is ExternalServiceError.SERVER_ERROR
        assert resilient_call("gcs", "upload", lambda: "ok") == "ok"
        assert runtime.service("gcs").injector is None
    assert captured.counter(INJECTIONS, {KIND: "fault", "resilience.service": "clamav"}) == 1
    assert captured.calls("clamav")[0].chaos == ("fault",)


@pytest.mark.parametrize("mode", ["interrupt", "thread", "cooperative"])
def test_chaos_latency_counts_against_the_attempt_timeout(mode: str) -> None:
    runtime, captured = _runtime(
        {
            "CHAOS_ENABLED": "true",
            "CHAOS_LATENCY_SEC": "2",
            "HTTP_RETRIES": "1",
            "TIMEOUT_MODE": mode,
        }
    )
    seen, func = counting()
    with use_runtime(runtime):
        started = time.perf_counter()
        with pytest.raises(CallTimeoutError):
            resilient_call("svc", "op", func, timeout_sec=0.1)
        assert time.perf_counter() - started < 1.0  # timed out, not slept for 2 s
    assert seen == []
    assert captured.counter("resilience.timeouts") == 1
    assert captured.calls("svc")[0].chaos == ("latency",)


async def test_async_chaos_latency_counts_against_the_attempt_timeout() -> None:
    runtime, captured = _runtime({"CHAOS_ENABLED": "true", "CHAOS_LATENCY_SEC": "2"})

    async def func() -> str:
        return "ok"

    with use_runtime(runtime):
        started = time.perf_counter()
        with pytest.raises(CallTimeoutError):
            await resilient_call_async("svc", "op", func, timeout_sec=0.1, max_retries=1)
        assert time.perf_counter() - started < 1.0
    assert captured.counter("resilience.timeouts") == 1


def test_latency_longer_than_the_attempt_times_it_out_in_test_mode() -> None:
    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("ocr", "read", error=None, latency=3600)
        started = time.perf_counter()
        with pytest.raises(CallTimeoutError):
            resilient_call("ocr", "read", counting()[1], timeout_sec=5)
        assert time.perf_counter() - started < 1.0
        assert 4 < mode.clock.sleeps[0] <= 5  # the fake clock moved by the attempt's time


def test_chaos_latency_rate_and_fault_rate_draw_separately() -> None:
    runtime = Runtime(
        environ={
            "CHAOS_ENABLED": "true",
            "CHAOS_LATENCY_SEC": "0.001",
            "CHAOS_LATENCY_RATE": "0.5",
            "CHAOS_FAULT_RATE": "0",
        }
    )
    injector = runtime.service("svc").injector
    assert injector is not None
    latencies = [injector.decide("svc", "op") for _ in range(400)]
    assert all(error is None for _, error in latencies)
    assert 120 <= sum(1 for latency, _ in latencies if latency) <= 280
    off = Runtime(environ={"CHAOS_ENABLED": "true", "CHAOS_LATENCY_RATE": "0"})
    assert off.service("svc").injector is None


@pytest.mark.parametrize(
    "resource",
    [
        "deployment.environment=production",
        "service.name=api, deployment.environment = Production",
        "deployment.environment.name=production",
    ],
)
def test_chaos_is_refused_in_production_unless_forced(resource: str) -> None:
    environ = {
        "CHAOS_ENABLED": "true",
        "CHAOS_FAULT_RATE": "1",
        "OTEL_RESOURCE_ATTRIBUTES": resource,
    }
    runtime = Runtime(environ=environ)
    with (
        use_runtime(runtime),
        pytest.raises(
            ConfigError,
            match=r"CHAOS_ENABLED=true for service 'svc' is refused: OTEL_RESOURCE_ATTRIBUTES says"
            r" deployment.environment=production; set CHAOS_FORCE=true",
        ),
    ):
        resilient_call("svc", "op", lambda: "ok")
    forced = Runtime(environ={**environ, "CHAOS_FORCE": "true"})
    assert forced.service("svc").injector is not None


def test_the_production_check_reads_only_the_environment_attribute() -> None:
    assert not production({})
    assert not production({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging"})
    assert not production({"OTEL_RESOURCE_ATTRIBUTES": "service.name=production"})
    assert production({"OTEL_RESOURCE_ATTRIBUTES": "a=b,deployment.environment=production"})


def test_the_process_environment_is_read_when_the_runtime_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=production")
    otel_resilience.configure(services={"svc": {"CHAOS_ENABLED": True, "CHAOS_FAULT_RATE": 1.0}})
    with pytest.raises(ConfigError, match="CHAOS_FORCE"):
        resilient_call("svc", "op", lambda: "ok")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CHAOS_FAULT_RATE", "1.5", "CHAOS_FAULT_RATE"),
        ("CHAOS_LATENCY_RATE", "-0.1", "CHAOS_LATENCY_RATE"),
        ("CHAOS_LATENCY_SEC", "-1", "CHAOS_LATENCY_SEC"),
        ("CHAOS_FAULT_ERROR", "circuit_open", "CHAOS_FAULT_ERROR"),
        ("CHAOS_ENABLED", "maybe", "CHAOS_ENABLED"),
        ("CHAOS_FORCE", "2", "CHAOS_FORCE"),
    ],
)
def test_bad_chaos_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReliabilityConfig.from_env({name: value})


def test_a_failing_telemetry_never_breaks_an_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("svc", "op", error=None, latency=0.1)
        instruments = mode.runtime.telemetry.instruments()

        class Broken:
            def add(self, *args: object) -> None:
                raise RuntimeError("meter gone")

        monkeypatch.setattr(instruments, "chaos_injections", Broken())
        assert resilient_call("svc", "op", lambda: "ok") == "ok"
        assert mode.clock.sleeps == [0.1]
        assert mode.call("svc", "op").chaos == ()  # the event came after the failed count


def test_no_injection_without_telemetry_sdk() -> None:
    with set_testing(attempts=1, environ={}, telemetry=False) as mode:
        mode.faults.inject("svc", "op", times=1)
        with pytest.raises(ReliabilityError):
            resilient_call("svc", "op", lambda: "ok")
        assert resilient_call("svc", "op", lambda: "ok") == "ok"


async def test_async_latency_longer_than_the_attempt_times_it_out_in_test_mode() -> None:
    async def func() -> str:
        return "ok"

    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("ocr", "read", error=None, latency=3600)
        with pytest.raises(CallTimeoutError):
            await resilient_call_async("ocr", "read", func, timeout_sec=5)
        assert 4 < mode.clock.sleeps[0] <= 5
        assert mode.counter("resilience.timeouts") == 1


def test_every_firing_rule_adds_its_latency_and_the_first_error_wins() -> None:
    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("svc", "op", error="not_found", latency=1)
        mode.faults.inject("svc", None, error="server_error", latency=2)
        with pytest.raises(ReliabilityError) as caught:
            resilient_call("svc", "op", counting()[1])
        assert caught.value.error_type is ExternalServiceError.NOT_FOUND
        assert mode.clock.sleeps == [3.0]


def test_a_faults_registry_alone() -> None:
    registry = Faults(seed=None)
    rule = registry.inject("svc", "op", rate=0.5)
    assert registry.rules("svc") == (rule,)
    fired = sum(len(registry.fire("svc", "op")) for _ in range(200))
    assert 50 <= fired <= 150
    assert registry.fire("svc", "other") == []
    registry.clear("svc")
    assert registry.rules("svc") == ()


def test_an_unsampled_attempt_is_counted_without_an_event() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    with set_testing(attempts=1, environ={}) as mode:
        captured = mode.telemetry
        assert captured is not None
        mode.runtime.telemetry.set_providers(
            TracerProvider(sampler=ALWAYS_OFF), captured.meter_provider
        )
        mode.faults.inject("svc", "op", times=1)
        with pytest.raises(ReliabilityError):
            resilient_call("svc", "op", counting()[1])
        assert mode.counter(INJECTIONS) == 1
        assert mode.calls() == []


async def test_async_fault_only() -> None:
    async def func() -> str:
        return "ok"

    with set_testing(attempts=1, environ={}) as mode:
        mode.faults.inject("llm", "chat", error="bad_request", times=1)
        with pytest.raises(ReliabilityError):
            await resilient_call_async("llm", "chat", func)
        assert await resilient_call_async("llm", "chat", func) == "ok"
        assert [c.chaos for c in mode.calls("llm")] == [("fault",), ()]
        assert mode.clock.sleeps == []
