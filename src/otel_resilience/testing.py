"""Test mode for code that uses otel-resilience: no real backoff, a fake clock, captured telemetry.

>>> from otel_resilience import resilient_call
>>> from otel_resilience.testing import set_testing
>>> with set_testing(attempts=2) as mode:
...     resilient_call("inventory", "lookup", lambda: 42)
...     mode.calls("inventory", "lookup")[0].outcome
42
'ok'

:func:`set_testing` installs, until it is closed (or its ``with`` block ends), an isolated
:class:`~otel_resilience.Runtime`:

- on a :class:`FakeClock`: backoff and rate-limit waits do not really sleep (the waits are
  still computed, recorded in ``clock.sleeps`` and on the telemetry), and breaker reset windows,
  rate limits and retry budgets follow the fake time, which :meth:`FakeClock.advance` moves;
- with its own config and breakers (every breaker starts closed) and, with ``attempts``, a cap
  on the attempts of every call;
- with its telemetry captured in memory (:class:`CapturedTelemetry`): spans, metric points and
  one :class:`CallRecord` per call (attempts, retries, waits, outcome, error types);
- with :attr:`TestMode.faults`, a :class:`Faults` registry to inject failures and latency.

The pytest plugin (``otel_resilience.pytest_plugin``) gives the same as the ``resilience`` and
``faults`` fixtures. See docs/testing.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import telemetry_contract as contract
from ._chaos import Faults, Rule
from ._runtime import MAX_ATTEMPTS, Runtime, use_runtime

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from ._breakers import CircuitBreaker

__all__ = [
    "CallRecord",
    "CapturedTelemetry",
    "FakeClock",
    "Faults",
    "Rule",
    "TestMode",
    "set_testing",
]

_A = contract.ATTRIBUTES
_RETRY = contract.SPANS.call.events[0].name
_CHAOS = "chaos"


class FakeClock:
    """A clock that only moves when told to: :meth:`advance`, or a sleep of the library.

    ``sleeps`` lists every sleep the library asked for (backoff, rate-limit waits, injected
    latency), in seconds. With ``real_sleep`` each sleep also really sleeps.
    """

    def __init__(self, start: float = 1000.0, *, real_sleep: bool = False) -> None:
        self.now = float(start)
        self.sleeps: list[float] = []
        self.real_sleep = real_sleep

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the time on by ``seconds`` (>= 0): breaker reset windows, rate-limit windows
        and retry budgets see it."""
        if not _is_seconds(seconds):
            raise ValueError(f"advance needs a number of seconds >= 0, got {seconds!r}")
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.real_sleep:
            time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.real_sleep:
            import asyncio

            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now:g}, sleeps={len(self.sleeps)})"


@dataclass(frozen=True)
class CallRecord:
    """One resilient call, read back from its spans.

    Attributes:
        service, endpoint: what was called.
        outcome: ``"ok"``, ``"error"`` (the call failed, fallback or not) or ``"aborted"``
            (cancelled or interrupted).
        attempts: the attempts that ran (0: rejected before any).
        retries: the backoffs taken (``retry`` events).
        waits: the backoff of each retry, seconds (computed, also in test mode).
        error_type: the call's final ``error.type`` (None on success).
        error_types: each attempt's ``error.type`` (None for an attempt that succeeded).
        chaos: the kinds of chaos injected into its attempts (``fault``, ``latency``).
        fallback: whether a fallback served the call.
    """

    service: str
    endpoint: str
    outcome: str
    attempts: int
    retries: int
    waits: tuple[float, ...]
    error_type: str | None
    error_types: tuple[str | None, ...]
    chaos: tuple[str, ...]
    fallback: bool


class CapturedTelemetry:
    """SDK tracer and meter providers that keep everything in memory (needs the ``otel`` extra:
    ``opentelemetry-sdk``)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every finished span, in the order they ended."""
        return tuple(self.exporter.get_finished_spans())

    def calls(self, service: str | None = None, endpoint: str | None = None) -> list[CallRecord]:
        """The calls made (optionally of one service and endpoint), in the order they started."""
        roots: list[ReadableSpan] = []
        attempts: dict[int, list[ReadableSpan]] = {}
        for span in self.spans():
            attrs = _attrs(span)
            if _A.service.key not in attrs:
                continue  # the application's own spans
            if _A.attempt.key in attrs:
                attempts.setdefault(_parent_id(span), []).append(span)
            elif _matches(attrs, service, endpoint):
                roots.append(span)
        roots.sort(key=_start)
        return [_record(root, attempts.get(root.context.span_id, [])) for root in roots]

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        """The data points of metric ``name`` (OTel name): (attributes, value); a histogram's
        value is its count."""
        found: list[tuple[dict[str, Any], float]] = []
        for metric in _metrics(self.reader.get_metrics_data()):
            if metric.name == name:
                found.extend(_point(point) for point in metric.data.data_points)
        return found

    def counter(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """The sum of metric ``name``'s points whose attributes include ``attributes``."""
        wanted = dict(attributes or {})
        return sum(value for attrs, value in self.points(name) if _includes(attrs, wanted))

    def clear(self) -> None:
        """Forget the spans captured so far (metrics are cumulative)."""
        self.exporter.clear()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _attrs(item: Any) -> Mapping[str, Any]:
    """The attributes of a span, event or data point ({} when it has none)."""
    attributes: Mapping[str, Any] = item.attributes or {}
    return attributes


def _is_seconds(value: object) -> bool:
    """A number not below 0 (bools refused; NaN passes the check, as it always has)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not value < 0


def _event_value(event: Any, key: str) -> Any:
    return _attrs(event).get(key)


def _includes(attrs: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether ``attrs`` has every key of ``wanted`` with its value."""
    return all(attrs.get(key) == want for key, want in wanted.items())


def _metrics(data: Any) -> Iterator[Any]:
    """Every metric of a reader's ``MetricsData`` (None: none)."""
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            yield from scope.metrics


def _point(point: Any) -> tuple[dict[str, Any], float]:
    """(attributes, value) of a data point; a histogram's value is its count."""
    value = getattr(point, "value", None)
    return dict(_attrs(point)), float(point.count if value is None else value)


def _parent_id(span: ReadableSpan) -> int:
    return span.parent.span_id if span.parent is not None else 0


def _matches(attrs: Mapping[str, Any], service: str | None, endpoint: str | None) -> bool:
    return (service is None or attrs[_A.service.key] == service) and (
        endpoint is None or attrs.get(_A.endpoint.key) == endpoint
    )


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def _outcome(root: ReadableSpan, error_type: object) -> str:
    from opentelemetry.trace import StatusCode

    if root.status.status_code is not StatusCode.ERROR:
        return "ok"
    return "error" if error_type is not None else "aborted"


def _events(spans: list[ReadableSpan], name: str, key: str) -> tuple[Any, ...]:
    """The values of attribute ``key`` of the events ``name`` of ``spans``."""
    return tuple(_event_value(e, key) for s in spans for e in s.events if e.name == name)


def _record(root: ReadableSpan, attempts: list[ReadableSpan]) -> CallRecord:
    attrs = _attrs(root)
    attempts = sorted(attempts, key=_start)
    waits = _events([root], _RETRY, _A.retry_delay_s.key)
    error_type = attrs.get(_A.error_type.key)
    return CallRecord(
        service=str(attrs[_A.service.key]),
        endpoint=str(attrs.get(_A.endpoint.key, "")),
        outcome=_outcome(root, error_type),
        attempts=int(attrs.get(_A.attempts.key, len(attempts))),
        retries=len(waits),
        waits=tuple(float(wait) for wait in waits),
        error_type=_text_or_none(error_type),
        error_types=tuple(_error_type(s) for s in attempts),
        chaos=tuple(str(kind) for kind in _events(attempts, _CHAOS, _A.chaos_kind.key)),
        fallback=bool(attrs.get(_A.fallback.key, False)),
    )


def _error_type(span: ReadableSpan) -> str | None:
    return _text_or_none(_attrs(span).get(_A.error_type.key))


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _check_mode(attempts: object, sleep: object) -> None:
    """Refuse a bad ``attempts`` or ``sleep`` of :class:`TestMode`, naming what is accepted."""
    if not (attempts is None or _is_attempts(attempts)):
        raise ValueError(
            f"attempts must be an integer from 1 to {MAX_ATTEMPTS} (the cap on the attempts"
            f" of every call) or None (no cap), got {attempts!r}"
        )
    _check_sleep(sleep)


def _check_sleep(sleep: object) -> None:
    if sleep is not True and sleep is not False:
        raise TypeError(f"sleep must be True or False, got {sleep!r}")


def _is_attempts(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ATTEMPTS


def _captured_for(runtime: Runtime) -> CapturedTelemetry:
    """In-memory providers, set as ``runtime``'s telemetry's."""
    captured = CapturedTelemetry()
    runtime.telemetry.set_providers(captured.tracer_provider, captured.meter_provider)
    return captured


class TestMode:
    """An installed test mode: the isolated runtime, its fake clock, telemetry and faults.

    Made by :func:`set_testing`; :meth:`close` (or the end of its ``with`` block) puts the
    previous runtime back.
    """

    __test__ = False  # not a test class for pytest

    def __init__(
        self,
        attempts: int | None = None,
        sleep: bool = False,
        *,
        environ: Mapping[str, str] | None = None,
        seed: int | None = 0,
        telemetry: bool = True,
    ) -> None:
        _check_mode(attempts, sleep)
        self.clock = FakeClock(real_sleep=sleep)
        self.runtime = Runtime(clock=self.clock, environ=environ)
        self.runtime.max_attempts = attempts
        self.faults = Faults(seed, on_change=self.runtime._config_changed)
        self.runtime.faults = self.faults
        self.telemetry = _captured_for(self.runtime) if telemetry else None
        self._stack = ExitStack()
        self._stack.enter_context(use_runtime(self.runtime))

    # --- shortcuts ----------------------------------------------------------------------------

    def calls(self, service: str | None = None, endpoint: str | None = None) -> list[CallRecord]:
        """The calls made in test mode (see :meth:`CapturedTelemetry.calls`)."""
        return self._captured().calls(service, endpoint)

    def call(self, service: str, endpoint: str) -> CallRecord:
        """The one call made to ``service``/``endpoint`` (an AssertionError if not exactly one)."""
        found = self.calls(service, endpoint)
        assert len(found) == 1, f"expected one call of {service} {endpoint}, got {len(found)}"
        return found[0]

    def counter(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        return self._captured().counter(name, attributes)

    def advance(self, seconds: float) -> None:
        """Move the fake clock on (breakers' reset windows, rate limits, budgets follow it)."""
        self.clock.advance(seconds)

    def configure(self, **services: Mapping[str, Any]) -> None:
        """Per-service settings of the test runtime: ``configure(gcs={"HTTP_RETRIES": 5})``."""
        self.runtime.configure(services=services)

    def breaker(self, service: str, endpoint: str) -> CircuitBreaker:
        return self.runtime.breakers.breaker_for(service, endpoint)

    def _captured(self) -> CapturedTelemetry:
        if self.telemetry is None:
            raise RuntimeError("this test mode captures no telemetry (telemetry=False)")
        return self.telemetry

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Put the previous runtime back and shut the captured providers down (idempotent)."""
        self._stack.close()
        if self.telemetry is not None:
            self.runtime.telemetry.set_providers(None, None)
            self.telemetry.shutdown()
            self.telemetry = None

    def __enter__(self) -> TestMode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TestMode attempts={self.runtime.max_attempts} clock={self.clock!r}>"


def set_testing(
    attempts: int | None = None,
    sleep: bool = False,
    *,
    environ: Mapping[str, str] | None = None,
    seed: int | None = 0,
    telemetry: bool = True,
) -> TestMode:
    """Install test mode until the returned :class:`TestMode` is closed (or its ``with`` ends).

    Args:
        attempts: cap the attempts of every call (1 to 100; None: each call's own).
        sleep: really sleep the backoff too (default False: waits are computed and recorded,
            the fake clock moves, nothing blocks).
        environ: the environment the test runtime's config is read from (default
            ``os.environ``; pass ``{}`` to ignore the process's settings).
        seed: the seed of injected faults' rates (None: a random one).
        telemetry: capture spans and metrics in memory (needs ``opentelemetry-sdk``).

    The swap is process-wide, like :func:`~otel_resilience.use_runtime`: close test modes in
    the reverse order they were set.
    """
    return TestMode(attempts, sleep, environ=environ, seed=seed, telemetry=telemetry)


for _public in (FakeClock, CallRecord, CapturedTelemetry, Faults, Rule, TestMode, set_testing):
    _public.__module__ = __name__
del _public
