"""The demo's own counters: percentiles, retries, rejections, Retry-After waits."""

from __future__ import annotations

import pytest

from otel_resilience.demo._stats import CallOutcome, Stats, percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([], 95, None, id="empty"),
        pytest.param([0.3], 95, 0.3, id="single"),
        pytest.param([float(i) for i in range(1, 101)], 95, 95.0, id="hundred"),
        pytest.param([5.0, 1.0, 3.0], 50, 3.0, id="unsorted"),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_record_counts_retries_timeouts_and_rejections_per_endpoint():
    stats = Stats([("clamav", "scan"), ("gcs", "upload")])
    stats.record(CallOutcome("clamav", "scan", 0.1, attempts=3, timeouts=2))
    stats.record(CallOutcome("clamav", "scan", 0.0, attempts=0, error_type="circuit_open"))
    stats.record(CallOutcome("clamav", "scan", 0.5, attempts=3, timeouts=3, error_type="timeout"))
    rows = {(r.service, r.endpoint): r for r in stats.rows()}
    scan = rows[("clamav", "scan")]
    assert (scan.calls, scan.succeeded, scan.retries, scan.timeouts, scan.rejected) == (
        3,
        1,
        4,
        5,
        1,
    )
    assert scan.errors == {"circuit_open": 1, "timeout": 1}
    assert scan.success_pct == pytest.approx(100 / 3)
    assert rows[("gcs", "upload")].calls == 0
    assert rows[("gcs", "upload")].success_pct is None


def test_retry_after_waits_are_kept_per_endpoint():
    stats = Stats([("openai", "chat.completions")])
    stats.record(
        CallOutcome("openai", "chat.completions", 1.2, attempts=2, retry_after_waits=((1.0, 1.01),))
    )
    assert stats.retry_after_waits("openai", "chat.completions") == [(1.0, 1.01)]
    assert stats.retry_after_waits("gcs", "upload") == []


def test_whole_run_p95_keeps_old_samples_that_the_live_window_forgets():
    stats = Stats([("gcs", "download")])
    for _ in range(100):
        stats.record(CallOutcome("gcs", "download", 5.0, attempts=1))
    for _ in range(600):
        stats.record(CallOutcome("gcs", "download", 0.01, attempts=1))
    (live,) = stats.rows()
    (whole,) = stats.rows(whole_run=True)
    assert live.p95_sec == 0.01  # the last 500 calls were all fast
    assert whole.p95_sec == 5.0  # 100 of 700 were slow: more than 5%
