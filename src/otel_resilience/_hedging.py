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

import heapq
import itertools
import threading
import weakref
from asyncio import AbstractEventLoop
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

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


class Hedgeable(Protocol):
    """What a :class:`HedgeTimer` calls when a round's hedge delay has passed."""

    def launch(self) -> None: ...


class HedgeTimer:
    """The hedge delays of one service's asyncio rounds on one event loop, woken by the loop's
    own timers (a ``TimerHandle`` armed and cancelled per call would cost more than the rest of
    hedging). With a fixed delay the rounds fall due in the order they started: a queue; with
    the percentile's moving delay, a heap.

    A round that ended is not removed: its entry is dropped when it falls due, as the event
    loop drops its own cancelled timers. No reference to the loop is kept (the timer is the
    value of a weak mapping keyed by the loop).
    """

    __slots__ = ("__weakref__", "_armed", "_heap", "_order", "_queue")

    def __init__(self, fixed: bool) -> None:
        self._queue: deque[tuple[float, Hedgeable]] | None = deque() if fixed else None
        self._heap: list[tuple[float, int, Hedgeable]] = []
        self._order = itertools.count()  # ties in due time keep the order of arrival
        #: the earliest time a wake-up is armed for (None: none known to be pending)
        self._armed: float | None = None

    def after(self, loop: AbstractEventLoop, delay: float, round_: Hedgeable) -> None:
        """Call ``round_.launch()`` on ``loop`` once ``delay`` seconds have passed."""
        due = loop.time() + delay
        queue = self._queue
        if queue is not None:
            queue.append((due, round_))
        else:
            heapq.heappush(self._heap, (due, next(self._order), round_))
        armed = self._armed
        if armed is None or due < armed:
            self._armed = due
            loop.call_at(due, self._fire, loop, due)

    def forget(self, round_: Hedgeable) -> None:
        """A round that ended: its entry dropped now if it is the newest (a call that ended
        before the next one started), so that sequential calls leave nothing behind."""
        queue = self._queue
        if queue and queue[-1][1] is round_:
            queue.pop()

    def _fire(self, loop: AbstractEventLoop, when: float) -> None:
        # the loop runs a timer up to its clock's resolution early: ``when`` counts as reached
        now = max(loop.time(), when)
        armed = self._armed
        if armed is not None and armed <= now:
            self._armed = None  # this was the earliest wake-up (later ones may still come)
        for round_ in self._take_due(now):
            round_.launch()  # may add a further hedge of its round
        due = self._next_due()
        if due is not None:
            armed = self._armed
            if armed is None or due < armed:
                self._armed = due
                loop.call_at(due, self._fire, loop, due)

    def _take_due(self, now: float) -> list[Hedgeable]:
        queue, heap = self._queue, self._heap
        due: list[Hedgeable] = []
        if queue is not None:
            while queue and queue[0][0] <= now:
                due.append(queue.popleft()[1])
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        return due

    def _next_due(self) -> float | None:
        queue = self._queue
        if queue is not None:
            return queue[0][0] if queue else None
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._queue or ()) + len(self._heap)


class HedgePolicy:
    """The hedging decisions of one service."""

    __slots__ = (
        "_lock",
        "_recent",
        "_timers",
        "_trackers",
        "budget",
        "fixed_delay",
        "max_extra",
        "percentile",
    )

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
        self._timers: weakref.WeakKeyDictionary[AbstractEventLoop, HedgeTimer] = (
            weakref.WeakKeyDictionary()
        )
        #: the loop last used and its timer (most services run on one loop)
        self._recent: tuple[weakref.ref[AbstractEventLoop], HedgeTimer] | None = None

    def timer(self, loop: AbstractEventLoop) -> HedgeTimer:
        """This service's hedge timer on ``loop`` (one per loop, gone with the loop)."""
        recent = self._recent
        if recent is not None and recent[0]() is loop:
            return recent[1]
        with self._lock:
            timer = self._timers.get(loop)
            if timer is None:
                timer = self._timers[loop] = HedgeTimer(self.fixed_delay is not None)
            self._recent = (weakref.ref(loop), timer)
        return timer

    def delay(self, endpoint: str) -> float | None:
        """Seconds to wait before each hedge of a call to ``endpoint`` (None: do not hedge)."""
        if self.fixed_delay is not None:
            return self.fixed_delay
        tracker = self._trackers.get(endpoint)
        return None if tracker is None else tracker.percentile()

    def record_success(self, endpoint: str, seconds: float) -> None:
        """A successful attempt's latency (the percentile mode's; the engine does not call
        this with a fixed delay)."""
        tracker = self._trackers.get(endpoint)
        if tracker is None:
            with self._lock:
                tracker = self._trackers.get(endpoint)
                if tracker is None:
                    if len(self._trackers) >= MAX_TRACKED_ENDPOINTS:
                        del self._trackers[next(iter(self._trackers))]
                    tracker = self._trackers[endpoint] = LatencyTracker(self.percentile)
        tracker.record(seconds)

    def allow_hedge(self) -> bool:
        """Spend one hedge from the budget, if it allows one."""
        return self.budget.try_retry()

    def idle(self) -> bool:
        return self.budget.idle()
