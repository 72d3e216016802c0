"""The workload: worker threads calling the stand-in services through ``resilient_call``.

Each worker picks an operation by weight (an LLM completion, a storage upload or download, an
antivirus scan), makes the HTTP request with httpx inside ``resilient_call`` and records what
happened; the LLM completion goes through the real ``openai`` SDK and
:mod:`otel_resilience.openai` instead (one retry layer, in the SDK's transport). A breaker
listener writes the timeline of state changes for the summary.
"""

from __future__ import annotations

import importlib
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from .. import (
    CircuitBreaker,
    CircuitBreakerState,
    ExternalServiceError,
    ReliabilityConfig,
    ReliabilityError,
    configure,
    get_circuit_breaker_manager,
    health_report,
    map_external_error,
    parse_retry_after,
    remaining_time,
    resilient_call,
)
from ._scenarios import NOMINAL_PERIOD_SEC, Knobs, Operation, Scenario, time_scale_for
from ._servers import StandInServices
from ._stats import BreakerEvent, CallOutcome, Row, Stats

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What to run: a scenario, for how long, how hard."""

    scenario: Scenario
    #: seconds to run; 0 runs until :meth:`DemoRunner.stop` (or Ctrl-C)
    duration_sec: float = 60.0
    concurrency: int = 8
    #: multiplies every duration of the scenario; None derives it from ``duration_sec``
    time_scale: float | None = None
    seed: int | None = None
    #: replaces the scenario's knobs (``--knob``)
    knobs: Knobs | None = None

    def __post_init__(self) -> None:
        if self.duration_sec < 0:
            raise ValueError(f"duration_sec={self.duration_sec!r}: must be >= 0 (0 = no limit)")
        if self.concurrency < 1:
            raise ValueError(f"concurrency={self.concurrency!r}: must be >= 1")
        if self.time_scale is not None and not 0 < self.time_scale <= 100:
            raise ValueError(f"time_scale={self.time_scale!r}: must be > 0 and <= 100")

    @property
    def scale(self) -> float:
        return self.time_scale if self.time_scale is not None else time_scale_for(self.duration_sec)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a run at one moment, for the live view."""

    elapsed_sec: float
    duration_sec: float
    scenario: Scenario
    rows: list[Row]
    #: the most recent breaker transitions (at most ``RECENT_EVENTS``)
    events: list[BreakerEvent]
    #: the antivirus outage window of the current period, in seconds since the period began
    outage_window: tuple[float, float] | None = None
    antivirus_down: bool = False
    #: transitions since the start of the run (``events`` holds the last few)
    events_total: int = 0
    #: length of the scenario's story; runs longer than this (or unlimited) repeat it
    period_sec: float = NOMINAL_PERIOD_SEC


#: transitions a snapshot carries (a run of days would otherwise copy thousands every second)
RECENT_EVENTS = 50


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a finished run saw, for the summary."""

    scenario: Scenario
    elapsed_sec: float
    time_scale: float
    rows: list[Row]
    events: list[BreakerEvent]
    retry_after_waits: dict[tuple[str, str], list[tuple[float, float]]]
    interrupted: bool = False
    outage_window: tuple[float, float] | None = None
    server_counters: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class _Attempts:
    """What the attempts of one call saw (written from whichever thread runs the attempt)."""

    count: int = 0
    timed_out: set[int] = field(default_factory=set)
    retry_after: float | None = None
    answered_at: float = 0.0
    waits: list[tuple[float, float]] = field(default_factory=list)

    def begin(self, now: float) -> int:
        """Count an attempt starting at ``now``; the number of this attempt."""
        if self.retry_after is not None:  # the previous attempt was told when to come back
            self.waits.append((self.retry_after, now - self.answered_at))
            self.retry_after = None
        self.count += 1
        return self.count

    def answered(self, response: Any, clock: Clock) -> None:
        """Note the ``Retry-After`` of a 429 answer, for the wait of the next attempt."""
        left = remaining_time()
        # an attempt the library already gave up on (timed out) cannot steer the retry
        if response.status_code == 429 and (left is None or left > 0):
            self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self.answered_at = clock()


class DemoRunner:
    """Run a scenario: stand-in services, worker threads, a breaker timeline."""

    def __init__(self, options: RunOptions, *, clock: Clock = time.monotonic) -> None:
        self.options = options
        self.scenario = options.scenario
        self.knobs = options.knobs or options.scenario.knobs
        self.scale = options.scale
        self._clock = clock
        self._operations = self.scenario.operations
        self._weights = [op.weight for op in self._operations]
        endpoints = [(op.service, op.endpoint) for op in self._operations]
        self.stats = Stats(endpoints, seed=options.seed)
        self._events: list[BreakerEvent] = []
        self._events_lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = False
        self._started_at = clock()
        self._services: StandInServices | None = None
        #: what the attempts of the LLM call this worker thread is making saw
        self._llm_calls = threading.local()
        self._llms: dict[str, Any] = {}
        if any(op.service == "openai" for op in self._operations):
            # the SDK takes a while to import: now, not while the run (and its health) starts
            importlib.import_module("openai")

    # -- configuration -----------------------------------------------------------------------
    def service_configs(self) -> dict[str, ReliabilityConfig]:
        """Per-service settings, scaled so breakers open and recover within the run."""
        s = self.scenario
        longest: dict[str, float] = {}  # the longest timeout of each service's operations
        for op in self._operations:
            longest[op.service] = max(op.timeout_sec, longest.get(op.service, op.timeout_sec))
        return {
            service: ReliabilityConfig(
                HTTP_TIMEOUT_SEC=timeout * self.scale,
                HTTP_RETRIES=3,
                HTTP_BACKOFF_BASE_MS=max(1, round(s.backoff_base_ms * self.scale)),
                HTTP_BACKOFF_MAX_MS=max(1, round(10 * s.backoff_base_ms * self.scale)),
                CB_FAIL_THRESHOLD=s.breaker_threshold,
                CB_RESET_SEC=s.breaker_reset_sec * self.scale,
                RETRY_AFTER_MAX_SEC=10.0,
            )
            for service, timeout in longest.items()
        }

    # -- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to finish (workers complete the call they are making)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def elapsed(self) -> float:
        return self._clock() - self._started_at

    def events(self) -> list[BreakerEvent]:
        with self._events_lock:
            return list(self._events)

    def snapshot(self) -> Snapshot:
        """Counters merged with every breaker's live status."""
        rows = self._with_breakers(self.stats.rows())
        with self._events_lock:
            recent = self._events[-RECENT_EVENTS:]
            total = len(self._events)
        services = self._services
        return Snapshot(
            elapsed_sec=self.elapsed(),
            duration_sec=self.options.duration_sec,
            scenario=self.scenario,
            rows=rows,
            events=recent,
            outage_window=self.scenario.outage_window(self.scale) if self.knobs.av_outage else None,
            antivirus_down=services.antivirus_down() if services is not None else False,
            events_total=total,
            period_sec=NOMINAL_PERIOD_SEC * self.scale,
        )

    def _with_breakers(self, rows: list[Row]) -> list[Row]:
        status = {(b["service_name"], b["endpoint"]): b for b in health_report()["breakers"]}
        merged = []
        for row in rows:
            found = status.get((row.service, row.endpoint))
            if found is not None:
                row = replace(
                    row,
                    breaker_state=found["state"],
                    failure_count=found["failure_count"],
                    seconds_until_probe=found["seconds_until_probe"],
                )
            merged.append(row)
        return merged

    # -- the run -----------------------------------------------------------------------------
    def run(
        self, on_tick: Callable[[DemoRunner], None] | None = None, *, tick_sec: float = 1.0
    ) -> RunResult:
        """Run until the duration is over or :meth:`stop` is called; Ctrl-C stops it too.

        ``on_tick(runner)`` is called from this thread about every ``tick_sec`` seconds.
        Every thread the run starts is joined before this returns.
        """
        configure(services=self.service_configs())  # also resets the breakers
        manager = get_circuit_breaker_manager()
        self._listening = True
        manager.add_listener(self._on_transition)
        services = StandInServices(
            self.knobs, time_scale=self.scale, seed=self.options.seed, clock=self._clock
        )
        limits = httpx.Limits(
            max_connections=None, max_keepalive_connections=self.options.concurrency * 4
        )
        try:
            with services, httpx.Client(limits=limits, timeout=10.0) as client:
                self._services = services
                self._llms = self._llm_clients(services.urls["openai"])
                # one time origin for the run, the outage window and the breaker timeline
                self._started_at = services.started_at = self._clock()
                workers = self._start_workers(client, services.urls)
                try:
                    interrupted = self._drive(workers, on_tick, tick_sec)
                finally:
                    self._close_llm_clients()
                elapsed = self.elapsed()
        finally:
            self._listening = False
            manager.remove_listener(self._on_transition)
            self._stop.set()
        return self._result(elapsed, interrupted, services)

    def _start_workers(self, client: httpx.Client, urls: dict[str, str]) -> list[threading.Thread]:
        workers = []
        for index in range(self.options.concurrency):
            worker = threading.Thread(
                target=self._work, args=(index, client, urls), name=f"demo-{index}"
            )
            worker.start()
            workers.append(worker)
        return workers

    def _drive(
        self,
        workers: list[threading.Thread],
        on_tick: Callable[[DemoRunner], None] | None,
        tick_sec: float,
    ) -> bool:
        """Tick until the run is over, then join the workers; True when Ctrl-C ended it."""
        try:
            self._wait(on_tick, tick_sec)
        except KeyboardInterrupt:
            return True
        finally:
            self._stop.set()
            for worker in workers:
                worker.join()
        return False

    def _result(self, elapsed: float, interrupted: bool, services: StandInServices) -> RunResult:
        return RunResult(
            scenario=self.scenario,
            elapsed_sec=elapsed,
            time_scale=self.scale,
            rows=self._with_breakers(self.stats.rows(whole_run=True)),
            events=self.events(),
            retry_after_waits={
                (op.service, op.endpoint): self.stats.retry_after_waits(op.service, op.endpoint)
                for op in self._operations
            },
            interrupted=interrupted,
            outage_window=self.scenario.outage_window(self.scale) if self.knobs.av_outage else None,
            server_counters=dict(services.counters),
        )

    def _wait(self, on_tick: Callable[[DemoRunner], None] | None, tick_sec: float) -> None:
        end = self.options.duration_sec or math.inf  # 0 runs until stopped
        next_tick = tick_sec
        while not self._stop.is_set():
            elapsed = self.elapsed()
            if elapsed >= end:
                return
            self._stop.wait(max(0.0, min(next_tick, end) - elapsed))
            if self.elapsed() >= next_tick:
                next_tick += tick_sec
                if on_tick is not None:
                    on_tick(self)

    def _on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        if not self._listening:  # the manager keeps listeners; a finished run ignores them
            return
        event = BreakerEvent(
            at_sec=self.elapsed(),
            service=breaker.service_name,
            endpoint=breaker.endpoint,
            old=old.value,
            new=new.value,
            failure_count=breaker.failure_count,
        )
        with self._events_lock:
            self._events.append(event)

    # -- the workers -------------------------------------------------------------------------
    def _work(self, index: int, client: httpx.Client, urls: dict[str, str]) -> None:
        seed = None if self.options.seed is None else self.options.seed * 1000 + index
        rng = random.Random(seed)
        think = self.scenario.think_ms * self.scale / 1000.0
        while not self._stop.is_set():
            operation = rng.choices(self._operations, self._weights)[0]
            self.stats.record(self._call(client, urls, operation, rng))
            self._stop.wait(think * rng.uniform(0.5, 1.5))

    def _llm_clients(self, base_url: str) -> dict[str, Any]:
        """An OpenAI SDK client per LLM operation: the SDK's retries off, this library's on."""
        from ..openai import client as openai_client

        return {
            op.endpoint: openai_client(
                api_key="demo-key",
                base_url=f"{base_url}/v1",
                attempts=op.max_retries,
                timeout_sec=op.timeout_sec * self.scale,
                transport=_ObservedTransport(self._llm_calls, self._clock),
            )
            for op in self._operations
            if op.service == "openai"
        }

    def _close_llm_clients(self) -> None:
        for llm in self._llms.values():
            llm.close()

    def _call_llm(self, op: Operation, document: int) -> CallOutcome:
        import openai

        seen = self._llm_calls.seen = _Attempts()
        create = self._llms[op.endpoint].chat.completions.create
        message = {"role": "user", "content": f"Summarise document {document}"}
        # an APIStatusError is the server's last answer, after the retries
        return self._measure(
            op, seen, lambda: create(model="stand-in", messages=[message]), openai.APIStatusError
        )

    def _call(
        self, client: httpx.Client, urls: dict[str, str], op: Operation, rng: random.Random
    ) -> CallOutcome:
        timeout = op.timeout_sec * self.scale
        document = rng.randrange(1000)
        if op.service == "openai":
            return self._call_llm(op, document)
        payload = rng.randbytes(rng.randrange(512, 8192))
        attempt = _Attempt(self._clock, client, urls, op, timeout, document, payload)
        return self._measure(
            op,
            attempt.seen,
            lambda: resilient_call(
                op.service, op.endpoint, attempt, timeout_sec=timeout, max_retries=op.max_retries
            ),
        )

    def _measure(
        self,
        op: Operation,
        seen: _Attempts,
        call: Callable[[], object],
        answered: tuple[type[Exception], ...] | type[Exception] = (),
    ) -> CallOutcome:
        """Make ``call`` and record its outcome; ``answered`` errors carry the server's answer."""
        started = self._clock()
        error_type: str | None = None
        try:
            call()
        except answered as exc:
            error_type = map_external_error(op.service, op.endpoint, exc).error_type.value
        except ReliabilityError as exc:  # no answer: timeout, connection error, open breaker
            if exc.error_type is ExternalServiceError.TIMEOUT:
                seen.timed_out.add(max(1, exc.attempts))
            duration = self._clock() - started
            return _outcome(op, duration, seen, exc.attempts, exc.error_type.value)
        return _outcome(op, self._clock() - started, seen, seen.count, error_type)


def _outcome(
    op: Operation, duration: float, seen: _Attempts, attempts: int, error_type: str | None
) -> CallOutcome:
    # attempts timed out by the library itself (before httpx noticed) count once each
    timeouts = len({n for n in seen.timed_out if n <= max(attempts, 1)})
    return CallOutcome(
        service=op.service,
        endpoint=op.endpoint,
        duration_sec=duration,
        attempts=attempts,
        timeouts=timeouts if attempts else 0,
        error_type=error_type,
        retry_after_waits=tuple(seen.waits),
    )


class _ObservedTransport:
    """The inner transport of the demo's OpenAI clients: what each attempt saw, for the stats.

    Runs in the worker thread making the call (the integration's timeouts are cooperative), so
    the thread's current :class:`_Attempts` is the call's.
    """

    def __init__(self, calls: threading.local, clock: Clock) -> None:
        import openai

        # the HTTP library the SDK is built on (httpx2, or httpx for older SDKs)
        base = next(
            b for b in openai.DefaultHttpxClient.__mro__ if b.__module__.startswith("httpx")
        )
        self._lib: Any = sys.modules[base.__module__.partition(".")[0]]
        self._inner = self._lib.HTTPTransport()
        self._calls = calls
        self._clock = clock

    def handle_request(self, request: Any) -> Any:
        seen: _Attempts = self._calls.seen
        number = seen.begin(self._clock())
        try:
            response = self._inner.handle_request(request)
        except self._lib.TimeoutException:
            seen.timed_out.add(number)
            raise
        seen.answered(response, self._clock)
        return response

    def close(self) -> None:
        self._inner.close()


class _Attempt:
    """One attempt of a call (``resilient_call`` runs it once per attempt), noting in
    :attr:`seen` what the attempts saw: timeouts, the server's ``Retry-After`` and the waits."""

    def __init__(
        self,
        clock: Clock,
        client: httpx.Client,
        urls: dict[str, str],
        op: Operation,
        timeout: float,
        document: int,
        payload: bytes,
    ) -> None:
        self.seen = _Attempts()
        self._clock = clock
        self._request = (client, urls, op, document, payload)
        self._timeout = timeout

    def __call__(self) -> int:
        seen = self.seen
        number = seen.begin(self._clock())
        budget = remaining_time()
        http_timeout = budget if budget is not None and budget > 0 else self._timeout
        try:
            response = _request(*self._request, http_timeout)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            seen.answered(exc.response, self._clock)
            raise
        except httpx.TimeoutException:
            seen.timed_out.add(number)
            raise
        return response.status_code


def _request(
    client: httpx.Client,
    urls: dict[str, str],
    op: Operation,
    document: int,
    payload: bytes,
    timeout: float,
) -> httpx.Response:
    """The HTTP request of one attempt of ``op``."""
    base = urls[op.service]
    if op.endpoint == "upload":
        return client.put(f"{base}/upload/doc-{document}", content=payload, timeout=timeout)
    if op.endpoint == "download":
        return client.get(f"{base}/download/doc-{document}", timeout=timeout)
    return client.post(f"{base}/scan", content=payload, timeout=timeout)
