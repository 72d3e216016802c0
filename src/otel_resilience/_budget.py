"""Retry budgets: retries may be at most a fraction of recent calls, plus a small floor.

The idea of Envoy's retry budgets, Finagle's ``RetryBudget`` and gRPC's retry throttling: during a
full outage every call fails, and blind retries multiply the load on a service that is already
down. With ``RETRY_BUDGET_RATIO=0.2``, retries over the last ``RETRY_BUDGET_WINDOW_SEC`` seconds
may be at most 20% of the calls made in that window plus ``RETRY_BUDGET_MIN_PER_SEC`` per second
(so a quiet service can still retry). A retry the budget refuses is not attempted: the call fails
with its own error and ``resilience.retry_budget.rejections`` counts it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ._config import ReliabilityConfig


class RetryBudget:
    """A sliding-window retry budget, shared by every call of one service.

    >>> now = [0.0]
    >>> budget = RetryBudget(ratio=0.5, min_per_sec=0, window_sec=10, clock=lambda: now[0])
    >>> for _ in range(4):
    ...     budget.record_call()
    >>> [budget.try_retry() for _ in range(3)]
    [True, True, False]
    """

    def __init__(
        self,
        ratio: float,
        min_per_sec: float = 1.0,
        window_sec: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_sec < 0 or window_sec <= 0:
            raise ValueError(
                "RetryBudget needs ratio >= 0, min_per_sec >= 0 and window_sec > 0, got"
                f" ratio={ratio!r}, min_per_sec={min_per_sec!r}, window_sec={window_sec!r}"
            )
        self.ratio = ratio
        self.min_per_sec = min_per_sec
        self.window_sec = window_sec
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: deque[list[int]] = deque()  # [second, calls, retries], oldest first
        #: the newest bucket, counted into without the lock while its second lasts
        self._current: list[int] = [-(2**63), 0, 0]
        self.rejected = 0

    def _bucket(self) -> list[int]:
        """The current second's bucket (made if needed), the seconds out of the window
        dropped; under the lock."""
        now = self._clock()
        second = int(now)
        horizon = now - self.window_sec
        buckets = self._buckets
        while buckets and buckets[0][0] + 1 <= horizon:
            buckets.popleft()
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
            self._current = buckets[-1]
        return buckets[-1]

    def record_call(self) -> None:
        """Count one call (each call, not each attempt). On the success path: without the lock
        while the second lasts (a count lost to a race between threads counts one call less,
        the safe side of a budget)."""
        current = self._current
        if current[0] == int(self._clock()):
            current[1] += 1
            return
        with self._lock:
            self._bucket()[1] += 1

    def _totals(self) -> tuple[int, int]:
        calls = retries = 0
        for _, bucket_calls, bucket_retries in self._buckets:
            calls += bucket_calls
            retries += bucket_retries
        return calls, retries

    @property
    def calls(self) -> int:
        """Calls counted in the window."""
        with self._lock:
            self._bucket()
            return self._totals()[0]

    @property
    def retries(self) -> int:
        """Retries spent in the window."""
        with self._lock:
            self._bucket()
            return self._totals()[1]

    def idle(self) -> bool:
        """Nothing left in the window: a new budget would behave the same (safe to drop)."""
        with self._lock:
            self._bucket()
            return self._totals() == (0, 0)

    def try_retry(self) -> bool:
        """Spend one retry if the budget allows it."""
        with self._lock:
            bucket = self._bucket()
            calls, retries = self._totals()
            allowed = self.ratio * calls + self.min_per_sec * self.window_sec
            if retries + 1 > allowed:
                self.rejected += 1
                return False
            bucket[2] += 1
            return True


def budget_settings(config: ReliabilityConfig) -> tuple[float, float, float] | None:
    """What a service's budget is built from (None: no budget). The runtime keeps a budget
    while these are unchanged, so configuring another setting keeps its history."""
    ratio = config.RETRY_BUDGET_RATIO
    if ratio is None:
        return None
    return (ratio, config.RETRY_BUDGET_MIN_PER_SEC, config.RETRY_BUDGET_WINDOW_SEC)
