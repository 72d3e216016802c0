"""RetryBudget: the ratio, the floor, the sliding window."""

from __future__ import annotations

import pytest

from otel_resilience import RetryBudget
from support import FakeClock


def test_ratio_of_recent_calls_plus_floor() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.2, min_per_sec=1.0, window_sec=10, clock=clock)
    for _ in range(100):
        budget.record_call()
    granted = sum(budget.try_retry() for _ in range(100))
    assert granted == 30  # 20% of 100 calls + 1/s over 10 s
    assert budget.rejected == 70


def test_old_calls_and_retries_leave_the_window() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.5, min_per_sec=0.0, window_sec=10, clock=clock)
    for _ in range(10):
        budget.record_call()
    assert sum(budget.try_retry() for _ in range(10)) == 5
    clock.advance(5)
    assert not budget.try_retry()  # still inside the window: spent
    clock.advance(6)  # the first second's calls and retries are now 11 s old
    for _ in range(4):
        budget.record_call()
    assert (budget.calls, budget.retries) == (4, 0)  # only the new calls count
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


def test_floor_alone_lets_a_quiet_service_retry() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.0, min_per_sec=0.5, window_sec=4, clock=clock)
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"ratio": 0.1, "min_per_sec": -1}, {"ratio": 0.1, "window_sec": 0}],
    ids=["ratio", "floor", "window"],
)
def test_invalid_budget_is_rejected_with_the_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryBudget needs ratio >= 0"):
        RetryBudget(**kwargs)
