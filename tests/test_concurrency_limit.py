"""Concurrency limits per service (``CONCURRENCY_LIMIT*``): limiter invariants, calls end to end."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

import otel_resilience
from otel_resilience import (
    ConcurrencyLimitedError,
    ConfigError,
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    configure,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._concurrency import (
    ConcurrencyLimiter,
    FixedLimit,
    Outcome,
    Slot,
    VegasLimit,
    outcome_of,
)
from otel_resilience._load import Gate
from support import FakeClock

E = ExternalServiceError
SERVICE_KEY = "resilience.service"
ENDPOINT_KEY = "resilience.endpoint"


class ServerError(Exception):
    status_code = 503


def _gate(service: str) -> Gate:
    gate = otel_resilience.default_runtime().service(service).gate
    assert gate is not None
    return gate


def _limiter(service: str) -> ConcurrencyLimiter:
    limiter = _gate(service).limiter
    assert limiter is not None
    return limiter


def _metric(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    return list(metric.data.data_points)
    return []


def _by_pair(points: list[Any], **extra: str) -> dict[tuple[str, str], Any]:
    found = {}
    for point in points:
        attributes = dict(point.attributes or {})
        if all(attributes.get(k) == v for k, v in extra.items()):
            found[(attributes[SERVICE_KEY], attributes[ENDPOINT_KEY])] = point
    return found


# --- the limiter alone -------------------------------------------------------------------------


def test_fixed_limiter_refuses_past_its_limit_and_admits_after_a_release() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(2))
    first, second = limiter.try_acquire("a"), limiter.try_acquire("b")
    assert first is not None
    assert second is not None
    assert limiter.try_acquire("a") is None
    assert limiter.acquire(0.0, "a") is None
    assert (limiter.limit, limiter.in_flight) == (2, 2)
    limiter.release(first, Outcome.OK, 0.01)
    limiter.release(first, Outcome.OK, 0.01)  # a second release of one slot changes nothing
    assert limiter.in_flight == 1
    assert limiter.try_acquire("a") is not None
    assert sorted(limiter.endpoints()) == [("a", 1), ("b", 1)]
    assert "limit=2" in repr(limiter)


def test_a_waiting_thread_gets_the_released_slot_in_arrival_order() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(1))
    held = limiter.try_acquire()
    assert held is not None
    got: list[Slot | None] = []
    waiter = threading.Thread(target=lambda: got.append(limiter.acquire(5.0)))
    waiter.start()
    while limiter.waiting == 0:
        time.sleep(0.001)
    assert limiter.try_acquire() is None  # no barging past a queued caller
    limiter.release(held, Outcome.OK, 0.01)
    waiter.join(5)
    assert got
    assert got[0] is not None
    assert limiter.in_flight == 1
    assert limiter.waiting == 0


def test_a_thread_wait_ends_at_its_timeout_without_a_slot() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(1))
    assert limiter.try_acquire() is not None
    start = time.perf_counter()
    assert limiter.acquire(0.05) is None
    assert 0.04 <= time.perf_counter() - start < 1.0
    assert limiter.waiting == 0
    assert limiter.in_flight == 1


def test_an_asyncio_waiter_is_woken_by_a_release_from_another_thread() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(1))
    held = limiter.try_acquire()
    assert held is not None

    async def main() -> Slot | None:
        timer = threading.Timer(0.05, limiter.release, (held, Outcome.OK, 0.01))
        timer.start()
        try:
            return await limiter.acquire_async(5.0)
        finally:
            timer.join()

    slot = asyncio.run(main())
    assert slot is not None
    assert limiter.in_flight == 1


def test_an_asyncio_wait_times_out_and_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(1))
    held = limiter.try_acquire()
    assert held is not None

    async def main() -> None:
        assert await limiter.acquire_async(0.02) is None
        assert await limiter.acquire_async(0.0) is None
        queued = asyncio.ensure_future(limiter.acquire_async(5.0))
        await asyncio.sleep(0.01)
        queued.cancel()  # cancelled while queued: leaves the queue
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert limiter.waiting == 0
        task = asyncio.ensure_future(limiter.acquire_async(5.0))
        await asyncio.sleep(0.01)
        # granted and cancelled in the same loop turn: either the task gets the slot
        # (asyncio.wait_for may return a result that came with the cancellation) or the
        # grant goes back; never a slot that nobody holds
        limiter.release(held, Outcome.OK, 0.01)
        task.cancel()
        try:
            slot = await task
        except asyncio.CancelledError:
            assert limiter.in_flight == 0
        else:
            assert slot is not None
            assert limiter.in_flight == 1
            limiter.release(slot, Outcome.NEUTRAL, 0.0)

    asyncio.run(main())
    assert limiter.in_flight == 0
    assert limiter.waiting == 0


def test_a_thread_interrupted_while_queued_gives_a_slot_granted_meanwhile_back() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(1))
    held = limiter.try_acquire("a")
    assert held is not None

    def grant_then_interrupt(signum: int, frame: object) -> None:
        limiter.release(held, Outcome.OK, 0.01)  # the queued caller (this thread) gets it...
        raise KeyboardInterrupt  # ...and is interrupted before it returns

    def interrupt_the_waiter() -> None:
        while limiter.waiting < 1:
            time.sleep(0.001)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, grant_then_interrupt)
    sender = threading.Thread(target=interrupt_the_waiter)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            limiter.acquire(5.0, "a")
    finally:
        sender.join(5)
        signal.signal(signal.SIGUSR1, previous)
    assert limiter.waiting == 0
    assert limiter.in_flight == 0  # the late grant went back: no slot lost for good
    assert limiter.try_acquire("a") is not None


def test_outcomes_of_errors() -> None:
    assert outcome_of(None) is Outcome.OK
    for kind in (E.TIMEOUT, E.RATE_LIMIT, E.SERVER_ERROR):
        assert outcome_of(ReliabilityError(kind, "s", "e")) is Outcome.OVERLOAD
    for kind in (E.NOT_FOUND, E.CONNECTION_ERROR, E.CONCURRENCY_LIMITED, E.CIRCUIT_OPEN):
        assert outcome_of(ReliabilityError(kind, "s", "e")) is Outcome.NEUTRAL


def test_vegas_grows_while_nothing_queues_and_shrinks_when_latency_says_calls_queue() -> None:
    vegas = VegasLimit(20, 1, 200, window=1, seed=1)
    vegas.update(0.010, 20, Outcome.OK)  # the first sample is the no-load latency
    assert vegas.rtt_noload == 0.010
    grown = vegas.update(0.010, 20, Outcome.OK)
    assert grown > 20
    assert vegas.update(0.010, 1, Outcome.OK) == grown  # far below the limit: no growth
    for _ in range(5):
        vegas.update(0.030, grown, Outcome.OK)  # 3x the no-load latency: a long queue
    assert vegas.limit < grown
    before = vegas.limit
    assert vegas.update(0.5, before, Outcome.NEUTRAL) == before
    assert vegas.update(0.5, before, Outcome.OVERLOAD) == int(before * 0.9)
    for _ in range(200):
        vegas.update(0.010, 1, Outcome.OVERLOAD)
    assert vegas.limit == 1  # never below MIN


def test_vegas_holds_the_limit_when_the_queue_estimate_is_in_its_sweet_spot() -> None:
    vegas = VegasLimit(100, 1, 1000, window=1, seed=1)
    assert vegas.update(0.010, 0, Outcome.OK) == 100  # idle: only the no-load latency learnt
    # queue = ceil(100 * (1 - 10/10.45)) = 5: between 3*log10(100)=6? no: between log and 3log
    assert vegas.update(0.01045, 100, Outcome.OK) == 102
    # queue = ceil(102 * (1 - 0.010/0.0108)) = 8: between 3 log and 6 log -> unchanged
    assert vegas.update(0.0108, 102, Outcome.OK) == 102


def test_vegas_probes_the_no_load_latency_afresh_now_and_then() -> None:
    vegas = VegasLimit(1, 1, 1, window=1, seed=3)  # limit 1: a probe every 15..30 samples
    vegas.update(0.010, 1, Outcome.OK)
    for _ in range(40):
        vegas.update(0.050, 1, Outcome.OK)
    assert vegas.rtt_noload == 0.050  # the service became slower for good: a new baseline


class LimiterMachine(RuleBasedStateMachine):
    """Limiter invariants under any interleaving of acquire and release (fixed and adaptive).

    A slot is granted only while fewer than ``limit`` are in flight; an adaptive limit may
    then shrink below the slots still out (they drain, nothing new is admitted meanwhile).
    """

    slots = Bundle("slots")
    places = Bundle("places")  # taken with the fast pair (enter/leave): (endpoint, in flight)

    @initialize(adaptive=st.booleans(), low=st.integers(1, 4), span=st.integers(0, 6))
    def start(self, adaptive: bool, low: int, span: int) -> None:
        self.low, self.high = low, low + span
        algorithm = VegasLimit(low, low, self.high, seed=0) if adaptive else FixedLimit(low)
        self.limiter = ConcurrencyLimiter("machine", algorithm)
        self.adaptive = adaptive
        self.out: set[int] = set()
        self.released: set[int] = set()
        self.entered = 0

    @rule(target=slots, endpoint=st.sampled_from(["a", "b"]))
    def acquire(self, endpoint: str) -> Any:
        before = self.limiter.in_flight
        slot = self.limiter.try_acquire(endpoint)
        if slot is None:
            assert before >= self.limiter.limit
            return None
        assert self.limiter.in_flight == before + 1 <= self.limiter.limit
        self.out.add(id(slot))
        return slot

    @rule(
        slot=consumes(slots),
        outcome=st.sampled_from(list(Outcome)),
        latency=st.floats(0.001, 1.0),
    )
    def release(self, slot: Slot | None, outcome: Outcome, latency: float) -> None:
        if slot is None:
            return
        self.limiter.release(slot, outcome, latency)
        self.limiter.release(slot, outcome, latency)  # twice: counted once
        self.out.discard(id(slot))
        self.released.add(id(slot))

    @rule(target=places, endpoint=st.sampled_from(["a", "b"]))
    def enter(self, endpoint: str) -> Any:
        before = self.limiter.in_flight
        taken = self.limiter.enter(endpoint)
        if not taken:
            assert before >= self.limiter.limit
            return None
        assert taken == self.limiter.in_flight == before + 1 <= self.limiter.limit
        self.entered += 1
        return (endpoint, taken)

    @rule(
        place=consumes(places),
        outcome=st.sampled_from(list(Outcome)),
        latency=st.floats(0.001, 1.0),
    )
    def leave(self, place: tuple[str, int] | None, outcome: Outcome, latency: float) -> None:
        if place is None:
            return
        self.limiter.leave(place[0], place[1], outcome, latency)
        self.entered -= 1

    @precondition(lambda self: hasattr(self, "limiter"))
    @invariant()
    def counts_agree(self) -> None:
        limiter = self.limiter
        assert limiter.in_flight == len(self.out) + self.entered >= 0
        assert sum(count for _, count in limiter.endpoints()) == limiter.in_flight
        assert self.low <= limiter.limit <= self.high
        if not self.adaptive:
            assert limiter.in_flight <= limiter.limit


TestLimiterMachine = LimiterMachine.TestCase
TestLimiterMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(
        st.tuples(st.floats(0.0005, 2.0), st.integers(0, 300), st.sampled_from(list(Outcome))),
        max_size=60,
    ),
    low=st.integers(1, 50),
    span=st.integers(0, 200),
)
@example(samples=[(0.01, 0, Outcome.OK), (0.01, 1, Outcome.OK)], low=1, span=0)
def test_vegas_limit_stays_within_min_and_max(
    samples: list[tuple[float, int, Outcome]], low: int, span: int
) -> None:
    vegas = VegasLimit(low, low, low + span, seed=0)
    for latency, in_flight, outcome in samples:
        limit = vegas.update(latency, in_flight, outcome)
        assert low <= limit <= low + span


# --- resilient_call end to end -----------------------------------------------------------------


@pytest.fixture
def held() -> Iterator[threading.Event]:
    """An event the slow functions of a test wait on (set at the end, whatever happens)."""
    event = threading.Event()
    yield event
    event.set()


def _run_threads(count: int, target: Any) -> list[threading.Thread]:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_threads_past_the_limit_are_refused_without_an_attempt(
    metric_reader: InMemoryMetricReader, held: threading.Event
) -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 3}})
    lock = threading.Lock()
    running = [0, 0, 0]  # now, most at once, calls of func

    def slow() -> str:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
            running[2] += 1
        held.wait(5)
        with lock:
            running[0] -= 1
        return "ok"

    outcomes: list[str] = []

    def worker() -> None:
        try:
            outcomes.append(resilient_call("llm", "chat", slow, max_retries=3))
        except ConcurrencyLimitedError as error:
            outcomes.append(f"{error.error_type.value}/{error.attempts}")

    threads = _run_threads(3, worker)
    while running[0] < 3:  # all three inside the service
        time.sleep(0.001)
    refused = _run_threads(5, worker)
    for thread in refused:
        thread.join(5)
    held.set()
    for thread in threads:
        thread.join(5)
    assert sorted(outcomes) == ["concurrency_limited/0"] * 5 + ["ok"] * 3
    assert running[1] == 3
    assert running[2] == 3
    assert _limiter("llm").in_flight == 0
    rejections = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.rejections"))
    assert rejections[("llm", "chat")].value == 5
    calls = _by_pair(
        _metric(metric_reader, "resilience.call.duration"), **{"error.type": "concurrency_limited"}
    )
    assert calls[("llm", "chat")].count == 5
    attempts = _metric(metric_reader, "resilience.attempt.duration")
    assert sum(p.count for p in attempts) == 3  # a refusal is not an attempt
    breakers = _metric(metric_reader, "resilience.circuit_breaker.rejections")
    assert sum(p.value for p in breakers) == 0


def test_a_refusal_never_counts_against_the_breaker_and_can_be_served_by_the_fallback(
    held: threading.Event,
) -> None:
    configure(services={"scan": {"CONCURRENCY_LIMIT": 1, "CB_FAIL_THRESHOLD": 1}})
    thread = _run_threads(1, lambda: resilient_call("scan", "file", lambda: held.wait(5)))[0]
    while _limiter("scan").in_flight < 1:
        time.sleep(0.001)
    served = [
        resilient_call("scan", "file", lambda: "never", fallback=lambda e: e.error_type.value)
        for _ in range(3)
    ]
    assert served == ["concurrency_limited"] * 3
    held.set()
    thread.join(5)
    assert otel_resilience.get_circuit_breaker_manager().get_breaker("file").state.value == (
        "closed"
    )
    assert resilient_call("scan", "file", lambda: "ok") == "ok"


def test_a_waiting_call_gets_the_slot_and_its_wait_is_measured(
    metric_reader: InMemoryMetricReader,
) -> None:
    configure(services={"gcs": {"CONCURRENCY_LIMIT": 1, "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 5}})
    first = threading.Thread(target=lambda: resilient_call("gcs", "up", lambda: time.sleep(0.1)))
    first.start()
    while _limiter("gcs").in_flight < 1:
        time.sleep(0.001)
    assert resilient_call("gcs", "up", lambda: "second") == "second"
    first.join(5)
    waits = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.wait.duration"))
    point = waits[("gcs", "up")]
    assert point.count == 1
    assert 0.02 < point.sum < 5
    rejections = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.rejections"))
    assert rejections[("gcs", "up")].value == 0  # started at 0, nothing refused


def test_the_wait_ends_at_the_calls_deadline_not_at_the_configured_wait(
    held: threading.Event,
) -> None:
    configure(services={"gcs": {"CONCURRENCY_LIMIT": 1, "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 30}})
    thread = _run_threads(1, lambda: resilient_call("gcs", "up", lambda: held.wait(5)))[0]
    while _limiter("gcs").in_flight < 1:
        time.sleep(0.001)
    start = time.perf_counter()
    with pytest.raises(ConcurrencyLimitedError, match="after waiting"):
        resilient_call("gcs", "up", lambda: "late", deadline_sec=0.1)
    assert time.perf_counter() - start < 2
    held.set()
    thread.join(5)


@pytest.mark.parametrize(
    "func",
    [
        pytest.param(lambda: (_ for _ in ()).throw(ServerError("503")), id="server-error"),
        pytest.param(lambda: (_ for _ in ()).throw(LookupError("bug")), id="unknown-error"),
        pytest.param(lambda: time.sleep(1), id="timeout"),
    ],
)
def test_every_failing_attempt_gives_its_slot_back(func: Any) -> None:
    configure(
        services={
            "svc": {"CONCURRENCY_LIMIT": 1, "HTTP_TIMEOUT_SEC": 0.05, "TIMEOUT_MODE": "thread"}
        }
    )
    for _ in range(2):
        with pytest.raises(ReliabilityError):
            resilient_call("svc", "op", func, max_retries=2)
    assert _limiter("svc").in_flight == 0


def test_the_slot_is_given_back_on_interruptions_misuse_and_an_open_breaker() -> None:
    configure(services={"svc": {"CONCURRENCY_LIMIT": 1, "CB_FAIL_THRESHOLD": 1}})

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resilient_call("svc", "op", interrupted)

    async def coroutine() -> None:
        return None

    with pytest.raises(TypeError):
        resilient_call("svc", "op", coroutine)  # type: ignore[arg-type]
    with pytest.raises(ReliabilityError):
        resilient_call("svc", "op", lambda: (_ for _ in ()).throw(ServerError()), max_retries=1)
    with pytest.raises(otel_resilience.CircuitOpenError):
        resilient_call("svc", "op", lambda: "x")
    assert _limiter("svc").in_flight == 0


def test_each_retry_takes_a_slot_and_a_retry_the_limit_refuses_ends_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(services={"svc": {"CONCURRENCY_LIMIT": 1, "HTTP_BACKOFF_BASE_MS": 1}})
    calls = []

    def flaky() -> str:
        calls.append(_limiter("svc").in_flight)
        if len(calls) < 3:
            raise ServerError("503")
        return "ok"

    assert resilient_call("svc", "op", flaky, max_retries=3) == "ok"
    assert calls == [1, 1, 1]  # every attempt held the one slot

    taken: list[Slot | None] = []

    class GrabbingClock(FakeClock):
        """Backoff on a fake clock; while the call backs off, someone else takes the slot."""

        def sleep(self, seconds: float) -> None:
            taken.append(_limiter("svc").try_acquire())
            super().sleep(seconds)

    shared = otel_resilience.default_runtime().telemetry
    runtime = otel_resilience.Runtime(clock=GrabbingClock(), telemetry=shared)
    calls.clear()
    with otel_resilience.use_runtime(runtime):
        configure(services={"svc": {"CONCURRENCY_LIMIT": 1, "HTTP_BACKOFF_BASE_MS": 1}})
        with pytest.raises(ConcurrencyLimitedError) as caught:
            resilient_call("svc", "op", flaky, max_retries=3)
        assert len(calls) == 1
        assert caught.value.attempts == 1
    assert taken
    assert taken[0] is not None


def test_a_timed_out_attempt_gives_its_slot_back_when_control_returns() -> None:
    """The documented choice: the abandoned worker may run on, the slot is free again."""
    configure(
        services={
            "svc": {"CONCURRENCY_LIMIT": 1, "HTTP_TIMEOUT_SEC": 0.05, "TIMEOUT_MODE": "thread"}
        }
    )
    release = threading.Event()
    with pytest.raises(otel_resilience.CallTimeoutError):
        resilient_call("svc", "op", lambda: release.wait(5), max_retries=1)
    assert _limiter("svc").in_flight == 0
    assert resilient_call("svc", "op", lambda: "next") == "next"
    release.set()


def test_asyncio_tasks_past_the_limit_are_refused_and_waiters_admitted(
    metric_reader: InMemoryMetricReader,
) -> None:
    configure(
        services={
            "llm": {"CONCURRENCY_LIMIT": 2},
            "queue": {"CONCURRENCY_LIMIT": 2, "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 5},
        }
    )
    state = {"now": 0, "most": 0, "ran": 0}

    async def slow() -> str:
        state["now"] += 1
        state["ran"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return "ok"

    async def one(service: str) -> str:
        try:
            return await resilient_call_async(service, "chat", slow, max_retries=3)
        except ConcurrencyLimitedError as error:
            return error.error_type.value

    async def main() -> tuple[list[str], list[str]]:
        refused = await asyncio.gather(*(one("llm") for _ in range(10)))
        queued = await asyncio.gather(*(one("queue") for _ in range(10)))
        return list(refused), list(queued)

    refused, queued = asyncio.run(main())
    assert sorted(refused) == ["concurrency_limited"] * 8 + ["ok"] * 2
    assert queued == ["ok"] * 10
    assert state["most"] == 2
    assert state["ran"] == 12
    assert _limiter("llm").in_flight == 0
    assert _limiter("queue").in_flight == 0
    rejections = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.rejections"))
    assert rejections[("llm", "chat")].value == 8
    assert rejections[("queue", "chat")].value == 0
    waits = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.wait.duration"))
    assert waits[("queue", "chat")].count == 8


def test_a_cancelled_asyncio_call_gives_its_slot_back() -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 1, "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 5}})

    async def main() -> None:
        running = asyncio.ensure_future(resilient_call_async("llm", "chat", asyncio.Event().wait))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(resilient_call_async("llm", "chat", asyncio.Event().wait))
        await asyncio.sleep(0.01)
        assert _limiter("llm").waiting == 1
        waiting.cancel()
        running.cancel()
        for task in (waiting, running):
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert _limiter("llm").in_flight == 0
    assert _limiter("llm").waiting == 0


def test_limit_and_in_flight_gauges_per_endpoint(
    metric_reader: InMemoryMetricReader, held: threading.Event
) -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 4}})
    threads = [
        threading.Thread(target=lambda e=e: resilient_call("llm", e, lambda: held.wait(5)))
        for e in ("chat", "chat", "embed")
    ]
    for thread in threads:
        thread.start()
    while _limiter("llm").in_flight < 3:
        time.sleep(0.001)
    limits = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.limit"))
    in_flight = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.in_flight"))
    held.set()
    for thread in threads:
        thread.join(5)
    assert {k: p.value for k, p in limits.items()} == {("llm", "chat"): 4, ("llm", "embed"): 4}
    assert {k: p.value for k, p in in_flight.items()} == {("llm", "chat"): 2, ("llm", "embed"): 1}
    data = metric_reader.get_metrics_data()
    kinds = {
        m.name: m.data for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
    }
    assert isinstance(kinds["resilience.concurrency_limit.limit"], Gauge)
    in_flight_data = kinds["resilience.concurrency_limit.in_flight"]
    assert isinstance(in_flight_data, Sum)
    assert not in_flight_data.is_monotonic
    assert isinstance(kinds["resilience.concurrency_limit.rejections"], Sum)
    units = {
        m.name: m.unit for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
    }
    assert units["resilience.concurrency_limit.limit"] == "{call}"
    assert units["resilience.concurrency_limit.in_flight"] == "{call}"
    assert units["resilience.concurrency_limit.rejections"] == "{call}"


def test_past_the_endpoint_cap_gauges_merge_into_other(
    metric_reader: InMemoryMetricReader, held: threading.Event
) -> None:
    otel_resilience.default_runtime().telemetry.set_max_endpoints(1)
    configure(services={"llm": {"CONCURRENCY_LIMIT": 5}})
    threads = [
        threading.Thread(target=lambda e=e: resilient_call("llm", e, lambda: held.wait(5)))
        for e in ("a", "b", "c")
    ]
    for thread in threads:
        thread.start()
    while _limiter("llm").in_flight < 3:
        time.sleep(0.001)
    in_flight = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.in_flight"))
    held.set()
    for thread in threads:
        thread.join(5)
    assert sum(p.value for p in in_flight.values()) == 3
    assert ("llm", "_other") in in_flight
    assert len(in_flight) == 2


def test_adaptive_limit_shrinks_on_overload_and_is_exported(
    metric_reader: InMemoryMetricReader,
) -> None:
    configure(
        services={
            "llm": {
                "CONCURRENCY_LIMIT_MODE": "adaptive",
                "CONCURRENCY_LIMIT_MIN": 2,
                "CONCURRENCY_LIMIT_MAX": 50,
                "CB_FAIL_THRESHOLD": 1000,
            }
        }
    )
    assert resilient_call("llm", "chat", lambda: "ok") == "ok"
    assert _limiter("llm").limit == 20  # the default start
    for _ in range(40):  # two windows of 20 samples, each with overload: two cuts
        with pytest.raises(ReliabilityError):
            resilient_call(
                "llm", "chat", lambda: (_ for _ in ()).throw(ServerError()), max_retries=1
            )
    assert _limiter("llm").limit == 16  # 20 * 0.9 * 0.9 = 16.2
    limits = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.limit"))
    assert limits[("llm", "chat")].value == 16


def test_changing_another_setting_keeps_the_limiter_and_changing_the_limit_rebuilds_it() -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 2}})
    resilient_call("llm", "chat", lambda: "ok")
    before = _limiter("llm")
    configure(services={"llm": {"CONCURRENCY_LIMIT": 2, "HTTP_RETRIES": 1}})
    resilient_call("llm", "chat", lambda: "ok")
    assert _limiter("llm") is before
    configure(services={"llm": {"CONCURRENCY_LIMIT": 3}})
    assert _limiter("llm") is not before
    assert _limiter("llm").limit == 3
    configure(services={"llm": {"CONCURRENCY_LIMIT": None}})
    assert otel_resilience.default_runtime().service("llm").gate is None


def test_idle_gates_are_dropped_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_resilience import _load

    monkeypatch.setattr(_load, "MAX_IDLE_GATES", 3)
    control = _load.LoadControl()
    config = ReliabilityConfig(CONCURRENCY_LIMIT=1)
    busy = control.gate("busy", config)
    assert busy is not None
    assert busy.limiter is not None
    slot = busy.limiter.try_acquire()
    for index in range(6):
        control.gate(f"s{index}", config)
    assert busy.limiter in control.limiters()  # held slots: kept
    assert len(control.limiters()) <= 4
    assert slot is not None


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"CONCURRENCY_LIMIT": 0}, r"CONCURRENCY_LIMIT=0 is not accepted: expected an integer"),
        ({"CONCURRENCY_LIMIT_MODE": "vegas"}, r"CONCURRENCY_LIMIT_MODE='vegas'.*fixed, adaptive"),
        ({"CONCURRENCY_LIMIT_MIN": 0}, r"CONCURRENCY_LIMIT_MIN=0 is not accepted"),
        ({"CONCURRENCY_LIMIT_MAX": 10**6}, r"CONCURRENCY_LIMIT_MAX=1000000 is not accepted"),
        ({"CONCURRENCY_LIMIT_MAX_WAIT_SEC": -1}, r"CONCURRENCY_LIMIT_MAX_WAIT_SEC=-1"),
        ({"RATE_LIMIT_MODE": "cubic"}, r"RATE_LIMIT_MODE='cubic'.*fixed, adaptive"),
        (
            {"CONCURRENCY_LIMIT_MIN": 10, "CONCURRENCY_LIMIT_MAX": 5},
            r"CONCURRENCY_LIMIT_MIN=10 is not accepted: expected at most CONCURRENCY_LIMIT_MAX",
        ),
        (
            {"CONCURRENCY_LIMIT_MODE": "adaptive", "CONCURRENCY_LIMIT": 500},
            r"CONCURRENCY_LIMIT=500 is not accepted with CONCURRENCY_LIMIT_MODE='adaptive'",
        ),
        (
            {
                "CONCURRENCY_LIMIT": 4,
                "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 20,
                "DEADLINE_SEC": 10,
                "HTTP_TIMEOUT_SEC": 5,
            },
            r"CONCURRENCY_LIMIT_MAX_WAIT_SEC=20 is not accepted with DEADLINE_SEC=10",
        ),
        (
            {
                "RATE_LIMIT_MODE": "adaptive",
                "RATE_LIMIT_MAX_WAIT_SEC": 20,
                "DEADLINE_SEC": 10,
                "HTTP_TIMEOUT_SEC": 5,
            },
            r"RATE_LIMIT_MAX_WAIT_SEC=20 is not accepted with DEADLINE_SEC=10",
        ),
    ],
)
def test_bad_load_control_settings_are_named(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReliabilityConfig(**values)


def test_a_long_wait_is_accepted_when_its_feature_is_off_or_no_deadline_is_set() -> None:
    ReliabilityConfig(CONCURRENCY_LIMIT_MAX_WAIT_SEC=20, DEADLINE_SEC=10, HTTP_TIMEOUT_SEC=5)
    ReliabilityConfig(CONCURRENCY_LIMIT=2, CONCURRENCY_LIMIT_MAX_WAIT_SEC=20)
    ReliabilityConfig(
        CONCURRENCY_LIMIT=2, CONCURRENCY_LIMIT_MAX_WAIT_SEC=10, DEADLINE_SEC=10, HTTP_TIMEOUT_SEC=5
    )


def test_load_control_settings_from_the_environment() -> None:
    env = {
        "CONCURRENCY_LIMIT": "8",
        "RELIABILITY_OPENAI_CONCURRENCY_LIMIT_MODE": "adaptive",
        "RELIABILITY_OPENAI_CONCURRENCY_LIMIT_MAX": "64",
        "RELIABILITY_OPENAI_RATE_LIMIT_MODE": "adaptive",
        "CONCURRENCY_LIMIT_MAX_WAIT_SEC": "0.5",
    }
    config = ReliabilityConfig.from_env(env, service="openai")
    assert (config.CONCURRENCY_LIMIT, config.CONCURRENCY_LIMIT_MODE) == (8, "adaptive")
    assert (config.CONCURRENCY_LIMIT_MAX, config.RATE_LIMIT_MODE) == (64, "adaptive")
    assert config.CONCURRENCY_LIMIT_MAX_WAIT_SEC == 0.5
    assert ReliabilityConfig.from_env({"CONCURRENCY_LIMIT": "none"}).CONCURRENCY_LIMIT is None
    with pytest.raises(ConfigError, match="CONCURRENCY_LIMIT='many'"):
        ReliabilityConfig.from_env({"CONCURRENCY_LIMIT": "many"})


def test_free_slots_are_taken_at_once_by_the_waiting_acquires_too() -> None:
    limiter = ConcurrencyLimiter("s", FixedLimit(2))
    assert limiter.acquire(1.0, "a") is not None

    async def main() -> Slot | None:
        return await limiter.acquire_async(1.0, "a")

    assert asyncio.run(main()) is not None
    assert limiter.in_flight == 2
    assert FixedLimit(3).update(0.1, 3, Outcome.OVERLOAD) == 3


def test_endpoint_entries_past_the_cap_are_forgotten_once_idle() -> None:
    from otel_resilience import _concurrency

    limiter = ConcurrencyLimiter("s", FixedLimit(1000))
    slots = [limiter.try_acquire(f"e{i}") for i in range(_concurrency._ENDPOINTS_KEPT + 5)]
    for slot in slots:
        assert slot is not None
        limiter.release(slot, Outcome.OK, 0.01)
    assert len(limiter.endpoints()) == _concurrency._ENDPOINTS_KEPT
    assert limiter.in_flight == 0


def test_an_attempt_whose_deadline_passed_before_it_started_is_no_overload_sample() -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT_MODE": "adaptive"}})
    from otel_resilience._telemetry import NOOP_CALL

    gate = _gate("llm")
    limiter = _limiter("llm")
    taken = limiter.enter("chat")
    late = otel_resilience.CallTimeoutError(E.TIMEOUT, "llm", "chat", attempts=1)
    gate.settle(taken, "chat", NOOP_CALL, late, 0.0, number=2)  # attempt 2 never started
    assert limiter.in_flight == 0

    def timeout() -> None:
        taken = limiter.enter("chat")
        error = otel_resilience.CallTimeoutError(E.TIMEOUT, "llm", "chat", attempts=2)
        gate.settle(taken, "chat", NOOP_CALL, error, 1.0, 2)

    for _ in range(19):
        timeout()
    assert limiter.limit == 20  # 19 samples: the window of 20 is not full
    timeout()
    assert limiter.limit == 18  # real timeouts: overload, cut to 90%


def test_changing_the_rate_mode_keeps_the_concurrency_limiter() -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 2}})
    before = _limiter("llm")
    configure(services={"llm": {"CONCURRENCY_LIMIT": 2, "RATE_LIMIT_MODE": "adaptive"}})
    assert _limiter("llm") is before
    assert _gate("llm").rate is not None


class _Broken:
    def add(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter bug")

    record = add


def test_broken_instruments_change_nothing_and_are_logged_once(
    metric_reader: InMemoryMetricReader,
    held: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    instruments = otel_resilience.default_runtime().telemetry.instruments()
    assert instruments is not None
    instruments.concurrency_rejections = _Broken()
    instruments.concurrency_wait = _Broken()
    configure(services={"llm": {"CONCURRENCY_LIMIT": 1, "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 0.01}})
    thread = _run_threads(1, lambda: resilient_call("llm", "chat", lambda: held.wait(5)))[0]
    while _limiter("llm").in_flight < 1:
        time.sleep(0.001)
    for _ in range(3):
        with pytest.raises(ConcurrencyLimitedError, match="after waiting"):
            resilient_call("llm", "chat", lambda: "x")
    held.set()
    thread.join(5)
    warnings = [r for r in caplog.records if "concurrency limit failed" in r.getMessage()]
    assert len(warnings) == 1
    assert _limiter("llm").in_flight == 0


def test_an_asyncio_wait_that_ends_without_a_slot_is_refused_and_measured(
    metric_reader: InMemoryMetricReader,
) -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 1, "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 0.02}})

    async def main() -> None:
        running = asyncio.ensure_future(resilient_call_async("llm", "chat", asyncio.Event().wait))
        await asyncio.sleep(0.01)
        with pytest.raises(ConcurrencyLimitedError, match="after waiting"):
            await resilient_call_async("llm", "chat", asyncio.Event().wait)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(main())
    waits = _by_pair(_metric(metric_reader, "resilience.concurrency_limit.wait.duration"))
    assert waits[("llm", "chat")].count == 1
    assert _limiter("llm").in_flight == 0


def test_an_interrupted_attempt_with_only_an_adaptive_rate_holds_nothing() -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive"}})

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resilient_call("llm", "chat", interrupted)
    assert _gate("llm").limiter is None
    assert resilient_call("llm", "chat", lambda: "ok") == "ok"


def test_adaptive_wrapper_paths_each_give_the_place_back() -> None:
    from otel_resilience._telemetry import NOOP_CALL

    configure(
        services={
            "llm": {
                "CONCURRENCY_LIMIT_MODE": "adaptive",
                "CONCURRENCY_LIMIT": 1,
                "CONCURRENCY_LIMIT_MAX_WAIT_SEC": 5,
            }
        }
    )
    gate = _gate("llm")
    limiter = _limiter("llm")

    def too_late(number: int) -> None:  # the deadline passed between admission and start
        raise otel_resilience.CallTimeoutError(E.TIMEOUT, "llm", "chat", attempts=number - 1)

    with pytest.raises(otel_resilience.CallTimeoutError):
        gate.wrap(too_late, "chat", NOOP_CALL)(2)

    def interrupted(number: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gate.wrap(interrupted, "chat", NOOP_CALL)(1)
    assert limiter.in_flight == 0
    assert limiter.algorithm.rtt_noload == 0.0  # neither was a latency sample

    release = threading.Event()
    holder = threading.Thread(target=lambda: resilient_call("llm", "chat", lambda: release.wait(5)))
    holder.start()
    while limiter.in_flight < 1:
        time.sleep(0.001)
    threading.Timer(0.05, release.set).start()
    assert resilient_call("llm", "chat", lambda: "after the wait") == "after the wait"
    holder.join(5)
    assert limiter.in_flight == 0


def test_a_limit_and_an_adaptive_rate_together() -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 2, "RATE_LIMIT_MODE": "adaptive"}})
    assert resilient_call("llm", "chat", lambda: "ok") == "ok"
    assert _limiter("llm").in_flight == 0
    assert _gate("llm").rate is not None


def test_the_fast_pair_forgets_idle_endpoints_past_the_cap() -> None:
    from otel_resilience import _concurrency

    limiter = ConcurrencyLimiter("s", FixedLimit(1000))
    names = [f"e{i}" for i in range(_concurrency._ENDPOINTS_KEPT + 5)]
    for name in names:
        assert limiter.enter(name)
    for name in names:
        limiter.leave(name)
    assert len(limiter.endpoints()) == _concurrency._ENDPOINTS_KEPT
    assert limiter.in_flight == 0


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"CONCURRENCY_LIMIT": 2}, id="fixed"),
        pytest.param({"CONCURRENCY_LIMIT_MODE": "adaptive"}, id="adaptive"),
        pytest.param({"CONCURRENCY_LIMIT": 2, "RATE_LIMIT_MODE": "adaptive"}, id="with-rate"),
    ],
)
def test_an_attempt_the_breaker_refuses_gives_its_slot_back_and_is_no_sample(
    settings: dict[str, Any],
) -> None:
    configure(services={"svc": {**settings, "CB_FAIL_THRESHOLD": 1}})
    with pytest.raises(ReliabilityError):
        resilient_call("svc", "op", lambda: (_ for _ in ()).throw(ServerError()), max_retries=1)
    limiter = _limiter("svc")
    noload = getattr(limiter.algorithm, "rtt_noload", None)
    for _ in range(3):
        with pytest.raises(otel_resilience.CircuitOpenError):
            resilient_call("svc", "op", lambda: "x")

    async def refused_async() -> None:
        async def func() -> str:
            return "x"

        with pytest.raises(otel_resilience.CircuitOpenError):
            await resilient_call_async("svc", "op", func)

    asyncio.run(refused_async())
    assert limiter.in_flight == 0
    assert getattr(limiter.algorithm, "rtt_noload", None) == noload  # no latency sample


def test_a_config_change_of_another_service_keeps_the_gate() -> None:
    configure(services={"llm": {"CONCURRENCY_LIMIT": 2}})
    resilient_call("llm", "chat", lambda: "ok")
    before = _gate("llm")
    configure(services={"other": {"HTTP_RETRIES": 1}})
    assert _gate("llm") is before


def test_the_same_config_object_finds_its_gate_at_once() -> None:
    from otel_resilience._load import LoadControl

    control = LoadControl()
    config = ReliabilityConfig(CONCURRENCY_LIMIT=3)
    first = control.gate("svc", config)
    assert first is not None
    assert control.gate("svc", config) is first
    assert control.gate("svc", ReliabilityConfig()) is None  # off: no gate
