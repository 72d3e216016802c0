"""End to end on real servers, on both export paths, with the repository's own rules, alerting
through Alertmanager with the repository's own routing, into a webhook. Two replicas of a
workload (tests/bundle/workload.py) use the library: a fleet of one application.

- **pull**: each replica serves the Prometheus exporter; Debian's Prometheus scrapes both;
- **otlp**: each replica pushes OTLP/HTTP (the SDK's exporter, ``OTEL_EXPORTER_OTLP_ENDPOINT``)
  to ``vmagent`` (Debian trixie's victoria-metrics, ``-opentelemetry.usePrometheusNaming``),
  which remote-writes to the same Prometheus started with ``--web.enable-remote-write-receiver``
  (Debian 12's Prometheus 2.42 has no OTLP receiver; the compose stack's Prometheus 3 has one).
  vmagent's relabelling sets ``job``/``instance`` from the resource as Prometheus's OTLP receiver
  does (the committed ``deploy/vmagent/relabel.yml``).

Every test runs on both paths: the same metric names and labels, every dashboard query with data,
the same alerts firing and the same pages.

Test-only changes to the repository's configs, all for speed:
- the rule files are copied with every ``for:`` shortened to ``1s`` and each group evaluated
  every second; the expressions and thresholds are the committed ones;
- Prometheus scrapes and evaluates every second (the workload exports every second on the OTLP
  path), and gets the workload's metrics directly (the compose stack's collector path is checked
  by test_bundle_deploy.py);
- Alertmanager's group waits and intervals are 1s and its receivers' URLs point at the webhook
  (same paths: /page for critical, /ticket for warning, /heartbeat for the Watchdog); its
  grouping and inhibition are the committed ones.

Locally a path skips when one of its binaries is missing; with CI=true it fails instead.
Set OTEL_RESILIENCE_PREVIEW_DATA=path to also save every panel's query_range results there (for
``python -m dashboards.render_previews``, from the pull path), after OTEL_RESILIENCE_PREVIEW_SECONDS
(default 60).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts import rules
from dashboards import queries

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS

from .servers import (
    ROOT,
    Prom,
    Server,
    Webhook,
    alertmanager_test_config,
    free_port,
    http_get,
    require,
    require_vmagent,
    run,
    start_alertmanager,
    start_prometheus,
    start_vmagent,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(240)]

S, E, ET, ST = (
    ATTRIBUTES.service.label,
    ATTRIBUTES.endpoint.label,
    ATTRIBUTES.error_type.label,
    ATTRIBUTES.breaker_state.label,
)
OV = ATTRIBUTES.breaker_override.label
#: labels of either export path that no dashboard or alert relies on
EXPORT_LABELS = {"__name__", "job", "instance", "otel_scope_name", "otel_scope_version",
                 "otel_scope_schema_url"}  # fmt: skip

#: metric family -> labels its series carry (error_type only on failures, le on buckets)
EXPECTED_LABELS = {
    f"{METRICS.call_duration.prometheus}_bucket": {S, E, ET, "le"},
    f"{METRICS.call_duration.prometheus}_count": {S, E, ET},
    f"{METRICS.call_duration.prometheus}_sum": {S, E, ET},
    f"{METRICS.attempt_duration.prometheus}_bucket": {S, E, ET, "le"},
    f"{METRICS.attempt_duration.prometheus}_count": {S, E, ET},
    f"{METRICS.attempt_duration.prometheus}_sum": {S, E, ET},
    METRICS.retries.prometheus: {S, E, ET},
    f"{METRICS.retry_delay.prometheus}_bucket": {S, E, "le"},
    f"{METRICS.retry_delay.prometheus}_count": {S, E},
    f"{METRICS.retry_delay.prometheus}_sum": {S, E},
    METRICS.retries_exhausted.prometheus: {S, E, ET},
    METRICS.timeouts.prometheus: {S, E},
    METRICS.breaker_state.prometheus: {S, E, ST},
    METRICS.breaker_transitions.prometheus: {S, E, ST},
    METRICS.breaker_rejections.prometheus: {S, E},
    METRICS.breaker_override.prometheus: {S, E, OV},
    METRICS.retry_budget_rejections.prometheus: {S, E, ET},
    METRICS.fallbacks.prometheus: {S, E, ET},
    METRICS.rate_limiter_rejections.prometheus: {S, E},
    METRICS.hedges.prometheus: {S, E},  # started at 0 with each breaker, as rejections are
}
#: metrics the workload cannot produce, and why
NOT_EXERCISED = {
    METRICS.state_store_errors.prometheus: (
        "needs a failing Redis state store; the workload keeps state local"
    ),
    METRICS.chaos_injections.prometheus: (
        "needs chaos injection (CHAOS_* or the testing kit's faults); the workload injects none"
    ),
    # the workload configures no concurrency limit
    **dict.fromkeys(
        (
            METRICS.concurrency_limit.prometheus,
            METRICS.concurrency_in_flight.prometheus,
            METRICS.concurrency_rejections.prometheus,
            METRICS.concurrency_wait.prometheus,
        ),
        "needs a service with a concurrency limit; the workload configures none",
    ),
}
#: needs the library's rate limiter; the workload drives embeddings/embed only when it exists
NEEDS_RATE_LIMITER = {METRICS.rate_limiter_rejections.prometheus}

#: dependencies that misbehave but must not raise any alert: shop is healthy, billing's breaker is
#: forced open on purpose (every call rejected, its override gauge says why)
QUIET = [("shop", "checkout"), ("billing", "charge")]

#: (alert, service, endpoint, webhook path) that must reach the webhook through Alertmanager.
#: Every misbehaving dependency of the workload burns its error budget, so each gets a page;
#: Alertmanager groups by dependency, so each page lists all of that dependency's critical alerts.
DELIVERED = [
    ("ResilienceCircuitBreakerStuckOpen", "storage", "upload", "/page"),
    ("ResilienceErrorBudgetBurn", "search", "query", "/page"),
    ("ResilienceErrorBudgetBurn", "llm", "chat", "/page"),
    ("ResilienceErrorBudgetBurn", "scanner", "scan", "/page"),
]
#: (alert, service, endpoint) that must be firing in Prometheus
FIRING = [
    *((alert, service, endpoint) for alert, service, endpoint, _ in DELIVERED),
    ("ResilienceHighRetryRate", "search", "query"),
    ("ResilienceRetriesExhausted", "search", "query"),
    ("ResilienceCircuitBreakerOpensFrequently", "llm", "chat"),
    ("ResilienceExcessiveTimeouts", "scanner", "scan"),
    ("ResilienceWatchdog", "", ""),
]
#: firing warnings that Alertmanager holds back, because their dependency already pages
INHIBITED = [
    ("ResilienceHighRetryRate", "search", "query"),
    ("ResilienceCircuitBreakerOpensFrequently", "llm", "chat"),
    ("ResilienceExcessiveTimeouts", "scanner", "scan"),
]
#: ResilienceHighLatency is not among them: its 5s threshold would need calls slower than 5s;
#: its promtool test (alerts/tests/high-latency.test.yml) shows it firing.

#: workload processes, each its own scrape target: a fleet of replicas of one application
REPLICAS = 2

RATE_INTERVAL = "10s"
#: the previews show the overview for every dependency and the drill-down for this one
PREVIEW_VARIABLES = {
    "otel-resilience-overview": (".*", ".*"),
    "otel-resilience-dependency": ("llm", "chat"),
}


#: the two ways the library's metrics reach Prometheus
PATHS = ("pull", "otlp")
#: the job of each path's series: the scrape job's name; service.namespace/service.name from the
#: resource (deploy/vmagent/relabel.yml, as Prometheus's OTLP receiver does)
OTLP_NAMESPACE = "e2e"
JOBS = {"pull": "workload", "otlp": f"{OTLP_NAMESPACE}/otel-resilience-e2e"}


@dataclass
class Stack:
    path: str
    prom: Prom
    webhook: Webhook
    dependencies: list[str]
    started: float
    workdir: Path
    alertmanager_url: str = ""


def _test_rules(workdir: Path) -> Path:
    """Copies of the committed rule files with ``for:`` at 1s and 1s evaluation (see above)."""
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    for name in (rules.RECORDING_FILE, rules.ALERTING_FILE):
        doc = yaml.safe_load((ROOT / "alerts" / name).read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "1s"
        (rules_dir / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return rules_dir


def _prometheus_config(workdir: Path, workload_ports: list[int], alertmanager_port: int) -> Path:
    """The compose Prometheus's config with the test's alertmanager; on the pull path it scrapes
    the workloads, on the OTLP path (no ports) it scrapes nothing: remote write brings the data."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager_port}"]}
    ]
    config["scrape_configs"] = [
        {
            "job_name": "workload",
            "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in workload_ports]}],
        }
    ][: 1 if workload_ports else 0]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _alertmanager_config(workdir: Path, webhook_url: str) -> Path:
    return alertmanager_test_config(
        ROOT / "deploy/alertmanager/alertmanager.yml", workdir, webhook_url
    )


def _wait_for_alertmanager(prom: Prom) -> None:
    """Until Prometheus has found its Alertmanager: alerts that fire before are not sent until
    the resend delay (1m) has passed."""
    wait_until(
        lambda: prom.api("alertmanagers")["activeAlertmanagers"], 30, what="Alertmanager found"
    )


def _workload_command(path: str, port: int) -> list[str]:
    workload = [sys.executable, str(Path(__file__).with_name("workload.py")), "--duration", "300"]
    return workload + (["--otlp"] if path == "otlp" else ["--port", str(port)])


@pytest.fixture(scope="module", params=PATHS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    path: str = request.param
    promtool = require("promtool")
    require("prometheus")
    require("alertmanager")
    if path == "otlp":
        require_vmagent()
    workdir = tmp_path_factory.mktemp(f"e2e-{path}")
    rules_dir = _test_rules(workdir)
    checked = run(promtool, "check", "rules", *map(str, sorted(rules_dir.iterdir())))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    servers: list[Server] = []
    workloads: list[subprocess.Popen[str]] = []
    with Webhook() as webhook, contextlib.ExitStack() as stack_files:
        try:
            alertmanager = start_alertmanager(_alertmanager_config(workdir, webhook.url), workdir)
            servers.append(alertmanager)
            workload_ports = [free_port() for _ in range(REPLICAS)] if path == "pull" else []
            config = _prometheus_config(workdir, workload_ports, alertmanager.port)
            checked = run(promtool, "check", "config", str(config))
            assert checked.returncode == 0, checked.stdout + checked.stderr
            environ = dict(os.environ)
            if path == "otlp":  # Prometheus first: vmagent writes to it from the start
                prometheus = start_prometheus(config, workdir, "--web.enable-remote-write-receiver")
                servers.append(prometheus)
                _wait_for_alertmanager(Prom(prometheus.url))
                vmagent = start_vmagent(f"{prometheus.url}/api/v1/write", workdir)
                servers.append(vmagent)
                environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"{vmagent.url}/opentelemetry"
                environ["OTEL_RESOURCE_ATTRIBUTES"] = f"service.namespace={OTLP_NAMESPACE}"
            for index in range(REPLICAS):
                log = stack_files.enter_context((workdir / f"workload-{index}.log").open("w"))
                port = workload_ports[index] if workload_ports else 0
                workload = subprocess.Popen(
                    _workload_command(path, port),
                    stdout=subprocess.PIPE, stderr=log, text=True, env=environ,
                )  # fmt: skip
                workloads.append(workload)
            started = time.time()
            for index, workload in enumerate(workloads):
                assert workload.stdout is not None
                stack_files.enter_context(workload.stdout)
                ready = json.loads(workload.stdout.readline() or "{}")
                assert ready.get("ready"), (workdir / f"workload-{index}.log").read_text()[-2000:]
            if path == "pull":
                prometheus = start_prometheus(config, workdir)
                servers.append(prometheus)
                _wait_for_alertmanager(Prom(prometheus.url))
            yield Stack(
                path,
                Prom(prometheus.url),
                webhook,
                ready["dependencies"],
                started,
                workdir,
                alertmanager.url,
            )
        finally:
            for workload in workloads:
                workload.terminate()
                try:
                    workload.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    workload.kill()
                    workload.wait()
            for server in reversed(servers):
                server.stop()


def _labels(series: dict[str, str]) -> set[str]:
    return set(series) - EXPORT_LABELS


def test_every_library_metric_is_scraped_with_its_labels(stack):
    expected = dict(EXPECTED_LABELS)
    if "embeddings" not in stack.dependencies:  # the library has no rate limiter yet
        for metric in NEEDS_RATE_LIMITER:
            expected.pop(metric)
    families = {m for m in expected if not m.endswith(("_bucket", "_count", "_sum"))} | {
        m.rsplit("_", 1)[0] for m in expected if m.endswith(("_bucket", "_count", "_sum"))
    }
    assert families | set(NOT_EXERCISED) | (NEEDS_RATE_LIMITER - set(expected)) == {
        m.prometheus for m in METRICS if m.emitted
    }

    def instances(metric: str) -> set[str]:
        return {s.get("instance", "") for s in stack.prom.series(metric)}

    def all_present() -> bool:  # from every replica
        return all(len(instances(metric)) == REPLICAS for metric in expected)

    wait_until(all_present, 30, what="every library metric of every replica in Prometheus")
    for metric, labels in expected.items():
        series = stack.prom.series(metric)
        found = set().union(*map(_labels, series))
        assert found == labels, f"{metric}: {found} != {labels}"
        for s in series:  # error_type is the only label that may be absent (on successes)
            assert labels - {ET} <= _labels(s), f"{metric}: {s}"
            # on both paths a series says which process reported it (the breaker alerts use it;
            # on the OTLP path job/instance come from each process's resource)
            assert {"job", "instance"} <= set(s), f"{stack.path} {metric}: {s}"
            assert s["job"] == JOBS[stack.path], f"{metric}: {s}"
    states = {s[ST] for s in stack.prom.series(METRICS.breaker_state.prometheus)}
    assert states == {"closed", "half_open", "open"}


def _variable_values(prom: Prom, query: str) -> list[str]:
    selector, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
    selector = queries.runnable(selector)
    return sorted({s[label] for s in prom.series(selector) if label in s})


def test_every_dashboard_query_returns_data(stack):
    # a few seconds of scrapes first, so that every rate() has two samples in its window
    wait_until(
        lambda: stack.prom.query(
            f"count(count_over_time({METRICS.breaker_state.prometheus}[{RATE_INTERVAL}]) > 3)"
        ),
        30,
        what="a few scrapes",
    )
    for doc_path in queries.dashboard_files():
        doc = json.loads(doc_path.read_text())
        for name, query in queries.variable_queries(doc).items():
            assert _variable_values(stack.prom, query), f"{doc_path.name}: variable {name}"

        def empty_queries(doc: dict[str, Any] = doc) -> list[str]:
            return [
                f"{panel['title']} {target['refId']}"
                for panel, target in queries.queries(doc)
                # (panels over gauges the library does not emit yet show "no data": the truth)
                if not queries.awaits_second_round(target["expr"])
                and not stack.prom.query(queries.runnable(target["expr"], RATE_INTERVAL))
            ]

        try:
            wait_until(
                lambda: not empty_queries(), 30, what=f"data for every {doc_path.name} query"
            )
        except TimeoutError:
            pytest.fail(f"{doc_path.name}: no data for {empty_queries()}")
    _save_preview_data(stack)


def test_the_breaker_state_panel_shows_open_and_closed_breakers(stack):
    doc = queries.load("resilience-overview.json")
    panel = next(p for p in queries.panels(doc) if p["type"] == "state-timeline")
    result = stack.prom.query(queries.runnable(panel["targets"][0]["expr"], RATE_INTERVAL))
    states = {(r["metric"][S], r["metric"][E]): float(r["value"][1]) for r in result}
    assert states[("storage", "upload")] == 2  # open
    assert states[("shop", "checkout")] == 0  # closed


def _firing(prom: Prom) -> set[tuple[str, str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"].get(S, ""), a["labels"].get(E, ""))
        for a in prom.firing()
    }


def test_alerts_fire_and_reach_the_webhook_through_alertmanager(stack):
    try:
        wait_until(lambda: set(FIRING) <= _firing(stack.prom), 60, what="the alerts to fire")
    except TimeoutError:
        pytest.fail(f"missing: {set(FIRING) - _firing(stack.prom)}")
    # the healthy dependency and the one forced open on purpose stay quiet
    assert not {a for a in _firing(stack.prom) if a[1:] in QUIET}

    def delivered() -> set[tuple[str, str, str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get(S, ""), a["labels"].get(E, ""), path)
            for path, a in stack.webhook.alerts()
            if a["status"] == "firing"
        }

    try:
        wait_until(lambda: set(DELIVERED) <= delivered(), 60, what="the webhook notifications")
    except TimeoutError:
        pytest.fail(f"not delivered: {set(DELIVERED) - delivered()}")
    committed: dict[str, list[dict[str, Any]]] = {}
    for group in rules.alerting_groups()["groups"]:
        for rule in group["rules"]:
            committed.setdefault(rule["alert"], []).append(rule)
    for path, alert in stack.webhook.alerts():
        labels = alert["labels"]
        (rule,) = [
            r
            for r in committed[labels["alertname"]]
            if r["labels"].items() <= labels.items()  # the burn-rate row: its window labels
        ]
        assert (
            path
            == {"critical": "/page", "warning": "/ticket", "none": "/heartbeat"}[
                rule["labels"]["severity"]
            ]
        )
        assert set(alert["annotations"]) == {
            "summary",
            "description",
            "runbook_url",
            "dashboard_url",
        }
        assert alert["annotations"]["runbook_url"] == rule["annotations"]["runbook_url"]
        assert "{{" not in alert["annotations"]["description"]  # the templates rendered
        if S in labels:  # the dashboard link names the dependency
            assert f"var-service={labels[S]}" in alert["annotations"]["dashboard_url"]


def test_one_page_per_dependency_and_its_warnings_held_back(stack):
    def pages() -> dict[str, int]:
        counts: dict[str, int] = {}
        for path, body in stack.webhook.notifications():
            if path == "/page":
                service = body["groupLabels"].get(S, "")
                counts[service] = counts.get(service, 0) + 1
        return counts

    paging = {service for _, service, _, path in DELIVERED if path == "/page"}
    wait_until(lambda: paging <= set(pages()), 60, what="a page per failing dependency")
    wait_until(lambda: set(INHIBITED) <= _firing(stack.prom), 60, what="the warnings to fire")
    for path, body in stack.webhook.notifications():
        # by dependency only (the Watchdog's heartbeat route groups by alertname)
        grouping = {"alertname"} if path == "/heartbeat" else {S}
        assert body["groupLabels"].keys() <= grouping, (path, body["groupLabels"])

    def held_back() -> set[tuple[str, str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get(S, ""), a["labels"].get(E, ""))
            for a in http_get(f"{stack.alertmanager_url}/api/v2/alerts")
            if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
        }

    # (a warning may go out before its dependency's page starts; from then on it is held back)
    try:
        wait_until(lambda: set(INHIBITED) <= held_back(), 30, what="the warnings held back")
    except TimeoutError:
        pytest.fail(f"not held back: {set(INHIBITED) - held_back()}")


def test_breaker_alerts_are_per_replica_and_page_once_per_dependency(stack):
    """Both replicas' storage breakers are stuck open: one alert per process, one page group."""

    def stuck() -> set[str]:
        return {
            a["labels"]["instance"]
            for a in stack.prom.firing()
            if a["labels"]["alertname"] == "ResilienceCircuitBreakerStuckOpen"
            and a["labels"].get(S) == "storage"
        }

    wait_until(lambda: len(stuck()) == REPLICAS, 60, what="a stuck-open alert per replica")

    def opening(service: str) -> set[str]:
        return {
            a["labels"]["instance"]
            for a in stack.prom.firing()
            if a["labels"]["alertname"] == "ResilienceCircuitBreakerOpensFrequently"
            and a["labels"].get(S) == service
        }

    # llm flaps in every replica: one "opens frequently" per process
    wait_until(lambda: len(opening("llm")) == REPLICAS, 60, what="llm flapping in each replica")
    # storage is simply down (open, half-open, open...): never "opens frequently"
    assert not opening("storage")

    def storage_pages() -> list[dict[str, Any]]:
        return [
            body
            for path, body in stack.webhook.notifications()
            if path == "/page" and body["groupLabels"].get(S) == "storage"
        ]

    def paged_instances() -> set[str]:
        return {
            a["labels"].get("instance", "")
            for body in storage_pages()
            for a in body["alerts"]
            if a["labels"]["alertname"] == "ResilienceCircuitBreakerStuckOpen"
        }

    wait_until(lambda: len(paged_instances()) == REPLICAS, 60, what="both replicas paged")
    # every storage page is the one group of the dependency, never one per replica or endpoint
    assert {json.dumps(body["groupLabels"]) for body in storage_pages()} == {
        json.dumps({S: "storage"})
    }


def _save_preview_data(stack: Stack) -> None:
    """With OTEL_RESILIENCE_PREVIEW_DATA set, record every panel's query_range for the previews."""
    target_file = os.environ.get("OTEL_RESILIENCE_PREVIEW_DATA")
    if not target_file or stack.path != "pull":
        return
    seconds = float(os.environ.get("OTEL_RESILIENCE_PREVIEW_SECONDS", "60"))
    time.sleep(max(0.0, stack.started + seconds - time.time()))
    end = time.time()
    start = stack.started + 5
    data: dict[str, Any] = {
        "start": start,
        "end": end,
        "rate_interval": RATE_INTERVAL,
        "variables": PREVIEW_VARIABLES,
        "panels": {},
    }
    for doc_path in queries.dashboard_files():
        doc = json.loads(doc_path.read_text())
        service, endpoint = PREVIEW_VARIABLES[doc["uid"]]
        for panel, target in queries.queries(doc):
            key = f"{doc['uid']}/{panel['id']}/{target['refId']}"
            # $__interval = the 1s step: an increments() bar spans one step, so none is counted
            # twice (the default, a quarter of the rate window, would overlap four steps)
            expr = queries.runnable(target["expr"], RATE_INTERVAL, service, endpoint, interval="1s")
            data["panels"][key] = stack.prom.query_range(expr, start, end, "1s")
    Path(target_file).write_text(json.dumps(data))
