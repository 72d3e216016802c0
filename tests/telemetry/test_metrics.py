"""Metrics of TELEMETRY.md: names, instruments, units, attributes, buckets, per call outcome."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import Metric

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ReliabilityError,
    resilient_call,
    resilient_call_async,
)
from otel_resilience import telemetry_contract as tc
from otel_resilience._runtime import get_telemetry

from .conftest import FakeTime
from .helpers import (
    ATTEMPT,
    DURATION_HISTOGRAMS,
    ENDPOINT,
    ERROR_TYPE,
    ERROR_TYPES,
    METRICS,
    OVERRIDE,
    REQUIRED,
    SERVICE,
    STATE,
    Otel,
    attrs,
    failing,
    http_error,
    instrument_kind,
    points,
    recorded,
    value,
)

pytestmark = pytest.mark.usefixtures("fast")

CALL = tc.METRICS.call_duration.name
ATTEMPT_DURATION = tc.METRICS.attempt_duration.name
RETRIES = tc.METRICS.retries.name
RETRY_DELAY = tc.METRICS.retry_delay.name
EXHAUSTED = tc.METRICS.retries_exhausted.name
TIMEOUTS = tc.METRICS.timeouts.name
GAUGE = "resilience.circuit_breaker.state"
TRANSITIONS = tc.METRICS.breaker_transitions.name
REJECTIONS = tc.METRICS.breaker_rejections.name
OVERRIDE_GAUGE = "resilience.circuit_breaker.override"


def open_breaker(service: str = "clamav", endpoint: str = "scan") -> None:
    """Fail twice (the clamav breaker's threshold in the ``fast`` config)."""
    for _ in range(2):
        with pytest.raises(ReliabilityError):
            resilient_call(service, endpoint, failing(ConnectionError("down")), max_retries=1)


def every_outcome(fast: FakeTime) -> None:
    """One call of each kind, so that every core metric has points."""
    resilient_call("openai", "chat.completions", lambda: "ok")
    resilient_call("openai", "chat.completions", failing(http_error(503)), max_retries=2)
    with pytest.raises(ReliabilityError):
        resilient_call("openai", "chat.completions", failing(*[TimeoutError()] * 2), max_retries=2)
    with pytest.raises(ReliabilityError):
        resilient_call("gcs", "upload", lambda: time.sleep(1), timeout_sec=0.02, max_retries=1)
    open_breaker()
    with pytest.raises(CircuitOpenError):
        resilient_call("clamav", "scan", lambda: "rejected")
    fast.advance(10)
    resilient_call("clamav", "scan", lambda: "probe")


def test_every_metric_has_the_contract_instrument_unit_and_attributes(
    otel: Otel, fast: FakeTime
) -> None:
    every_outcome(fast)
    metrics = otel.metrics()

    assert set(METRICS) <= set(metrics), f"missing: {sorted(set(METRICS) - set(metrics))}"
    for name, (kind, unit, allowed, _prometheus) in METRICS.items():
        metric = metrics[name]
        assert instrument_kind(metric) == kind, name
        assert (metric.unit or "") == unit, name
        assert metric.unit != "1", name  # "never use unit 1"
        assert metric.data.data_points, name
        for point in metric.data.data_points:
            keys = set(point.attributes)
            assert REQUIRED <= keys <= allowed, (name, dict(point.attributes))
            assert ATTEMPT not in keys  # attempt numbers are for spans only
            if ERROR_TYPE in keys:
                assert point.attributes[ERROR_TYPE] in ERROR_TYPES
            if STATE in keys:
                assert point.attributes[STATE] in {"closed", "open", "half_open"}


@pytest.mark.parametrize("name", [*DURATION_HISTOGRAMS, RETRY_DELAY])
def test_histograms_use_second_scale_buckets(otel: Otel, name: str) -> None:
    resilient_call("openai", "chat.completions", failing(ConnectionError()), max_retries=2)

    bounds = list(next(iter(points(otel.metrics(), name).values())).explicit_bounds)

    assert bounds == sorted(bounds)
    assert bounds[0] == pytest.approx(0.005)
    assert bounds[-1] == pytest.approx(60)
    assert 1.0 in bounds


def test_success_records_durations_in_seconds_without_error_type(otel: Otel) -> None:
    resilient_call("openai", "chat.completions", lambda: time.sleep(0.02))

    metrics = otel.metrics()
    ok = attrs("openai", "chat.completions")
    assert set(points(metrics, CALL)) == {ok}
    assert set(points(metrics, ATTEMPT_DURATION)) == {ok}
    call = points(metrics, CALL)[ok]
    attempt = points(metrics, ATTEMPT_DURATION)[ok]
    assert call.count == attempt.count == 1
    assert 0.02 <= attempt.sum <= call.sum < 1.0  # seconds, not milliseconds
    for name in (RETRIES, RETRY_DELAY, EXHAUSTED, TIMEOUTS, REJECTIONS, TRANSITIONS):
        assert recorded(metrics, name) == {}, name


def test_retried_success_counts_retries_by_error_type_and_the_call_as_a_success(
    otel: Otel, fast: FakeTime
) -> None:
    func = failing(ConnectionError("reset"), http_error(503))

    resilient_call("openai", "chat.completions", func, max_retries=3)

    metrics = otel.metrics()
    ok = attrs("openai", "chat.completions")
    conn = attrs("openai", "chat.completions", error_type="connection_error")
    server = attrs("openai", "chat.completions", error_type="server_error")
    assert recorded(metrics, CALL) == {ok: 1}
    assert recorded(metrics, ATTEMPT_DURATION) == {
        ok: 1,
        conn: 1,
        server: 1,
    }
    assert recorded(metrics, RETRIES) == {conn: 1, server: 1}
    delay = points(metrics, RETRY_DELAY)[ok]
    assert delay.count == 2
    assert delay.sum == pytest.approx(sum(fast.sleeps))
    assert recorded(metrics, EXHAUSTED) == {}


def test_exhausted_retries_count_once_with_the_last_error_type(otel: Otel) -> None:
    func = failing(ConnectionError(), http_error(500), http_error(502))

    with pytest.raises(ReliabilityError):
        resilient_call("openai", "chat.completions", func, max_retries=3)

    metrics = otel.metrics()
    server = attrs("openai", "chat.completions", error_type="server_error")
    conn = attrs("openai", "chat.completions", error_type="connection_error")
    assert recorded(metrics, EXHAUSTED) == {server: 1}
    assert recorded(metrics, CALL) == {server: 1}
    assert recorded(metrics, RETRIES) == {conn: 1, server: 1}
    assert recorded(metrics, ATTEMPT_DURATION) == {
        conn: 1,
        server: 2,
    }


def test_non_retryable_error_is_a_failed_call_not_an_exhausted_one(otel: Otel) -> None:
    with pytest.raises(ReliabilityError):
        resilient_call("gcs", "download", failing(http_error(404)), max_retries=3)

    metrics = otel.metrics()
    not_found = attrs("gcs", "download", error_type="not_found")
    assert recorded(metrics, CALL) == {not_found: 1}
    assert recorded(metrics, ATTEMPT_DURATION) == {not_found: 1}
    assert recorded(metrics, RETRIES) == {}
    assert recorded(metrics, EXHAUSTED) == {}


def test_timeouts_are_counted_per_attempt_without_error_type(otel: Otel) -> None:
    with pytest.raises(ReliabilityError):
        resilient_call("clamav", "scan", lambda: time.sleep(2), timeout_sec=0.05, max_retries=2)

    metrics = otel.metrics()
    timeout = attrs("clamav", "scan", error_type="timeout")
    assert recorded(metrics, TIMEOUTS) == {attrs("clamav", "scan"): 2}
    attempts = points(metrics, ATTEMPT_DURATION)[timeout]
    assert attempts.count == 2
    assert 0.1 <= attempts.sum < 1.0
    assert value(metrics, RETRIES, timeout) == 1
    assert value(metrics, EXHAUSTED, timeout) == 1
    assert value(metrics, CALL, timeout) == 1


def gauge(metrics: dict[str, Metric], service: str, endpoint: str) -> dict[str, Any]:
    """state -> value of one breaker's gauge series."""
    found = {}
    for key, point in points(metrics, GAUGE).items():
        labels = dict(key)
        if labels[SERVICE] == service and labels[ENDPOINT] == endpoint:
            found[labels[STATE]] = point.value
    return found


def overrides(metrics: dict[str, Metric], service: str, endpoint: str) -> dict[str, Any]:
    """override value -> value of one breaker's override gauge series."""
    found = {}
    for key, point in points(metrics, OVERRIDE_GAUGE).items():
        labels = dict(key)
        if labels[SERVICE] == service and labels[ENDPOINT] == endpoint:
            found[labels[OVERRIDE]] = point.value
    return found


NO_OVERRIDE = {"none": 1, "forced_open": 0, "disabled": 0, "metrics_only": 0}


def test_override_gauge_has_one_series_per_value_and_1_for_the_active_one(otel: Otel) -> None:
    manager = otel_resilience.get_circuit_breaker_manager()
    manager.get_breaker("gcs", "upload")
    manager.get_breaker("clamav", "scan").force_open()
    manager.get_breaker("s3", "upload").disable()
    manager.get_breaker("openai", "chat").metrics_only()

    metrics = otel.metrics()

    assert instrument_kind(metrics[OVERRIDE_GAUGE]) == "gauge"
    assert len(points(metrics, OVERRIDE_GAUGE)) == 4 * 4  # one series per value and breaker
    assert overrides(metrics, "gcs", "upload") == NO_OVERRIDE
    assert overrides(metrics, "clamav", "scan") == {**NO_OVERRIDE, "none": 0, "forced_open": 1}
    assert overrides(metrics, "s3", "upload") == {**NO_OVERRIDE, "none": 0, "disabled": 1}
    assert overrides(metrics, "openai", "chat") == {**NO_OVERRIDE, "none": 0, "metrics_only": 1}
    # the forced-open breaker's state gauge says open: the override tells it was on purpose
    assert gauge(metrics, "clamav", "scan")["open"] == 1


def test_override_gauge_follows_reset_and_cb_manual_state(otel: Otel) -> None:
    manager = otel_resilience.get_circuit_breaker_manager()
    breaker = manager.get_breaker("clamav", "scan")
    breaker.force_open()
    assert overrides(otel.metrics(), "clamav", "scan")["forced_open"] == 1

    breaker.reset()
    assert overrides(otel.metrics(), "clamav", "scan") == NO_OVERRIDE

    otel_resilience.configure(services={"vault": {"CB_MANUAL_STATE": "forced_open"}})
    manager.get_breaker("vault", "read")
    assert overrides(otel.metrics(), "vault", "read")["forced_open"] == 1


def test_an_override_beyond_the_endpoint_cap_still_shows_in_the_gauge(otel: Otel) -> None:
    get_telemetry().set_max_endpoints(1)
    manager = otel_resilience.get_circuit_breaker_manager()
    manager.get_breaker("crawler", "home")  # the one pair under the cap
    manager.get_breaker("crawler", "page-1").force_open()  # both over the cap: "_other"
    manager.get_breaker("crawler", "page-2")

    values = overrides(otel.metrics(), "crawler", "_other")

    assert values == {**NO_OVERRIDE, "forced_open": 1}  # both "none" and "forced_open" show


def test_breaker_cycle_open_rejection_half_open_closed(otel: Otel, fast: FakeTime) -> None:
    open_breaker()
    metrics = otel.metrics()
    assert gauge(metrics, "clamav", "scan") == {"closed": 0, "open": 1, "half_open": 0}
    assert recorded(metrics, TRANSITIONS) == {attrs("clamav", "scan", state="open"): 1}

    with pytest.raises(CircuitOpenError):
        resilient_call("clamav", "scan", lambda: "never runs")
    metrics = otel.metrics()
    rejected = attrs("clamav", "scan", error_type="circuit_open")
    assert recorded(metrics, REJECTIONS) == {attrs("clamav", "scan"): 1}
    assert value(metrics, CALL, rejected) == 1
    assert value(metrics, ATTEMPT_DURATION, rejected) == 0  # no attempt ran
    assert recorded(metrics, EXHAUSTED) == {}

    fast.advance(10)  # CB_RESET_SEC
    assert gauge(otel.metrics(), "clamav", "scan") == {"closed": 0, "open": 0, "half_open": 1}

    assert resilient_call("clamav", "scan", lambda: "clean") == "clean"
    metrics = otel.metrics()
    assert gauge(metrics, "clamav", "scan") == {"closed": 1, "open": 0, "half_open": 0}
    assert recorded(metrics, TRANSITIONS) == {
        attrs("clamav", "scan", state="open"): 1,
        attrs("clamav", "scan", state="half_open"): 1,
        attrs("clamav", "scan", state="closed"): 1,
    }


def test_breaker_gauge_reports_every_breaker_that_exists(otel: Otel) -> None:
    manager = otel_resilience.get_circuit_breaker_manager()
    manager.get_breaker("gcs", "upload")
    manager.get_breaker("s3", "upload")
    manager.get_breaker("clamav", "scan").force_open()
    resilient_call("openai", "embeddings", lambda: [0.1])

    metrics = otel.metrics()

    assert len(points(metrics, GAUGE)) == 4 * 3  # one series per state and breaker
    assert gauge(metrics, "gcs", "upload") == {"closed": 1, "open": 0, "half_open": 0}
    assert gauge(metrics, "s3", "upload") == {"closed": 1, "open": 0, "half_open": 0}
    assert gauge(metrics, "clamav", "scan") == {"closed": 0, "open": 1, "half_open": 0}
    assert gauge(metrics, "openai", "embeddings") == {"closed": 1, "open": 0, "half_open": 0}


async def test_async_calls_record_the_same_metrics(otel: Otel, fast: FakeTime) -> None:
    errors = [ConnectionError("reset")]

    async def fetch() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    async def missing() -> str:
        raise http_error(404)

    await resilient_call_async("openai", "embeddings", fetch, max_retries=2)
    with pytest.raises(ReliabilityError):
        await resilient_call_async("openai", "embeddings", missing)

    metrics = otel.metrics()
    ok = attrs("openai", "embeddings")
    conn = attrs("openai", "embeddings", error_type="connection_error")
    not_found = attrs("openai", "embeddings", error_type="not_found")
    assert recorded(metrics, CALL) == {ok: 1, not_found: 1}
    assert recorded(metrics, ATTEMPT_DURATION) == {
        ok: 1,
        conn: 1,
        not_found: 1,
    }
    assert recorded(metrics, RETRIES) == {conn: 1}
    assert points(metrics, RETRY_DELAY)[ok].sum == pytest.approx(sum(fast.sleeps))


async def test_async_timeout_and_rejection_are_counted(otel: Otel) -> None:
    import asyncio

    async def hang() -> None:
        await asyncio.sleep(5)

    with pytest.raises(ReliabilityError):
        await resilient_call_async("gcs", "upload", hang, timeout_sec=0.02, max_retries=1)
    otel_resilience.get_circuit_breaker_manager().get_breaker("gcs", "upload").force_open()
    with pytest.raises(CircuitOpenError):
        await resilient_call_async("gcs", "upload", hang)

    metrics = otel.metrics()
    assert value(metrics, TIMEOUTS, attrs("gcs", "upload")) == 1
    assert value(metrics, REJECTIONS, attrs("gcs", "upload")) == 1
    assert value(metrics, CALL, attrs("gcs", "upload", error_type="circuit_open")) == 1


def test_fallback_counts_the_failure_it_served(otel: Otel) -> None:
    served = resilient_call(
        "openai", "chat.completions", failing(http_error(401)), fallback="cached answer"
    )

    assert served == "cached answer"
    metrics = otel.metrics()
    denied = attrs("openai", "chat.completions", error_type="authentication_error")
    assert recorded(metrics, tc.METRICS.fallbacks.name) == {denied: 1}
    assert metrics[tc.METRICS.fallbacks.name].unit == "{call}"


def test_instruments_are_created_once_not_per_call(otel: Otel, monkeypatch) -> None:
    created: list[str] = []
    meter_cls = type(otel.meter_provider.get_meter("probe"))
    for method in ("create_counter", "create_histogram", "create_observable_gauge"):
        original = getattr(meter_cls, method)

        def spy(self, name, *args, _original=original, **kwargs):
            created.append(name)
            return _original(self, name, *args, **kwargs)

        monkeypatch.setattr(meter_cls, method, spy)
    otel_resilience.set_telemetry_providers(otel.tracer_provider, otel.meter_provider)

    resilient_call("openai", "chat.completions", lambda: "first")
    after_first = list(created)
    for _ in range(20):
        resilient_call("openai", "chat.completions", lambda: "again")
        with pytest.raises(ReliabilityError):
            resilient_call("gcs", "upload", failing(*[ConnectionError()] * 2), max_retries=2)

    assert set(METRICS) <= set(after_first)
    assert len(after_first) == len(set(after_first))  # no instrument twice
    assert created == after_first  # nothing created by later calls


def test_endpoint_cap_overflows_to_other_and_warns_once(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    get_telemetry().set_max_endpoints(3)
    caplog.set_level(logging.WARNING, logger="otel_resilience")

    for i in range(6):
        for _ in range(2):
            resilient_call("crawler", f"page-{i}", lambda: "ok")

    metrics = otel.metrics()
    endpoints = {dict(k)[ENDPOINT]: p.count for k, p in points(metrics, CALL).items()}
    assert endpoints == {"page-0": 2, "page-1": 2, "page-2": 2, "_other": 6}
    assert {dict(k)[ENDPOINT] for k in points(metrics, GAUGE)} <= {
        "page-0",
        "page-1",
        "page-2",
        "_other",
    }
    warnings = [r for r in caplog.records if "_other" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    # spans keep the real endpoint: only the metrics are capped
    assert {s.name for s in otel.spans()} >= {"crawler page-5", "crawler page-5 attempt"}


def test_metrics_carry_the_otel_resilience_scope_and_package_version(otel: Otel) -> None:
    resilient_call("gcs", "upload", lambda: "ok")

    data = otel.reader.get_metrics_data()
    scopes = {
        (scope_metrics.scope.name, scope_metrics.scope.version)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
    }
    assert scopes == {("otel_resilience", otel_resilience.__version__)}


def test_an_open_breaker_beyond_the_endpoint_cap_still_shows_in_the_gauge(otel: Otel) -> None:
    get_telemetry().set_max_endpoints(1)
    manager = otel_resilience.get_circuit_breaker_manager()
    manager.get_breaker("crawler", "home")  # the one pair under the cap
    manager.get_breaker("crawler", "page-1").force_open()  # both over the cap: "_other"
    manager.get_breaker("crawler", "page-2")

    states = gauge(otel.metrics(), "crawler", "_other")

    assert states["open"] == 1  # some breaker behind "_other" is open: alerts must see it
    assert states["closed"] == 1
    assert set(states.values()) <= {0, 1}
