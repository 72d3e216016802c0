"""The runtime: isolated state, one cache per service, one invalidation point."""

from __future__ import annotations

import pytest

import otel_resilience
from otel_resilience import (
    ReliabilityConfig,
    ReliabilityError,
    Runtime,
    configure,
    get_config,
    resilient_call,
    use_runtime,
)
from support import FakeClock


def _fail() -> None:
    raise ConnectionError("down")


def test_an_isolated_runtime_has_its_own_config_breakers_and_clock() -> None:
    configure(services={"svc": {"CB_FAIL_THRESHOLD": 7}})
    clock = FakeClock()
    isolated = Runtime(clock=clock)
    with use_runtime(isolated) as runtime:
        assert runtime is isolated
        assert otel_resilience.default_runtime() is isolated
        assert get_config("svc").CB_FAIL_THRESHOLD == 5  # not the default runtime's setting
        configure(services={"svc": {"CB_FAIL_THRESHOLD": 1, "HTTP_BACKOFF_BASE_MS": 500}})
        with pytest.raises(ReliabilityError):
            resilient_call("svc", "op", _fail, max_retries=1)
        assert isolated.breakers.get_breaker("svc", "op").state.value == "open"
        assert clock.sleeps == []  # one attempt: no backoff
    # back on the default runtime: its config and its (untouched) breakers
    assert get_config("svc").CB_FAIL_THRESHOLD == 7
    assert otel_resilience.get_circuit_breaker_manager().breakers() == []


def test_backoff_sleeps_on_the_runtime_clock() -> None:
    clock = FakeClock()
    with use_runtime(Runtime(clock=clock)):
        configure(ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1000, HTTP_BACKOFF_MAX_MS=1000))
        with pytest.raises(ReliabilityError) as raised:
            resilient_call("svc", "op", _fail, max_retries=3)
    assert raised.value.attempts == 3
    assert len(clock.sleeps) == 2
    assert all(1.0 <= s <= 1.1 for s in clock.sleeps)


def test_a_config_change_remakes_the_service_context_and_keeps_unchanged_parts() -> None:
    runtime = otel_resilience.default_runtime()
    configure(services={"svc": {"RETRY_BUDGET_RATIO": 0.5}})
    first = runtime.service("svc")
    assert runtime.service("svc") is first  # cached
    configure(services={"svc": {"RETRY_BUDGET_RATIO": 0.5, "HTTP_RETRIES": 2}})
    second = runtime.service("svc")
    assert second is not first
    assert second.defaults.attempts == 2
    assert second.budget is first.budget  # the budget's settings did not change
    configure(services={"svc": {"RETRY_BUDGET_RATIO": 0.1}})
    assert runtime.service("svc").budget is not first.budget


def test_environment_of_a_runtime_is_its_own() -> None:
    runtime = Runtime(environ={"HTTP_RETRIES": "7", "RELIABILITY_OPENAI_HTTP_RETRIES": "2"})
    assert runtime.get_config().HTTP_RETRIES == 7
    assert runtime.get_config("openai").HTTP_RETRIES == 2
    assert otel_resilience.get_config("openai").HTTP_RETRIES == 3


def test_reset_forgets_the_config_and_breakers_of_the_runtime_in_use() -> None:
    configure(services={"svc": {"CB_FAIL_THRESHOLD": 1}})
    with pytest.raises(ReliabilityError):
        resilient_call("svc", "op", _fail, max_retries=1)
    otel_resilience.reset()
    assert get_config("svc").CB_FAIL_THRESHOLD == 5
    assert otel_resilience.get_circuit_breaker_manager().breakers() == []


def test_use_runtime_refuses_what_is_not_a_runtime() -> None:
    with (
        pytest.raises(TypeError, match="use_runtime needs a Runtime, got dict"),
        use_runtime({}),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


def test_runtime_repr_names_its_clock() -> None:
    assert repr(Runtime()).startswith("<Runtime clock=SystemClock() services=0")
