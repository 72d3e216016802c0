"""The call path under hostile use: misuse, spent deadlines, configuration churn, many names.

Each test pins a behaviour that failed before (issue "correct under hostile conditions").
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import warnings

import pytest

import otel_resilience
from otel_resilience import (
    CallTimeoutError,
    CircuitBreakerState,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
    configure,
    get_circuit_breaker_manager,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._timeout import deadline_scope
from support import FakeClock, counter_points


def _fails(exc: BaseException):
    def func():
        raise exc

    return func


# --- a spent deadline never blames the service -------------------------------------------------


def test_an_attempt_after_the_enclosing_deadline_takes_no_permit_and_records_no_failure(
    clock: FakeClock,
) -> None:
    contacted = []
    configure(services={"never": {"CB_FAIL_THRESHOLD": 5}})
    with deadline_scope(1.0):
        clock.advance(2.0)  # the caller's deadline has passed
        for _ in range(10):
            with pytest.raises(CallTimeoutError) as info:
                resilient_call("never", "op", lambda: contacted.append(1))
            assert info.value.attempts == 0
    breaker = get_circuit_breaker_manager().get_breaker("never", "op")
    assert contacted == []
    assert breaker.state is CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0


async def test_an_async_attempt_after_the_deadline_takes_no_permit(clock: FakeClock) -> None:
    async def func() -> str:
        raise AssertionError("must not run")

    with deadline_scope(1.0):
        clock.advance(2.0)
        for _ in range(6):
            with pytest.raises(CallTimeoutError):
                await resilient_call_async("never-async", "op", func)
    breaker = get_circuit_breaker_manager().get_breaker("never-async", "op")
    assert breaker.state is CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0


def test_a_rate_limit_wait_ends_at_the_deadline(clock: FakeClock) -> None:
    configure(services={"quota": {"RATE_LIMIT": "1/minute", "RATE_LIMIT_MAX_WAIT_SEC": 30}})
    assert resilient_call("quota", "op", lambda: 1) == 1
    waits: list[float] = []
    limiter = otel_resilience.default_runtime().service("quota").limiter
    assert limiter is not None
    original = limiter.acquire

    def spy(max_wait: float) -> bool:
        waits.append(max_wait)
        return original(0)

    limiter.acquire = spy  # type: ignore[method-assign]
    with pytest.raises(ThrottledError):
        resilient_call("quota", "op", lambda: 1, deadline_sec=0.5)
    assert waits == [pytest.approx(0.5)]


def test_a_nested_call_refused_by_its_rate_limit_is_not_a_failure_of_the_outer_service() -> None:
    configure(
        services={
            "inner": {"RATE_LIMIT": "1/minute"},
            "outer": {"CB_FAIL_THRESHOLD": 1, "HTTP_RETRIES": 1},
        }
    )
    resilient_call("inner", "op", lambda: 1)

    def outer() -> int:
        return resilient_call("inner", "op", lambda: 1)

    with pytest.raises(ThrottledError):
        resilient_call("outer", "op", outer)
    breaker = get_circuit_breaker_manager().get_breaker("outer", "op")
    assert breaker.state is CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0


# --- configuration never throws away state -----------------------------------------------------


def test_configuring_one_service_keeps_the_open_breakers_of_the_others() -> None:
    configure(services={"down": {"CB_FAIL_THRESHOLD": 1, "HTTP_RETRIES": 1}})
    with pytest.raises(ReliabilityError):
        resilient_call("down", "op", _fails(ConnectionError("refused")))
    down = get_circuit_breaker_manager().get_breaker("down", "op")
    assert down.state is CircuitBreakerState.OPEN

    configure(services={"other": {"CB_MANUAL_STATE": "forced_open"}})

    assert get_circuit_breaker_manager().get_breaker("down", "op") is down
    assert down.state is CircuitBreakerState.OPEN
    with pytest.raises(ReliabilityError) as info:
        resilient_call("down", "op", lambda: "reached")
    assert info.value.error_type is ExternalServiceError.CIRCUIT_OPEN


def test_configuring_a_service_rebuilds_only_its_own_breakers() -> None:
    resilient_call("a", "op", lambda: 1)
    resilient_call("b", "op", lambda: 1)
    manager = get_circuit_breaker_manager()
    a, b = manager.get_breaker("a", "op"), manager.get_breaker("b", "op")
    configure(services={"a": {"CB_FAIL_THRESHOLD": 2}})
    assert manager.get_breaker("b", "op") is b
    new_a = manager.get_breaker("a", "op")
    assert new_a is not a
    assert new_a.failure_threshold == 2


def test_configuring_another_service_keeps_a_retry_budget_and_its_history(
    clock: FakeClock,
) -> None:
    configure(services={"budgeted": {"RETRY_BUDGET_RATIO": 0.1, "RETRY_BUDGET_MIN_PER_SEC": 0}})
    for _ in range(5):
        resilient_call("budgeted", "op", lambda: 1)
    budget = otel_resilience.default_runtime().service("budgeted").budget
    assert budget is not None
    assert budget.calls == 5
    configure(services={"unrelated": {"HTTP_RETRIES": 1}})
    again = otel_resilience.default_runtime().service("budgeted").budget
    assert again is budget
    assert again.calls == 5


def test_configuring_another_service_keeps_a_rate_limiters_window() -> None:
    configure(services={"limited": {"RATE_LIMIT": "1/minute"}})
    resilient_call("limited", "op", lambda: 1)
    configure(services={"unrelated": {"HTTP_RETRIES": 1}})
    with pytest.raises(ThrottledError):
        resilient_call("limited", "op", lambda: 1)


# --- misuse fails clearly, before anything is counted ------------------------------------------


def test_a_coroutine_returned_to_the_sync_call_is_a_type_error_not_a_success(
    metric_reader,
) -> None:
    async def fetch() -> str:
        return "never awaited"

    configure(services={"misused": {"CB_FAIL_THRESHOLD": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited" either
        for _ in range(3):
            with pytest.raises(TypeError, match="resilient_call_async"):
                resilient_call("misused", "op", lambda: fetch())
        gc.collect()
    breaker = get_circuit_breaker_manager().get_breaker("misused", "op")
    assert breaker.state is CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0
    assert counter_points(metric_reader, "resilience.retries") == {}


async def test_a_sync_function_given_to_the_async_call_is_a_type_error_never_retried() -> None:
    calls = []

    def sync() -> str:
        calls.append(1)
        return "plain value"

    configure(services={"misused": {"CB_FAIL_THRESHOLD": 1, "HTTP_BACKOFF_BASE_MS": 0}})
    with pytest.raises(TypeError, match="not an awaitable"):
        await resilient_call_async("misused", "op", sync)  # type: ignore[arg-type]
    assert calls == [1]
    breaker = get_circuit_breaker_manager().get_breaker("misused", "op")
    assert breaker.failure_count == 0


def test_the_async_call_outside_an_asyncio_loop_says_so_and_counts_nothing() -> None:
    async def func() -> str:
        return "x"

    coroutine = resilient_call_async("elsewhere", "op", func)
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        coroutine.send(None)  # driven by something that is not asyncio (as trio would)
    assert get_circuit_breaker_manager().breakers() == []


async def test_a_coroutine_that_swallows_its_cancellation_and_returns_late_is_a_timeout() -> None:
    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)
        return "late"

    with pytest.raises(CallTimeoutError):
        await resilient_call_async("stubborn", "op", stubborn, timeout_sec=0.01, max_retries=1)


# --- names ------------------------------------------------------------------------------------


class Service(str, enum.Enum):  # noqa: UP042 - the pre-3.11 spelling users still write
    OPENAI = "openai"


class Endpoint(enum.StrEnum):
    CHAT = "chat.completions"


def test_str_enum_names_are_plain_strings_everywhere() -> None:
    seen = []

    def failing() -> str:
        raise ConnectionError("reset")

    with pytest.raises(ReliabilityError) as info:
        resilient_call(Service.OPENAI, Endpoint.CHAT, failing, max_retries=1)
    seen.append(info.value)
    error = info.value
    assert type(error.service_name) is str
    assert error.service_name == "openai"
    assert type(error.endpoint) is str
    assert "Service.OPENAI" not in str(error)
    breaker = get_circuit_breaker_manager().get_breaker("openai", "chat.completions")
    assert type(breaker.service_name) is str
    assert type(breaker.endpoint) is str


# --- a retry the breaker will reject is neither slept nor counted -------------------------------


def test_a_failure_that_opens_the_breaker_ends_the_call_without_a_backoff(
    clock: FakeClock, metric_reader
) -> None:
    configure(services={"fragile": {"CB_FAIL_THRESHOLD": 1, "HTTP_RETRIES": 3}})
    attempts = []

    def down() -> str:
        attempts.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ReliabilityError) as info:
        resilient_call("fragile", "op", down)
    assert info.value.error_type is ExternalServiceError.CONNECTION_ERROR
    assert attempts == [1]
    assert clock.sleeps == []
    assert counter_points(metric_reader, "resilience.retries") == {}


def test_a_backoff_longer_than_the_open_time_still_retries_as_a_probe(clock: FakeClock) -> None:
    configure(
        services={
            "flaky": {
                "CB_FAIL_THRESHOLD": 1,
                "CB_RESET_SEC": 0.5,
                "HTTP_RETRIES": 2,
                "HTTP_BACKOFF_BASE_MS": 1000,
            }
        }
    )
    outcomes = iter([ConnectionError("refused"), None])

    def func() -> str:
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return "recovered"

    assert resilient_call("flaky", "op", func) == "recovered"
    assert len(clock.sleeps) == 1
    breaker = get_circuit_breaker_manager().get_breaker("flaky", "op")
    assert breaker.state is CircuitBreakerState.CLOSED


# --- bounded memory ---------------------------------------------------------------------------


def test_idle_breakers_of_many_distinct_endpoints_are_evicted_and_failing_ones_kept() -> None:
    manager = get_circuit_breaker_manager()
    configure(services={"many": {"CB_FAIL_THRESHOLD": 1, "HTTP_RETRIES": 1}})
    with pytest.raises(ReliabilityError):
        resilient_call("many", "broken", _fails(ConnectionError("refused")))
    for i in range(5 * manager.max_idle_breakers):
        resilient_call("many", f"item-{i}", lambda: "ok")
    assert len(manager.breakers()) <= 2 * manager.max_idle_breakers
    broken = manager.get_breaker("many", "broken")
    assert broken.state is CircuitBreakerState.OPEN
    with pytest.raises(ReliabilityError) as info:
        resilient_call("many", "broken", lambda: "reached")
    assert info.value.error_type is ExternalServiceError.CIRCUIT_OPEN


# --- odd values from the user's own code --------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [(float("nan"), 0.1, 0.11), (float("-inf"), 0.1, 0.11), (-5.0, 0.0, 0.0)],
    ids=["nan-is-no-wait-given", "minus-inf-is-no-wait-given", "negative-is-in-the-past"],
)
def test_an_odd_retry_after_never_breaks_the_backoff(
    clock: FakeClock, retry_after: float, low: float, high: float
) -> None:
    configure(services={"odd": {"HTTP_BACKOFF_BASE_MS": 100}})
    attempts = []

    def func() -> str:
        attempts.append(1)
        raise ReliabilityError(
            ExternalServiceError.RATE_LIMIT, "odd", "op", "slow down", retry_after=retry_after
        )

    with pytest.raises(ReliabilityError) as info:
        resilient_call("odd", "op", func, max_retries=2)
    assert info.value.error_type is ExternalServiceError.RATE_LIMIT
    assert attempts == [1, 1]
    assert len(clock.sleeps) == 1
    assert low <= clock.sleeps[0] <= high


@pytest.mark.parametrize("max_retries", [101, 10**9, -1], ids=["101", "1e9", "negative"])
def test_max_retries_is_bounded_like_http_retries(max_retries: int) -> None:
    with pytest.raises(ValueError, match="from 0 to 100"):
        resilient_call("svc", "op", lambda: 1, max_retries=max_retries)
    assert get_circuit_breaker_manager().breakers() == []


def test_an_async_fallback_on_the_sync_call_is_a_type_error_not_a_coroutine() -> None:
    async def fallback(error: ReliabilityError) -> str:
        return "never awaited"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="fallback returned a coroutine") as info:
            resilient_call(
                "svc", "op", _fails(ConnectionError("x")), max_retries=1, fallback=fallback
            )
        gc.collect()
    assert isinstance(info.value.__cause__, ReliabilityError)


# --- hostile exceptions reach the call path, not only the classifier ----------------------------


class HalfBuilt(ReliabilityError):
    """A ReliabilityError subclass that never called ``super().__init__``."""

    def __init__(self) -> None:
        Exception.__init__(self, "half built")


class LyingClass(Exception):
    """``isinstance`` reads ``__class__``: this one raises."""

    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("__class__ exploded")


class SecretNested(Exception):
    pass


@pytest.mark.parametrize("make", [HalfBuilt, LyingClass], ids=["half-built", "lying-class"])
def test_a_hostile_exception_from_the_function_becomes_a_reliability_error(make) -> None:
    configure(services={"hostile": {"CB_FAIL_THRESHOLD": 1, "CB_RESET_SEC": 0.01}})
    for _ in range(2):
        with pytest.raises(ReliabilityError) as info:
            resilient_call("hostile", "op", _fails(make()), max_retries=1)
        assert info.value.service_name == "hostile"
        assert info.value.error_type in set(ExternalServiceError)
    # the permits were settled: after the reset time a healthy call gets through
    import time

    time.sleep(0.02)
    assert resilient_call("hostile", "op", lambda: "healthy") == "healthy"


@pytest.mark.parametrize("make", [HalfBuilt, LyingClass], ids=["half-built", "lying-class"])
async def test_a_hostile_exception_from_a_coroutine_becomes_a_reliability_error(make) -> None:
    async def func() -> str:
        raise make()

    with pytest.raises(ReliabilityError):
        await resilient_call_async("hostile", "op", func, max_retries=1)


def test_a_nested_errors_message_is_redacted_for_the_outer_call() -> None:
    def inner() -> str:
        raise ReliabilityError(
            ExternalServiceError.SERVER_ERROR,
            "partner",
            "orders",
            "failed at https://bob:hunter2@partner.example/orders?api_key=abc123",
        )

    with pytest.raises(ReliabilityError) as info:
        resilient_call("outer", "op", inner, max_retries=1)
    assert info.value.service_name == "outer"
    assert "hunter2" not in str(info.value)
    assert "abc123" not in str(info.value)


def test_idle_budgets_and_limiters_are_dropped_and_busy_ones_kept(clock: FakeClock) -> None:
    from otel_resilience import ReliabilityConfig, _runtime

    configure(
        ReliabilityConfig(RETRY_BUDGET_RATIO=0.2, RETRY_BUDGET_WINDOW_SEC=10, RATE_LIMIT="1/minute")
    )
    resilient_call("busy", "op", lambda: "ok")  # its limiter's only slot is taken
    runtime = otel_resilience.default_runtime()
    busy = runtime.service("busy")
    budget, limiter = busy.budget, busy.limiter
    for index in range(_runtime.MAX_IDLE_SERVICES + 10):
        runtime.service(f"idle-{index}")
    assert len(runtime._services) <= _runtime.MAX_IDLE_SERVICES + 1
    # the busy service kept its history: same budget, and its limiter still refuses
    assert runtime.service("busy").budget is budget
    assert runtime.service("busy").limiter is limiter
    with pytest.raises(ThrottledError):
        resilient_call("busy", "op", lambda: "ok")


def test_changing_an_unrelated_default_setting_keeps_a_rate_limiters_window() -> None:
    from otel_resilience import ReliabilityConfig

    configure(ReliabilityConfig(RATE_LIMIT="1/minute"))
    resilient_call("limited", "op", lambda: 1)
    configure(ReliabilityConfig(RATE_LIMIT="1/minute", HTTP_RETRIES=5))
    with pytest.raises(ThrottledError):
        resilient_call("limited", "op", lambda: 1)
