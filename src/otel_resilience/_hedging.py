"""Hedging policy of a service: when to send an extra copy of a slow attempt, and how often.

``HEDGE_MAX_EXTRA`` extra attempts may run beside the first, each started after the hedge
delay: ``HEDGE_DELAY_SEC`` (fixed), or the ``HEDGE_DELAY_PERCENTILE`` of the endpoint's recent
successful attempt latencies (Finagle's BackupRequestFilter; no hedging until 20 successes have
been seen). ``HEDGE_BUDGET_RATIO`` caps hedges at that share of calls over 10 s, plus one per
10 s so that a quiet service can hedge at all (a ``RetryBudget``), so hedging can never double
the load. The drivers in ``_call``
run the attempts; this module only decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from ._budget import RetryBudget
from ._config import ReliabilityConfig

#: successes an endpoint needs before its percentile is trusted
MIN_SAMPLES: Final = 20
#: successful latencies kept per endpoint (a ring), and how often the percentile is recomputed
WINDOW: Final = 128
_REFRESH_EVERY: Final = 16
#: endpoints tracked per service; past it the least recently added is dropped
MAX_TRACKED_ENDPOINTS: Final = 512
#: the budget's window
BUDGET_WINDOW_SEC: Final = 10.0


class LatencyTracker:
    """Recent successful latencies of one endpoint and a cached percentile of them."""

    __slots__ = ("_count", "_lock", "_next", "_percentile", "_quantile", "_samples")

    def __init__(self, percentile: float) -> None:
        self._quantile = percentile / 100.0
        self._samples: list[float] = []
        self._next = 0
        self._count = 0
        self._percentile: float | None = None
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        with self._lock:
            if len(self._samples) < WINDOW:
                self._samples.append(seconds)
            else:
                self._samples[self._next] = seconds
                self._next = (self._next + 1) % WINDOW
            self._count += 1
            if self._count >= MIN_SAMPLES and (
                self._percentile is None or self._count % _REFRESH_EVERY == 0
            ):
                ordered = sorted(self._samples)
                index = min(len(ordered) - 1, int(self._quantile * len(ordered)))
                self._percentile = ordered[index]

    def percentile(self) -> float | None:
        """The percentile, or None before ``MIN_SAMPLES`` successes."""
        return self._percentile


def hedging_settings(config: ReliabilityConfig) -> tuple[object, ...] | None:
    if config.HEDGE_MAX_EXTRA == 0:
        return None
    return (
        config.HEDGE_MAX_EXTRA,
        config.HEDGE_DELAY_SEC,
        config.HEDGE_DELAY_PERCENTILE,
        config.HEDGE_BUDGET_RATIO,
    )


class HedgePolicy:
    """The hedging decisions of one service."""

    __slots__ = ("_lock", "_trackers", "budget", "fixed_delay", "max_extra", "percentile")

    def __init__(self, config: ReliabilityConfig, clock: Callable[[], float]) -> None:
        self.max_extra = config.HEDGE_MAX_EXTRA
        self.fixed_delay = config.HEDGE_DELAY_SEC
        self.percentile = (
            config.HEDGE_DELAY_PERCENTILE if config.HEDGE_DELAY_PERCENTILE is not None else 95.0
        )
        # one hedge per window on top of the share, so a quiet service can hedge at all
        self.budget = RetryBudget(
            config.HEDGE_BUDGET_RATIO, 1 / BUDGET_WINDOW_SEC, BUDGET_WINDOW_SEC, clock=clock
        )
        self._trackers: dict[str, LatencyTracker] = {}
        self._lock = threading.Lock()

    def delay(self, endpoint: str) -> float | None:
        """Seconds to wait before each hedge of a call to ``endpoint`` (None: do not hedge)."""
        if self.fixed_delay is not None:
            return self.fixed_delay
        tracker = self._trackers.get(endpoint)
        return None if tracker is None else tracker.percentile()

    def record_success(self, endpoint: str, seconds: float) -> None:
        """A successful attempt's latency (only the percentile mode keeps them)."""
        if self.fixed_delay is not None:
            return
        tracker = self._trackers.get(endpoint)
        if tracker is None:
            with self._lock:
                tracker = self._trackers.get(endpoint)
                if tracker is None:
                    if len(self._trackers) >= MAX_TRACKED_ENDPOINTS:
                        del self._trackers[next(iter(self._trackers))]
                    tracker = self._trackers[endpoint] = LatencyTracker(self.percentile)
        tracker.record(seconds)

    def record_call(self) -> None:
        self.budget.record_call()

    def allow_hedge(self) -> bool:
        """Spend one hedge from the budget, if it allows one."""
        return self.budget.try_retry()

    def idle(self) -> bool:
        return self.budget.idle()
