"""The dashboards: generated, up to date, and every panel a proper one over library metrics only."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from alerts import config as knobs
from alerts import rules
from dashboards import generate, queries

from . import promql
from .servers import ROOT

DOCS = {path.name: json.loads(path.read_text()) for path in queries.dashboard_files()}
PANELS = [
    pytest.param(panel, id=f"{name}:{panel['title']}")
    for name, doc in DOCS.items()
    for panel in queries.panels(doc)
]
QUERIES = [
    pytest.param(target["expr"], id=f"{name}:{panel['title']}:{target['refId']}")
    for name, doc in DOCS.items()
    for panel, target in queries.queries(doc)
]
#: the library's series and labels, and the second-round ones of TELEMETRY.md it does not emit yet
#: (dashboards/queries.py names them; test_dashboard_metrics.py checks them against the contract)
SERIES = promql.LIBRARY_SERIES | queries.SECOND_ROUND_SERIES
LABELS = promql.LIBRARY_LABELS | queries.SECOND_ROUND_LABELS
SLOW_BURN = knobs.BURN_SLOW_FACTOR * (1 - knobs.SLO_OBJECTIVE)
FAST_BURN = knobs.BURN_FAST_FACTOR * (1 - knobs.SLO_OBJECTIVE)


def test_the_committed_files_are_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_naming_the_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "dashboards" / "x.json"
    stale.parent.mkdir()
    stale.write_text("{}\n")
    fresh = tmp_path / "alerts" / "y.yml"
    fresh.parent.mkdir()
    fresh.write_text("groups: []\n")
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    monkeypatch.setattr(generate, "render", lambda: {stale: "{}\n\n", fresh: "groups: []\n"})

    assert generate.main(["--check"]) == 1

    err = capsys.readouterr().err
    assert "dashboards/x.json is stale" in err
    assert "y.yml" not in err
    assert stale.read_text() == "{}\n"  # --check writes nothing


def test_generate_writes_the_files(tmp_path, monkeypatch):
    target = tmp_path / "dashboards" / "x.json"
    target.parent.mkdir()
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    monkeypatch.setattr(generate, "render", lambda: {target: "{}\n"})

    assert generate.main([]) == 0
    assert target.read_text() == "{}\n"
    assert generate.main(["--check"]) == 0


def test_there_is_an_overview_and_a_drill_down():
    assert {doc["title"] for doc in DOCS.values()} == {
        "Resilience overview",
        "Resilience dependency",
    }


@pytest.mark.parametrize("name", sorted(DOCS))
def test_variables_are_datasource_service_and_endpoint(name):
    variables = {v["name"]: v for v in DOCS[name]["templating"]["list"]}
    assert set(variables) == {"datasource", "service", "endpoint"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("service", "endpoint"):
        assert variables[var]["datasource"]["uid"] == "${datasource}"
        selector, label = re.fullmatch(
            r"label_values\((.*), (\w+)\)", variables[var]["query"]
        ).groups()
        assert promql.metrics(selector) <= promql.LIBRARY_SERIES
        assert label == {"service": "resilience_service", "endpoint": "resilience_endpoint"}[var]
    overview = name == "resilience-overview.json"
    assert variables["service"]["multi"] is overview
    assert variables["service"]["includeAll"] is overview


def test_the_overview_has_every_panel_the_issue_asks_for():
    titles = {p["title"] for p in queries.panels(DOCS["resilience-overview.json"])}
    assert titles >= {
        "Calls per second",
        "Error ratio",
        "Attempts per call (retry amplification)",
        "Call latency p50 / p95 / p99",
        "Retries per second by error type",
        "Retry delay distribution",
        "Exhausted retries (share of calls)",
        "Timeouts per second",
        "Failed calls by error type",
        "Circuit-breaker state",
        "Circuit-breaker transitions",
        "Rejected by open breaker per second",
    }
    state = next(
        p
        for p in queries.panels(DOCS["resilience-overview.json"])
        if p["title"] == "Circuit-breaker state"
    )
    assert state["type"] == "state-timeline"
    shown = state["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"] for v in shown.values()} == {"closed", "half_open", "open"}


@pytest.mark.parametrize("panel", PANELS)
def test_every_panel_has_a_unit_a_description_and_queries_on_the_datasource_variable(panel):
    assert len(panel["description"]) > 20
    unit = panel["fieldConfig"]["defaults"].get("unit")
    assert unit, "no unit"
    assert unit != "1"
    assert panel["datasource"]["uid"] == "${datasource}"
    assert panel["targets"]
    for target in panel["targets"]:
        assert target["datasource"]["uid"] == "${datasource}"
        assert target["legendFormat"]


@pytest.mark.parametrize("expr", QUERIES)
def test_every_query_uses_only_library_metrics_and_labels(expr):
    found = promql.metrics(re.sub(r"\boffset \$__interval\b", "", expr))  # not a name
    assert found, "no metric found: the reader is broken"
    assert found <= SERIES, found - SERIES
    for label, _, value in promql.matchers(expr):
        assert label in LABELS, f"filters on {label}={value!r}"
    assert promql.grouping_labels(expr) <= LABELS | {"le"}


@pytest.mark.parametrize("expr", QUERIES)
def test_every_selector_follows_the_service_and_endpoint_variables(expr):
    for block in promql.selectors(expr):
        assert 'resilience_service=~"$service"' in block
        assert 'resilience_endpoint=~"$endpoint"' in block


@pytest.mark.parametrize("expr", QUERIES)
def test_every_range_is_the_rate_interval_or_an_alert_window(expr):
    # (and the SLO period: the budget-left stat, an instant query over the whole period)
    windows = {knobs.BREAKER_OPENS_WINDOW, *knobs.ERROR_RATIO_WINDOWS, knobs.SLO_PERIOD}
    # an alert window also as the resolution of a subquery over the step (every_sample)
    allowed = {"$__rate_interval", *windows, *(f"$__interval:{w}" for w in windows)}
    assert promql.ranges(expr) <= allowed


def _thresholds(name: str, title: str) -> list[float]:
    panel = next(p for p in queries.panels(DOCS[name]) if p["title"] == title)
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [s["value"] for s in steps if s["value"] is not None]


@pytest.mark.parametrize(
    ("name", "title", "expected"),
    [
        ("resilience-overview.json", "Error ratio", [SLOW_BURN, FAST_BURN]),
        (
            "resilience-overview.json",
            "Attempts per call (retry amplification)",
            [1 + knobs.RETRIES_PER_CALL_THRESHOLD],
        ),
        (
            "resilience-overview.json",
            "Exhausted retries (share of calls)",
            [knobs.EXHAUSTED_RATIO_THRESHOLD],
        ),
        (
            "resilience-overview.json",
            "Call latency p50 / p95 / p99",
            [knobs.LATENCY_THRESHOLD_SECONDS],
        ),
        (
            "resilience-overview.json",
            "Timed-out attempts (share of attempts)",
            [knobs.TIMEOUT_RATIO_THRESHOLD],
        ),
        (
            "resilience-overview.json",
            f"Breaker openings (last {knobs.BREAKER_OPENS_WINDOW})",
            [knobs.BREAKER_OPENS_THRESHOLD],
        ),
        ("resilience-dependency.json", "Error ratio", [SLOW_BURN, FAST_BURN]),
        (
            "resilience-dependency.json",
            "Error-budget burn rate",
            [knobs.BURN_SLOW_FACTOR, knobs.BURN_FAST_FACTOR],
        ),
    ],
)
def test_panel_thresholds_are_the_alert_thresholds(name, title, expected):
    assert _thresholds(name, title) == pytest.approx(expected)


def test_the_promql_reader_sees_metrics_labels_and_ranges():
    expr = (
        'sum by (job, le) (rate(foo_total{instance="x", le="0.5"}[5m])) / on (a) bar '
        'or label_replace(baz, "l", "v", "l", "")'
    )
    assert promql.metrics(expr) == {"foo_total", "bar", "baz"}
    assert {label for label, _, _ in promql.matchers(expr)} == {"instance", "le"}
    assert promql.grouping_labels(expr) == {"job", "le", "a"}
    assert promql.ranges(expr) == {"5m"}


def test_runnable_substitutes_every_variable():
    expr = 'rate(x{a=~"$service", b=~"${endpoint}"}[$__rate_interval])'
    assert queries.runnable(expr, "15s") == 'rate(x{a=~".*", b=~".*"}[15s])'


ALERT_NAMES = {alert.name for alert in rules.ALERTS}


@pytest.mark.parametrize("panel", PANELS)
def test_the_alerts_a_panel_names_exist(panel):
    """A panel's text names only alerts of the committed rules (renamed alerts go stale)."""
    named = set(re.findall(r"\bResilience[A-Z][A-Za-z]*", panel.get("description", "")))
    assert named <= ALERT_NAMES, named - ALERT_NAMES


@pytest.mark.parametrize(
    ("doc", "title"),
    [
        ("resilience-overview.json", "Error ratio"),
        ("resilience-dependency.json", "Error-budget burn rate"),
    ],
)
def test_the_burn_rate_panels_state_every_paging_row(doc, title):
    (panel,) = [p for p in queries.panels(DOCS[doc]) if p["title"] == title]
    text = panel["description"]
    for row in knobs.BURN_RATE_WINDOWS:
        stated = f"{row.long} and {row.short} both above {row.factor:g}x ({row.severity})"
        assert (stated in text) == (row.severity == "critical"), (stated, text)
