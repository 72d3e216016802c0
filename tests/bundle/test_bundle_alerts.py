"""The alerting and recording rules: promtool-clean, unit-tested, documented, library names only;
and the Alertmanager routing: one incident, one page (replayed into a real Alertmanager)."""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts import config as knobs
from alerts import rules

from otel_resilience.telemetry_contract import ATTRIBUTES

from . import promql
from .servers import (
    ROOT,
    Webhook,
    alertmanager_test_config,
    post_alerts,
    require,
    run,
    start_alertmanager,
    wait_until,
)

ALERTS_DIR = ROOT / "alerts"
RULE_FILES = [ALERTS_DIR / rules.RECORDING_FILE, ALERTS_DIR / rules.ALERTING_FILE]
TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
ALERTMANAGER_CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"
S, E = ATTRIBUTES.service.label, ATTRIBUTES.endpoint.label


def _rules(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


ALERTING = _rules(ALERTS_DIR / rules.ALERTING_FILE)
RECORDING = _rules(ALERTS_DIR / rules.RECORDING_FILE)
ALERT_NAMES = sorted({rule["alert"] for rule in ALERTING})
RECORDED = {rule["record"] for rule in RECORDING}
RULE_IDS = [
    "-".join([r["alert"], *(v for k, v in r["labels"].items() if k != "severity")])
    for r in ALERTING
]

#: the alerts about the pipeline rather than a dependency, and what they may select on
PIPELINE_SERIES = {"up"}
PIPELINE_LABELS = {"job", "instance", "__name__"}
#: an alert that fires always, by design: it has no "not firing" case
ALWAYS_FIRING = {"ResilienceWatchdog"}
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## Silencing")


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


@pytest.mark.parametrize("rule", ALERTING, ids=RULE_IDS)
def test_every_alert_rule_has_a_promtool_test_showing_it_firing_and_not_firing(rule):
    alert = rule["alert"]
    cases = _alert_cases().get(alert, [])
    # the rule's own labels tell the rows of one alert name apart (the burn-rate table)
    own = dict(rule["labels"])
    firing = [
        expected
        for case in cases
        for expected in case["exp_alerts"]
        if own.items() <= expected["exp_labels"].items()
    ]
    if alert not in ALWAYS_FIRING:
        assert any(not case["exp_alerts"] for case in cases), f"{alert}: no 'not firing' case"
    assert firing, f"{alert} {own}: no 'firing' case"
    (generator,) = [
        a for a in rules.ALERTS if a.name == alert and a.to_rule()["labels"] == rule["labels"]
    ]
    for expected in firing:
        # the firing case pins every label the result keeps (the dependency, the process...)
        assert set(generator.keeps) <= set(expected["exp_labels"]), expected["exp_labels"]
        # and every annotation of the rule
        assert set(expected["exp_annotations"]) == set(rule["annotations"])
        assert expected["exp_annotations"]["runbook_url"] == rule["annotations"]["runbook_url"]
        assert expected["exp_annotations"]["dashboard_url"].startswith(knobs.GRAFANA_BASE_URL)


def test_every_promtool_test_file_uses_the_committed_rule_files():
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        loaded = {(path.parent / f).resolve() for f in doc["rule_files"]}
        assert loaded == {f.resolve() for f in RULE_FILES}, path.name


@pytest.mark.parametrize("rule", ALERTING, ids=RULE_IDS)
def test_every_alert_has_severity_summary_description_and_an_actionable_runbook(rule):
    assert rule["labels"]["severity"] in {"critical", "warning", "none"}
    assert (rule["labels"]["severity"] == "none") == (rule["alert"] in ALWAYS_FIRING)
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(knobs.RUNBOOK_BASE_URL)
    page = RUNBOOKS / url.removeprefix(knobs.RUNBOOK_BASE_URL)
    assert page.is_file(), f"{rule['alert']}: runbook {page} is missing"
    text = page.read_text()
    positions = [text.find(section) for section in RUNBOOK_SECTIONS]
    assert -1 not in positions, f"{page.name} lacks {RUNBOOK_SECTIONS[positions.index(-1)]!r}"
    assert positions == sorted(positions), f"{page.name}: sections out of order"
    assert rule["alert"] in text, f"{page.name} does not name {rule['alert']}"
    diagnosis = text[positions[2] : positions[3]]
    assert "```promql" in diagnosis, f"{page.name}: no copy-paste query in Diagnosis"
    silencing = text[positions[4] :]
    assert "amtool silence" in silencing or "Never silence" in silencing, page.name


def test_runbooks_use_the_librarys_own_tools():
    pages = [RUNBOOKS / f"{a.runbook}.md" for a in rules.ALERTS if a.keeps and S in a.keeps]
    for page in set(pages):
        text = page.read_text()
        assert "otel-resilience status" in text or "/health" in text, page.name
    for name in ("circuit-breaker-stuck-open", "error-budget-burn"):
        assert "CB_MANUAL_STATE" in (RUNBOOKS / f"{name}.md").read_text()


def test_every_runbook_is_listed_in_the_runbook_index():
    index = (RUNBOOKS / "README.md").read_text()
    for alert in ALERT_NAMES:
        assert f"`{alert}`" in index
    pages = {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md"}
    assert pages == {f"{a.runbook}.md" for a in rules.ALERTS}, "a runbook without an alert"


def test_dashboard_urls_fill_in_the_dependency_urlencoded():
    by_name = {a.name: a for a in rules.ALERTS}
    url = by_name["ResilienceHighLatency"].to_rule()["annotations"]["dashboard_url"]
    assert url == (
        f"{knobs.GRAFANA_BASE_URL}/d/{knobs.DEPENDENCY_DASHBOARD_UID}/"
        "?var-service={{ $labels.resilience_service | urlquery }}"
        "&var-endpoint={{ $labels.resilience_endpoint | urlquery }}"
    )
    stopped = by_name["ResilienceDependencyStoppedReporting"].to_rule()["annotations"]
    assert "var-endpoint" not in stopped["dashboard_url"]
    assert "var-service" in stopped["dashboard_url"]
    target = by_name["ResilienceTargetDown"].to_rule()["annotations"]["dashboard_url"]
    assert target == f"{knobs.GRAFANA_BASE_URL}/d/{knobs.OVERVIEW_DASHBOARD_UID}/"


def test_a_dashboard_url_with_odd_characters_is_encoded(promtool, tmp_path):
    """An endpoint such as ``a b&c/d`` must not break the link: promtool renders it encoded."""
    test = {
        "rule_files": [str(f) for f in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="x", instance="a b&c/d"}', "values": "0x10"},
                ],
                "alert_rule_test": [],
                "promql_expr_test": [],
            }
        ],
    }
    # a rule of our own with the generator's dashboard_url, over a label with odd characters
    rule_file = tmp_path / "odd.yml"
    rule = {
        "alert": "Odd",
        "expr": 'label_replace(up, "resilience_service", "$1", "instance", "(.*)")',
        "labels": {"severity": "warning"},
        "annotations": {"dashboard_url": rules.dashboard_url((S,))},
    }
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "odd", "rules": [rule]}]}))
    test["rule_files"] = [str(rule_file)]
    test["tests"][0]["alert_rule_test"] = [
        {
            "eval_time": "1m",
            "alertname": "Odd",
            "exp_alerts": [
                {
                    "exp_labels": {
                        "severity": "warning",
                        "job": "x",
                        "instance": "a b&c/d",
                        "resilience_service": "a b&c/d",
                    },
                    "exp_annotations": {
                        "dashboard_url": f"{rules.DASHBOARD}?var-service=a+b%26c%2Fd"
                    },
                }
            ],
        }
    ]
    path = tmp_path / "odd.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("record", sorted(RECORDED))
def test_recording_rules_are_named_level_metric_operations(record):
    level, metric, operations = record.split(":")
    assert re.fullmatch(r"[a-z][a-z_]*", level)
    assert metric.startswith("resilience_")
    assert re.fullmatch(r"[a-z0-9_]+", operations)


def _is_pipeline(rule: dict[str, Any]) -> bool:
    return rule.get("alert") in {
        "ResilienceTargetDown",
        "ResilienceCollectorRefusingData",
        "ResilienceCollectorExportFailing",
        "ResilienceWatchdog",
    }


@pytest.mark.parametrize(
    "rule", RECORDING + ALERTING, ids=[r["record"] for r in RECORDING] + RULE_IDS
)
def test_rules_query_only_library_metrics_and_labels(rule):
    expr = rule["expr"]
    allowed_series = promql.LIBRARY_SERIES | RECORDED
    allowed_labels = promql.LIBRARY_LABELS | {"quantile"}
    if _is_pipeline(rule):  # up and the collector's own counters, by job and instance
        allowed_series |= PIPELINE_SERIES
        allowed_labels |= PIPELINE_LABELS
    unknown = promql.metrics(expr) - allowed_series
    assert not unknown, f"not a library metric nor a recording rule: {unknown}"
    for label, _, value in promql.matchers(expr):
        assert label in allowed_labels, f"filters on {label}"
        if label == "__name__":
            assert value.startswith("otelcol_"), value
    grouping = promql.grouping_labels(expr) - set(knobs.CALLER_LABELS)
    if rule.get("alert") in {
        "ResilienceCircuitBreakerOpensFrequently",
        "ResilienceCircuitBreakerStuckOpen",
    }:
        grouping -= set(knobs.PROCESS_LABELS)  # per process, see test_breaker_alerts_*
    if _is_pipeline(rule):
        grouping -= {"job", "instance", "receiver", "exporter", "signal"}
    assert grouping <= promql.LIBRARY_LABELS | {"le"}


def test_no_rule_names_an_le_value():
    for rule in RECORDING + ALERTING:
        assert not any(label == "le" for label, _, _ in promql.matchers(rule["expr"]))


def test_breaker_alerts_are_evaluated_per_process():
    for rule in ALERTING:
        if "CircuitBreaker" not in rule["alert"]:
            continue
        for labels in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
            kept = {label.strip() for label in labels.split(",")}
            assert set(knobs.PROCESS_LABELS) <= kept, f"{rule['alert']}: {labels}"


def test_alert_thresholds_come_from_the_knobs():
    exprs: dict[str, list[str]] = {}
    for rule in ALERTING:
        exprs.setdefault(rule["alert"], []).append(rule["expr"])
    one = {name: e[0] for name, e in exprs.items()}
    assert f"> {knobs.RETRIES_PER_CALL_THRESHOLD:g}" in one["ResilienceHighRetryRate"]
    assert f"> {knobs.TIMEOUT_RATIO_THRESHOLD:g}" in one["ResilienceExcessiveTimeouts"]
    assert f"> {knobs.EXHAUSTED_RATIO_THRESHOLD:g}" in one["ResilienceRetriesExhausted"]
    assert f"> {knobs.LATENCY_THRESHOLD_SECONDS:g}" in one["ResilienceHighLatency"]
    assert f">= {knobs.BREAKER_OPENS_THRESHOLD}" in one["ResilienceCircuitBreakerOpensFrequently"]
    for row, expr in zip(knobs.BURN_RATE_WINDOWS, exprs["ResilienceErrorBudgetBurn"], strict=True):
        assert f"{row.factor:g} * (1 - {knobs.SLO_OBJECTIVE:g})" in expr
        assert rules.error_ratio(row.long) in expr
        assert rules.error_ratio(row.short) in expr


def test_the_burn_rate_alerts_are_the_table_of_windows():
    burn = [r for r in ALERTING if r["alert"] == "ResilienceErrorBudgetBurn"]
    table = [
        (r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"], r["for"])
        for r in burn
    ]
    assert table == [
        ("critical", "1h", "5m", "2m"),
        ("critical", "6h", "30m", "15m"),
        ("warning", "1d", "2h", "1h"),
        ("warning", "3d", "6h", "3h"),
    ]
    assert [row.factor for row in knobs.BURN_RATE_WINDOWS] == [14.4, 6, 3, 1]
    windows = {w for row in knobs.BURN_RATE_WINDOWS for w in (row.long, row.short)}
    assert set(knobs.RECORDED_WINDOWS) == windows
    assert knobs.ERROR_RATIO_WINDOWS == ("5m", "30m", "1h", "6h")  # the paging rows'
    assert set(knobs.ERROR_RATIO_WINDOWS) <= set(knobs.RECORDED_WINDOWS)
    for w in windows:
        assert {rules.call_rate(w), rules.error_ratio(w)} <= RECORDED


def test_budget_burning_errors_exclude_the_callers_own_and_local_load_control():
    assert set(knobs.SLO_EXCLUDED_ERROR_TYPES) == {
        "bad_request",
        "not_found",
        "throttled",
        "concurrency_limited",
    }
    budget = next(r for r in RECORDING if r["record"] == rules.budget_error_rate("1h"))
    (_, _, value), *_ = [m for m in promql.matchers(budget["expr"]) if m[1] == "!~"]
    assert set(value.split("|")) == set(knobs.SLO_EXCLUDED_ERROR_TYPES)
    assert "circuit_open" not in value  # the caller got nothing: it burns


def test_every_ratio_alert_has_a_traffic_floor():
    floors = (f">= {knobs.MIN_CALLS_PER_SECOND:g}",)
    for rule in ALERTING:
        if rule["alert"] in {
            "ResilienceErrorBudgetBurn",
            "ResilienceHighLatency",
            "ResilienceHighRetryRate",
            "ResilienceExcessiveTimeouts",
            "ResilienceRetriesExhausted",
        }:
            assert any(f in rule["expr"] for f in floors), rule["alert"]


def test_the_budget_remaining_rule_covers_the_slo_period():
    rule = next(r for r in RECORDING if r["record"] == rules.BUDGET_REMAINING)
    assert promql.ranges(rule["expr"]) == {knobs.SLO_PERIOD}
    assert f"(1 - {knobs.SLO_OBJECTIVE:g})" in rule["expr"]


@pytest.fixture
def caller_labels(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The rules module rebuilt with ``CALLER_LABELS = ("job",)``; restored afterwards."""
    monkeypatch.setattr(knobs, "CALLER_LABELS", ("job",))
    try:
        yield importlib.reload(rules)
    finally:
        monkeypatch.undo()
        importlib.reload(rules)


def test_caller_labels_are_kept_by_every_aggregation(caller_labels, promtool, tmp_path):
    rendered = caller_labels.render()
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    result = run(promtool, "check", "rules", *(str(tmp_path / name) for name in rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    docs = [yaml.safe_load(text) for text in rendered.values()]
    all_rules = [r for doc in docs for g in doc["groups"] for r in g["rules"]]
    pipeline = {"ResilienceTargetDown", "ResilienceCollectorRefusingData",
                "ResilienceCollectorExportFailing", "ResilienceWatchdog"}  # fmt: skip
    checked = 0
    for rule in all_rules:
        if rule.get("alert") in pipeline:
            continue
        for labels in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
            assert "job" in {label.strip() for label in labels.split(",")}, rule["expr"]
            checked += 1
    assert checked > 40
    assert caller_labels.LEVEL == "job_resilience_service_endpoint"
    # a caller's summary names the caller
    burn = next(r for r in all_rules if r.get("alert") == "ResilienceErrorBudgetBurn")
    assert "(caller {{ $labels.job }})" in burn["annotations"]["summary"]


def test_the_committed_rules_have_no_caller_labels_by_default():
    assert knobs.CALLER_LABELS == ()
    assert rules.LEVEL == "resilience_service_endpoint"


# --- Alertmanager: one incident, one page --------------------------------------------------------


def _alert(name: str, labels: dict[str, str], row: str | None = None) -> dict[str, Any]:
    """An alert as Prometheus sends it: the rule's labels (severity, window) plus ``labels``."""
    candidates = [
        a.to_rule()
        for a in rules.ALERTS
        if a.name == name and (row is None or dict(a.labels).get("long_window") == row)
    ]
    (rule,) = candidates
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, **rule["labels"], **labels},
        "annotations": {"summary": rule["annotations"]["summary"]},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def outage(service: str, endpoints: list[str], replicas: list[str]) -> list[dict[str, Any]]:
    """Every alert a total outage of ``service`` fires, on every endpoint and replica."""
    alerts = []
    for endpoint in endpoints:
        pair = {S: service, E: endpoint}
        alerts += [_alert("ResilienceErrorBudgetBurn", pair, row) for row in ("1h", "6h", "1d")]
        alerts += [
            _alert(name, pair)
            for name in (
                "ResilienceRetriesExhausted",
                "ResilienceHighRetryRate",
                "ResilienceExcessiveTimeouts",
            )
        ]
        alerts += [
            _alert("ResilienceCircuitBreakerStuckOpen", {**pair, "job": "app", "instance": r})
            for r in replicas
        ]
    return alerts


def _count(webhook: Webhook) -> dict[str, int]:
    counts = {"/page": 0, "/ticket": 0, "/heartbeat": 0}
    for path, _ in webhook.notifications():
        counts[path] += 1
    return counts


def test_a_multi_endpoint_outage_of_one_dependency_is_one_page(tmp_path):
    require("alertmanager")
    with Webhook() as webhook:
        # the repository's routing, grouping and inhibition; only the timers are test-sized:
        # a 1s group_wait, and group_interval/repeat_interval far beyond the test
        config = alertmanager_test_config(
            ALERTMANAGER_CONFIG, tmp_path, webhook.url, group_interval="1h", repeat_interval="1h"
        )
        alertmanager = start_alertmanager(config, tmp_path)
        try:
            endpoints = ["query", "suggest", "index"]
            fired = outage("search", endpoints, ["app-1:9464", "app-2:9464"])
            # an unrelated warning of another dependency: its own ticket, not inhibited
            fired.append(_alert("ResilienceHighLatency", {S: "gcs", E: "upload"}))
            post_alerts(alertmanager.url, fired)
            wait_until(
                lambda: _count(webhook)["/page"] and _count(webhook)["/ticket"],
                20,
                what="the page and the ticket",
            )
            # a later alert of the same dependency joins the incident: no second page
            post_alerts(
                alertmanager.url,
                [_alert("ResilienceErrorBudgetBurn", {S: "search", E: "reindex"}, "1h")],
            )
            time.sleep(4)  # four group_waits: any extra notification would have been sent
            counts = _count(webhook)
            notifications = webhook.notifications()
        finally:
            alertmanager.stop()

    assert counts == {"/page": 1, "/ticket": 1, "/heartbeat": 0}, counts
    (page,) = [body for path, body in notifications if path == "/page"]
    assert page["groupLabels"] == {S: "search"}
    paged = {(a["labels"]["alertname"], a["labels"].get(E), a["labels"].get("instance"))
             for a in page["alerts"]}  # fmt: skip
    # every critical alert of the outage is in the one page: 3 endpoints x (2 burn rows +
    # 2 replicas stuck open)
    assert len(page["alerts"]) == 3 * (2 + 2)
    assert {e for _, e, _ in paged} == set(endpoints)
    (ticket,) = [body for path, body in notifications if path == "/ticket"]
    # search's warnings are held back by its page; gcs's is not
    assert ticket["groupLabels"] == {S: "gcs"}
    assert [a["labels"]["alertname"] for a in ticket["alerts"]] == ["ResilienceHighLatency"]


def test_the_watchdog_goes_to_the_heartbeat_receiver_only(tmp_path):
    require("alertmanager")
    with Webhook() as webhook:
        config = alertmanager_test_config(ALERTMANAGER_CONFIG, tmp_path, webhook.url)
        alertmanager = start_alertmanager(config, tmp_path)
        try:
            post_alerts(alertmanager.url, [_alert("ResilienceWatchdog", {})])
            wait_until(lambda: _count(webhook)["/heartbeat"], 20, what="the heartbeat")
            counts = _count(webhook)
        finally:
            alertmanager.stop()
    assert counts["/page"] == counts["/ticket"] == 0


def test_alertmanager_groups_and_inhibits_by_dependency_and_the_caller_labels():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    dependency = [*knobs.CALLER_LABELS, S]
    assert config["route"]["group_by"] == dependency, "edit alertmanager.yml with CALLER_LABELS"
    for route in config["route"]["routes"]:
        assert route.get("group_by", dependency) in (dependency, ["alertname"])
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"][0] == 'severity="critical"'
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert inhibit["equal"] == dependency


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_evaluates_the_recording_rules_before_the_alerts(test_file):
    """Without group_eval_order promtool runs the groups in random order, and an alert whose
    recorded input changes every evaluation passes or fails by chance (it did: 7.692% or 7.874%)."""
    doc = yaml.safe_load(test_file.read_text())
    groups = [g["name"] for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]]
    recording = [name for name in groups if name.endswith(".rules")]
    assert doc.get("group_eval_order") == recording + [g for g in groups if g not in recording]
