"""OpenTelemetry instrumentation of every call, built from :mod:`.telemetry_contract`.

The only module of the core that imports opentelemetry, and it imports the API only. Providers are
the global ones unless injected (``Telemetry(tracer_provider=..., meter_provider=...)``, or
:func:`set_telemetry_providers` for the default instance); while no SDK provider is set (the API's
proxy providers), calls skip span and metric work entirely, so the library costs what it would
without telemetry. Instruments are created once per meter provider, one per metric the contract
marks as emitted.

Breakers are read through the small :class:`BreakerSource` protocol (the breaker manager is one),
so this module does not import the breakers.

Telemetry must never break or slow a call: every recording step is guarded, and a failure is
logged once per kind of step, not per call.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.metrics import _internal as _metrics_internal
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _names as n
from . import telemetry_contract as contract
from ._classify import safe_str
from ._config import ReliabilityConfig
from ._log import log_event
from ._scrub import MESSAGE_LIMIT, STACKTRACE_LIMIT, redact
from ._version import __version__ as _VERSION

if TYPE_CHECKING:
    from ._breakers import CircuitBreaker
    from ._errors import ReliabilityError


logger = logging.getLogger("otel_resilience")

#: the OpenTelemetry SDK's default cardinality limit: distinct attribute sets per instrument
SDK_CARDINALITY_LIMIT: Final = 2000
#: most series one pair has in one instrument: the override gauge, one per manual state and none
SERIES_PER_PAIR: Final = 4
#: distinct (service, endpoint) pairs the metrics carry before overflowing to ``_other``: every
#: capped pair and the ``_other`` pair keep all their gauge series inside the SDK's limit
MAX_ENDPOINTS: Final = SDK_CARDINALITY_LIMIT // SERIES_PER_PAIR - 1

#: every breaker state (the values of the state attribute)
_STATES: Final = contract.ATTRIBUTES.breaker_state.values
_OPEN: Final = "open"
#: every value of the override gauge's attribute; ``none`` is normal operation
_OVERRIDES: Final = contract.ATTRIBUTES.breaker_override.values
#: overflowed pairs cached before they are dropped (they are rebuilt cheaply when seen again)
_OVERFLOW_PAIRS_KEPT: Final = 1000

Attributes = dict[str, Any]


class BreakerSource(Protocol):
    """What telemetry needs of a breaker manager: the breakers, and their news."""

    def breakers(self) -> Iterable[CircuitBreaker]: ...  # pragma: no cover - a protocol

    def add_listener(  # pragma: no cover - a protocol
        self, listener: Callable[[CircuitBreaker, Any, Any], None]
    ) -> None: ...

    def on_created(  # pragma: no cover - a protocol
        self, callback: Callable[[CircuitBreaker], None]
    ) -> None: ...


def _value(member: object) -> str:
    """The attribute value of a breaker state or override (``None``: no override)."""
    if member is None:
        return n.OVERRIDE_NONE
    return str(getattr(member, "value", member))


class _ByValue(dict[Any, Attributes]):
    """Attribute dicts keyed by attribute value; an enum member (or ``None``) finds the entry of
    its value on first lookup and is then a key itself, so steady-state lookups are dict hits."""

    __slots__ = ()

    def __missing__(self, key: object) -> Attributes:
        found = self[_value(key)]
        self[key] = found
        return found


def _is_noop_tracer_provider(provider: object) -> bool:
    return isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _is_noop_meter_provider(provider: object) -> bool:
    # the API's proxy class is private; recognise it by name, and the public no-op by type
    return isinstance(provider, metrics.NoOpMeterProvider) or (
        type(provider).__name__ == "_ProxyMeterProvider"
    )


_STALE: Final = object()  # "resolve again" (the cached provider keys' initial value)


def _global_tracer_provider() -> Any:
    """The API's global tracer provider, or None while the application has set none.

    Read from the API's module global: ``trace.get_tracer_provider()`` looks ``os.environ`` up
    on every call until a provider is set (~1 us, a large share of a call without an SDK).
    """
    provider = getattr(trace, "_TRACER_PROVIDER", _STALE)
    return trace.get_tracer_provider() if provider is _STALE else provider


def _global_meter_provider() -> Any:
    """The API's global meter provider, or None while none is set (as for the tracer)."""
    provider = getattr(_metrics_internal, "_METER_PROVIDER", _STALE)
    return metrics.get_meter_provider() if provider is _STALE else provider


# --- exceptions on spans, redacted ---------------------------------------------------------


def _redact_patterns(
    config_source: Callable[[str], ReliabilityConfig] | None, service: object
) -> tuple[str, ...]:
    """``REDACT_PATTERNS`` of the service (the defaults when its config cannot be read)."""
    if config_source is None:
        return ("default",)
    try:
        return config_source(str(service)).REDACT_PATTERNS
    except Exception:  # a broken environment must not let a secret through
        return ("default",)


def _record_exception(span: trace.Span, cause: BaseException, patterns: tuple[str, ...]) -> str:
    """``span.record_exception(cause)`` with message and stack trace redacted; the message.

    The SDK's own ``record_exception`` copies ``str(cause)`` and the formatted traceback (whose
    last line repeats the message) unredacted, and raises when ``__str__`` does.
    """
    message = redact(safe_str(cause), patterns, MESSAGE_LIMIT)
    try:
        stacktrace = "".join(traceback.format_exception(cause))
    except Exception:  # pragma: no cover - traceback copes with broken __str__ itself
        stacktrace = ""
    cls = type(cause)
    module, qualname = cls.__module__, cls.__qualname__
    span.add_event(
        "exception",
        {
            "exception.type": f"{module}.{qualname}" if module != "builtins" else qualname,
            "exception.message": message,
            "exception.stacktrace": redact(stacktrace, patterns, STACKTRACE_LIMIT),
            "exception.escaped": "False",
        },
    )
    return message


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _create(meter: metrics.Meter, metric: contract.Metric, callback: _Callback | None) -> Any:
    """The instrument of one contract metric, made by ``meter.create_<its kind>``."""
    kind = metric.instrument
    extra: dict[str, Any] = {}
    if kind is contract.Instrument.OBSERVABLE_GAUGE:
        if callback is None:
            raise ValueError(f"{metric.name}: an observable gauge needs a callback")
        extra["callbacks"] = [callback]
    elif kind is contract.Instrument.HISTOGRAM:
        extra["explicit_bucket_boundaries_advisory"] = list(metric.buckets or ())
    create: Callable[..., Any] = getattr(meter, f"create_{kind.value}")
    return create(metric.name, unit=metric.unit, description=metric.description, **extra)


class _Instruments:
    """One instrument per emitted metric of the contract (attribute = the contract's field name),
    created once for one meter provider."""

    __slots__ = tuple(f for f, m in contract.METRICS._asdict().items() if m.emitted)

    call_duration: Any
    attempt_duration: Any
    retries: Any
    retry_delay: Any
    retries_exhausted: Any
    timeouts: Any
    breaker_state: Any
    breaker_transitions: Any
    breaker_rejections: Any
    breaker_override: Any
    retry_budget_rejections: Any
    fallbacks: Any
    rate_limiter_rejections: Any
    hedges: Any
    concurrency_limit: Any
    concurrency_in_flight: Any
    concurrency_rejections: Any
    concurrency_wait: Any
    state_store_errors: Any
    chaos_injections: Any  # emitted by _chaos

    def __init__(self, meter: metrics.Meter, telemetry: Telemetry) -> None:
        callbacks: dict[str, _Callback] = {
            "breaker_state": telemetry._observe_breakers,
            "breaker_override": telemetry._observe_overrides,
            "concurrency_limit": telemetry._observe_limits,
        }
        for field in self.__slots__:
            metric = getattr(contract.METRICS, field)
            setattr(self, field, _create(meter, metric, callbacks.get(field)))


class Telemetry:
    """Resolves providers, caches instruments and attributes, hands out call observers.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (looked up at each
    call, so an application may install them later); ``breakers`` is the manager whose breakers
    the gauges report and whose transitions are counted (see :meth:`watch_breakers`).
    """

    def __init__(
        self,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        breakers: BreakerSource | None = None,
        config_source: Callable[[str], ReliabilityConfig] | None = None,
    ) -> None:
        #: a service's settings (its ``REDACT_PATTERNS``); the runtime gives its registry's
        self.config_source = config_source
        self._lock = threading.Lock()
        self._tracer_provider: Any = tracer_provider  # None: the global one
        self._meter_provider: Any = meter_provider
        self._tracer_key: object = _STALE
        self._tracer: trace.Tracer | None = None
        self._meter_key: object = _STALE
        self._instruments: _Instruments | None = None
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._metric_pairs = 0
        self._max_endpoints = MAX_ENDPOINTS
        self._warned: set[str] = set()
        self._breakers: BreakerSource | None = None
        self.load_control: Any = None  # has .limiters()
        if breakers is not None:
            self.watch_breakers(breakers)

    def watch_breakers(self, source: BreakerSource, *, report: bool = True) -> None:
        """Count the transitions of the breakers of ``source``, and (``report``) make them the
        breakers the gauges report."""
        if report:
            with self._lock:
                self._breakers = source
        source.add_listener(self.on_transition)
        source.on_created(self.on_breaker_created)

    def patterns(self, service: object) -> tuple[str, ...]:
        """The ``REDACT_PATTERNS`` of a service (the defaults when they cannot be read)."""
        return _redact_patterns(self.config_source, service)

    def bind(
        self,
        breakers: BreakerSource | None,
        config_source: Callable[[str], ReliabilityConfig] | None,
    ) -> tuple[BreakerSource | None, Callable[[str], ReliabilityConfig] | None]:
        """Report ``breakers`` on the gauges and read services' settings from
        ``config_source``; returns the previous pair (to bind back)."""
        with self._lock:
            previous = (self._breakers, self.config_source)
            self._breakers, self.config_source = breakers, config_source
        return previous

    def _each_breaker(self) -> Iterable[CircuitBreaker]:
        source = self._breakers
        return () if source is None else source.breakers()

    # --- providers ----------------------------------------------------------------------------

    def set_providers(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        with self._lock:
            self._tracer_provider = tracer_provider
            self._meter_provider = meter_provider
            self._tracer_key = self._meter_key = _STALE
            self._tracer = None
            self._instruments = None

    def set_max_endpoints(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_endpoints must be an integer >= 1, got {limit!r}")
        with self._lock:
            self._max_endpoints = limit

    def reset(self) -> None:
        """Forget injected providers and cached state (for tests)."""
        self.set_providers(None, None)
        with self._lock:
            self._pairs.clear()
            self._metric_pairs = 0
            self._max_endpoints = MAX_ENDPOINTS
            self._warned.clear()

    def tracer(self) -> trace.Tracer | None:
        provider = self._tracer_provider or _global_tracer_provider()
        if provider is self._tracer_key:
            return self._tracer
        return self._resolve_tracer(provider)

    def instruments(self) -> _Instruments | None:
        provider = self._meter_provider or _global_meter_provider()
        if provider is self._meter_key:
            return self._instruments
        instruments = self._resolve_meter(provider)
        if instruments is not None:
            for breaker in self._each_breaker():
                self._zero_breaker_counters(instruments, breaker)
        return instruments

    def _resolve_tracer(self, key: Any) -> trace.Tracer | None:
        # key None: no global provider set; the public getter may still load one named by
        # OTEL_PYTHON_TRACER_PROVIDER, and is then the key from the next call on
        provider = trace.get_tracer_provider() if key is None else key
        with self._lock:
            tracer = None
            if not _is_noop_tracer_provider(provider):
                try:
                    tracer = provider.get_tracer(n.SCOPE, _VERSION)
                except Exception:
                    self.warn_once("tracer", "could not get a tracer; spans are off")
            self._tracer, self._tracer_key = tracer, key
            return tracer

    def _resolve_meter(self, key: Any) -> _Instruments | None:
        provider = metrics.get_meter_provider() if key is None else key  # as _resolve_tracer
        with self._lock:
            instruments = None
            if not _is_noop_meter_provider(provider):
                try:
                    instruments = _Instruments(provider.get_meter(n.SCOPE, _VERSION), self)
                except Exception:
                    self.warn_once("meter", "could not create instruments; metrics are off")
            self._instruments, self._meter_key = instruments, key
            return instruments

    def warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log_event(
            logger,
            logging.WARNING,
            "telemetry: %s (further occurrences are not logged)",
            message,
            exc_info=True,
        )

    # --- attributes ---------------------------------------------------------------------------

    def pair(self, service: str, endpoint: str) -> _Pair:
        found = self._pairs.get((service, endpoint))
        if found is not None:
            return found
        with self._lock:
            found = self._pairs.get((service, endpoint))
            if found is None:
                found = _Pair(service, endpoint, self._metric_endpoint(endpoint))
                self._drop_overflowed_pairs()
                self._pairs[(service, endpoint)] = found
            return found

    def _metric_endpoint(self, endpoint: str) -> str:
        """The endpoint the metrics of a new pair name: its own, or ``_other`` past the cap."""
        if self._metric_pairs < self._max_endpoints:
            self._metric_pairs += 1
            return endpoint
        if "overflow" not in self._warned:
            self._warned.add("overflow")
            logger.warning(
                "telemetry: more than %d distinct (service, endpoint) pairs; metrics"
                " of new ones use %s=%r (spans keep the real name)",
                self._max_endpoints,
                n.ATTR_ENDPOINT,
                n.OVERFLOW_ENDPOINT,
            )
        return n.OVERFLOW_ENDPOINT

    def _drop_overflowed_pairs(self) -> None:
        """Overflowed pairs are plain caches (their metrics are all "_other"): past a bound,
        drop them, so endless distinct names cost bounded memory."""
        pairs = self._pairs
        if len(pairs) >= 2 * self._max_endpoints + _OVERFLOW_PAIRS_KEPT:
            for key in [k for k, p in pairs.items() if p.overflowed]:
                del pairs[key]

    # --- observers ----------------------------------------------------------------------------

    def call(self, service: str, endpoint: str, breaker: CircuitBreaker) -> CallObserver:
        tracer = self.tracer()
        instruments = self.instruments()
        if tracer is None and instruments is None:
            return NOOP_CALL
        return _Call(self, self.pair(service, endpoint), tracer, instruments, breaker)

    def on_transition(self, breaker: CircuitBreaker, old: object, new: object) -> None:
        instruments = self.instruments()
        if instruments is None:
            return
        pair = self.pair(breaker.service_name, breaker.endpoint)
        try:
            instruments.breaker_transitions.add(1, pair.state_attrs[new])
        except Exception:
            self.warn_once("transition", "recording a breaker transition failed")

    def on_breaker_created(self, breaker: CircuitBreaker) -> None:
        instruments = self.instruments()
        if instruments is not None:
            self._zero_breaker_counters(instruments, breaker)

    def _zero_breaker_counters(self, instruments: _Instruments, breaker: CircuitBreaker) -> None:
        """Start a breaker's transition and rejection series at 0.

        Without it the first transition of a process creates its series at 1, and rate() or
        increase() over it sees no change: the first opening would go unnoticed by alerts.
        """
        pair = self.pair(breaker.service_name, breaker.endpoint)
        try:
            for state in _STATES:
                instruments.breaker_transitions.add(0, pair.state_attrs[state])
            instruments.breaker_rejections.add(0, pair.metric_attrs)
            instruments.hedges.add(0, pair.metric_attrs)
        except Exception:
            self.warn_once("zero", "starting a breaker's counters at 0 failed")

    def count_state_store_error(self, backend: str) -> None:
        instruments = self.instruments()
        if instruments is None:
            return
        try:
            instruments.state_store_errors.add(1, {n.ATTR_STATE_STORE_BACKEND: backend})
        except Exception:
            self.warn_once("state_store", "recording a state store error failed")

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one_hot(
            lambda b: b.state, _STATES, lambda pair, value: pair.state_attrs[value]
        )

    def _observe_limits(self, options: CallbackOptions) -> list[Observation]:
        """The limit of each service with a concurrency limiter, on each (service, endpoint) it
        has seen (pairs past the endpoint cap merge into ``_other``)."""
        found: dict[tuple[str, str], tuple[int, Attributes]] = {}
        for limiter in self.load_control.limiters() if self.load_control is not None else ():
            for endpoint, _in_flight in limiter.endpoints():
                attrs = self.pair(limiter.service_name, endpoint).metric_attrs
                key = (attrs[n.ATTR_SERVICE], attrs[n.ATTR_ENDPOINT])
                point = limiter.limit
                seen, _ = found.get(key, (point, attrs))
                found[key] = (max(seen, point), attrs)
        return [Observation(point, attrs) for point, attrs in found.values()]

    def _observe_overrides(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one_hot(
            lambda b: b.override, _OVERRIDES, lambda pair, value: pair.override_attrs[value]
        )

    def _one_hot(
        self,
        read: Callable[[CircuitBreaker], object],
        values: tuple[str, ...],
        attrs: Callable[[_Pair, str], Attributes],
    ) -> list[Observation]:
        """One series per (pair, value) of a gauge that reads 1 for a breaker's current value.

        The breakers beyond the endpoint cap share the "_other" series, which reads 1 for a
        value when any of them has it (an open or forced-open breaker must show).
        """
        # the current values of the breakers of each metric series' (service, endpoint)
        series: dict[tuple[str, str], tuple[_Pair, set[str]]] = {}
        for breaker in self._each_breaker():
            try:
                current = _value(read(breaker))
            except Exception:  # pragma: no cover - a custom breaker that cannot say it
                continue
            pair = self.pair(breaker.service_name, breaker.endpoint)
            key = (pair.metric_attrs[n.ATTR_SERVICE], pair.metric_attrs[n.ATTR_ENDPOINT])
            series.setdefault(key, (pair, set()))[1].add(current)
        return [
            Observation(int(value in currents), attrs(pair, value))
            for pair, currents in series.values()
            for value in values
        ]


class _Pair:
    """Cached names and attribute dicts of one (service, endpoint)."""

    __slots__ = (
        "_attempts",
        "_errors",
        "attempt_name",
        "call_attrs",
        "call_name",
        "load_zeroed",
        "metric_attrs",
        "open_call_attrs",
        "overflowed",
        "override_attrs",
        "span_attrs",
        "state_attrs",
    )

    def __init__(self, service: str, endpoint: str, metric_endpoint: str) -> None:
        self.call_name = f"{service} {endpoint}"
        self.attempt_name = f"{service} {endpoint} attempt"
        self.span_attrs: Attributes = {n.ATTR_SERVICE: service, n.ATTR_ENDPOINT: endpoint}
        # a plain dict (the fastest lookup: one per call); the breaker's state members are
        # added as keys by call_attributes() the first time each is seen
        self.call_attrs: dict[object, Attributes] = {
            s: {**self.span_attrs, n.ATTR_BREAKER_STATE: s} for s in _STATES
        }
        self.open_call_attrs = self.call_attrs[_OPEN]
        self._attempts: dict[int, Attributes] = {}
        self.overflowed = metric_endpoint == n.OVERFLOW_ENDPOINT and endpoint != metric_endpoint
        self.metric_attrs: Attributes = {n.ATTR_SERVICE: service, n.ATTR_ENDPOINT: metric_endpoint}
        self.state_attrs = _ByValue(
            {s: {**self.metric_attrs, n.ATTR_BREAKER_STATE: s} for s in _STATES}
        )
        self.override_attrs = _ByValue(
            {o: {**self.metric_attrs, n.ATTR_BREAKER_OVERRIDE: o} for o in _OVERRIDES}
        )
        self._errors: dict[str, Attributes] = {}
        self.load_zeroed: object = None  # the instruments it was zeroed on

    def call_attributes(self, state: object) -> Attributes:
        """The call span's attributes for a breaker state (a member, or its value)."""
        try:
            return self.call_attrs[state]
        except KeyError:
            found = self.call_attrs[state] = self.call_attrs[_value(state)]
            return found

    def attempt_attrs(self, attempt: int, hedge: bool = False) -> Attributes:
        key = -attempt if hedge else attempt
        found = self._attempts.get(key)
        if found is None:
            found = self._new_attempt_attrs(key, attempt, hedge)
        return found

    def _new_attempt_attrs(self, key: int, attempt: int, hedge: bool) -> Attributes:
        """The attributes of an attempt span not cached yet (kept for the usual numbers)."""
        kind = "hedge" if hedge else "primary" if attempt == 1 else "retry"
        found = {**self.span_attrs, n.ATTR_ATTEMPT: attempt, n.ATTR_ATTEMPT_KIND: kind}
        if attempt <= 16:  # the usual attempt numbers; beyond, build (rare, and unbounded)
            self._attempts[key] = found
        return found

    def error_attrs(self, error_type: str) -> Attributes:
        found = self._errors.get(error_type)
        if found is None:
            found = {**self.metric_attrs, n.ATTR_ERROR_TYPE: error_type}
            self._errors[error_type] = found
        return found


class CallObserver:
    """What the call path reports; this base class records nothing (telemetry off)."""

    __slots__ = ()

    def attempt_start(self, attempt: int, hedge: bool = False) -> Any:
        return None

    def attempt_ok(self, handle: Any, duration: float, winner: bool = False) -> None:
        return None

    def attempt_cancelled(self, handle: Any) -> None:
        """A hedge that lost the race (cancelled, or its late result dropped): not a failure."""
        return None

    def hedged(self) -> None:
        """A hedge was started."""
        return None

    def attempt_failed(
        self, handle: Any, error: ReliabilityError, cause: BaseException, duration: float
    ) -> None:
        return None

    def attempt_aborted(self, handle: Any, cause: BaseException) -> None:
        return None

    def retry(self, attempt: int, error: ReliabilityError, delay: float) -> None:
        return None

    def rejected(self) -> None:
        return None

    def throttled(self) -> None:
        return None

    def concurrency_seen(self) -> None:
        return None

    def concurrency_rejected(self) -> None:
        return None

    def concurrency_held(self, delta: int) -> None:  # +1 taken, -1 given
        return None

    def concurrency_waited(self, seconds: float) -> None:
        return None

    def exhausted(self, error: ReliabilityError) -> None:
        return None

    def budget_rejected(self, error: ReliabilityError) -> None:
        return None

    def fallback(self, error: ReliabilityError) -> None:
        return None

    def end_ok(self, attempts: int) -> None:
        return None

    def end_failed(self, error: ReliabilityError, attempts: int) -> None:
        return None

    def end_aborted(self, cause: BaseException) -> None:
        """The call was cancelled or interrupted (not a failure of the service)."""
        return None


@dataclass(frozen=True)
class _NoCall(CallObserver):
    """The observer of every call while telemetry is off: records nothing, shared, immutable."""

    __slots__ = ()


NOOP_CALL: Final = _NoCall()


class _Call(CallObserver):
    """Spans and metrics of one call."""

    __slots__ = ("_instruments", "_pair", "_span", "_start", "_telemetry", "_tracer")

    def __init__(
        self,
        telemetry: Telemetry,
        pair: _Pair,
        tracer: trace.Tracer | None,
        instruments: _Instruments | None,
        breaker: CircuitBreaker,
    ) -> None:
        self._telemetry = telemetry
        self._pair = pair
        self._tracer = tracer
        self._instruments = instruments
        self._span: trace.Span | None = None
        if tracer is not None:
            try:
                state = breaker._state
                try:
                    attributes = pair.call_attrs[state]
                except KeyError:  # the first call of the pair in this state
                    attributes = pair.call_attributes(state)
                if attributes is pair.open_call_attrs:
                    # past its reset timeout an open breaker reads (and becomes) half-open:
                    # this call is then a probe, and the span says so
                    attributes = pair.call_attributes(breaker.state)
                # cached dicts, so a call builds no attributes (samplers still see them all)
                self._span = tracer.start_span(
                    pair.call_name, kind=SpanKind.INTERNAL, attributes=attributes
                )
            except Exception:
                telemetry.warn_once("span", "starting a call span failed")
        self._start = time.perf_counter()

    def attempt_start(self, attempt: int, hedge: bool = False) -> Any:
        if self._tracer is None:
            return None
        try:
            parent = trace.set_span_in_context(self._span) if self._span is not None else None
            span = self._tracer.start_span(
                self._pair.attempt_name,
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes=self._pair.attempt_attrs(attempt, hedge),
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            return (span, token)
        except Exception:
            self._telemetry.warn_once("attempt_span", "starting an attempt span failed")
            return None

    def _end_attempt(self, handle: Any) -> trace.Span | None:
        if handle is None:
            return None
        span, token = handle
        try:
            otel_context.detach(token)
        except Exception:  # pragma: no cover - the context API logs and recovers itself
            self._telemetry.warn_once("detach", "detaching the attempt context failed")
        return span  # type: ignore[no-any-return]

    def attempt_ok(self, handle: Any, duration: float, winner: bool = False) -> None:
        span = self._end_attempt(handle)
        try:
            if span is not None:
                if winner:
                    span.set_attribute(n.ATTR_HEDGE_WINNER, True)
                span.end()
            if self._instruments is not None:
                self._instruments.attempt_duration.record(duration, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("attempt_ok", "recording a successful attempt failed")

    def attempt_failed(
        self, handle: Any, error: ReliabilityError, cause: BaseException, duration: float
    ) -> None:
        span = self._end_attempt(handle)
        error_type = error.error_type.value
        try:
            if span is not None:
                self._end_failed(span, error, cause)
            instruments = self._instruments
            if instruments is not None:
                attrs = self._pair.error_attrs(error_type)
                instruments.attempt_duration.record(duration, attrs)
                if error_type == "timeout":
                    instruments.timeouts.add(1, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("attempt_failed", "recording a failed attempt failed")

    def _end_failed(self, span: trace.Span, error: ReliabilityError, cause: BaseException) -> None:
        """End a failed attempt's span: its exception, ``error.type`` and an ERROR status."""
        try:
            if span.is_recording():
                message = _record_exception(
                    span, cause, self._telemetry.patterns(error.service_name)
                )
                span.set_attribute(n.ATTR_ERROR_TYPE, error.error_type.value)
                span.set_status(Status(StatusCode.ERROR, message or type(cause).__name__))
        finally:
            span.end()

    def attempt_cancelled(self, handle: Any) -> None:
        span = self._end_attempt(handle)
        if span is None:
            return
        try:
            try:
                span.add_event(n.EVENT_CANCELLED)
            finally:
                span.end()  # status UNSET: a lost hedge is not a failure
        except Exception:
            self._telemetry.warn_once("attempt_cancelled", "ending a cancelled hedge failed")

    def hedged(self) -> None:
        instruments = self._instruments
        if instruments is None:
            return
        try:
            instruments.hedges.add(1, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("hedged", "counting a hedge failed")

    def attempt_aborted(self, handle: Any, cause: BaseException) -> None:
        span = self._end_attempt(handle)
        if span is not None:
            self._end_cut_short(span, cause, "attempt_aborted", "recording an aborted attempt")

    def _end_cut_short(self, span: trace.Span, cause: BaseException, key: str, what: str) -> None:
        """End a span the caller cut short (cancelled, interrupted): always ended, never raises."""
        try:
            try:
                if span.is_recording():
                    _record_exception(span, cause, self._patterns())
                    span.set_status(Status(StatusCode.ERROR, type(cause).__name__))
            finally:
                span.end()
        except Exception:
            self._telemetry.warn_once(key, f"{what} failed")

    def _patterns(self) -> tuple[str, ...]:
        return self._telemetry.patterns(self._pair.span_attrs.get(n.ATTR_SERVICE, ""))

    def retry(self, attempt: int, error: ReliabilityError, delay: float) -> None:
        error_type = error.error_type.value
        try:
            span = self._span
            if span is not None and span.is_recording():
                span.add_event(
                    n.EVENT_RETRY,
                    {
                        n.ATTR_ATTEMPT: attempt,
                        n.ATTR_RETRY_DELAY_S: delay,
                        n.ATTR_ERROR_TYPE: error_type,
                    },
                )
            instruments = self._instruments
            if instruments is not None:
                instruments.retries.add(1, self._pair.error_attrs(error_type))
                instruments.retry_delay.record(delay, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("retry", "recording a retry failed")

    def rejected(self) -> None:
        if self._instruments is None:
            return
        try:
            self._instruments.breaker_rejections.add(1, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("rejected", "recording a rejection failed")

    def throttled(self) -> None:
        if self._instruments is None:
            return
        try:
            self._instruments.rate_limiter_rejections.add(1, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("throttled", "recording a rate limiter rejection failed")

    def concurrency_seen(self) -> None:  # start rejections at 0
        instruments, pair = self._instruments, self._pair
        if instruments is not None and pair.load_zeroed is not instruments:
            pair.load_zeroed = instruments
            try:
                instruments.concurrency_rejections.add(0, pair.metric_attrs)
            except Exception:
                self._telemetry.warn_once("concurrency", "recording a concurrency limit failed")

    def concurrency_rejected(self) -> None:
        if self._instruments is not None:
            try:
                self._instruments.concurrency_rejections.add(1, self._pair.metric_attrs)
            except Exception:
                self._telemetry.warn_once("concurrency", "recording a concurrency limit failed")

    def concurrency_held(self, delta: int) -> None:
        if self._instruments is not None:
            try:
                self._instruments.concurrency_in_flight.add(delta, self._pair.metric_attrs)
            except Exception:
                self._telemetry.warn_once("concurrency", "recording a concurrency limit failed")

    def concurrency_waited(self, seconds: float) -> None:
        if self._instruments is not None:
            try:
                self._instruments.concurrency_wait.record(seconds, self._pair.metric_attrs)
            except Exception:
                self._telemetry.warn_once("concurrency", "recording a concurrency limit failed")

    def _count_error(self, name: str, error: ReliabilityError) -> None:
        if self._instruments is None:
            return
        try:
            counter = getattr(self._instruments, name)
            counter.add(1, self._pair.error_attrs(error.error_type.value))
        except Exception:
            self._telemetry.warn_once(name, f"recording {name} failed")

    def exhausted(self, error: ReliabilityError) -> None:
        self._count_error("retries_exhausted", error)

    def budget_rejected(self, error: ReliabilityError) -> None:
        self._count_error("retry_budget_rejections", error)

    def fallback(self, error: ReliabilityError) -> None:
        self._count_error("fallbacks", error)
        span = self._span
        if span is not None:
            try:
                if span.is_recording():
                    span.set_attribute(n.ATTR_FALLBACK, True)
            except Exception:
                self._telemetry.warn_once("fallback_span", "marking a fallback failed")

    def end_ok(self, attempts: int) -> None:
        duration = time.perf_counter() - self._start
        try:
            span = self._span
            if span is not None:
                if span.is_recording():
                    span.set_attribute(n.ATTR_ATTEMPTS, attempts)
                span.end()
            if self._instruments is not None:
                self._instruments.call_duration.record(duration, self._pair.metric_attrs)
        except Exception:
            self._telemetry.warn_once("end_ok", "recording a successful call failed")

    def end_failed(self, error: ReliabilityError, attempts: int) -> None:
        duration = time.perf_counter() - self._start
        error_type = error.error_type.value
        try:
            span = self._span
            if span is not None:
                if span.is_recording():
                    span.set_attribute(n.ATTR_ATTEMPTS, attempts)
                    span.set_attribute(n.ATTR_ERROR_TYPE, error_type)
                    patterns = self._telemetry.patterns(error.service_name)
                    description = redact(error.message, patterns, MESSAGE_LIMIT)
                    span.set_status(Status(StatusCode.ERROR, description))
                span.end()
            if self._instruments is not None:
                self._instruments.call_duration.record(duration, self._pair.error_attrs(error_type))
        except Exception:
            self._telemetry.warn_once("end_failed", "recording a failed call failed")

    def end_aborted(self, cause: BaseException) -> None:
        # the call span ends with the exception (so the attempt spans keep their parent);
        # no metric: a cancelled call says nothing about the service
        span = self._span
        if span is not None:
            self._end_cut_short(span, cause, "end_aborted", "ending an aborted call span")
