"""Backoff bounds (Hypothesis), jitter spread, retryable types."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience import ExternalServiceError, ReliabilityError
from otel_resilience._retry import RetryPlan, backoff_delay, is_retryable

E = ExternalServiceError


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base_ms=st.integers(min_value=0, max_value=60_000),
    max_ms=st.integers(min_value=0, max_value=3_600_000),
    seed=st.integers(),
)
def test_backoff_stays_within_the_seed_bounds(
    attempt: int, base_ms: int, max_ms: int, seed: int
) -> None:
    delay = backoff_delay(attempt, base_ms, max_ms, random.Random(seed))
    expected_ms = min(base_ms * 2 ** (attempt - 1), max_ms)
    assert expected_ms / 1000 <= delay <= (expected_ms + int(expected_ms * 0.1)) / 1000


@given(attempt=st.integers(min_value=1, max_value=20))
def test_backoff_doubles_with_each_attempt(attempt: int) -> None:
    low = backoff_delay(attempt, 100, 10**9, random.Random(0))
    high = backoff_delay(attempt + 1, 100, 10**9, random.Random(0))
    assert high > low


def test_jitter_spreads_delays_over_the_ten_percent_band() -> None:
    rng = random.Random(42)
    delays = [backoff_delay(3, 1000, 30_000, rng) for _ in range(4000)]
    # uniform over [4.0, 4.4]: mean 4.2, both ends reached, no value outside
    assert min(delays) >= 4.0
    assert max(delays) <= 4.4
    assert statistics.mean(delays) == pytest.approx(4.2, abs=0.01)
    assert min(delays) < 4.01
    assert max(delays) > 4.39
    assert len(set(delays)) > 300  # not a handful of values: callers do not retry in lockstep


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff_delay(0, 1000, 30_000)


@pytest.mark.parametrize("error_type", list(E), ids=lambda e: e.value)
def test_only_transient_types_are_retryable(error_type: ExternalServiceError) -> None:
    transient = {E.TIMEOUT, E.CONNECTION_ERROR, E.RATE_LIMIT, E.SERVER_ERROR, E.UNKNOWN_ERROR}
    assert is_retryable(error_type) is (error_type in transient)
    assert is_retryable(error_type, retry_unknown=False) is (
        error_type in transient - {E.UNKNOWN_ERROR}
    )


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    plan = RetryPlan("s", "e", max_attempts=3, base_ms=1000, max_ms=30_000, retry_after_max_sec=10)
    limited = ReliabilityError(E.RATE_LIMIT, "s", "e", retry_after=4.0)
    assert plan.delay_for(1, limited) == 4.0
    flooded = ReliabilityError(E.RATE_LIMIT, "s", "e", retry_after=500.0)
    assert plan.delay_for(1, flooded) == 10.0
    plain = ReliabilityError(E.SERVER_ERROR, "s", "e")
    assert 1.0 <= plan.delay_for(1, plain) <= 1.1
