"""The alerting and recording rules: promtool-clean, unit-tested, documented, library names only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from alerts import config as knobs
from alerts import rules

from . import promql
from .servers import ROOT, run

ALERTS_DIR = ROOT / "alerts"
RULE_FILES = [ALERTS_DIR / rules.RECORDING_FILE, ALERTS_DIR / rules.ALERTING_FILE]
TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"


def _rules(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


ALERTING = _rules(ALERTS_DIR / rules.ALERTING_FILE)
RECORDING = _rules(ALERTS_DIR / rules.RECORDING_FILE)
ALERT_NAMES = [rule["alert"] for rule in ALERTING]
RECORDED = {rule["record"] for rule in RECORDING}


def test_promtool_check_rules_finds_no_problem(promtool):
    result = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool, test_file):
    result = run(promtool, "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_cases() -> dict[str, list[dict]]:
    cases: dict[str, list[dict]] = {}
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case)
    return cases


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_every_alert_has_a_promtool_test_showing_it_firing_and_not_firing(alert):
    cases = _alert_cases().get(alert, [])
    firing = [a for case in cases for a in case["exp_alerts"]]
    assert any(not case["exp_alerts"] for case in cases), f"{alert}: no 'not firing' case"
    assert firing, f"{alert}: no 'firing' case"
    rule = next(r for r in ALERTING if r["alert"] == alert)
    for expected in firing:
        # the firing case pins every label and annotation of the rule
        assert expected["exp_labels"]["severity"] == rule["labels"]["severity"]
        assert set(expected["exp_annotations"]) == set(rule["annotations"])


def test_every_promtool_test_file_uses_the_committed_rule_files():
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        loaded = {(path.parent / f).resolve() for f in doc["rule_files"]}
        assert loaded == {f.resolve() for f in RULE_FILES}, path.name


@pytest.mark.parametrize("rule", ALERTING, ids=ALERT_NAMES)
def test_every_alert_has_severity_summary_description_and_a_runbook_in_the_repo(rule):
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(knobs.RUNBOOK_BASE_URL)
    page = RUNBOOKS / url.removeprefix(knobs.RUNBOOK_BASE_URL)
    assert page.is_file(), f"{rule['alert']}: runbook {page} is missing"
    text = page.read_text()
    for section in ("## What it means", "## How to diagnose", "## What to do"):
        assert section in text, f"{page.name} lacks {section!r}"
    assert rule["alert"] in text, f"{page.name} does not name {rule['alert']}"


def test_every_runbook_is_listed_in_the_runbook_index():
    index = (RUNBOOKS / "README.md").read_text()
    for alert in ALERT_NAMES:
        assert f"`{alert}`" in index


@pytest.mark.parametrize("record", sorted(RECORDED))
def test_recording_rules_are_named_level_metric_operations(record):
    level, metric, operations = record.split(":")
    assert re.fullmatch(r"[a-z][a-z_]*", level)
    assert metric.startswith("resilience_")
    assert re.fullmatch(r"[a-z0-9_]+", operations)


@pytest.mark.parametrize(
    "rule", RECORDING + ALERTING, ids=[r.get("alert") or r["record"] for r in RECORDING + ALERTING]
)
def test_rules_query_only_library_metrics_and_labels(rule):
    expr = rule["expr"]
    unknown = promql.metrics(expr) - promql.LIBRARY_SERIES - RECORDED
    assert not unknown, f"not a library metric nor a recording rule: {unknown}"
    for label, _, _ in promql.matchers(expr):
        # "quantile" is a label the recording rules add themselves
        assert label in promql.LIBRARY_LABELS | {"quantile"}, f"filters on {label}"
    assert promql.grouping_labels(expr) <= promql.LIBRARY_LABELS | {"le"}


def test_no_rule_names_an_le_value():
    for rule in RECORDING + ALERTING:
        assert not any(label == "le" for label, _, _ in promql.matchers(rule["expr"]))


def test_alert_thresholds_come_from_the_knobs():
    exprs = {rule["alert"]: rule["expr"] for rule in ALERTING}
    assert f"> {knobs.RETRIES_PER_CALL_THRESHOLD:g}" in exprs["ResilienceHighRetryRate"]
    assert f"> {knobs.TIMEOUT_RATIO_THRESHOLD:g}" in exprs["ResilienceExcessiveTimeouts"]
    assert f"> {knobs.EXHAUSTED_RATIO_THRESHOLD:g}" in exprs["ResilienceRetriesExhausted"]
    assert f"> {knobs.LATENCY_THRESHOLD_SECONDS:g}" in exprs["ResilienceHighLatency"]
    assert f">= {knobs.BREAKER_OPENS_THRESHOLD}" in exprs["ResilienceCircuitBreakerOpensFrequently"]
    assert (
        f"{knobs.BURN_FAST_FACTOR:g} * (1 - {knobs.SLO_OBJECTIVE:g})"
        in exprs["ResilienceErrorBudgetBurnFast"]
    )
