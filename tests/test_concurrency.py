"""Thread safety: parallel calls through one breaker, the probe limit under contention."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from otel_resilience import (
    CircuitBreakerState,
    CircuitOpenError,
    ReliabilityError,
    configure,
    get_circuit_breaker_manager,
    resilient_call,
)
from otel_resilience._breakers import REJECTED
from support import FakeClock


def test_sixteen_threads_run_in_parallel_through_one_breaker() -> None:
    """The breaker's lock is never held while the function runs (pybreaker serialises)."""
    inside = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(16, timeout=10)

    def work() -> int:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        gate.wait()  # only passes when all 16 are inside at once
        with lock:
            inside -= 1
        return 1

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: resilient_call("s", "e", work), range(16)))
    assert results == [1] * 16
    assert peak == 16


def test_counts_add_up_under_contention() -> None:
    configure(services={"s": {"CB_FAIL_THRESHOLD": 10_000, "HTTP_BACKOFF_BASE_MS": 0}})
    attempts = 0
    lock = threading.Lock()

    def one(index: int) -> int:
        tries = 0

        def fails_once() -> int:
            nonlocal attempts, tries
            with lock:
                attempts += 1
            tries += 1
            if tries == 1:
                raise ConnectionResetError("first attempt fails")
            return index

        return resilient_call("s", "e", fails_once, max_retries=3)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(400)))
    assert results == list(range(400))
    assert attempts == 800  # exactly one retry per call, none lost or doubled
    breaker = get_circuit_breaker_manager().get_breaker("s", "e")
    assert breaker.state is CircuitBreakerState.CLOSED
    assert breaker.failure_count == 0


def test_half_open_probe_limit_holds_under_contention(clock: FakeClock) -> None:
    configure(
        services={"s": {"CB_FAIL_THRESHOLD": 1, "CB_RESET_SEC": 5, "CB_HALF_OPEN_MAX_CALLS": 3}}
    )
    breaker = get_circuit_breaker_manager().get_breaker("s", "e")
    breaker.record_failure(breaker.try_acquire())
    clock.advance(5)
    start = threading.Barrier(32, timeout=10)
    permits: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        start.wait()
        permit = breaker.try_acquire()
        with lock:
            permits.append(permit)

    threads = [threading.Thread(target=grab) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(p.probe for p in permits) == 3
    assert sum(p == REJECTED for p in permits) == 29


def test_concurrent_callers_during_half_open_only_one_reaches_the_service(clock: FakeClock) -> None:
    configure(services={"clamav": {"CB_FAIL_THRESHOLD": 1, "CB_RESET_SEC": 5}})
    with pytest.raises(ReliabilityError):
        resilient_call(
            "clamav", "scan", lambda: (_ for _ in ()).throw(ConnectionError()), max_retries=1
        )
    clock.advance(5)
    reached = 0
    release = threading.Event()
    lock = threading.Lock()

    def slow_probe() -> str:
        nonlocal reached
        with lock:
            reached += 1
        release.wait(5)
        return "clean"

    outcomes: list[str] = []

    def caller() -> None:
        try:
            outcomes.append(resilient_call("clamav", "scan", slow_probe))
        except CircuitOpenError:
            outcomes.append("rejected")

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while outcomes.count("rejected") < 7 and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for thread in threads:
        thread.join()
    assert reached == 1
    assert sorted(outcomes) == ["clean"] + ["rejected"] * 7
    assert get_circuit_breaker_manager().get_breaker("scan").state is CircuitBreakerState.CLOSED


def test_breaker_creation_is_race_free() -> None:
    barrier = threading.Barrier(16, timeout=10)
    seen = []

    def create() -> None:
        barrier.wait()
        seen.append(get_circuit_breaker_manager().breaker_for("new", "endpoint"))

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(b) for b in seen}) == 1
