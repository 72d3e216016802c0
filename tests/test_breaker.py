"""CircuitBreaker: the seed's state machine, window modes, manual states, the manager."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from otel_resilience import (
    BreakerOverride,
    CircuitBreaker,
    CircuitBreakerManager,
    CircuitBreakerState,
    ReliabilityConfig,
)
from otel_resilience._breakers import ADMITTED, REJECTED, probe_permit
from support import FakeClock

CLOSED, OPEN, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
)


def make(clock: FakeClock, **config: object) -> CircuitBreaker:
    config.setdefault("HTTP_TIMEOUT_SEC", 1)  # a time window must hold two attempt timeouts
    cfg = ReliabilityConfig(**config)  # type: ignore[arg-type]
    return CircuitBreaker(
        "scan", cfg.CB_FAIL_THRESHOLD, cfg.CB_RESET_SEC, service_name="clamav", config=cfg,
        clock=clock,
    )  # fmt: skip


def fail(breaker: CircuitBreaker, times: int = 1, duration: float = 0.0) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.try_acquire(), duration)


def succeed(breaker: CircuitBreaker, times: int = 1, duration: float = 0.0) -> None:
    for _ in range(times):
        breaker.record_success(breaker.try_acquire(), duration)


def test_seed_constructor_and_fields_work() -> None:
    breaker = CircuitBreaker(endpoint="upload", failure_threshold=3, reset_timeout_sec=60)
    assert breaker.state is CLOSED
    assert (breaker.failure_count, breaker.last_failure_time) == (0, 0.0)
    assert breaker.failure_threshold == 3
    assert breaker.reset_timeout_sec == 60
    with breaker.lock:  # the seed's lock field is a real lock
        pass


def test_opens_at_the_threshold_of_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=3)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN
    assert breaker.try_acquire() == REJECTED


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = make(FakeClock(), CB_FAIL_THRESHOLD=3)
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.failure_count == 2


def test_half_open_after_reset_timeout_then_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=30)
    fail(breaker)
    clock.advance(29.9)
    assert breaker.state is OPEN
    assert breaker.status().seconds_until_probe == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    permit = breaker.try_acquire()
    assert permit.probe
    breaker.record_success(permit)
    assert breaker.state is CLOSED


def test_failed_probe_reopens_for_a_full_reset_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=30)
    fail(breaker)
    clock.advance(30)
    fail(breaker)
    assert breaker.state is OPEN
    clock.advance(29)
    assert breaker.state is OPEN


def test_half_open_admits_only_the_configured_number_of_probes() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=1, CB_HALF_OPEN_MAX_CALLS=2)
    fail(breaker)
    clock.advance(1)
    permits = [breaker.try_acquire() for _ in range(5)]
    assert permits == [probe_permit(1), probe_permit(1), REJECTED, REJECTED, REJECTED]
    breaker.record_success(permits[0])
    assert breaker.state is HALF_OPEN  # needs both probes to succeed
    breaker.record_success(permits[1])
    assert breaker.state is CLOSED


def test_a_released_probe_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=1)
    fail(breaker)
    clock.advance(1)
    permit = breaker.try_acquire()
    assert breaker.try_acquire() == REJECTED
    breaker.release(permit)  # e.g. the probe got a 404: the slot is free again
    assert breaker.try_acquire().probe


def test_a_late_probe_of_an_earlier_period_does_not_count() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=1, CB_HALF_OPEN_MAX_CALLS=2)
    fail(breaker)
    clock.advance(1)
    first, late = breaker.try_acquire(), breaker.try_acquire()
    breaker.record_failure(first)  # reopens; `late` is still out
    clock.advance(1)
    current = breaker.try_acquire()
    breaker.record_success(late)  # answers now: must neither close nor free a slot
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire().probe  # the second slot of this period
    assert breaker.try_acquire() == REJECTED
    breaker.record_success(current)
    assert breaker.state is HALF_OPEN


def test_listeners_see_each_transition_once() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1, CB_RESET_SEC=1)
    seen: list[tuple[str, str]] = []
    breaker.add_listener(lambda b, old, new: seen.append((old.value, new.value)))
    fail(breaker)
    clock.advance(1)
    succeed(breaker)
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failing_listener_does_not_break_the_breaker() -> None:
    breaker = make(FakeClock(), CB_FAIL_THRESHOLD=1)

    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    fail(breaker)
    assert breaker.state is OPEN


# --- window modes ----------------------------------------------------------------------------


def test_count_window_opens_on_failure_rate_after_min_calls() -> None:
    breaker = make(
        FakeClock(), CB_MODE="count", CB_WINDOW_SIZE=10, CB_MIN_CALLS=10,
        CB_FAILURE_RATE_THRESHOLD=0.5,
    )  # fmt: skip
    fail(breaker, 5)
    assert breaker.state is CLOSED  # 5 calls < min calls
    succeed(breaker, 4)
    assert breaker.state is CLOSED  # 5/9
    succeed(breaker)
    assert breaker.state is OPEN  # 5/10 = threshold


def test_count_window_forgets_old_calls() -> None:
    breaker = make(
        FakeClock(), CB_MODE="count", CB_WINDOW_SIZE=4, CB_MIN_CALLS=4,
        CB_FAILURE_RATE_THRESHOLD=0.75,
    )  # fmt: skip
    fail(breaker, 2)
    succeed(breaker, 2)  # 2/4
    succeed(breaker, 2)  # window is now s s s s... the failures fell out
    fail(breaker, 2)  # f f s s -> 2/4
    assert breaker.state is CLOSED
    fail(breaker)  # f f f s -> 3/4
    assert breaker.state is OPEN


def test_time_window_only_counts_recent_seconds() -> None:
    clock = FakeClock()
    breaker = make(
        clock, CB_MODE="time", CB_WINDOW_SIZE=10, CB_MIN_CALLS=4, CB_FAILURE_RATE_THRESHOLD=0.5
    )
    fail(breaker, 3)
    clock.advance(11)  # those failures are out of the window
    succeed(breaker, 2)
    fail(breaker)
    assert breaker.state is CLOSED  # 1/3, below min calls anyway
    fail(breaker)  # 2/4
    assert breaker.state is OPEN


def test_slow_calls_open_a_window_breaker() -> None:
    breaker = make(
        FakeClock(), CB_MODE="count", CB_WINDOW_SIZE=5, CB_MIN_CALLS=5,
        CB_SLOW_CALL_SEC=1.0, CB_SLOW_CALL_RATE_THRESHOLD=0.6,
    )  # fmt: skip
    succeed(breaker, 2, duration=0.1)
    succeed(breaker, 2, duration=2.0)
    assert breaker.state is CLOSED
    succeed(breaker, 1, duration=5.0)  # 3 of 5 slow
    assert breaker.state is OPEN


# --- manual states ---------------------------------------------------------------------------


def test_force_open_rejects_until_reset_even_after_the_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock, CB_RESET_SEC=1)
    breaker.force_open()
    clock.advance(100)
    assert breaker.try_acquire() == REJECTED
    assert breaker.status().override == "forced_open"
    breaker.reset()
    assert breaker.try_acquire() == ADMITTED


def test_disabled_breaker_never_rejects_nor_records() -> None:
    breaker = make(FakeClock(), CB_FAIL_THRESHOLD=1)
    breaker.disable()
    fail(breaker, 10)
    assert breaker.state is CLOSED
    assert breaker.override is BreakerOverride.DISABLED
    assert breaker.try_acquire() == ADMITTED


def test_metrics_only_breaker_transitions_but_admits() -> None:
    breaker = make(FakeClock(), CB_FAIL_THRESHOLD=1)
    breaker.metrics_only()
    fail(breaker)
    assert breaker.state is OPEN
    assert breaker.try_acquire() == ADMITTED


# --- manager ---------------------------------------------------------------------------------


def test_manager_keys_breakers_by_service_and_endpoint() -> None:
    manager = CircuitBreakerManager()
    gcs = manager.get_breaker("gcs", "upload")
    s3 = manager.get_breaker("s3", "upload")
    assert gcs is not s3
    assert manager.get_breaker("gcs", "upload") is gcs


def test_seed_one_argument_lookup_needs_an_unambiguous_endpoint() -> None:
    manager = CircuitBreakerManager()
    scan = manager.get_breaker("clamav", "scan")
    assert manager.get_breaker("scan") is scan
    manager.get_breaker("gcs", "upload")
    manager.get_breaker("s3", "upload")
    with pytest.raises(KeyError, match=r"several services \(gcs, s3\)"):
        manager.get_breaker("upload")
    with pytest.raises(KeyError, match="no circuit breaker for endpoint 'missing'"):
        manager.get_breaker("missing")


def test_status_lists_every_breaker_as_json_ready_dicts() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(clock=clock)
    manager.get_breaker("gcs", "upload")
    breaker = manager.get_breaker("clamav", "scan")
    for _ in range(5):
        breaker.record_failure(breaker.try_acquire())
    status = {s.endpoint: s.to_dict() for s in manager.status()}
    assert status["upload"] == {
        "service_name": "gcs", "endpoint": "upload", "state": "closed", "failure_count": 0,
        "seconds_until_probe": None, "override": None,
    }  # fmt: skip
    assert status["scan"]["state"] == "open"
    assert status["scan"]["seconds_until_probe"] == pytest.approx(60.0)


# --- a model-based check of the state machine -------------------------------------------------


class BreakerModel(RuleBasedStateMachine):
    """The breaker against a plain model of the seed's rules (consecutive mode).

    Calls may finish late: an admitted call or a probe can answer after the state moved on, and
    must then count for nothing.
    """

    threshold = 3
    reset = 10.0
    probes = 2

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker = make(
            self.clock, CB_FAIL_THRESHOLD=self.threshold, CB_RESET_SEC=self.reset,
            CB_HALF_OPEN_MAX_CALLS=self.probes,
        )  # fmt: skip
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.period = 0
        self.in_flight: list[int] = []
        self.probes_out = 0
        self.probe_ok = 0

    def _tick(self) -> None:
        if self.state == "open" and self.clock.now - self.opened_at >= self.reset:
            self.state, self.probes_out, self.probe_ok = "half_open", 0, 0
            self.period += 1

    def _open(self) -> None:
        self.state, self.opened_at = "open", self.clock.now

    @rule(seconds=st.floats(min_value=0, max_value=15))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def acquire(self) -> None:
        self._tick()
        permit = self.breaker.try_acquire()
        if self.state == "closed":
            assert permit == ADMITTED
        elif self.state == "half_open" and self.probes_out < self.probes:
            assert permit == probe_permit(self.period)
            self.probes_out += 1
        else:
            assert permit == REJECTED
            return
        self.in_flight.append(permit)

    @precondition(lambda self: self.in_flight)
    @rule(ok=st.booleans(), index=st.integers(min_value=0))
    def finish(self, ok: bool, index: int) -> None:
        self._tick()
        permit = self.in_flight.pop(index % len(self.in_flight))
        if ok:
            self.breaker.record_success(permit)
        else:
            self.breaker.record_failure(permit)
        if permit.probe:
            if self.state != "half_open" or permit != probe_permit(self.period):
                return  # a probe of an earlier half-open period
            self.probes_out -= 1
            if not ok:
                self._open()
                return
            self.probe_ok += 1
            if self.probe_ok >= self.probes:
                self.state, self.failures = "closed", 0
        elif self.state == "closed":
            if ok:
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.threshold:
                    self._open()

    @invariant()
    def same_state(self) -> None:
        self._tick()
        assert self.breaker.state.value == self.state


TestBreakerModel = BreakerModel.TestCase
TestBreakerModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


class WindowModel(RuleBasedStateMachine):
    """Window-mode breakers (failure and slow-call rates) against a plain model."""

    mode = "count"
    size = 6
    min_calls = 4
    rate = 0.5
    slow_sec = 1.0
    slow_rate = 0.75
    reset = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker = make(
            self.clock, CB_MODE=self.mode, CB_WINDOW_SIZE=self.size, CB_MIN_CALLS=self.min_calls,
            CB_FAILURE_RATE_THRESHOLD=self.rate, CB_SLOW_CALL_SEC=self.slow_sec,
            CB_SLOW_CALL_RATE_THRESHOLD=self.slow_rate, CB_RESET_SEC=self.reset,
        )  # fmt: skip
        self.state = "closed"
        self.opened_at = 0.0
        self.outcomes: list[tuple[float, bool, bool]] = []  # (time, failed, slow)

    def _tick(self) -> None:
        if self.state == "open" and self.clock.now - self.opened_at >= self.reset:
            self.state = "half_open"

    def _window(self) -> list[tuple[float, bool, bool]]:
        if self.mode == "count":
            return self.outcomes[-self.size :]
        horizon = int(self.clock.now) - self.size
        return [o for o in self.outcomes if int(o[0]) > horizon]

    @rule(seconds=st.sampled_from([0.0, 0.4, 1.0, 3.0, 11.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(failed=st.booleans(), duration=st.sampled_from([0.1, 0.5, 1.0, 2.0]))
    def call(self, failed: bool, duration: float) -> None:
        self._tick()
        permit = self.breaker.try_acquire()
        if self.state == "open":
            assert permit == REJECTED
            return
        if failed:
            self.breaker.record_failure(permit, duration)
        else:
            self.breaker.record_success(permit, duration)
        slow = duration >= self.slow_sec
        if self.state == "half_open":
            assert permit.probe
            if failed or slow:
                self.state, self.opened_at = "open", self.clock.now
            else:
                self.state, self.outcomes = "closed", []
            return
        self.outcomes.append((self.clock.now, failed, slow))
        window = self._window()
        calls = len(window)
        if calls >= self.min_calls and (
            sum(o[1] for o in window) / calls >= self.rate
            or sum(o[2] for o in window) / calls >= self.slow_rate
        ):
            self.state, self.opened_at, self.outcomes = "open", self.clock.now, []

    @invariant()
    def same_state(self) -> None:
        self._tick()
        assert self.breaker.state.value == self.state


class TimeWindowModel(WindowModel):
    mode = "time"
    size = 3


TestCountWindowModel = WindowModel.TestCase
TestCountWindowModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestTimeWindowModel = TimeWindowModel.TestCase
TestTimeWindowModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_manager_listeners_can_be_removed_from_every_breaker() -> None:
    manager = CircuitBreakerManager()
    seen: list[str] = []

    def listener(breaker: CircuitBreaker, old: object, new: CircuitBreakerState) -> None:
        seen.append(f"{breaker.endpoint}:{new.value}")

    before = manager.get_breaker("a", "x")
    manager.add_listener(listener)
    after = manager.get_breaker("b", "y")
    before.force_open()
    manager.remove_listener(listener)
    after.force_open()
    manager.get_breaker("c", "z").force_open()
    manager.remove_listener(listener)  # a second removal is harmless
    assert seen == ["x:open"]


# --- the package's parts: Permit, the machine, injected clock and config, lazy registration ---


def test_permit_is_a_frozen_value_with_one_rejected_instance() -> None:
    import dataclasses

    from otel_resilience._breakers import Permit

    probe = probe_permit(3)
    assert (probe.admitted, probe.probe, probe.period) == (True, True, 3)
    assert probe == Permit(True, True, 3)
    assert (REJECTED.admitted, ADMITTED.admitted, ADMITTED.probe) == (False, True, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        probe.admitted = False  # type: ignore[misc]
    assert not hasattr(probe, "__dict__")  # slots
    breaker = CircuitBreaker("scan", failure_threshold=1, clock=FakeClock())
    breaker.force_open()
    assert breaker.try_acquire() is REJECTED


def test_the_machine_takes_now_and_returns_its_transitions() -> None:
    from otel_resilience._breakers._machine import Machine, Settings

    machine = Machine(Settings(threshold=1, reset_sec=5, max_probes=1))
    permit, events = machine.acquire(now=100.0)
    assert (permit, events) == (ADMITTED, [])
    assert machine.failure(permit, 0.0, now=100.0) == [(CLOSED, OPEN)]
    assert machine.acquire(now=104.9) == (REJECTED, [])
    assert machine.rejects_after(0.05, now=104.9)
    assert not machine.rejects_after(0.1, now=104.9)
    probe, events = machine.acquire(now=105.0)
    assert (probe, events) == (probe_permit(1), [(OPEN, HALF_OPEN)])
    assert machine.success(probe, 0.0, now=106.0) == [(HALF_OPEN, CLOSED)]
    assert machine.idle()


def test_memory_breakers_have_trivial_async_twins() -> None:
    import asyncio

    clock = FakeClock()
    breaker = make(clock, CB_FAIL_THRESHOLD=1)
    assert breaker.async_io is False

    async def run() -> None:
        permit = await breaker.try_acquire_async()
        await breaker.record_failure_async(permit, 0.0)
        assert breaker.state is OPEN
        clock.advance(60)
        probe = await breaker.try_acquire_async()
        await breaker.release_async(probe)
        assert breaker.state is HALF_OPEN
        probe = await breaker.try_acquire_async()
        await breaker.record_success_async(probe, 0.0)

    asyncio.run(run())
    assert breaker.state is CLOSED
    assert breaker.sync() is CLOSED  # nothing to read from elsewhere
    assert breaker.backend.try_acquire() is ADMITTED  # the backend alone: the same fast path


def test_the_manager_gives_its_clock_and_config_source_to_its_breakers() -> None:
    clock = FakeClock()
    configs = {"clamav": ReliabilityConfig(CB_FAIL_THRESHOLD=1, CB_RESET_SEC=5)}
    manager = CircuitBreakerManager(clock=clock, config_source=configs.__getitem__)
    assert manager.clock is clock
    breaker = manager.breaker_for("clamav", "scan")
    fail(breaker)
    assert breaker.state is OPEN
    clock.advance(5)  # the manager's fake clock drives the reset timeout
    assert breaker.state is HALF_OPEN
    configs["clamav"] = ReliabilityConfig(CB_FAIL_THRESHOLD=3)
    manager.drop_changed()  # the owner (the Runtime) calls it when the config changed
    fresh = manager.breaker_for("clamav", "scan")
    assert fresh is not breaker
    assert fresh.failure_threshold == 3
    del configs["clamav"]
    manager.drop_changed()  # a config that no longer loads drops the breaker too
    assert manager.breakers() == []


def test_no_registration_at_import_and_the_runtime_drops_changed_breakers() -> None:
    import subprocess
    import sys

    code = (
        "import otel_resilience\n"
        "from otel_resilience import _config, get_circuit_breaker_manager, configure\n"
        "assert not hasattr(_config, '_listeners')\n"  # nothing registers at import time
        "m = get_circuit_breaker_manager()\n"
        "b = m.get_breaker('gcs', 'upload')\n"
        "other = m.get_breaker('gcs', 'download')\n"
        "configure(services={'gcs': {'CB_FAIL_THRESHOLD': 2}})\n"
        "assert m.get_breaker('gcs', 'upload') is not b\n"  # the runtime's one invalidation
        "assert m.get_breaker('gcs', 'upload').failure_threshold == 2\n"
        "configure(services={'s3': {'CB_FAIL_THRESHOLD': 2}})\n"
        "assert m.get_breaker('gcs', 'download') is not other\n"  # made afresh with gcs's change
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_machine_on_its_own_manual_states_stale_permits_and_windows() -> None:
    from otel_resilience._breakers._machine import Machine, Settings

    machine = Machine(Settings(threshold=1, reset_sec=5))
    assert not machine.rejects_after(100, now=0.0)  # closed
    machine.disable()
    assert machine.acquire(now=0.0) == (ADMITTED, [])
    assert machine.success(ADMITTED, 0.0, now=0.0) == []
    assert machine.failure(ADMITTED, 0.0, now=0.0) == []  # disabled: nothing recorded
    assert machine.failure_count == 0
    assert machine.reset() == []
    assert machine.force_open(now=1.0) == [(CLOSED, OPEN)]
    assert machine.force_open(now=2.0) == []  # already open: opened again, no transition
    assert machine.opened_at == 2.0
    assert machine.seconds_until_probe(now=100.0) is None  # forced open never probes
    assert machine.reset() == [(OPEN, CLOSED)]
    machine.release(probe_permit(0))  # a probe permit while closed: nothing to give back
    assert machine.probes_in_flight == 0

    window = Machine(Settings(mode="count", window_size=2, min_calls=2, failure_rate=1.0))
    assert not window.window_outcome(True, False, now=0.0)  # one call: below min_calls
    assert window.window_outcome(True, False, now=0.0)
    window.open(0.0, [])
    assert not window.window_outcome(True, False, now=0.0)  # open: the window waits
    assert window.failure_count == 3


def test_repr_names_the_backend_and_the_manager_iterates_and_evicts_idle_breakers() -> None:
    breaker = CircuitBreaker("scan", service_name="clamav")
    assert repr(breaker) == (
        "CircuitBreaker(service_name='clamav', endpoint='scan', state=closed, failure_count=0)"
    )
    manager = CircuitBreakerManager()
    manager.max_idle_breakers = 2
    manager._sweep_at = 2
    busy = manager.breaker_for("s", "busy")
    fail(busy)
    idle = manager.breaker_for("s", "idle")
    assert list(manager) == [busy, idle]
    manager.breaker_for("s", "third")  # the third sweeps: the idle one goes, the busy one stays
    assert [b.endpoint for b in manager] == ["busy", "third"]


def test_the_manager_builds_breakers_whose_open_time_grows_per_service() -> None:
    clock = FakeClock()
    configs = {
        "clamav": ReliabilityConfig(
            CB_FAIL_THRESHOLD=1, CB_RESET_SEC=5, CB_RESET_MULTIPLIER=3, CB_RESET_MAX_SEC=40
        ),
        "gcs": ReliabilityConfig(CB_FAIL_THRESHOLD=1, CB_RESET_SEC=5),
    }
    manager = CircuitBreakerManager(clock=clock, config_source=configs.__getitem__)
    grows, fixed = manager.breaker_for("clamav", "scan"), manager.breaker_for("gcs", "upload")
    for breaker in (grows, fixed):
        breaker.machine.rand = lambda: 0.0
        fail(breaker)
    for breaker, expected in ((grows, (15, 40, 40)), (fixed, (5, 5, 5))):
        for open_sec in expected:  # clamav: 5 x 3, then 45 capped at 40; gcs: the seed's 5 s
            clock.advance(breaker.machine.open_sec)
            assert breaker.state is HALF_OPEN
            fail(breaker)
            assert breaker.status().seconds_until_probe == open_sec
    clock.advance(40)
    succeed(grows)
    assert grows.state is CLOSED
    fail(grows)
    assert grows.status().seconds_until_probe == 5
