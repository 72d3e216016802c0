"""resilient_call_async and the decorators on coroutine functions."""

from __future__ import annotations

import asyncio
import time

import pytest

from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    configure,
    remaining_time,
    resilient,
    resilient_call_async,
)
from support import FakeClock


class AsyncFlaky:
    def __init__(self, *failures: BaseException, value: object = "ok") -> None:
        self.failures = list(failures)
        self.value = value
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        return self.value


async def test_returns_the_coroutine_result() -> None:
    func = AsyncFlaky(value=[1, 2])
    assert await resilient_call_async("s", "e", func) == [1, 2]
    assert func.calls == 1


async def test_retries_with_asyncio_sleep(clock: FakeClock) -> None:
    func = AsyncFlaky(ConnectionResetError(), ConnectionResetError(), value="third")
    assert await resilient_call_async("s", "e", func, max_retries=3) == "third"
    assert func.calls == 3
    assert len(clock.sleeps) == 2


async def test_backoff_does_not_block_the_event_loop() -> None:
    configure(services={"s": {"HTTP_BACKOFF_BASE_MS": 100}})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    func = AsyncFlaky(ConnectionResetError(), value="ok")
    assert await resilient_call_async("s", "e", func) == "ok"
    task.cancel()
    assert ticks >= 5  # the loop kept running during the ~0.1 s backoff


async def test_timeout_cancels_the_coroutine_for_real() -> None:
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    start = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        await resilient_call_async("clamav", "scan", hang, timeout_sec=0.05, max_retries=1)
    assert time.monotonic() - start < 1.0
    assert cancelled.is_set()
    assert info.value.error_type is ExternalServiceError.TIMEOUT


async def test_non_retryable_error_fails_after_one_attempt() -> None:
    class Denied(Exception):
        status_code = 403

    func = AsyncFlaky(Denied("no"))
    with pytest.raises(ReliabilityError) as info:
        await resilient_call_async("s", "e", func)
    assert func.calls == 1
    assert info.value.error_type is ExternalServiceError.PERMISSION_DENIED


async def test_open_breaker_rejects_and_async_fallback_serves(clock: FakeClock) -> None:
    configure(services={"s": {"CB_FAIL_THRESHOLD": 1}})
    with pytest.raises(ReliabilityError):
        await resilient_call_async("s", "e", AsyncFlaky(ConnectionError()), max_retries=1)
    func = AsyncFlaky(value="never")
    with pytest.raises(CircuitOpenError):
        await resilient_call_async("s", "e", func)

    async def fallback(error: ReliabilityError) -> str:
        return "from cache"

    assert await resilient_call_async("s", "e", func, fallback=fallback) == "from cache"
    assert func.calls == 0


async def test_remaining_time_inside_a_coroutine() -> None:
    async def read() -> float | None:
        return remaining_time()

    left = await resilient_call_async("s", "e", read, timeout_sec=5)
    assert left is not None
    assert 4.0 < left <= 5.0


async def test_caller_cancellation_propagates_and_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(resilient_call_async("s", "e", slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    from otel_resilience import get_circuit_breaker_manager

    assert get_circuit_breaker_manager().get_breaker("s", "e").failure_count == 0


async def test_resilient_decorator_on_a_coroutine_function(clock: FakeClock) -> None:
    calls = 0

    @resilient("openai", "chat.completions", max_retries=2)
    async def complete(prompt: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError()
        return prompt.upper()

    assert await complete("hi") == "HI"
    assert calls == 2
    assert complete.__name__ == "complete"


async def test_bad_func_fails_before_anything() -> None:
    with pytest.raises(TypeError, match="func must be callable"):
        await resilient_call_async("s", "e", None)  # type: ignore[arg-type]


async def test_deadline_stops_async_retries(clock: FakeClock) -> None:
    configure(services={"s": {"HTTP_BACKOFF_BASE_MS": 1000}})
    func = AsyncFlaky(*[ConnectionResetError()] * 10)
    with pytest.raises(ReliabilityError):
        await resilient_call_async("s", "e", func, max_retries=10, deadline_sec=4.0)
    assert func.calls == 3  # backoffs of ~1 s and ~2 s fit in 4 s, ~4 s would not
    assert sum(clock.sleeps) < 4.0


async def test_async_fallback_value(clock: FakeClock) -> None:
    func = AsyncFlaky(ConnectionRefusedError())
    assert await resilient_call_async("s", "e", func, max_retries=1, fallback=[]) == []


async def test_async_retries_stop_when_the_breaker_opens_mid_call(clock: FakeClock) -> None:
    configure(services={"gcs": {"CB_FAIL_THRESHOLD": 2}})
    func = AsyncFlaky(*[ConnectionResetError()] * 10)
    with pytest.raises(ReliabilityError) as info:
        await resilient_call_async("gcs", "upload", func, max_retries=5)
    assert func.calls == 2
    assert info.value.error_type is ExternalServiceError.CONNECTION_ERROR


async def test_async_retry_budget_refuses_retries(clock: FakeClock) -> None:
    configure(
        services={
            "s": {
                "RETRY_BUDGET_RATIO": 0.0,
                "RETRY_BUDGET_MIN_PER_SEC": 0,
                "HTTP_BACKOFF_BASE_MS": 0,
            }
        }
    )
    func = AsyncFlaky(*[ConnectionResetError()] * 5)
    with pytest.raises(ReliabilityError):
        await resilient_call_async("s", "e", func, max_retries=3)
    assert func.calls == 1  # a zero budget refuses every retry


async def test_async_own_reliability_error_keeps_its_type(clock: FakeClock) -> None:
    from otel_resilience import map_external_error

    async def scan() -> None:
        raise map_external_error("clamav", "scan", Exception("403 Forbidden"))

    with pytest.raises(ReliabilityError) as info:
        await resilient_call_async("clamav", "scan", scan)
    assert info.value.error_type is ExternalServiceError.PERMISSION_DENIED
    assert info.value.attempts == 1
