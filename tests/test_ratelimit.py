"""Local rate limits per service (``RATE_LIMIT``, memory backend), on a fake clock."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator

import limits.storage.memory
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_resilience
from otel_resilience import (
    ExternalServiceError,
    ReliabilityConfig,
    ThrottledError,
    _ratelimit,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._ratelimit import LocalRateLimiter
from support import counter_points, limiter_for


class FakeTime:
    """Wall and monotonic clocks that move only when something sleeps."""

    def __init__(self) -> None:
        self.wall_now = 1_800_000_000.0
        self.mono_now = 1000.0
        self.sleeps: list[float] = []

    def wall(self) -> float:
        return self.wall_now

    def monotonic(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def sleep_async(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    """An isolated runtime on a fake clock, and the ``limits`` memory storage's clock, faked."""
    fake = FakeTime()
    monkeypatch.setattr(_ratelimit, "_wall", fake.wall)
    monkeypatch.setattr(limits.storage.memory, "time", types.SimpleNamespace(time=fake.wall))
    shared = otel_resilience.default_runtime().telemetry
    with otel_resilience.use_runtime(otel_resilience.Runtime(clock=fake, telemetry=shared)):
        yield fake


@pytest.mark.parametrize(
    ("rate", "allowed"),
    [("3/second", 3), ("5 per minute", 5), ("2 per 10 seconds", 2)],
    ids=["per-second", "per-minute", "per-10-seconds"],
)
def test_limiter_admits_the_rate_then_refuses(rate: str, allowed: int, fake_time: FakeTime) -> None:
    limiter = LocalRateLimiter("payments", rate, clock=fake_time)

    taken = [limiter.acquire(0) for _ in range(allowed + 2)]

    assert taken == [True] * allowed + [False, False]


def test_waiting_caller_gets_the_slot_when_the_window_frees(fake_time: FakeTime) -> None:
    limiter = LocalRateLimiter("payments", "2/second", clock=fake_time)
    assert limiter.acquire(0)
    fake_time.advance(0.25)
    assert limiter.acquire(0)

    assert limiter.acquire(max_wait_sec=2)

    # it slept until the oldest hit (at 0 s) left the 1 s window: 0.75 s after the second hit
    # (the former `limits`-backed local limiter slept 1.0 s here)
    assert sum(fake_time.sleeps) == pytest.approx(0.75, abs=0.01)
    assert not limiter.acquire(0)  # the second and third hits are in the window


def test_caller_fails_at_once_when_no_slot_frees_in_its_wait(fake_time: FakeTime) -> None:
    limiter = LocalRateLimiter("payments", "1/second", clock=fake_time)
    assert limiter.acquire(0)

    assert not limiter.acquire(max_wait_sec=0.5)

    assert fake_time.sleeps == []  # no point sleeping 0.5 s for a slot 1 s away


async def test_async_waiting_uses_the_async_sleep(fake_time: FakeTime) -> None:
    limiter = LocalRateLimiter("payments", "1/second", clock=fake_time)
    assert await limiter.acquire_async(0)

    assert not await limiter.acquire_async(0.5)
    assert await limiter.acquire_async(1.5)

    assert sum(fake_time.sleeps) == pytest.approx(1.0, abs=0.01)


@pytest.mark.usefixtures("fake_time")
def test_services_have_separate_limits() -> None:
    config = ReliabilityConfig(RATE_LIMIT="1/second")
    first = limiter_for("payments", config)
    second = limiter_for("search", config)
    assert first is not None
    assert second is not None

    assert [first.acquire(0), second.acquire(0), first.acquire(0)] == [True, True, False]


def test_one_limiter_per_service_until_the_config_changes() -> None:
    runtime = otel_resilience.default_runtime()
    otel_resilience.configure(services={"payments": {"RATE_LIMIT": "10/second"}})
    limiter = runtime.service("payments").limiter

    assert isinstance(limiter, LocalRateLimiter)
    otel_resilience.configure(services={"payments": {"RATE_LIMIT": "10/second", "HTTP_RETRIES": 2}})
    assert runtime.service("payments").limiter is limiter
    otel_resilience.configure(services={"payments": {"RATE_LIMIT": "20/second"}})
    changed = runtime.service("payments").limiter
    assert isinstance(changed, LocalRateLimiter)
    assert changed is not limiter
    assert changed.rate == "20/second"
    otel_resilience.configure(services={"payments": {"RATE_LIMIT": None}})
    assert runtime.service("payments").limiter is None


@pytest.mark.usefixtures("fake_time")
def test_call_over_the_limit_is_throttled_and_counted(metric_reader: InMemoryMetricReader) -> None:
    otel_resilience.configure(services={"payments": {"RATE_LIMIT": "2/minute"}})
    calls: list[int] = []

    for _ in range(2):
        resilient_call("payments", "charge", lambda: calls.append(1))
    with pytest.raises(ThrottledError) as caught:
        resilient_call("payments", "charge", lambda: calls.append(1))

    assert len(calls) == 2  # the throttled call never ran
    error = caught.value
    assert error.error_type is ExternalServiceError.THROTTLED
    assert (error.service_name, error.endpoint, error.attempts) == ("payments", "charge", 0)
    assert "2/minute" in str(error)
    assert counter_points(metric_reader, "resilience.rate_limiter.rejections") == {
        (("resilience.endpoint", "charge"), ("resilience.service", "payments")): 1
    }
    assert resilient_call("search", "query", lambda: "other services are not limited") == (
        "other services are not limited"
    )


async def test_async_call_waits_for_a_slot_within_the_configured_wait(
    fake_time: FakeTime,
) -> None:
    otel_resilience.configure(
        services={"payments": {"RATE_LIMIT": "1/second", "RATE_LIMIT_MAX_WAIT_SEC": 2.0}}
    )

    async def charge() -> str:
        return "charged"

    assert await resilient_call_async("payments", "charge", charge) == "charged"
    assert await resilient_call_async("payments", "charge", charge) == "charged"

    assert sum(fake_time.sleeps) == pytest.approx(1.0, abs=0.01)


@pytest.mark.usefixtures("fake_time")
def test_rate_limit_from_the_environment_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIABILITY_PAYMENTS_RATE_LIMIT", "1 per second")
    otel_resilience.reset()

    resilient_call("payments", "charge", lambda: None)
    with pytest.raises(ThrottledError):
        resilient_call("payments", "charge", lambda: None)
    resilient_call("search", "query", lambda: None)
    resilient_call("search", "query", lambda: None)


def _load_limits() -> object:
    return _ratelimit._import_limits()


def _load_redis() -> object:
    from otel_resilience._redis import import_redis

    return import_redis()


@pytest.mark.parametrize(
    ("module", "load"),
    [("limits", _load_limits), ("redis", _load_redis)],
    ids=["limits", "redis"],
)
def test_missing_extra_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, load: Callable[[], object]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # the import fails as if not installed

    with pytest.raises(ImportError, match=r"pip install 'otel-resilience\[redis\]'"):
        load()


def test_the_limiters_build_their_rate_with_the_config_parser() -> None:
    from otel_resilience._ratelimit import LocalRateLimiter

    with pytest.raises(ValueError, match="a window of 0 units admits nothing"):
        LocalRateLimiter("svc", "100/0 seconds")  # limits.parse alone reads 100 per second
    limiter = LocalRateLimiter("svc", "2 per 3 seconds")
    assert (limiter._amount, limiter._window) == (2, 3.0)
