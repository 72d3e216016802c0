"""What the workload saw, per (service, endpoint): the numbers behind the live view and summary.

Everything here is measured by the demo at its own call sites (not read back from the metrics), so
the view works with metrics turned off and the summary can tell what the library did.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: calls the live p95 looks back over, per endpoint
RECENT_WINDOW: int = 500
#: samples kept for the whole-run p95 (reservoir sampling beyond this)
RESERVOIR_SIZE: int = 20_000


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by the nearest-rank method; None for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    >>> percentile([5.0], 95)
    5.0
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One ``resilient_call`` as the demo saw it."""

    service: str
    endpoint: str
    duration_sec: float
    attempts: int
    #: attempts that ran out of time
    timeouts: int = 0
    #: the ``ExternalServiceError`` value of a failed call, None for a success
    error_type: str | None = None
    #: (Retry-After the server sent, seconds until the next attempt started), per honoured 429
    retry_after_waits: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A breaker changed state."""

    at_sec: float  # seconds since the start of the run
    service: str
    endpoint: str
    old: str
    new: str
    failure_count: int


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the live view."""

    service: str
    endpoint: str
    calls: int
    succeeded: int
    retries: int
    timeouts: int
    rejected: int
    p95_sec: float | None
    errors: dict[str, int]
    breaker_state: str = "closed"
    failure_count: int = 0
    seconds_until_probe: float | None = None

    @property
    def success_pct(self) -> float | None:
        return 100.0 * self.succeeded / self.calls if self.calls else None


@dataclass
class EndpointStats:
    """Counters of one (service, endpoint)."""

    calls: int = 0
    succeeded: int = 0
    retries: int = 0
    timeouts: int = 0
    rejected: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_WINDOW))
    reservoir: list[float] = field(default_factory=list)
    retry_after_waits: list[tuple[float, float]] = field(default_factory=list)


class Stats:
    """Thread-safe collector the workers write and the view reads."""

    def __init__(self, endpoints: Iterable[tuple[str, str]], *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._by_key: dict[tuple[str, str], EndpointStats] = {
            key: EndpointStats() for key in endpoints
        }

    def record(self, outcome: CallOutcome) -> None:
        key = (outcome.service, outcome.endpoint)
        with self._lock:
            entry = self._by_key.setdefault(key, EndpointStats())
            entry.calls += 1
            entry.retries += max(0, outcome.attempts - 1)
            entry.timeouts += outcome.timeouts
            if outcome.error_type is None:
                entry.succeeded += 1
            else:
                entry.errors[outcome.error_type] += 1
                if outcome.error_type == "circuit_open":
                    entry.rejected += 1
            if len(entry.retry_after_waits) < RESERVOIR_SIZE:
                entry.retry_after_waits.extend(outcome.retry_after_waits)
            entry.recent.append(outcome.duration_sec)
            if len(entry.reservoir) < RESERVOIR_SIZE:
                entry.reservoir.append(outcome.duration_sec)
            else:
                slot = self._rng.randrange(entry.calls)
                if slot < RESERVOIR_SIZE:
                    entry.reservoir[slot] = outcome.duration_sec

    def rows(self, *, whole_run: bool = False) -> list[Row]:
        """A consistent copy of every endpoint's numbers (p95 of recent calls, or of the run)."""
        with self._lock:
            return [
                Row(
                    service=service,
                    endpoint=endpoint,
                    calls=e.calls,
                    succeeded=e.succeeded,
                    retries=e.retries,
                    timeouts=e.timeouts,
                    rejected=e.rejected,
                    p95_sec=percentile(list(e.reservoir if whole_run else e.recent), 95),
                    errors=dict(e.errors),
                )
                for (service, endpoint), e in self._by_key.items()
            ]

    def retry_after_waits(self, service: str, endpoint: str) -> list[tuple[float, float]]:
        """Every (Retry-After, observed wait) pair of one endpoint."""
        with self._lock:
            entry = self._by_key.get((service, endpoint))
            return list(entry.retry_after_waits) if entry else []
