"""Every metric of the telemetry contract has a panel; every panel links to its runbook; the alert
annotation layer shows the bundle's alerts; drill-down links follow GRAFANA_BASE_PATH and
percent-encode the label values they carry."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml
from alerts import config as knobs
from dashboards import _common, config, queries

from . import promql
from .servers import ROOT

DOCS = {path.name: json.loads(path.read_text()) for path in queries.dashboard_files()}
PANELS = [
    pytest.param(panel, id=f"{name}:{panel['title']}")
    for name, doc in DOCS.items()
    for panel in queries.panels(doc)
]
#: the contract: the repository's telemetry docs, and the shared TELEMETRY.md (with the second
#: round of metrics) where the checkout has it next to it (``../shared/TELEMETRY.md``)
_SHARED = [
    p
    for p in (ROOT.parent / "shared" / "TELEMETRY.md", ROOT.parents[1] / "shared" / "TELEMETRY.md")
    if p.exists()
]
CONTRACTS = [ROOT / "docs" / "telemetry.md", *_SHARED[:1]]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def contract_metrics(text: str) -> set[str]:
    """The Prometheus names in every metrics table (the column headed "Prometheus name")."""
    names: set[str] = set()
    column = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else []
        if not cells:
            column = None
        elif "Prometheus name" in cells:
            column = cells.index("Prometheus name")
        elif column is not None and not set(cells[0]) <= {"-", ":"}:
            name = re.sub(r"_\{[a-z,]+\}$", "", cells[column].strip("`"))
            names.add(name)
    return names


def queried_families() -> set[str]:
    found: set[str] = set()
    for doc in DOCS.values():
        for _, target in queries.queries(doc):
            for name in promql.metrics(re.sub(r"\boffset \$__interval\b", "", target["expr"])):
                found.add(name.removesuffix(next((s for s in HISTOGRAM_SUFFIXES
                                                  if name.endswith(s)), "")))  # fmt: skip
    return found


def test_the_contract_tables_are_read():
    names = contract_metrics((ROOT / "docs" / "telemetry.md").read_text())
    assert "resilience_call_duration_seconds" in names
    assert "resilience_state_store_errors_total" in names
    assert len(names) >= 13


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_metric_of_the_contract_is_queried_by_a_panel(contract):
    missing = contract_metrics(contract.read_text()) - queried_families()
    assert not missing


def test_the_second_round_names_are_the_contracts():
    shared = [p for p in CONTRACTS if p.name == "TELEMETRY.md"]
    if not shared:
        pytest.skip("no ../shared/TELEMETRY.md next to this checkout")
    text = shared[0].read_text()
    names = contract_metrics(text)
    for series in queries.SECOND_ROUND_SERIES:
        family = series
        for suffix in HISTOGRAM_SUFFIXES:
            family = family.removesuffix(suffix)
        assert family in names, series
    for label in queries.SECOND_ROUND_LABELS:  # attribute names with dots as underscores
        assert label in text.replace(".", "_"), label


def _runbook(panel: dict) -> str:
    (link,) = [link for link in panel["links"] if link["url"].startswith(knobs.RUNBOOK_BASE_URL)]
    return link["url"].removeprefix(knobs.RUNBOOK_BASE_URL)


@pytest.mark.parametrize("panel", PANELS)
def test_every_panel_links_to_a_runbook_in_the_repository(panel):
    page = _runbook(panel)
    assert (ROOT / "docs" / "runbooks" / page).is_file(), page


def test_panels_link_the_runbook_of_the_alert_that_watches_them():
    alerts = yaml.safe_load((ROOT / "alerts" / "resilience.alerts.yml").read_text())
    runbooks = {
        rule["alert"]: rule["annotations"]["runbook_url"].removeprefix(knobs.RUNBOOK_BASE_URL)
        for group in alerts["groups"]
        for rule in group["rules"]
    }
    overview = {p["title"]: _runbook(p) for p in queries.panels(DOCS["resilience-overview.json"])}
    assert overview["Error ratio"] == runbooks["ResilienceErrorBudgetBurn"]
    assert overview["Call latency p50 / p95 / p99"] == runbooks["ResilienceHighLatency"]
    assert overview["Circuit-breaker state"] == runbooks["ResilienceCircuitBreakerStuckOpen"]
    assert overview["Timeouts per second"] == runbooks["ResilienceExcessiveTimeouts"]
    assert overview["Fallbacks per second"] == "README.md"  # no alert: the index


@pytest.mark.parametrize("name", sorted(DOCS))
def test_the_alert_annotation_layer_shows_every_bundle_alert(name):
    layers = [a for a in DOCS[name]["annotations"]["list"] if "target" in a]
    (layer,) = layers
    assert layer["enable"]
    expr = layer["target"]["expr"]
    pattern = re.search(r'alertname=~"([^"]+)"', expr).group(1)
    assert 'alertstate="firing"' in expr
    alerts = yaml.safe_load((ROOT / "alerts" / "resilience.alerts.yml").read_text())
    names = [r["alert"] for g in alerts["groups"] for r in g["rules"]]
    bundle = [a for a in names if a.startswith("Resilience")]
    assert bundle
    assert all(re.fullmatch(pattern, a) for a in bundle)
    assert layer["datasource"]["uid"] == "${datasource}"


def _data_links() -> list[dict]:
    return [
        link
        for doc in DOCS.values()
        for panel in queries.panels(doc)
        for link in panel["fieldConfig"]["defaults"].get("links", [])
    ]


def test_drill_down_links_are_under_the_base_path_and_percent_encode_the_labels():
    links = _data_links()
    assert links
    for link in links:
        url = link["url"]
        assert url.startswith(f"{config.GRAFANA_BASE_PATH}/d/{_common.DEPENDENCY_UID}/")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
        assert query["var-service"] == ["${__field.labels.resilience_service:percentencode}"]
        assert query["var-endpoint"] == ["${__field.labels.resilience_endpoint:percentencode}"]
        assert "${datasource:queryparam}" in url
        assert "${__url_time_range}" in url


def test_the_base_path_knob_moves_every_drill_down_link(monkeypatch):
    monkeypatch.setattr(config, "GRAFANA_BASE_PATH", "/grafana")
    (link,) = _common.drill_down_link()
    assert link["url"].startswith("/grafana/d/otel-resilience-dependency/resilience-dependency?")
    monkeypatch.setattr(config, "GRAFANA_BASE_PATH", "grafana/")
    with pytest.raises(ValueError, match="GRAFANA_BASE_PATH"):
        _common.drill_down_link()


def test_the_percent_encoding_round_trips_an_awkward_endpoint():
    # what Grafana's percentencode does to a label value, and what the variable then receives
    value = "v1/chat & more#1"
    encoded = urllib.parse.quote(value, safe="")
    url = _common.drill_down_url(service="llm", endpoint=encoded)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["var-endpoint"] == [value]


def test_contract_paths_exist():
    assert all(Path(p).is_file() for p in CONTRACTS)


def test_the_panels_awaiting_second_round_gauges_are_named():
    awaiting = {
        (doc["uid"], panel["title"])
        for doc in DOCS.values()
        for panel, target in queries.queries(doc)
        if queries.awaits_second_round(target["expr"])
    }
    assert awaiting == {
        ("otel-resilience-overview", "Concurrency: in flight vs limit"),
        ("otel-resilience-overview", "Concurrency limit wait p95"),
        ("otel-resilience-dependency", "Concurrency: in flight vs limit"),
    }
    assert not queries.awaits_second_round(f'rate({queries.PROM_HEDGES}{{a="b"}}[1m])')


#: bold phrases of the runbooks that are not panel titles
RUNBOOK_TERMS = {
    "Meaning",
    "Impact",
    "Diagnosis",
    "Mitigation",
    "Silencing",
    "Resilience dependency",
    "stops",
}


@pytest.mark.parametrize(
    "page", sorted((ROOT / "docs" / "runbooks").glob("*.md")), ids=lambda p: p.name
)
def test_the_panels_a_runbook_names_exist_on_the_dependency_dashboard(page):
    """An alert's dashboard_url opens the drill-down: the runbook's bold panel names are on it."""
    titles = {panel["title"] for panel in queries.panels(DOCS["resilience-dependency.json"])}
    named = set(re.findall(r"\*\*([^*]+)\*\*", page.read_text())) - RUNBOOK_TERMS
    assert named <= titles, named - titles
