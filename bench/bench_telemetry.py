"""Cost of the telemetry on the success path: median microseconds per call, and three ratios.

Run by hand: ``.venv/bin/python bench/bench_telemetry.py [rounds]``. Everything is measured in
one run, in the main thread (so the attempt timeout is the SIGALRM one), cases round-robin within
each group so that a noisy neighbour slows them alike; each round gives the mean per call over a
batch; the table shows the median round, and each ratio is the median over rounds of the two
cases' ratio within a round (robust to a machine whose load drifts).

With the SDK configured (``BatchSpanProcessor`` with an exporter that drops spans, a
``PeriodicExportingMetricReader`` with a long interval and an exporter that drops metrics):

  (F) the telemetry floor, by hand: the unavoidable OTel work of one call -- a call span and a
      child attempt span with the same attributes as ours, the attempt span made current (so the
      function's own spans nest under it), two histogram records with the same attributes;
  (F0) the same without making the attempt span current (the strictest floor);
  (R) ``resilient_call(...)``: breaker, retry, attempt timeout and the telemetry;
  (H) the hand-rolled stack users write today: pybreaker + tenacity ``@retry`` + a call span +
      an attempt span + a counter + a histogram.

Without any SDK (the API's no-op providers):

  (T) tenacity ``Retrying(...)(f)``;
  (N) ``resilient_call(...)``.

Targets: R/F <= 1.15 (our own logic costs at most 15% of the telemetry floor), R/H <= 0.9,
N/T <= 1.0.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import pybreaker
import tenacity
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import otel_resilience
from otel_resilience import _names as n
from otel_resilience import resilient_call

BATCH = 1_000  # calls per batch
SERVICE, ENDPOINT = "inventory", "lookup"
TARGETS = {"R/F": 1.15, "R/H": 0.9, "N/T": 1.0}


class DropSpans(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


class DropMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def work() -> int:
    return 42


def batch_us(step: Callable[[], object]) -> float:
    """Mean microseconds per call over a batch."""
    start = time.perf_counter()
    for _ in range(BATCH):
        step()
    return (time.perf_counter() - start) / BATCH * 1e6


def measure(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Per-round batch means of each case, measured round-robin after a warm-up."""
    for case in cases.values():
        if case() != 42:
            raise AssertionError("a case does not return the function's value")
        batch_us(case)
    samples: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(rounds):
        for key, case in cases.items():
            gc.collect()
            samples[key].append(batch_us(case))
    return samples


def paired_ratio(samples: dict[str, list[float]], top: str, bottom: str) -> float:
    """Median over rounds of top/bottom measured in the same round (robust to load drift)."""
    return statistics.median(a / b for a, b in zip(samples[top], samples[bottom], strict=True))


def sdk_providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=3_600_000)
    return tracer_provider, MeterProvider(metric_readers=[reader])


def floor_cases(
    tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> dict[str, Callable[[], object]]:
    """(F) and (F0): the OTel work of one call, written out by hand."""
    tracer = tracer_provider.get_tracer("floor")
    meter = meter_provider.get_meter("floor")
    buckets = list(n.DURATION_BUCKETS_S)
    call_hist = meter.create_histogram(
        "floor.call.duration", unit="s", explicit_bucket_boundaries_advisory=buckets
    )
    attempt_hist = meter.create_histogram(
        "floor.attempt.duration", unit="s", explicit_bucket_boundaries_advisory=buckets
    )
    span_attrs = {n.ATTR_SERVICE: SERVICE, n.ATTR_ENDPOINT: ENDPOINT}
    call_attrs = {**span_attrs, n.ATTR_BREAKER_STATE: "closed"}  # built once, as a floor should
    attempt_attrs = {**span_attrs, n.ATTR_ATTEMPT: 1}
    metric_attrs = dict(span_attrs)
    call_name, attempt_name = f"{SERVICE} {ENDPOINT}", f"{SERVICE} {ENDPOINT} attempt"
    perf = time.perf_counter

    def floor(make_current: bool) -> Callable[[], object]:
        def call() -> object:
            call_start = perf()
            span = tracer.start_span(call_name, kind=SpanKind.INTERNAL, attributes=call_attrs)
            attempt = tracer.start_span(
                attempt_name,
                context=trace.set_span_in_context(span),
                kind=SpanKind.INTERNAL,
                attributes=attempt_attrs,
            )
            token = (
                otel_context.attach(trace.set_span_in_context(attempt)) if make_current else None
            )
            start = perf()
            result = work()
            attempt_duration = perf() - start
            if token is not None:
                otel_context.detach(token)
            attempt.end()
            attempt_hist.record(attempt_duration, metric_attrs)
            span.set_attribute(n.ATTR_ATTEMPTS, 1)
            span.end()
            call_hist.record(perf() - call_start, metric_attrs)
            return result

        return call

    return {"F": floor(True), "F0": floor(False)}


def hand_rolled(
    tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> Callable[[], object]:
    """(H): pybreaker + tenacity + a call span + an attempt span + a counter + a histogram."""
    tracer = tracer_provider.get_tracer("hand")
    meter = meter_provider.get_meter("hand")
    calls = meter.create_counter("hand.calls", unit="{call}")
    duration = meter.create_histogram(
        "hand.duration", unit="s", explicit_bucket_boundaries_advisory=list(n.DURATION_BUCKETS_S)
    )
    attrs = {n.ATTR_SERVICE: SERVICE, n.ATTR_ENDPOINT: ENDPOINT}
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential(multiplier=1, max=30),
        reraise=True,
    )
    def attempt() -> object:
        with tracer.start_as_current_span(f"{SERVICE} {ENDPOINT} attempt", attributes=attrs):
            return breaker.call(work)

    def call() -> object:
        start = time.perf_counter()
        with tracer.start_as_current_span(f"{SERVICE} {ENDPOINT}", attributes=attrs):
            result = attempt()
        calls.add(1, attrs)
        duration.record(time.perf_counter() - start, attrs)
        return result

    return call


def ours() -> object:
    return resilient_call(SERVICE, ENDPOINT, work)


def tenacity_retrying() -> object:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential(multiplier=1, max=30),
        reraise=True,
    )(work)


def report(
    rows: Sequence[tuple[str, str, list[float]]], ratios: dict[str, tuple[float, float]]
) -> None:
    print(f"{'us per call':<62} {'median':>8} {'best':>8}")
    for key, label, values in rows:
        print(
            f"({key}) {label:<{57 - len(key)}} {statistics.median(values):8.2f} {min(values):8.2f}"
        )
    print()
    print(f"{'ratio':<6} {'median':>7} {'best':>7}")
    for name, (median, best) in ratios.items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target:g}: " + ("OK" if median <= target else "OVER TARGET")
        print(f"{name:<6} {median:6.2f}x {best:6.2f}x{verdict}")


def main(rounds: int = 21) -> None:
    otel_resilience.reset()

    # --- no SDK: the API's no-op providers ------------------------------------------------
    no_sdk = measure({"T": tenacity_retrying, "N": ours}, rounds)

    # --- SDK configured --------------------------------------------------------------------
    tracer_provider, meter_provider = sdk_providers()
    otel_resilience.set_telemetry_providers(tracer_provider, meter_provider)
    cases = floor_cases(tracer_provider, meter_provider)
    cases["R"] = ours
    cases["H"] = hand_rolled(tracer_provider, meter_provider)
    sdk = measure(cases, rounds)
    otel_resilience.reset()
    tracer_provider.shutdown()
    meter_provider.shutdown()

    every = {**sdk, **no_sdk}
    rows = [
        ("F", "SDK floor by hand: 2 spans (attempt current) + 2 hist.", every["F"]),
        ("F0", "SDK floor by hand, attempt span not made current", every["F0"]),
        ("R", "resilient_call, SDK configured", every["R"]),
        ("H", "hand-rolled pybreaker + tenacity + 2 spans + ctr + hist.", every["H"]),
        ("T", "tenacity Retrying(...)(f), no SDK", every["T"]),
        ("N", "resilient_call, no SDK", every["N"]),
    ]

    def ratio(top: str, bottom: str) -> tuple[float, float]:
        samples = sdk if top in sdk else no_sdk
        return paired_ratio(samples, top, bottom), min(every[top]) / min(every[bottom])

    ratios = {
        "R/F": ratio("R", "F"),
        "R/F0": ratio("R", "F0"),
        "R/H": ratio("R", "H"),
        "N/T": ratio("N", "T"),
    }
    report(rows, ratios)
    median_gap = statistics.median(every["R"]) - statistics.median(every["F"])
    best_gap = min(every["R"]) - min(every["F"])
    print(
        f"\nour own logic on top of the floor (R-F): {median_gap:.2f} us median,"
        f" {best_gap:.2f} us best; {rounds} rounds x {BATCH} calls. Median ratios are medians"
        " of same-round ratios; best ratios compare the fastest rounds (the least disturbed)."
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
