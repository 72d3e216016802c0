"""The circuit breaker's state machine: plain data and methods that take ``now``.

No lock, no I/O, no clock read: a backend holds a :class:`Machine`, serialises access to it
(a lock, or a Lua script on Redis for the shared part) and passes the time in. Each transition
method returns the transitions it made (``[(old, new), ...]``), for the breaker to log and fire
outside any lock.

States (the seed's): CLOSED lets calls through and counts failures; OPEN rejects them at once;
after ``reset_sec`` it becomes HALF_OPEN and admits ``max_probes`` probes at a time (other
callers are rejected): ``max_probes`` successful probes close it, a failed one opens it again.

What opens a circuit depends on ``mode``: ``consecutive`` (``threshold`` failures in a row),
``count`` (the failure or slow-call rate over the last ``window_size`` calls) or ``time`` (the
same rates over the last ``window_size`` seconds).

Growing break durations (``CB_RESET_MULTIPLIER`` > 1): the time a circuit stays OPEN is state
(``open_sec``, at ``level``). Opening from CLOSED waits ``reset_sec``; each re-opening from
HALF_OPEN (a failed or slow probe: no recovery) goes one level up and waits
``reset_ms * multiplier ** level * (1 + JITTER * rand())`` ms, at most ``max_ms`` (the cap is
a hard limit: a grown duration at the cap has no jitter); closing goes back to level 0. The
jitter source ``rand`` is injectable; the Redis script computes the same formula from the
shared level with the fraction the calling process drew.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from .._config import ReliabilityConfig


class CircuitBreakerState(Enum):
    """The state of a circuit breaker; the values are the telemetry's state attribute."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOverride(Enum):
    """Manual states an operator can put a breaker in (``None`` is normal operation)."""

    FORCED_OPEN = "forced_open"  #: reject every call until reset
    DISABLED = "disabled"  #: always closed, nothing recorded
    METRICS_ONLY = "metrics_only"  #: transitions happen and are reported, calls never rejected


@dataclass(frozen=True, slots=True)
class Permit:
    """What :meth:`CircuitBreaker.try_acquire` answered.

    ``admitted``: the call may go ahead; ``probe``: it is a half-open probe; ``period``: the
    half-open period that admitted the probe (a counter in memory, the period's start in ms on
    Redis), so a probe that answers after its period ended counts for nothing.
    """

    admitted: bool
    probe: bool = False
    period: int = 0


#: the one rejected permit
REJECTED: Final = Permit(False)
#: the one permit of a call admitted by a closed breaker
ADMITTED: Final = Permit(True)


def probe_permit(period: int) -> Permit:
    """The permit of a probe admitted in half-open period ``period``."""
    return Permit(True, True, period)


_CLOSED: Final = CircuitBreakerState.CLOSED
_OPEN: Final = CircuitBreakerState.OPEN
_HALF_OPEN: Final = CircuitBreakerState.HALF_OPEN
_FORCED_OPEN: Final = BreakerOverride.FORCED_OPEN
#: a grown open duration is up to this fraction longer (the seed's backoff jitter: +0-10%)
JITTER: Final = 0.1
#: the cap of a grown open duration when ``CB_RESET_MAX_SEC`` is unset (one day, in ms)
DEFAULT_MAX_MS: Final = 86_400_000

#: transitions made by one operation, in order
Events = list[tuple[CircuitBreakerState, CircuitBreakerState]]


@dataclass(frozen=True, slots=True)
class Settings:
    """The breaker settings of one service (from :class:`ReliabilityConfig`)."""

    threshold: int = 5
    reset_sec: float = 60.0
    max_probes: int = 1
    mode: str = "consecutive"
    window_size: int = 100
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_sec: float | None = None
    slow_rate: float = 1.0
    multiplier: float = 1.0
    max_sec: float | None = None

    @classmethod
    def from_config(cls, config: ReliabilityConfig) -> Settings:
        """The breaker settings of ``config``."""
        return cls(
            config.CB_FAIL_THRESHOLD,
            config.CB_RESET_SEC,
            config.CB_HALF_OPEN_MAX_CALLS,
            config.CB_MODE,
            config.CB_WINDOW_SIZE,
            config.CB_MIN_CALLS,
            config.CB_FAILURE_RATE_THRESHOLD,
            config.CB_SLOW_CALL_SEC,
            config.CB_SLOW_CALL_RATE_THRESHOLD,
            config.CB_RESET_MULTIPLIER,
            config.CB_RESET_MAX_SEC,
        )

    @property
    def reset_ms(self) -> int:
        """The first open duration in whole ms (what the Redis scripts count in)."""
        return max(1, math.ceil(self.reset_sec * 1000))

    @property
    def max_ms(self) -> int:
        """The cap of a grown open duration, ms (never below :attr:`reset_ms`)."""
        cap = DEFAULT_MAX_MS if self.max_sec is None else round(self.max_sec * 1000)
        return max(self.reset_ms, cap)

    def grown(self, level: int, fraction: float) -> tuple[int, int]:
        """One re-opening from ``level``: the new level and open duration in ms.

        ``fraction`` is the jitter (0 to :data:`JITTER`). The level stops rising once the
        duration before jitter reached the cap (so ``multiplier ** level`` stays finite). The
        Redis scripts compute exactly this.
        """
        reset_ms, cap = self.reset_ms, self.max_ms
        if reset_ms * self.multiplier**level < cap:
            level += 1
        return level, min(cap, math.floor(reset_ms * self.multiplier**level * (1 + fraction)))

    def is_slow(self, duration: float) -> bool:
        """Whether a call of ``duration`` seconds counts as slow."""
        return self.slow_sec is not None and duration >= self.slow_sec


class Window:
    """Outcomes over the last N calls (``count``) or the last N seconds (``time``)."""

    __slots__ = ("buckets", "by_time", "calls", "failures", "size", "slow")

    def __init__(self, by_time: bool, size: int) -> None:
        self.by_time = by_time
        self.size = size
        # count mode: one [0, failed, slow] entry per call; time mode: [second, calls, failed, slow]
        self.buckets: deque[list[int]] = deque()
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        """Count one outcome at time ``now``."""
        f, s = int(failed), int(slow)
        if self.by_time:
            self._add_timed(f, s, int(now))
        else:
            if len(self.buckets) == self.size:
                _, old_f, old_s = self.buckets.popleft()
                self.calls -= 1
                self.failures -= old_f
                self.slow -= old_s
            self.buckets.append([0, f, s])
        self.calls += 1
        self.failures += f
        self.slow += s

    def _add_timed(self, f: int, s: int, second: int) -> None:
        self._expire(second)
        if self.buckets and self.buckets[-1][0] == second:
            bucket = self.buckets[-1]
            bucket[1] += 1
            bucket[2] += f
            bucket[3] += s
        else:
            self.buckets.append([second, 1, f, s])

    def refresh(self, now: float) -> None:
        """Forget what is older than the window (time mode)."""
        if self.by_time:
            self._expire(int(now))

    def _expire(self, second: int) -> None:
        horizon = second - self.size
        while self.buckets and self.buckets[0][0] <= horizon:
            _, calls, f, s = self.buckets.popleft()
            self.calls -= calls
            self.failures -= f
            self.slow -= s

    def clear(self) -> None:
        """Forget everything."""
        self.buckets.clear()
        self.calls = self.failures = self.slow = 0


class Machine:
    """One breaker's state and the transitions between states (see the module docstring)."""

    __slots__ = (
        "failure_count",
        "last_failure_time",
        "level",
        "open_sec",
        "opened_at",
        "override",
        "period",
        "probe_successes",
        "probes_in_flight",
        "rand",
        "rejecting",
        "settings",
        "state",
        "window",
    )

    def __init__(self, settings: Settings, rand: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.rand = rand  # the jitter source of grown open durations, [0, 1)
        self.open_sec = settings.reset_sec  # how long the current (or next) opening lasts
        self.level = 0  # re-openings without a recovery since the last close
        self.state = _CLOSED
        self.failure_count = 0
        self.last_failure_time = 0.0
        self.opened_at = 0.0
        self.probes_in_flight = 0
        self.probe_successes = 0
        self.period = 0  # half-open periods so far
        self.override: BreakerOverride | None = None
        self.rejecting = False  # derived: state is OPEN/HALF_OPEN or forced open
        self.window = (
            None
            if settings.mode == "consecutive"
            else Window(settings.mode == "time", settings.window_size)
        )

    # --- reading ------------------------------------------------------------------------------

    def half_open_due(self, now: float) -> bool:
        """An OPEN circuit (not forced) whose reset timeout has passed."""
        return (
            self.state is _OPEN
            and self.override is not _FORCED_OPEN
            and now - self.opened_at >= self.open_sec
        )

    def seconds_until_probe(self, now: float) -> float | None:
        """Seconds until an OPEN circuit admits a probe (None unless OPEN, or forced open)."""
        if self.state is not _OPEN or self.override is _FORCED_OPEN:
            return None
        return max(0.0, self.open_sec - (now - self.opened_at))

    def rejects_after(self, seconds: float, now: float) -> bool:
        """Whether a call made ``seconds`` after ``now`` would be rejected, as things stand."""
        if not self.rejecting:
            return False
        override = self.override
        if override is not None:  # forced open rejects; disabled or metrics-only never do
            return override is _FORCED_OPEN
        return self.state is _OPEN and self.opened_at + self.open_sec > now + seconds

    def idle(self) -> bool:
        """Nothing but successes recorded: a new machine would be the same."""
        window = self.window
        return (
            self.state is _CLOSED
            and self.override is None
            and self.failure_count == 0
            and self.probes_in_flight == 0
            and (window is None or (window.failures == 0 and window.slow == 0))
        )

    def healthy(self, permit: Permit) -> bool:
        """A success with this permit would change nothing (the fast path)."""
        return (
            not permit.probe
            and self.state is _CLOSED
            and self.failure_count == 0
            and self.window is None
        )

    def current_probe(self, permit: Permit) -> bool:
        """A probe permit of the half-open period in progress (stale ones count for nothing)."""
        return permit.probe and self.state is _HALF_OPEN and permit.period == self.period

    # --- the call protocol --------------------------------------------------------------------

    def tick(self, now: float) -> Events:
        """Turn an expired OPEN into HALF_OPEN."""
        events: Events = []
        if self.half_open_due(now):
            self._transition(_HALF_OPEN, events)
            self.period += 1
            self.probes_in_flight = 0
            self.probe_successes = 0
        return events

    def acquire(self, now: float) -> tuple[Permit, Events]:
        """Ask to make one call at ``now``: the permit and the transitions made."""
        override = self.override
        if override is _FORCED_OPEN:
            return REJECTED, []
        if override is BreakerOverride.DISABLED:
            return ADMITTED, []
        events = self.tick(now)
        return self.overruled(self._admit()), events

    def overruled(self, permit: Permit) -> Permit:
        """``permit``, but ADMITTED for a rejection under ``metrics_only`` (it never rejects)."""
        if permit.admitted or self.override is not BreakerOverride.METRICS_ONLY:
            return permit
        return ADMITTED

    def _admit(self) -> Permit:
        if self.state is _CLOSED:
            return ADMITTED
        if self.state is _HALF_OPEN and self.probes_in_flight < self.settings.max_probes:
            self.probes_in_flight += 1
            return probe_permit(self.period)
        return REJECTED

    def success(self, permit: Permit, duration: float, now: float) -> Events:
        """The admitted call succeeded after ``duration`` seconds."""
        events: Events = []
        if self.override is BreakerOverride.DISABLED:
            return events
        slow = self.settings.is_slow(duration)
        if permit.probe:
            self._probe_success(permit, slow, now, events)
        elif self.state is _CLOSED:
            self.failure_count = 0
            if self.window is not None:
                self.window.add(False, slow, now)
                if self.rates_exceeded(now):
                    self.open(now, events)
        return events

    def _probe_success(self, permit: Permit, slow: bool, now: float, events: Events) -> None:
        if not self.current_probe(permit):
            return
        self._probe_back()
        if slow:
            self.open(now, events)
            return
        self.probe_successes += 1
        if self.probe_successes >= self.settings.max_probes:
            self.close(events)

    def failure(self, permit: Permit, duration: float, now: float) -> Events:
        """The admitted call failed (in a way that counts against the service)."""
        events: Events = []
        if self.override is BreakerOverride.DISABLED:
            return events
        if permit.probe and not self.current_probe(permit):
            return events  # a probe of a half-open period that ended: it counts for nothing
        self.failure_count += 1
        self.last_failure_time = now
        if permit.probe:
            self._probe_back()
            self.open(now, events)
        elif self.state is _CLOSED and self._failure_trips(duration, now):
            self.open(now, events)
        return events

    def _failure_trips(self, duration: float, now: float) -> bool:
        """A CLOSED breaker's failure opens it: at the threshold of consecutive failures, or
        (window modes) when it makes a rate reach its threshold."""
        if self.window is None:
            return self.failure_count >= self.settings.threshold
        self.window.add(True, self.settings.is_slow(duration), now)
        return self.rates_exceeded(now)

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call neither failed nor succeeded."""
        if self.current_probe(permit):
            self._probe_back()

    def _probe_back(self) -> None:
        # never below zero: a permit given back twice frees one slot (as the Redis script does)
        if self.probes_in_flight > 0:
            self.probes_in_flight -= 1

    def window_outcome(self, failed: bool, slow: bool, now: float) -> bool:
        """Window modes: count an outcome without opening; whether the rates now trip."""
        window = self.window
        assert window is not None
        if failed:
            self.failure_count += 1
            self.last_failure_time = now
        else:
            self.failure_count = 0
        if self.state is not _CLOSED:
            return False
        window.add(failed, slow, now)
        return self.rates_exceeded(now)

    def rates_exceeded(self, now: float) -> bool:
        """Window modes: the failure or slow-call rate reached its threshold."""
        window = self.window
        assert window is not None
        window.refresh(now)
        settings = self.settings
        if window.calls < settings.min_calls:
            return False
        if window.failures / window.calls >= settings.failure_rate:
            return True
        return settings.slow_sec is not None and window.slow / window.calls >= settings.slow_rate

    # --- manual states ------------------------------------------------------------------------

    def force_open(self, now: float) -> Events:
        """Reject every call until :meth:`reset`."""
        events: Events = []
        self.override = _FORCED_OPEN
        self.open(now, events)
        return events

    def disable(self) -> Events:
        """Always closed, nothing recorded, until :meth:`reset`."""
        events: Events = []
        self.override = BreakerOverride.DISABLED
        self.close(events)
        return events

    def metrics_only(self) -> None:
        """Transitions happen, calls are never rejected."""
        self.override = BreakerOverride.METRICS_ONLY
        self._update_rejecting()

    def reset(self) -> Events:
        """Back to CLOSED with no history and no manual state."""
        events: Events = []
        self.override = None
        self.close(events)
        return events

    # --- transitions --------------------------------------------------------------------------

    def open(self, now: float, events: Events) -> None:
        """Open (again) at ``now``: for ``reset_sec`` from CLOSED, for longer from HALF_OPEN
        when the open time grows (see the module docstring)."""
        if self.state is _HALF_OPEN:
            if self.settings.multiplier > 1:
                self.regrow(self.jitter())
        elif self.state is _CLOSED:
            self.level_back()
        self.opened_at = now
        self.probes_in_flight = 0
        self.probe_successes = 0
        if self.state is not _OPEN:
            self._transition(_OPEN, events)
        self._update_rejecting()

    def jitter(self) -> float:
        """A jitter fraction for the next grown open duration (0 to :data:`JITTER`)."""
        return JITTER * self.rand()

    def regrow(self, fraction: float) -> None:
        """One level up: the open time grows (``fraction``: the jitter)."""
        self.level, open_ms = self.settings.grown(self.level, fraction)
        self.open_sec = open_ms / 1000

    def level_back(self) -> None:
        """Back to the first open duration (``reset_sec``)."""
        self.level = 0
        self.open_sec = self.settings.reset_sec

    def open_ms(self) -> int:
        """The current open duration in whole ms (what the Redis record holds)."""
        if self.level == 0:
            return self.settings.reset_ms
        return round(self.open_sec * 1000)

    def close(self, events: Events) -> None:
        """Close, forgetting every failure (and every growth of the open time)."""
        self.level_back()
        self.failure_count = 0
        self.probes_in_flight = 0
        self.probe_successes = 0
        if self.window is not None:
            self.window.clear()
        if self.state is not _CLOSED:
            self._transition(_CLOSED, events)
        self._update_rejecting()

    def adopt(
        self,
        state: CircuitBreakerState,
        failures: int,
        opened_at: float | None,
        level: int = 0,
        open_ms: int = 0,
    ) -> CircuitBreakerState:
        """Take a state decided elsewhere (the shared one on Redis); returns the previous state.

        ``level`` and ``open_ms``: the shared growth of the open time (level 0: ``reset_sec``).
        """
        previous = self.state
        self.failure_count = failures
        if level > 0:
            self.level, self.open_sec = level, open_ms / 1000
        else:
            self.level_back()
        if opened_at is not None:
            self.opened_at = opened_at
        if state is not previous:
            self.state = state
            self.probes_in_flight = 0
            self.probe_successes = 0
            if state is _CLOSED and self.window is not None:
                self.window.clear()
        self._update_rejecting()
        return previous

    def _transition(self, new: CircuitBreakerState, events: Events) -> None:
        old, self.state = self.state, new
        events.append((old, new))
        self._update_rejecting()

    def _update_rejecting(self) -> None:
        self.rejecting = self.state is not _CLOSED or self.override is _FORCED_OPEN
