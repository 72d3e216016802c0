"""The end-of-run summary: breaker episodes and the lines users read."""

from __future__ import annotations

import dataclasses

from otel_resilience.demo._runner import RunResult
from otel_resilience.demo._scenarios import get_scenario
from otel_resilience.demo._stats import BreakerEvent, Row
from otel_resilience.demo._summary import episodes, format_ms, summary_data, summary_lines


def _ev(at, old, new, failures=0, service="clamav", endpoint="scan"):
    return BreakerEvent(at, service, endpoint, old, new, failures)


OPEN_PROBE_CLOSE = [
    _ev(1.6, "closed", "open", 5),
    _ev(2.1, "open", "half_open", 5),
    _ev(2.1, "half_open", "open", 6),
    _ev(2.6, "open", "half_open", 6),
    _ev(2.7, "half_open", "closed", 0),
]


def test_an_outage_is_one_episode_with_its_failed_probes_and_recovery():
    (episode,) = episodes(OPEN_PROBE_CLOSE)
    assert episode.name == "clamav/scan"
    assert episode.opened_at == 1.6
    assert episode.failures_at_open == 5
    assert episode.failed_probes == 1
    assert episode.closed_at == 2.7


def test_a_breaker_still_open_at_the_end_has_no_close_time():
    (episode,) = episodes(OPEN_PROBE_CLOSE[:3])
    assert episode.closed_at is None
    assert episode.open_for is None


def test_two_outages_of_one_breaker_are_two_episodes_and_other_breakers_are_separate():
    events = [
        *OPEN_PROBE_CLOSE,
        _ev(2.0, "closed", "open", 5, service="gcs", endpoint="upload"),
        _ev(8.0, "closed", "open", 5),
        _ev(9.0, "open", "half_open"),
        _ev(9.1, "half_open", "closed"),
    ]
    found = [(e.name, e.opened_at, e.closed_at) for e in episodes(events)]
    assert found == [
        ("clamav/scan", 1.6, 2.7),
        ("gcs/upload", 2.0, None),
        ("clamav/scan", 8.0, 9.1),
    ]


def _result(events, waits=None):
    rows = [
        Row("openai", "chat.completions", 50, 49, 6, 0, 0, 0.7, {"rate_limit": 1}),
        Row("clamav", "scan", 40, 20, 10, 2, 15, 0.05, {"circuit_open": 15, "connection_error": 5}),
    ]
    return RunResult(
        scenario=get_scenario("outage"),
        elapsed_sec=6.0,
        time_scale=0.1,
        rows=rows,
        events=events,
        retry_after_waits=waits or {},
        outage_window=(1.5, 3.3),
    )


def test_summary_says_what_opened_when_it_recovered_and_what_failed_fast():
    text = "\n".join(summary_lines(_result(OPEN_PROBE_CLOSE)))
    assert "breaker clamav/scan opened at 1.60s after 5 failures" in text
    assert "closed at 2.70s (recovered after 1.10s)" in text
    assert "15 calls to clamav/scan failed fast while it was open" in text
    assert "90 calls, 69 succeeded (76.7%)" in text


def test_summary_reports_retry_after_waits_the_server_asked_for():
    waits = {("openai", "chat.completions"): [(1.0, 1.004), (1.0, 1.05)]}
    data = summary_data(_result([], waits))
    assert data["retry_after"]["openai/chat.completions"] == {
        "retries": 2,
        "retry_after_sec": [1.0],
        "waited_min_sec": 1.004,
        "waited_max_sec": 1.05,
        "honoured": 2,
    }
    lines = summary_lines(_result([], waits))
    assert "breakers: all stayed closed" in "\n".join(lines)
    assert any("Retry-After of 1s (waited 1.00s to 1.05s)" in line for line in lines)


def test_format_ms_switches_to_seconds_at_one_second():
    assert (format_ms(None), format_ms(0.0123), format_ms(1.5)) == ("-", "12ms", "1.50s")


def test_fast_failed_calls_are_reported_once_per_breaker_after_its_last_episode():
    events = [
        *OPEN_PROBE_CLOSE,
        _ev(8.0, "closed", "open", 5),
        _ev(9.0, "open", "half_open"),
        _ev(9.1, "half_open", "closed"),
    ]
    lines = summary_lines(_result(events))
    opened = [i for i, line in enumerate(lines) if line.startswith("  breaker clamav/scan opened")]
    fast = [i for i, line in enumerate(lines) if "failed fast" in line]
    assert len(opened) == 2
    assert fast == [opened[1] + 1]


def test_a_long_run_lists_the_latest_episodes_and_counts_the_rest():
    events = []
    for n in range(5):
        events += [
            _ev(60.0 * n + 15, "closed", "open", 5),
            _ev(60.0 * n + 36, "half_open", "closed"),
        ]
    lines = summary_lines(_result(events))
    assert "  breaker clamav/scan opened 5 times; 2 earlier episode(s) not listed" in lines
    listed = [line for line in lines if line.startswith("  breaker clamav/scan opened at")]
    assert [line.split()[4] for line in listed] == ["135.00s", "195.00s", "255.00s"]


def test_the_summary_of_a_busy_interrupted_run_reads_exactly_so():
    """Every kind of line at once, pinned: a breaker that opened and never failed a call fast
    (gcs/upload) gets no "failed fast" line; several Retry-After values are joined."""
    events = [_ev(3.0, "closed", "open", 5, service="gcs", endpoint="upload")]
    for n in range(5):
        events += [
            _ev(60.0 * n + 15, "closed", "open", 5),
            _ev(60.0 * n + 20, "open", "half_open", 5),
            _ev(60.0 * n + 20, "half_open", "open", 6),
            _ev(60.0 * n + 36, "half_open", "closed"),
        ]
    result = _result(events, {("openai", "chat.completions"): [(1.0, 1.004), (2.0, 1.05)]})
    rows = [*result.rows, Row("gcs", "upload", 10, 9, 1, 0, 0, None, {})]
    result = dataclasses.replace(result, rows=rows, interrupted=True)
    lines = summary_lines(result)
    assert lines[0] == (
        "Summary: scenario 'outage' interrupted after 6.0s (time scale 0.1):"
        " 100 calls, 78 succeeded (78.0%)"
    )
    recovered = "1 probe(s) found it still failing; closed at {}s (recovered after 21.00s)"
    assert lines[4:] == [
        "  antivirus outage window: 1.5s to 3.3s of each period",
        "  breaker clamav/scan opened 5 times; 2 earlier episode(s) not listed",
        "  breaker gcs/upload opened at 3.00s after 5 failures; still not closed at the end",
        "  breaker clamav/scan opened at 135.00s after 5 failures; " + recovered.format("156.00"),
        "  breaker clamav/scan opened at 195.00s after 5 failures; " + recovered.format("216.00"),
        "  breaker clamav/scan opened at 255.00s after 5 failures; " + recovered.format("276.00"),
        "    15 calls to clamav/scan failed fast while it was open instead of waiting on a"
        " failing service",
        "  openai/chat.completions: 2 rate-limited attempts retried after the server's"
        " Retry-After of 1/2s (waited 1.00s to 1.05s)",
    ]
    data = summary_data(result)
    assert [b["endpoint"] for b in data["breakers"]] == ["upload"] + ["scan"] * 5
    assert data["transitions"][0] == {
        "at_sec": 3.0,
        "service": "gcs",
        "endpoint": "upload",
        "old": "closed",
        "new": "open",
        "failure_count": 5,
    }
