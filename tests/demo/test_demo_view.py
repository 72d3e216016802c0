"""The live view and the plain view render what the run saw."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from otel_resilience.demo._runner import RunResult, Snapshot
from otel_resilience.demo._scenarios import get_scenario
from otel_resilience.demo._stats import BreakerEvent, Row
from otel_resilience.demo._view import LiveView, PlainView

ROWS = [
    Row("openai", "chat.completions", 166, 166, 16, 0, 0, 2.48, {}),
    Row("clamav", "scan", 96, 67, 5, 2, 27, 0.199, {"circuit_open": 27}, "open", 6, 4.9),
]
OPENED = BreakerEvent(15.8, "clamav", "scan", "closed", "open", 5)
CLOSED = BreakerEvent(36.7, "clamav", "scan", "half_open", "closed", 0)


def _snapshot(elapsed, events, down=False, total=None):
    total = len(events) if total is None else total
    return Snapshot(elapsed, 60.0, get_scenario("outage"), ROWS, events, (15.0, 33.0), down, total)


def _result(events):
    return RunResult(get_scenario("outage"), 60.2, 1.0, ROWS, events, {}, outage_window=(15, 33))


@pytest.mark.parametrize(
    ("width", "columns"),
    [
        pytest.param(
            120,
            ["calls", "ok", "retries", "timeouts", "rejected", "p95", "breaker", "fails"],
            id="wide",
        ),
        pytest.param(80, ["calls", "ok", "retry", "t/o", "rej", "p95", "breaker"], id="narrow"),
    ],
)
def test_live_view_shows_each_endpoint_and_breaker_state_at_any_width(width, columns):
    console = Console(file=io.StringIO(), width=width, record=True, color_system="truecolor")
    view = LiveView(console, footer=["Ctrl-C to stop"])
    view._header = ["otel-resilience demo: scenario 'outage'"]
    console.print(view.render(_snapshot(21.0, [OPENED], down=True)))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "service / endpoint" in line)
    assert header.split()[3:] == columns
    assert "openai chat.completions" in text
    assert "OPEN 4.9s" in text  # the state, and the time to the next probe
    assert "21.0s / 60s" in text
    assert "antivirus DOWN" in text
    assert "clamav/scan  closed -> open" in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_live_view_colours_breaker_states():
    console = Console(file=io.StringIO(), width=120, record=True, color_system="truecolor")
    console.print(LiveView(console).render(_snapshot(21.0, [])))
    html = console.export_html(inline_styles=True)
    assert "OPEN" in html
    assert "color: #800000" in html or "color: #ff0000" in html  # red for open
    assert "CLOSED" in html


def test_plain_view_prints_each_transition_once_and_a_table_every_interval():
    out = io.StringIO()
    view = PlainView(out, interval_sec=10.0)
    view.start(["header line"])
    view.tick(_snapshot(5.0, [OPENED]))
    view.tick(_snapshot(10.0, [OPENED]))
    view.tick(_snapshot(15.0, [OPENED], down=True))
    view.finish(_result([OPENED, CLOSED]))
    lines = out.getvalue().splitlines()
    assert lines[0] == "header line"
    assert lines.count("[  15.80s] breaker clamav/scan: closed -> open (failures=5)") == 1
    assert lines.count("[  36.70s] breaker clamav/scan: half_open -> closed (failures=0)") == 1
    tables = [line for line in lines if line.startswith("---")]
    assert tables == ["---  10.0s / 60s"]
    assert any(
        line.startswith("  breaker clamav/scan opened at 15.80s after 5 failures")
        and line.endswith("closed at 36.70s (recovered after 20.90s)")
        for line in lines
    )
    assert "\x1b[" not in out.getvalue()


def test_plain_view_prints_only_transitions_it_has_not_printed_from_a_capped_list():
    out = io.StringIO()
    view = PlainView(out, interval_sec=1000.0)
    events = [BreakerEvent(float(i), "clamav", "scan", "open", "half_open", i) for i in range(80)]
    view.tick(_snapshot(1.0, events[:10], total=10))
    view.tick(_snapshot(2.0, events[30:80], total=80))  # the snapshot holds the last 50
    view.tick(_snapshot(3.0, events[30:80], total=80))
    printed = [line for line in out.getvalue().splitlines() if "breaker" in line]
    assert len(printed) == 60  # 10, then the 50 still held; the 20 in between were not shown
    assert printed[10].startswith("[  30.00s]")


@pytest.mark.parametrize(
    ("duration", "label"),
    [
        pytest.param(60.0, "antivirus outage 15.0-33.0s\n", id="one-period"),
        pytest.param(0.0, "antivirus outage 15.0-33.0s of every 60s", id="until-stopped"),
        pytest.param(300.0, "antivirus outage 15.0-33.0s of every 60s", id="several-periods"),
    ],
)
def test_live_view_says_when_the_outage_repeats(duration, label):
    console = Console(file=io.StringIO(), width=120, record=True)
    snapshot = Snapshot(5.0, duration, get_scenario("outage"), ROWS, [], (15.0, 33.0), False)
    console.print(LiveView(console).render(snapshot))
    assert label in console.export_text()
