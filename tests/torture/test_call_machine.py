"""The torture suite: a state machine drives resilient calls as a hostile user would.

Rules make sync, async and threaded calls whose attempts succeed, fail in every classified way,
raise exceptions whose ``__str__`` or ``status_code`` raise, overrun timeouts down to 1 us, run
inside nearly spent deadlines, get cancelled, or raise the caller's own ``BaseException``; other
rules reconfigure unrelated services. After every step the invariants must hold:

* only ``ReliabilityError`` (and, for misuse, ``TypeError``) or the caller's own
  ``BaseException`` escapes a call;
* no permit is leaked: a healthy service gets through within ``CB_RESET_SEC`` + one probe;
* the main thread's deadline stack is empty, no SIGALRM handler or timer of ours is left;
* the current span is the one from before the call, and every span started has ended;
* the metric totals agree with the spans and the tallied outcomes (calls, attempts, retries,
  rejections).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_resilience
from otel_resilience import (
    CircuitBreakerState,
    ReliabilityError,
    _timeout,
    configure,
    get_circuit_breaker_manager,
    resilient_call,
    resilient_call_async,
)

SERVICE = "victim"
ENDPOINT = "op"
RESET_SEC = 0.02


class CallersOwn(BaseException):
    """The caller's own BaseException: it must come out unchanged."""


class NastyStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class NastyStatus(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError("status_code exploded")


class NastyRetryAfter(Exception):
    status_code = 429

    def __init__(self) -> None:
        super().__init__("slow down")
        self.headers = {"Retry-After": "Wed, 21 Oct 99999999999999999999 07:28:00 GMT"}


def _raise(exc: BaseException) -> Callable[[], Any]:
    def func() -> Any:
        raise exc

    return func


BEHAVIOURS = (
    "ok",
    "connection",
    "server",
    "bad_request",
    "nasty_str",
    "nasty_status",
    "nasty_retry_after",
    "slow",
    "callers_own",
)


def _attempt(kind: str, slow_sec: float) -> Any:
    if kind == "ok":
        return "ok"
    if kind == "connection":
        raise ConnectionError("connection refused")
    if kind == "server":
        error = RuntimeError("503 service unavailable")
        error.status_code = 503  # type: ignore[attr-defined]
        raise error
    if kind == "bad_request":
        error = RuntimeError("bad request")
        error.status_code = 400  # type: ignore[attr-defined]
        raise error
    if kind == "nasty_str":
        raise NastyStr()
    if kind == "nasty_status":
        raise NastyStatus("x")
    if kind == "nasty_retry_after":
        raise NastyRetryAfter()
    if kind == "slow":
        time.sleep(slow_sec)
        return "late"
    if kind == "callers_own":
        raise CallersOwn()
    raise AssertionError(kind)  # pragma: no cover


async def _attempt_async(kind: str, slow_sec: float) -> Any:
    if kind == "slow":
        await asyncio.sleep(slow_sec)
        return "late"
    return _attempt(kind, slow_sec)


class _Tracking(SpanProcessor):
    """Counts spans started and ended (an unended span would never be exported)."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self._lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        with self._lock:
            self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1


behaviour_lists = st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=4)
timeouts = st.one_of(
    st.just(None),
    st.floats(min_value=1e-6, max_value=5e-3),
    st.sampled_from([1e-6, 1e-5, 0.05]),
)
deadlines = st.one_of(st.just(None), st.floats(min_value=1e-6, max_value=0.02))


class CallMachine(RuleBasedStateMachine):
    @initialize(attempts=st.integers(min_value=1, max_value=3))
    def setup(self, attempts: int) -> None:
        otel_resilience.reset()
        assert _timeout._interrupter.stack == [], "an earlier test left a deadline armed"
        self.exporter = InMemorySpanExporter()
        self.tracking = _Tracking()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(self.tracking)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        otel_resilience.set_telemetry_providers(self.tracer_provider, self.meter_provider)
        configure(
            services={
                SERVICE: {
                    "CB_FAIL_THRESHOLD": 3,
                    "CB_RESET_SEC": RESET_SEC,
                    "HTTP_RETRIES": attempts,
                    "HTTP_BACKOFF_BASE_MS": 0,
                    "HTTP_TIMEOUT_SEC": 1,
                }
            }
        )
        # the application's SIGALRM handler and timer (pytest-timeout has one): ours must
        # always give them back
        self.handler = signal.getsignal(signal.SIGALRM)
        self.app_timer = signal.getitimer(signal.ITIMER_REAL)[0]
        self.calls = 0  # calls that ended with a result or a ReliabilityError
        self.circuit_open = 0  # of those, rejected before any attempt
        self.unstarted_retries = 0  # retries scheduled that a spent deadline kept from starting
        self.span_before = trace.get_current_span()

    def teardown(self) -> None:
        otel_resilience.set_telemetry_providers(None, None)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        otel_resilience.reset()

    # --- outcomes ---------------------------------------------------------------------------

    def _settled(self, outcome: BaseException | None) -> None:
        if outcome is None:
            self.calls += 1
            return
        if isinstance(outcome, ReliabilityError):
            self.calls += 1
            if outcome.error_type.value == "circuit_open":
                self.circuit_open += 1
            elif outcome.attempts and "could start" in outcome.message:
                # a retry was scheduled, then the deadline passed before it could start
                self.unstarted_retries += 1
            return
        assert isinstance(outcome, CallersOwn), f"{type(outcome).__name__} escaped: {outcome!r}"

    def _sync_call(
        self, kinds: list[str], timeout: float | None, deadline: float | None
    ) -> BaseException | None:
        queue = list(kinds)

        def func() -> Any:
            kind = queue.pop(0) if len(queue) > 1 else queue[0]
            return _attempt(kind, 2 * (timeout or 0.001))

        try:
            resilient_call(SERVICE, ENDPOINT, func, timeout_sec=timeout, deadline_sec=deadline)
        except BaseException as exc:
            return exc
        return None

    # --- rules --------------------------------------------------------------------------------

    @rule(kinds=behaviour_lists, timeout=timeouts, deadline=deadlines)
    def sync_call(self, kinds: list[str], timeout: float | None, deadline: float | None) -> None:
        self._settled(self._sync_call(kinds, timeout, deadline))

    @rule(kinds=behaviour_lists, timeout=timeouts, deadline=deadlines)
    def async_call(self, kinds: list[str], timeout: float | None, deadline: float | None) -> None:
        queue = list(kinds)

        async def func() -> Any:
            kind = queue.pop(0) if len(queue) > 1 else queue[0]
            return await _attempt_async(kind, 2 * (timeout or 0.001))

        async def main() -> BaseException | None:
            try:
                await resilient_call_async(
                    SERVICE, ENDPOINT, func, timeout_sec=timeout, deadline_sec=deadline
                )
            except BaseException as exc:
                return exc
            return None

        self._settled(asyncio.run(main()))

    @rule(delay=st.floats(min_value=0, max_value=3e-3))
    def cancelled_async_call(self, delay: float) -> None:
        async def func() -> str:
            await asyncio.sleep(1)
            return "never"

        async def main() -> None:
            task = asyncio.ensure_future(resilient_call_async(SERVICE, ENDPOINT, func))
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())  # cancelled: not a call that settled (no call metric)

    @rule(
        work=st.lists(
            st.tuples(behaviour_lists, timeouts.filter(lambda t: t is None or t >= 1e-4)),
            min_size=2,
            max_size=4,
        )
    )
    def threaded_calls(self, work: list[tuple[list[str], float | None]]) -> None:
        outcomes: list[BaseException | None] = []
        lock = threading.Lock()

        def run(kinds: list[str], timeout: float | None) -> None:
            outcome = self._sync_call(kinds, timeout, None)
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=run, args=item) for item in work]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(outcomes) == len(work)
        for outcome in outcomes:
            self._settled(outcome)

    @rule(
        service=st.sampled_from(["bystander", "other"]),
        manual=st.sampled_from([None, "forced_open", "disabled", "metrics_only"]),
    )
    def configure_another_service(self, service: str, manual: str | None) -> None:
        breaker = get_circuit_breaker_manager().get_breaker(SERVICE, ENDPOINT)
        before = breaker.state
        configure(services={service: {"CB_MANUAL_STATE": manual}})
        after = get_circuit_breaker_manager().get_breaker(SERVICE, ENDPOINT)
        assert after is breaker
        assert after.state is before or before is CircuitBreakerState.OPEN

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_timer_of_ours_is_left(self) -> None:
        assert _timeout._leftovers() == []
        assert _timeout._interrupter.stack == []
        assert signal.getsignal(signal.SIGALRM) == self.handler
        delay, interval = signal.getitimer(signal.ITIMER_REAL)
        assert interval == 0.0
        if self.app_timer == 0.0:
            assert delay == 0.0
        else:  # the application's timer, still counting down
            assert 0.0 < delay <= self.app_timer

    @invariant()
    def the_current_span_is_the_one_before_and_every_span_ended(self) -> None:
        assert trace.get_current_span() is self.span_before
        assert self.tracking.started == self.tracking.ended

    @invariant()
    def a_healthy_service_gets_through_within_the_reset_time_and_one_probe(self) -> None:
        breaker = get_circuit_breaker_manager().get_breaker(SERVICE, ENDPOINT)
        if breaker.state is CircuitBreakerState.OPEN:
            time.sleep(RESET_SEC + 0.002)
        assert resilient_call(SERVICE, ENDPOINT, lambda: "healthy", timeout_sec=1) == "healthy"
        self.calls += 1
        assert breaker.state is CircuitBreakerState.CLOSED

    @invariant()
    def metric_totals_agree_with_spans_and_tallies(self) -> None:
        metrics = _collect(self.reader)
        spans = self.exporter.get_finished_spans()
        call_spans = [s for s in spans if s.name == f"{SERVICE} {ENDPOINT}"]
        attempt_spans = [s for s in spans if s.name == f"{SERVICE} {ENDPOINT} attempt"]
        settled = [s for s in call_spans if "resilience.attempts" in (s.attributes or {})]
        settled_attempts = sum(int(s.attributes["resilience.attempts"]) for s in settled)
        # an attempt cut short by the caller (cancelled, the caller's own BaseException) has a
        # span but no metric: it says nothing about the service
        answered = [s for s in attempt_spans if s.status.is_ok or "error.type" in s.attributes]
        assert _histogram_count(metrics, "resilience.call.duration") == self.calls
        assert len(settled) == self.calls
        assert _histogram_count(metrics, "resilience.attempt.duration") == len(answered)
        assert len(answered) >= settled_attempts
        retries = _counter_total(metrics, "resilience.retries")
        rejections = _counter_total(metrics, "resilience.circuit_breaker.rejections")
        assert rejections >= self.circuit_open
        # every retry was counted before its attempt (in calls that settled or were cut short
        # by the caller alike); a retry the breaker then rejected made none
        assert retries - _retried_attempts(call_spans, attempt_spans) == (
            rejections - self.circuit_open + self.unstarted_retries
        )


def _retried_attempts(calls: list[ReadableSpan], attempts: list[ReadableSpan]) -> int:
    """Attempts after the first of each call, counted from the spans' parent links."""
    per_call = Counter(s.parent.span_id for s in attempts if s.parent is not None)
    return sum(max(0, per_call[c.context.span_id] - 1) for c in calls)


def _collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = metric
    return found


def _histogram_count(metrics: dict[str, Any], name: str) -> int:
    metric = metrics.get(name)
    if metric is None:
        return 0
    return sum(p.count for p in metric.data.data_points if isinstance(p, HistogramDataPoint))


def _counter_total(metrics: dict[str, Any], name: str) -> int:
    metric = metrics.get(name)
    if metric is None:
        return 0
    return int(sum(p.value for p in metric.data.data_points))


CallMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_call_machine = CallMachine.TestCase
