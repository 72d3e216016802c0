"""A 6 h panel shows a 3-minute burst of 180 errors, on a real Prometheus: six hours of scrapes
backfilled (``promtool tsdb create-blocks-from openmetrics``), then the committed panel query asked
for with the step and ``$__rate_interval`` Grafana uses at 6 h on a 1000 px panel.

With grafanalib's old defaults (maxDataPoints 100, intervalFactor 2: a 600 s step, a 315 s rate
window) the same burst, between two windows, reads as 0 everywhere.

Locally the test skips when prometheus or promtool is missing; with CI=true it fails instead.
"""

from __future__ import annotations

import math
import time

import pytest
from dashboards import queries

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS

from .servers import Prom, require, run, start_prometheus
from .test_dashboard_steps import grafana

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

S, E, ET = ATTRIBUTES.service.label, ATTRIBUTES.endpoint.label, ATTRIBUTES.error_type.label
CALLS = f"{METRICS.call_duration.prometheus}_count"
SCRAPE = 15
SIX_HOURS = 6 * 3600
BURST = 180  # errors, one per second for three minutes


def _openmetrics(start: int, burst_at: int) -> str:
    """Six hours of scrapes of two call counters: 1 success per second throughout, and the
    180 errors of the burst from ``burst_at``."""
    labels = f'{S}="llm",{E}="chat"'
    ok, failed = [], []
    for t in range(start, start + SIX_HOURS + 1, SCRAPE):
        errors = min(max(t - burst_at, 0), BURST)
        ok.append(f"{CALLS}{{{labels}}} {t - start} {t}")
        failed.append(f'{CALLS}{{{labels},{ET}="server_error"}} {errors} {t}')
    return "\n".join([f"# TYPE {CALLS} unknown", *ok, *failed, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def six_hours(tmp_path_factory):
    promtool = require("promtool")
    require("prometheus")
    workdir = tmp_path_factory.mktemp("long-range")
    # the end, and so Grafana's aligned steps, on a multiple of 600 s, in the past
    end = (int(time.time()) - 3600) // 600 * 600
    start = end - SIX_HOURS
    # the burst between two of the old 315 s windows that end every 600 s: from 50 s past one
    burst_at = end - 2 * 3600 + 50
    source = workdir / "series.om"
    source.write_text(_openmetrics(start, burst_at))
    made = run(promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
               str(workdir / "tsdb"), timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    server = start_prometheus(config, workdir)
    try:
        yield Prom(server.url), start, end
    finally:
        server.stop()


def _failed_calls_query() -> str:
    doc = queries.load("resilience-overview.json")
    panel = next(p for p in queries.panels(doc) if p["title"] == "Failed calls by error type")
    return panel["targets"][0]["expr"]


def _errors_seen(prom: Prom, expr: str, start: int, end: int, step: float, rate_interval: float):
    """What the panel shows, summed over its points (rate x step): the errors it accounts for."""
    query = queries.runnable(expr, f"{rate_interval:g}s", interval=f"{step:g}s")
    result = prom.query_range(query, start, end, f"{step:g}s")
    series = {r["metric"].get(ET, ""): [float(v) for _, v in r["values"]] for r in result}
    values = series.get("server_error", [])
    return sum(v for v in values if not math.isnan(v)) * step, max(values, default=0.0)


def test_the_6h_panel_shows_the_burst(six_hours):
    prom, start, end = six_hours
    step, rate_interval = grafana(SIX_HOURS, 1000)
    assert (step, rate_interval) == (20, 60)
    seen, peak = _errors_seen(prom, _failed_calls_query(), start, end, step, rate_interval)
    assert seen == pytest.approx(BURST, rel=0.15)
    assert peak == pytest.approx(1.0, rel=0.25)  # one error per second at the burst


def test_grafanalibs_old_step_and_window_show_the_burst_as_0(six_hours):
    prom, start, end = six_hours
    step, rate_interval = grafana(SIX_HOURS, 100, interval_factor=2)
    assert (step, rate_interval) == (600, 315)
    seen, peak = _errors_seen(prom, _failed_calls_query(), start, end, step, rate_interval)
    assert seen == 0
    assert peak == 0
