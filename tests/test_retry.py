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


# --- the same decisions without tenacity (the seed: "gracefully handles missing tenacity") ----

_SCENARIOS = r"""
import json, logging, random, sys
if sys.argv[1] == "blocked":
    sys.modules["tenacity"] = None  # the import fails as if tenacity were not installed
import otel_resilience
from otel_resilience import ReliabilityConfig, ReliabilityError, resilient_call

class Clock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []
    def monotonic(self):
        return self.now
    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
    async def sleep_async(self, seconds):
        self.sleep(seconds)

logs = []
class Keep(logging.Handler):
    def emit(self, record):
        logs.append(record.getMessage())
logging.getLogger("otel_resilience").addHandler(Keep())
logging.getLogger("otel_resilience").setLevel(logging.DEBUG)

def failing(times, exc):
    left = [times]
    def func():
        if left[0] > 0:
            left[0] -= 1
            raise exc
        return "ok"
    return func

def outcome(func, **options):
    try:
        return ["value", resilient_call("svc", "op", func, **options)]
    except ReliabilityError as error:
        return ["error", error.error_type.value, error.attempts]

random.seed(7)
clock = Clock()
report = {"available": otel_resilience.TENACITY_AVAILABLE}
with otel_resilience.use_runtime(otel_resilience.Runtime(clock=clock)):
    otel_resilience.configure(ReliabilityConfig(HTTP_BACKOFF_BASE_MS=100, CB_FAIL_THRESHOLD=50))
    report["recovers"] = outcome(failing(3, ConnectionError("reset")), max_retries=5)
    report["exhausted"] = outcome(failing(9, ConnectionError("reset")), max_retries=3)
    E = otel_resilience.ExternalServiceError
    denied = ReliabilityError(E.PERMISSION_DENIED, "svc", "op", "no")
    report["not_retried"] = outcome(failing(9, denied), max_retries=3)
    otel_resilience.configure(services={"svc": {"RETRY_UNKNOWN_ERRORS": False}})
    report["unknown_kept"] = outcome(failing(9, RuntimeError("odd")), max_retries=3)
    otel_resilience.configure(services={"svc": {"RETRY_UNKNOWN_ERRORS": True}})
    report["deadline"] = outcome(
        failing(9, ConnectionError("reset")), max_retries=9, deadline_sec=1
    )
    otel_resilience.configure(services={"svc": {"CB_FAIL_THRESHOLD": 2, "CB_RESET_SEC": 60}})
    report["breaker"] = outcome(failing(9, ConnectionError("reset")), max_retries=5)
    report["open"] = outcome(lambda: "ok")
report["sleeps"] = clock.sleeps
report["logs"] = logs
print(json.dumps(report))
"""


def _run_scenarios(mode: str) -> dict[str, object]:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _SCENARIOS, mode],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_tenacity_the_same_decisions_are_made() -> None:
    with_tenacity = _run_scenarios("installed")
    without = _run_scenarios("blocked")

    assert with_tenacity.pop("available") is True
    assert without.pop("available") is False
    assert without == with_tenacity  # attempts, errors, every backoff sleep and log line
    assert with_tenacity["recovers"] == ["value", "ok"]
    assert with_tenacity["exhausted"] == ["error", "connection_error", 3]
    assert with_tenacity["not_retried"][:2] == ["error", "permission_denied"]  # type: ignore[index]
    assert with_tenacity["not_retried"][2] == 1  # type: ignore[index]
    assert len(with_tenacity["sleeps"]) >= 6  # type: ignore[arg-type]
    assert with_tenacity["unknown_kept"] == ["error", "unknown_error", 1]
    assert with_tenacity["breaker"] == ["error", "connection_error", 2]  # the breaker opened
    assert with_tenacity["open"][:2] == ["error", "circuit_open"]  # type: ignore[index]
    logs = with_tenacity["logs"]
    assert isinstance(logs, list)
    assert logs.count("All retries exhausted for svc (op)") == 2  # exhausted and deadline


@given(
    errors=st.lists(st.sampled_from(list(ExternalServiceError)), min_size=1, max_size=8),
    max_attempts=st.integers(min_value=2, max_value=6),
    retry_unknown=st.booleans(),
    left=st.one_of(st.none(), st.floats(min_value=0, max_value=5)),
    budget=st.lists(st.booleans(), min_size=8, max_size=8),
    retry_after=st.one_of(st.none(), st.floats(min_value=-1, max_value=100)),
    seed=st.integers(0, 2**16),
)
def test_both_steppers_decide_alike(
    errors: list[ExternalServiceError],
    max_attempts: int,
    retry_unknown: bool,
    left: float | None,
    budget: list[bool],
    retry_after: float | None,
    seed: int,
) -> None:
    """tenacity's decision machine and the built-in stepper: same delays, same stop reason."""
    from otel_resilience._retry import _BuiltinStepper, _TenacityStepper

    def decide(stepper: type) -> list[object]:
        allowed = iter(budget)
        plan = RetryPlan(
            service_name="svc",
            endpoint="op",
            max_attempts=max_attempts,
            base_ms=100,
            max_ms=2_000,
            retry_after_max_sec=30,
            retry_unknown=retry_unknown,
            remaining=lambda: left,
            rng=random.Random(seed),
            allow_retry=lambda: next(allowed),
        )
        plan._stepper = stepper(plan)
        decisions: list[object] = []
        for attempt, error_type in enumerate(errors, start=1):
            error = ReliabilityError(error_type, "svc", "op", "x", retry_after=retry_after)
            delay = plan.next_delay(attempt, error)
            decisions.append(delay)
            if delay is None:
                break
        return [*decisions, plan.stop_reason]

    assert decide(_BuiltinStepper) == decide(_TenacityStepper)


# --- jitter modes (RETRY_JITTER) --------------------------------------------------------------


@given(
    attempt=st.integers(min_value=1, max_value=120),
    base_ms=st.integers(min_value=0, max_value=60_000),
    max_ms=st.integers(min_value=0, max_value=3_600_000),
    seed=st.integers(),
)
def test_full_jitter_stays_between_zero_and_the_capped_delay(
    attempt: int, base_ms: int, max_ms: int, seed: int
) -> None:
    from otel_resilience._retry import full_jitter_delay

    delay = full_jitter_delay(attempt, base_ms, max_ms, random.Random(seed))
    assert 0.0 <= delay <= min(base_ms * 2 ** (attempt - 1), max_ms) / 1000


@given(
    attempts=st.integers(min_value=1, max_value=100),
    base_ms=st.integers(min_value=0, max_value=60_000),
    max_ms=st.integers(min_value=0, max_value=3_600_000),
    seed=st.integers(),
)
def test_decorrelated_jitter_is_positive_capped_and_bounded_by_the_exponential(
    attempts: int, base_ms: int, max_ms: int, seed: int
) -> None:
    from otel_resilience._retry import decorrelated_jitter_delay

    rng, state = random.Random(seed), 0.0
    for attempt in range(1, attempts + 1):
        delay, state = decorrelated_jitter_delay(attempt, base_ms, max_ms, state, rng)
        assert 0.0 <= delay <= max_ms / 1000
        assert delay <= base_ms * 2.0**attempt / 1.4 / 1000 + 1e-9


def test_decorrelated_jitter_has_a_median_first_delay_near_the_base() -> None:
    from otel_resilience._retry import decorrelated_jitter_delay

    rng = random.Random(3)
    firsts = [decorrelated_jitter_delay(1, 1000, 30_000, 0.0, rng)[0] for _ in range(4000)]
    assert 0.8 <= statistics.median(firsts) <= 1.2  # Polly's V2: median first retry ~ base


@pytest.mark.parametrize(
    ("mode", "low", "high"), [("seed", 1.0, 1.1), ("full", 0.0, 1.0), ("decorrelated", 0.0, 30.0)]
)
def test_retry_jitter_setting_shapes_the_backoff_of_calls(
    mode: str, low: float, high: float
) -> None:
    from otel_resilience import Runtime, configure, resilient_call, use_runtime
    from support import FakeClock

    clock = FakeClock()
    with use_runtime(Runtime(clock=clock)):
        configure(services={"svc": {"RETRY_JITTER": mode, "HTTP_BACKOFF_MAX_MS": 30_000}})

        def down() -> None:
            raise ConnectionError("down")

        for _ in range(20):
            with pytest.raises(ReliabilityError):
                resilient_call("svc", "op", down, max_retries=2)
            otel_resilience_reset_breakers()
    assert len(clock.sleeps) == 20
    assert all(low <= s <= high for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 10  # jittered, not constant


def otel_resilience_reset_breakers() -> None:
    import otel_resilience

    otel_resilience.get_circuit_breaker_manager().reset()
