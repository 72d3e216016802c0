"""No sample falls between two steps, at any time range: the step and the rate window of every
query, computed as Grafana computes them.

Grafana (frontend ``rangeUtil.calculateInterval`` and backend ``pkg/promlib/models/query.go``):

- ``$__interval`` = max(round(range / maxDataPoints), the data source's scrape interval), where
  maxDataPoints is the panel's, or else its width in pixels, and round() is Grafana's interval
  rounding (``gtime.RoundInterval``, below);
- the step = max($__interval, round(range / 11000)) x intervalFactor (1 when absent), and
  ``$__interval`` in the query becomes the step;
- ``$__rate_interval`` = max($__interval + scrape interval, 4 x scrape interval).

A query reads every sample when each range it evaluates is at least as long as the spacing of
its evaluations: the step, or a subquery's resolution where the step is longer than that.
"""

from __future__ import annotations

import json
import re

import pytest
from dashboards import queries
from hypothesis import example, given, settings
from hypothesis import strategies as st

#: the compose stack's scrape interval, and its data source's ``timeInterval``
SCRAPE = 15
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
#: a panel's width in pixels: a quarter of a 1920px screen, a typical one, a full-width one
WIDTHS = (450, 1000, 1900)
DOCS = {path.name: json.loads(path.read_text()) for path in queries.dashboard_files()}
QUERIES = [
    pytest.param(panel, target, id=f"{name}:{panel['title']}:{target['refId']}")
    for name, doc in DOCS.items()
    for panel, target in queries.queries(doc)
]

#: Grafana's interval rounding: (up to this many ms, round to this many ms)
ROUNDING = [
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (172800000, 86400000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000 - 1, 2592000000),
]  # fmt: skip


def round_interval(seconds: float) -> float:
    ms = seconds * 1000
    for limit, rounded in ROUNDING:
        if ms <= limit:
            return rounded / 1000
    return 31536000.0


def grafana(range_s: float, max_data_points: int, interval_factor: int = 1) -> tuple[float, float]:
    """(step, $__rate_interval) in seconds, as Grafana computes them."""
    interval = max(round_interval(range_s / max_data_points), SCRAPE)
    safe = round_interval(range_s / 11000)
    step = max(interval, safe) * interval_factor
    rate_interval = max(interval + SCRAPE, 4 * SCRAPE)
    return step, rate_interval


UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", duration)
    assert parts, duration
    assert "".join(a + b for a, b in parts) == duration, duration
    return sum(float(a) * UNITS[b] for a, b in parts)


SUBQUERY = re.compile(r"\[([^\]:]+):([^\]]+)\]")
RANGE = re.compile(r"\[([^\]:]+)\]")


def unread(expr: str, step: float, rate_interval: float) -> list[str]:
    """The ranges of ``expr`` between whose evaluations samples go unread (empty: none)."""
    text = expr.replace("$__rate_interval", f"{rate_interval:g}s").replace(
        "$__interval", f"{step:g}s"
    )
    windows = [seconds(d) for d in RANGE.findall(text)]
    problems = []
    spacing = step
    for outer, resolution in SUBQUERY.findall(text):
        # every_sample(): the subquery over the step when the step is longer than the window
        if step >= seconds(resolution):
            spacing = seconds(resolution)
            if seconds(outer) < step:
                problems.append(f"subquery [{outer}:{resolution}] shorter than the step {step:g}s")
    problems += [f"[{w:g}s] < spacing {spacing:g}s" for w in windows if w < spacing]
    return problems


def share_read(expr: str, step: float, rate_interval: float) -> float:
    """The share of the samples a query's shortest window reads, evaluated every ``step``."""
    text = expr.replace("$__rate_interval", f"{rate_interval:g}s")
    windows = [seconds(d) for d in RANGE.findall(text.replace("$__interval", f"{step:g}s"))]
    return min(1.0, min(windows) / step) if windows else 1.0


@pytest.mark.parametrize(("panel", "target"), QUERIES)
@pytest.mark.parametrize("range_name", sorted(RANGES))
def test_no_sample_falls_between_two_steps(panel, target, range_name):
    assert "intervalFactor" not in target
    assert "maxDataPoints" not in panel
    factor = target.get("intervalFactor", 1)
    points = [panel["maxDataPoints"]] if "maxDataPoints" in panel else list(WIDTHS)
    for max_data_points in points:
        step, rate_interval = grafana(RANGES[range_name], max_data_points, factor)
        assert rate_interval >= step
        problems = unread(target["expr"], step, rate_interval)
        assert not problems, f"{range_name} at {max_data_points} points: {problems}"


def test_grafanalibs_defaults_skip_half_the_samples_of_a_6h_panel():
    # maxDataPoints 100 and intervalFactor 2: the model sees what the issue describes
    step, rate_interval = grafana(RANGES["6h"], 100, interval_factor=2)
    assert (step, rate_interval) == (600, 315)
    expr = "rate(x[$__rate_interval])"
    assert unread(expr, step, rate_interval) == ["[315s] < spacing 600s"]
    assert share_read(expr, step, rate_interval) == pytest.approx(0.525)
    # the dashboards' own: every sample, at the panel's width
    step, rate_interval = grafana(RANGES["6h"], 1000)
    assert (step, rate_interval) == (20, 35 + 25)
    assert share_read(expr, step, rate_interval) == 1.0


@pytest.mark.parametrize(
    ("seconds_", "rounded"),
    [(0.01, 0.001), (14, 15), (21.6, 20), (86.4, 60), (216, 300), (604.8, 600), (3600, 3600)],
)
def test_grafanas_interval_rounding(seconds_, rounded):
    assert round_interval(seconds_) == rounded


def test_the_fixed_window_construct_is_judged_by_the_branch_prometheus_takes():
    expr = "max_over_time((\nrate(x[5m])\n)[$__interval:5m]\n)\nor\n(\nrate(x[5m])\n)"
    assert unread(expr, step=600, rate_interval=615) == []  # the subquery tiles the 10m step
    assert unread(expr, step=60, rate_interval=75) == []  # the 5m window covers the 1m step
    assert unread("rate(x[5m])", step=600, rate_interval=615) == ["[300s] < spacing 600s"]
    assert unread("max_over_time(rate(x[5m])[1m:5m])", 600, 615) == [
        "subquery [1m:5m] shorter than the step 600s"
    ]


@settings(max_examples=60, deadline=None)
@given(
    range_s=st.integers(min_value=300, max_value=30 * 86400),
    width=st.integers(min_value=200, max_value=4000),
)
@example(range_s=6 * 3600, width=100)  # grafanalib's maxDataPoints, without its intervalFactor
@example(range_s=7 * 86400, width=1000)  # step 10m > the burn rate's 5m window
def test_no_sample_is_skipped_at_any_range_and_width(range_s, width):
    step, rate_interval = grafana(range_s, width)
    for panel, target in (q for doc in DOCS.values() for q in queries.queries(doc)):
        problems = unread(target["expr"], step, rate_interval)
        assert not problems, f"{panel['title']} {target['refId']}: {problems}"
