"""One contract, two backends: the in-memory breaker and the Redis one (a real redis-server).

Every scenario runs against both, and a Hypothesis state machine drives a memory breaker, a
Redis breaker and a pure model through the same steps and checks they agree at each one.

Time: both breakers run on a :class:`FakeClock`. The Redis scripts time the shared state by
the server's clock, so :meth:`Harness.advance` also moves the shared record's ``o`` (when it
opened) back by the same amount: to the scripts the reset timeout has passed as well.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from otel_resilience import CircuitBreaker, CircuitBreakerState, ReliabilityConfig
from otel_resilience._breakers import ADMITTED, REJECTED, Permit
from otel_resilience._breakers._redis import RedisBackend, RedisCircuitBreaker
from support import FakeClock

CLOSED, OPEN, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
)
RESET_SEC = 10.0
_names = itertools.count()
OUTCOMES = st.sampled_from(["success", "failure", "release"])

Transition = tuple[str, str]


@dataclass
class Harness:
    """A breaker of one backend, its fake clock and the transitions its listener saw."""

    breaker: CircuitBreaker
    clock: FakeClock
    client: redis.Redis | None = None
    transitions: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.breaker.add_listener(
            lambda _b, old, new: self.transitions.append((old.value, new.value))
        )

    def advance(self, seconds: float) -> None:
        """Move time on, for the breaker and (Redis) for the shared record."""
        self.clock.advance(seconds)
        if self.client is not None:
            backend = self.breaker.backend
            assert isinstance(backend, RedisBackend)
            if self.client.hget(backend.key, "o") is not None:
                self.client.hincrby(backend.key, "o", -round(seconds * 1000))
            time.sleep(0.002)  # the next half-open period starts at a later server ms

    def fail(self, times: int = 1, duration: float = 0.0) -> None:
        for _ in range(times):
            self.breaker.record_failure(self.breaker.try_acquire(), duration)

    def succeed(self, times: int = 1, duration: float = 0.0) -> None:
        for _ in range(times):
            self.breaker.record_success(self.breaker.try_acquire(), duration)


Make = Callable[..., Harness]


def _config(backend: str, url: str | None, settings_: dict[str, object]) -> ReliabilityConfig:
    base: dict[str, object] = {"CB_RESET_SEC": RESET_SEC, **settings_}
    if backend == "redis":
        base |= {"STATE_BACKEND": "redis", "REDIS_URL": url}
    return ReliabilityConfig(**base)  # type: ignore[arg-type]


def _harness(backend: str, url: str | None, client: redis.Redis | None, **cfg: object) -> Harness:
    config = _config(backend, url, cfg)
    clock = FakeClock()
    endpoint = f"op-{next(_names)}"
    if backend == "redis":
        breaker = RedisCircuitBreaker(
            endpoint,
            config.CB_FAIL_THRESHOLD,
            config.CB_RESET_SEC,
            service_name="contract",
            config=config,
            clock=clock,
        )
    else:
        breaker = CircuitBreaker(
            endpoint,
            config.CB_FAIL_THRESHOLD,
            config.CB_RESET_SEC,
            service_name="contract",
            config=config,
            clock=clock,
        )
    return Harness(breaker, clock, client)


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """``make(**config)``: a harness of the parametrised backend."""
    if request.param == "memory":
        yield lambda **cfg: _harness("memory", None, None, **cfg)
        return
    url: str = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    yield lambda **cfg: _harness("redis", url, client, **cfg)
    client.close()


# --- closed -> open, in each window mode ------------------------------------------------------


def test_consecutive_failures_open_at_the_threshold(make: Make) -> None:
    h = make(CB_FAIL_THRESHOLD=3)
    h.fail(2)
    h.succeed()  # a success resets the run of failures
    h.fail(2)
    assert h.breaker.state is CLOSED
    assert h.breaker.failure_count == 2
    h.fail()
    assert h.breaker.state is OPEN
    assert h.breaker.try_acquire() is REJECTED
    assert h.transitions == [("closed", "open")]


def test_count_window_opens_on_the_failure_rate(make: Make) -> None:
    h = make(CB_MODE="count", CB_WINDOW_SIZE=4, CB_MIN_CALLS=4, CB_FAILURE_RATE_THRESHOLD=0.5)
    h.fail()
    h.succeed(2)
    assert h.breaker.state is CLOSED  # 3 calls: below CB_MIN_CALLS
    h.fail()
    assert h.breaker.state is OPEN  # 2 of 4 failed
    assert not h.breaker.try_acquire().admitted
    assert h.transitions == [("closed", "open")]


def test_count_window_opens_on_the_slow_call_rate(make: Make) -> None:
    h = make(
        CB_MODE="count",
        CB_WINDOW_SIZE=2,
        CB_MIN_CALLS=2,
        CB_SLOW_CALL_SEC=1.0,
        CB_SLOW_CALL_RATE_THRESHOLD=1.0,
    )
    h.succeed(duration=2.0)
    h.succeed(duration=0.5)
    assert h.breaker.state is CLOSED
    h.succeed(duration=3.0)
    assert h.breaker.state is CLOSED  # the window: one fast, one slow
    h.succeed(duration=1.0)  # the window is now two slow calls
    assert h.breaker.state is OPEN
    assert h.transitions == [("closed", "open")]


def test_time_window_forgets_old_failures(make: Make) -> None:
    h = make(
        CB_MODE="time",
        CB_WINDOW_SIZE=5,
        CB_MIN_CALLS=2,
        CB_FAILURE_RATE_THRESHOLD=1.0,
        HTTP_TIMEOUT_SEC=1,  # a time window holds two attempt timeouts
    )
    h.fail()
    h.advance(6)  # the first failure left the window
    h.fail()
    assert h.breaker.state is CLOSED
    h.fail()
    assert h.breaker.state is OPEN
    assert h.transitions == [("closed", "open")]


# --- half-open ------------------------------------------------------------------------------


def _opened(make: Make, **cfg: object) -> Harness:
    h = make(CB_FAIL_THRESHOLD=1, **cfg)
    h.fail()
    assert h.breaker.state is OPEN
    return h


def test_half_open_admits_one_probe_at_a_time(make: Make) -> None:
    h = _opened(make)
    h.advance(RESET_SEC - 1)
    assert h.breaker.try_acquire() is REJECTED  # not yet
    h.advance(1)
    probe = h.breaker.try_acquire()
    assert probe.admitted
    assert probe.probe
    assert h.breaker.try_acquire() is REJECTED  # the one probe is out
    assert h.breaker.state is HALF_OPEN
    assert h.transitions == [("closed", "open"), ("open", "half_open")]


def test_successful_probe_closes(make: Make) -> None:
    h = _opened(make)
    h.advance(RESET_SEC)
    h.breaker.record_success(h.breaker.try_acquire())
    assert h.breaker.state is CLOSED
    assert h.breaker.failure_count == 0
    assert h.breaker.try_acquire() == ADMITTED
    assert h.transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens_for_a_new_reset_period(make: Make) -> None:
    h = _opened(make)
    h.advance(RESET_SEC)
    h.breaker.record_failure(h.breaker.try_acquire())
    assert h.breaker.state is OPEN
    h.advance(RESET_SEC - 1)
    assert h.breaker.try_acquire() is REJECTED  # the reset period started again
    h.advance(1)
    assert h.breaker.try_acquire().probe
    assert h.transitions == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
    ]


def test_two_probes_must_both_succeed(make: Make) -> None:
    h = _opened(make, CB_HALF_OPEN_MAX_CALLS=2)
    h.advance(RESET_SEC)
    first, second = h.breaker.try_acquire(), h.breaker.try_acquire()
    assert first.probe
    assert second.probe
    assert h.breaker.try_acquire() is REJECTED
    h.breaker.record_success(first)
    assert h.breaker.state is HALF_OPEN
    h.breaker.record_success(second)
    assert h.breaker.state is CLOSED


def test_release_neither_counts_and_frees_the_probe_slot(make: Make) -> None:
    h = _opened(make)
    h.advance(RESET_SEC)
    probe = h.breaker.try_acquire()
    h.breaker.release(probe)
    assert h.breaker.state is HALF_OPEN  # not closed, not reopened
    again = h.breaker.try_acquire()
    assert again.probe  # the slot was given back
    h.breaker.release(again)
    h.breaker.release(again)  # a second release does not free a second slot
    assert h.breaker.try_acquire().probe
    assert h.breaker.try_acquire() is REJECTED
    closed = make(CB_FAIL_THRESHOLD=2)
    closed.fail()
    closed.breaker.release(closed.breaker.try_acquire())
    assert closed.breaker.failure_count == 1  # a release in CLOSED changes nothing


def test_a_probe_of_an_earlier_period_counts_for_nothing(make: Make) -> None:
    h = _opened(make, CB_HALF_OPEN_MAX_CALLS=2)
    h.advance(RESET_SEC)
    stale = h.breaker.try_acquire()
    h.breaker.record_failure(h.breaker.try_acquire())  # reopens
    h.advance(RESET_SEC)
    assert h.breaker.try_acquire().probe  # a new period
    h.breaker.record_success(stale)
    assert h.breaker.state is HALF_OPEN  # the stale success did not count
    h.breaker.record_failure(stale)
    assert h.breaker.state is HALF_OPEN  # nor a stale failure


def test_a_stale_probe_failing_after_the_close_is_not_a_failure_of_the_closed_breaker(
    make: Make,
) -> None:
    """Found by the breaker's state machine test: a probe of an earlier half-open period that
    failed after the breaker closed counted towards the next opening."""
    h = make(CB_FAIL_THRESHOLD=3, CB_HALF_OPEN_MAX_CALLS=2)
    h.fail(3)
    h.advance(RESET_SEC)
    stale = h.breaker.try_acquire()
    h.breaker.record_failure(h.breaker.try_acquire())  # reopens
    h.advance(RESET_SEC)
    h.succeed(2)  # the two probes of the new period close it
    assert h.breaker.state is CLOSED
    h.breaker.record_failure(stale)
    assert h.breaker.failure_count == 0
    h.fail(2)
    assert h.breaker.state is CLOSED  # two failures of three: still closed
    h.fail()
    assert h.breaker.state is OPEN


# --- manual states and reset --------------------------------------------------------------------


def test_force_open_rejects_until_reset(make: Make) -> None:
    h = make()
    h.breaker.force_open()
    h.advance(RESET_SEC * 5)
    assert h.breaker.try_acquire() is REJECTED  # no probe: forced open does not time out
    assert h.breaker.state is OPEN
    assert h.breaker.rejects_after(1e6)
    assert h.breaker.status().seconds_until_probe is None
    h.breaker.reset()
    assert h.breaker.try_acquire() == ADMITTED
    assert h.transitions == [("closed", "open"), ("open", "closed")]


def test_disable_admits_everything_and_records_nothing(make: Make) -> None:
    h = _opened(make)
    h.breaker.disable()
    assert h.breaker.state is CLOSED
    h.fail(5)
    assert h.breaker.state is CLOSED
    assert h.breaker.failure_count == 0
    assert not h.breaker.rejects_after(0)
    assert h.transitions == [("closed", "open"), ("open", "closed")]


def test_metrics_only_transitions_but_never_rejects(make: Make) -> None:
    h = make(CB_FAIL_THRESHOLD=2)
    h.breaker.metrics_only()
    h.fail(2)
    assert h.breaker.state is OPEN
    assert h.breaker.try_acquire().admitted
    assert not h.breaker.rejects_after(0)
    assert h.breaker.status().override == "metrics_only"
    assert h.transitions == [("closed", "open")]


def test_reset_forgets_failures_and_closes(make: Make) -> None:
    h = make(CB_FAIL_THRESHOLD=3)
    h.fail(2)
    h.breaker.reset()
    assert h.breaker.failure_count == 0
    h.fail(2)
    assert h.breaker.state is CLOSED  # the two earlier failures were forgotten
    h.fail()
    assert h.breaker.state is OPEN
    h.breaker.reset()
    assert h.breaker.state is CLOSED
    assert h.transitions == [("closed", "open"), ("open", "closed")]


def test_rejects_after_tracks_the_reset_timeout(make: Make) -> None:
    h = _opened(make)
    assert h.breaker.rejects_after(RESET_SEC - 1)
    assert not h.breaker.rejects_after(RESET_SEC)
    h.advance(4)
    assert h.breaker.rejects_after(RESET_SEC - 5)
    assert not h.breaker.rejects_after(RESET_SEC - 4)
    assert h.breaker.status().seconds_until_probe == pytest.approx(RESET_SEC - 4, abs=0.05)
    assert not make().breaker.rejects_after(100)  # a closed breaker never does


def test_listener_fires_once_per_transition_and_can_be_removed(make: Make) -> None:
    h = make(CB_FAIL_THRESHOLD=1)
    seen: list[Transition] = []

    def listener(_b: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState) -> None:
        seen.append((old.value, new.value))

    h.breaker.add_listener(listener)
    h.fail(3)  # the first opens; late failures while open make no transition
    h.breaker.remove_listener(listener)
    h.breaker.remove_listener(listener)  # absent: no error
    h.advance(RESET_SEC)
    h.breaker.try_acquire()
    assert seen == [("closed", "open")]
    assert h.transitions == [("closed", "open"), ("open", "half_open")]


# --- growing break durations (CB_RESET_MULTIPLIER, CB_RESET_MAX_SEC) ------------------------------


def _grower(make: Make, rand: float = 0.0, **cfg: object) -> Harness:
    """An open breaker whose open time grows; its jitter source always answers ``rand``."""
    h = make(CB_FAIL_THRESHOLD=1, **cfg)
    h.breaker.machine.rand = lambda: rand
    h.fail()
    assert h.breaker.state is OPEN
    return h


def _reopen(h: Harness, after: float) -> None:
    """Wait ``after`` seconds (the current open time), then fail the probe."""
    h.advance(after - 1)
    assert h.breaker.try_acquire() is REJECTED  # still open one second before
    h.advance(1)
    probe = h.breaker.try_acquire()
    assert probe.probe
    h.breaker.record_failure(probe)
    assert h.breaker.state is OPEN


def _open_for(h: Harness, seconds: float) -> None:
    """The breaker has just opened for ``seconds`` (status, rejects_after and admission)."""
    assert h.breaker.status().seconds_until_probe == pytest.approx(seconds, abs=0.05)
    assert h.breaker.rejects_after(seconds - 0.1)
    assert not h.breaker.rejects_after(seconds + 0.1)


def test_open_time_doubles_at_each_failed_probe(make: Make) -> None:
    h = _grower(make, CB_RESET_MULTIPLIER=2)
    _open_for(h, RESET_SEC)  # the first opening waits CB_RESET_SEC
    _reopen(h, RESET_SEC)
    _open_for(h, 2 * RESET_SEC)
    _reopen(h, 2 * RESET_SEC)
    _open_for(h, 4 * RESET_SEC)
    _reopen(h, 4 * RESET_SEC)
    _open_for(h, 8 * RESET_SEC)
    assert h.breaker.machine.level == 3
    assert (
        h.transitions
        == [("closed", "open")]
        + [
            ("open", "half_open"),
            ("half_open", "open"),
        ]
        * 3
    )


def test_grown_open_time_is_capped(make: Make) -> None:
    h = _grower(make, 0.9, CB_RESET_MULTIPLIER=3, CB_RESET_MAX_SEC=25)
    _reopen(h, RESET_SEC)
    _open_for(h, 25)  # 30 s plus jitter, capped: no jitter at the cap
    for _ in range(3):
        _reopen(h, 25)
        _open_for(h, 25)
    assert h.breaker.machine.level == 1  # no level past the cap


def test_a_slow_probe_grows_the_open_time_too(make: Make) -> None:
    h = _grower(make, CB_RESET_MULTIPLIER=2, CB_SLOW_CALL_SEC=1.0)
    h.advance(RESET_SEC)
    h.breaker.record_success(h.breaker.try_acquire(), 5.0)
    assert h.breaker.state is OPEN
    _open_for(h, 2 * RESET_SEC)


def test_a_close_resets_the_open_time(make: Make) -> None:
    h = _grower(make, CB_RESET_MULTIPLIER=2)
    _reopen(h, RESET_SEC)
    _reopen(h, 2 * RESET_SEC)
    h.advance(4 * RESET_SEC)
    h.breaker.record_success(h.breaker.try_acquire())  # the probe recovers
    assert h.breaker.state is CLOSED
    h.fail()
    _open_for(h, RESET_SEC)  # back to CB_RESET_SEC
    _reopen(h, RESET_SEC)
    _open_for(h, 2 * RESET_SEC)  # and it grows from there again
    h.breaker.reset()  # a manual reset forgets the growth as well
    h.fail()
    _open_for(h, RESET_SEC)


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_grown_open_time_has_up_to_ten_percent_jitter(make: Make, rand: float) -> None:
    h = _grower(make, rand, CB_RESET_MULTIPLIER=2)
    _open_for(h, RESET_SEC)  # no jitter on the first opening
    nominal = RESET_SEC
    for _ in range(3):
        _reopen(h, h.breaker.machine.open_sec)
        nominal *= 2
        expected = math.floor(nominal * 1000 * (1 + 0.1 * rand)) / 1000
        assert nominal <= expected < nominal * 1.1
        _open_for(h, expected)
        assert h.breaker.machine.open_sec == pytest.approx(expected, abs=0.001)


def test_the_default_multiplier_keeps_the_fixed_reset_time(make: Make) -> None:
    h = _grower(make, 0.999)
    for _ in range(3):
        _reopen(h, RESET_SEC)
        _open_for(h, RESET_SEC)  # no growth, no jitter: the seed's fixed CB_RESET_SEC
    assert h.breaker.machine.level == 0


# --- both backends against a pure model ----------------------------------------------------------


@dataclass
class _ModelPermit:
    admitted: bool
    probe: bool
    period: int


#: (CB_RESET_MULTIPLIER, the jitter source's constant answer, CB_RESET_MAX_SEC): every grown
#: open time is a whole number of seconds, as the fake clock's steps are
GROWTH = st.sampled_from(
    [
        (1.0, 0.0, None),
        (1.0, 0.5, 30.0),
        (2.0, 0.0, None),
        (2.0, 0.5, None),
        (2.0, 0.0, 25.0),
        (3.0, 0.0, 50.0),
        (4.0, 0.5, 60.0),
    ]
)


class Model:
    """The consecutive-mode breaker, written as plainly as possible."""

    def __init__(
        self,
        threshold: int,
        probes: int,
        growth: tuple[float, float, float | None] = (1.0, 0.0, None),
    ) -> None:
        self.threshold, self.probes = threshold, probes
        multiplier, rand, cap = growth
        self.multiplier = Fraction(multiplier)
        self.jitter = 1 + Fraction(rand) / 10  # up to +10% on a grown open time
        self.cap = Fraction(86_400 if cap is None else cap)
        self.level = 0  # re-openings since the last close
        self.duration = Fraction(RESET_SEC)  # of the current opening
        self.state = "closed"
        self.failures = 0
        self.elapsed = 0.0  # since it opened
        self.period = 0
        self.out = 0  # probes in flight
        self.ok = 0  # successful probes
        self.transitions: list[Transition] = []
        self.last: _ModelPermit | None = None  # the permit of the last acquire

    def _go(self, new: str) -> None:
        self.transitions.append((self.state, new))
        self.state = new
        self.out = self.ok = 0

    def _open(self) -> None:
        self.elapsed = 0.0
        if self.state == "closed":
            self.level, self.duration = 0, Fraction(RESET_SEC)
        elif self.state == "half_open" and self.multiplier > 1:
            if RESET_SEC * self.multiplier**self.level < self.cap:
                self.level += 1
            grown = RESET_SEC * self.multiplier**self.level * self.jitter
            self.duration = min(self.cap, grown)
        if self.state != "open":
            self._go("open")
        self.out = self.ok = 0

    def observe(self) -> None:
        if self.state == "open" and self.elapsed >= self.duration:
            self._go("half_open")
            self.period += 1

    def acquire(self) -> _ModelPermit:
        self.observe()
        if self.state == "closed":
            return _ModelPermit(True, False, 0)
        if self.state == "half_open" and self.out < self.probes:
            self.out += 1
            return _ModelPermit(True, True, self.period)
        return _ModelPermit(False, False, 0)

    def _current(self, permit: _ModelPermit) -> bool:
        return permit.probe and self.state == "half_open" and permit.period == self.period

    def success(self, permit: _ModelPermit) -> None:
        if self._current(permit):
            self.out -= 1
            self.ok += 1
            if self.ok >= self.probes:
                self.failures = 0
                self.level, self.duration = 0, Fraction(RESET_SEC)
                self._go("closed")
        elif not permit.probe and self.state == "closed":
            self.failures = 0

    def failure(self, permit: _ModelPermit) -> None:
        if permit.probe and not self._current(permit):
            return  # a probe of a half-open period that ended counts for nothing
        self.failures += 1
        if permit.probe or (self.state == "closed" and self.failures >= self.threshold):
            self._open()

    def release(self, permit: _ModelPermit) -> None:
        if self._current(permit):
            self.out -= 1

    def reset(self) -> None:
        self.failures = 0
        self.level, self.duration = 0, Fraction(RESET_SEC)
        if self.state != "closed":
            self._go("closed")


class Agreement(RuleBasedStateMachine):
    """The memory breaker, the Redis breaker and the model, step by step."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(self.url)
        self.permits: list[tuple[_ModelPermit, Permit, Permit]] = []

    @initialize(threshold=st.integers(1, 3), probes=st.integers(1, 2), growth=GROWTH)
    def build(self, threshold: int, probes: int, growth: tuple[float, float, float | None]) -> None:
        multiplier, rand, cap = growth
        cfg = {
            "CB_FAIL_THRESHOLD": threshold,
            "CB_HALF_OPEN_MAX_CALLS": probes,
            "CB_RESET_MULTIPLIER": multiplier,
            "CB_RESET_MAX_SEC": cap,
        }
        self.memory = _harness("memory", None, None, **cfg)
        self.redis = _harness("redis", self.url, self.client, **cfg)
        for harness in (self.memory, self.redis):
            harness.breaker.machine.rand = lambda: rand
        self.model = Model(threshold, probes, growth)

    def teardown(self) -> None:
        self.client.close()

    @rule()
    def acquire(self) -> None:
        """Take a permit and hold it."""
        expected = self.model.last = self.model.acquire()
        mem, red = self.memory.breaker.try_acquire(), self.redis.breaker.try_acquire()
        for got in (mem, red):
            assert (got.admitted, got.probe) == (expected.admitted, expected.probe)
        if expected.admitted:
            self.permits.append((expected, mem, red))

    @rule(outcome=OUTCOMES)
    def call(self, outcome: str) -> None:
        """A whole call: acquire, then settle at once."""
        self.acquire()
        if self.permits and self.permits[-1][0] is self.model.last:
            self._settle(len(self.permits) - 1, outcome)

    @rule(data=st.data(), outcome=OUTCOMES)
    def settle(self, data: st.DataObject, outcome: str) -> None:
        """Settle a permit taken earlier (maybe of an earlier half-open period)."""
        if self.permits:
            self._settle(data.draw(st.integers(0, len(self.permits) - 1)), outcome)

    def _settle(self, index: int, outcome: str) -> None:
        expected, mem, red = self.permits.pop(index)
        getattr(self.model, outcome)(expected)
        for harness, permit in ((self.memory, mem), (self.redis, red)):
            breaker = harness.breaker
            if outcome == "success":
                breaker.record_success(permit)
            elif outcome == "failure":
                breaker.record_failure(permit)
            else:
                breaker.release(permit)

    @rule(seconds=st.sampled_from([4, 10, 11, 30]))
    def advance(self, seconds: int) -> None:
        self.model.elapsed += seconds
        self.memory.advance(seconds)
        self.redis.advance(seconds)

    @rule()
    def wait_out(self) -> None:
        """Advance to the end of the current opening (so grown open times are reached)."""
        left = math.ceil(self.model.duration - Fraction(self.model.elapsed))
        if self.model.state == "open" and left > 0:
            self.advance(left)

    @rule()
    def failed_probe(self) -> None:
        """Wait out the opening and fail the probe: the open time grows (a shortcut to deep
        levels, which single steps reach too rarely)."""
        self.wait_out()
        self.call("failure")

    @rule()
    def look(self) -> None:
        self.model.observe()
        for harness in (self.memory, self.redis):
            assert harness.breaker.state.value == self.model.state
            harness.breaker.sync()  # Redis: the shared transition the state read announced
            if self.model.state == "open":  # the time left of the current (grown) opening
                left = float(self.model.duration) - self.model.elapsed
                until = harness.breaker.status().seconds_until_probe
                assert until == pytest.approx(left, abs=1.0 if harness.client else 1e-6)

    @rule()
    def reset(self) -> None:
        self.model.reset()
        self.memory.breaker.reset()
        self.redis.breaker.reset()

    @invariant()
    def agree(self) -> None:
        for harness in (self.memory, self.redis):
            assert harness.breaker.failure_count == self.model.failures
            assert harness.transitions == self.model.transitions
            assert harness.breaker.machine.level == self.model.level


def test_memory_and_redis_agree_with_the_model(redis_url: str) -> None:
    Agreement.url = redis_url
    run_state_machine_as_test(
        Agreement,
        settings=settings(
            max_examples=60,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
