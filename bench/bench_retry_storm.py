"""A full outage with and without a retry budget: how many attempts reach the dead service.

Run: .venv/bin/python bench/bench_retry_storm.py

2,000 calls over 20 (simulated) seconds to a service that fails every attempt, each call allowed
4 attempts. Without a budget every call makes 4 attempts (the retry storm: 4x the load on a
service that is already down); with RETRY_BUDGET_RATIO=0.2 and a floor of 1 retry/s, retries stay
within 20% of calls plus the floor. The breaker is disabled here to isolate the budget (with it,
the breaker would stop the storm sooner still).
"""

from __future__ import annotations

import contextlib
import logging
import sys

import otel_resilience
from otel_resilience import ReliabilityError, _budget, _call, configure, resilient_call

CALLS = 2_000
SECONDS = 20.0


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def storm(budget_ratio: float | None) -> tuple[int, int]:
    otel_resilience.reset()
    clock = Clock()
    settings: dict[str, object] = {
        "HTTP_RETRIES": 4,
        "HTTP_BACKOFF_BASE_MS": 0,
        "CB_FAIL_THRESHOLD": 1_000_000,
        "RETRY_BUDGET_RATIO": budget_ratio,
        "RETRY_BUDGET_MIN_PER_SEC": 1.0,
        "RETRY_BUDGET_WINDOW_SEC": 10.0,
    }
    configure(services={"dead": settings})
    attempts = 0

    def dead() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError("service down")

    _call._sleep = lambda seconds: None  # type: ignore[assignment]
    budget = _budget.get_retry_budget("dead", otel_resilience.get_config("dead"))
    if budget is not None:
        budget._clock = clock
    for i in range(CALLS):
        clock.now = i * SECONDS / CALLS
        with contextlib.suppress(ReliabilityError):
            resilient_call("dead", "op", dead)
    return attempts, attempts - CALLS


def main() -> int:
    logging.getLogger("otel_resilience").setLevel(logging.CRITICAL)  # 2,000 failures are noisy
    plain_attempts, plain_retries = storm(None)
    budget_attempts, budget_retries = storm(0.2)
    allowed = 0.2 * CALLS + 1.0 * SECONDS  # ratio of calls in all windows + floor per second
    print(f"{CALLS} calls over {SECONDS:.0f} s to a dead service, 4 attempts allowed per call")
    print(f"no budget:          {plain_attempts:6d} attempts ({plain_retries} retries, "
          f"{plain_attempts / CALLS:.2f}x the calls)")  # fmt: skip
    print(f"budget ratio 0.2:   {budget_attempts:6d} attempts ({budget_retries} retries, "
          f"{budget_attempts / CALLS:.2f}x the calls; bound {allowed:.0f} retries)")  # fmt: skip
    ok = budget_retries <= allowed and plain_retries == 3 * CALLS
    print("RESULT", "budget holds" if ok else "budget exceeded")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
