"""Building blocks shared by the dashboards: selectors, PromQL helpers and panel factories.

Every query follows the telemetry contract: it selects on the library's labels only (never ``job``,
``instance`` or ``otel_scope_*``), aggregates with ``sum by``/``max by`` so the extra labels of
either export path fall away, never names an ``le`` value, and uses ``$__rate_interval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alerts import config as knobs
from grafanalib.core import (
    Dashboard,
    DashboardLink,
    GridPos,
    Heatmap,
    RowPanel,
    Stat,
    StateTimeline,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS

from . import config
from . import queries as q

S = ATTRIBUTES.service.label
E = ATTRIBUTES.endpoint.label
ET = ATTRIBUTES.error_type.label
ST = ATTRIBUTES.breaker_state.label
RETRIES = METRICS.retries.prometheus
BREAKER_STATE = METRICS.breaker_state.prometheus
TRANSITIONS = METRICS.breaker_transitions.prometheus
#: a dependency (service and endpoint), and who calls it (``alerts.config.CALLER_LABELS``)
CALLER = tuple(knobs.CALLER_LABELS)
BY = ", ".join([S, E, *CALLER])
RATE = "$__rate_interval"
#: the step of the query (intervalFactor 1, so ``$__interval`` is the step)
STEP = "$__interval"
WHO = " ".join(f"{{{{{label}}}}}" for label in (S, E, *CALLER))

CALLS = f"{METRICS.call_duration.prometheus}_count"
CALL_BUCKETS = f"{METRICS.call_duration.prometheus}_bucket"
ATTEMPTS = f"{METRICS.attempt_duration.prometheus}_count"
ATTEMPT_BUCKETS = f"{METRICS.attempt_duration.prometheus}_bucket"
RETRY_DELAY_BUCKETS = f"{METRICS.retry_delay.prometheus}_bucket"
FAILED = f'{ET}!=""'
#: calls that failed with an error that burns the error budget (the alerts' definition)
BUDGET_FAILED = (FAILED, f'{ET}!~"{"|".join(knobs.SLO_EXCLUDED_ERROR_TYPES)}"')
#: error types of calls the library refused itself: they made no attempt and never reached the
#: dependency (open breaker, own rate limiter, full concurrency limit)
#: (the alerts' ``NOT_REACHING_ERROR_TYPES``: one list, so panels and alerts agree)
REJECTED_TYPES = tuple(knobs.NOT_REACHING_ERROR_TYPES)
#: calls that reached the dependency (a success has no error_type, which this matches)
REACHED = f'{ET}!~"{"|".join(REJECTED_TYPES)}"'

ERROR_TYPE = f"{{{{{ET}}}}}"
#: error ratios at which the slow and the fast error-budget burn alerts fire
SLOW_BURN = knobs.BURN_SLOW_FACTOR * (1 - knobs.SLO_OBJECTIVE)
FAST_BURN = knobs.BURN_FAST_FACTOR * (1 - knobs.SLO_OBJECTIVE)
#: the one burn-rate alert (a rule per row of ``alerts.config.BURN_RATE_WINDOWS``)
BURN_ALERT = "ResilienceErrorBudgetBurn"
#: the rows that page (their windows are ``alerts.config.ERROR_RATIO_WINDOWS``)
PAGING_ROWS = tuple(row for row in knobs.BURN_RATE_WINDOWS if row.severity == "critical")


def burn_rows(rows: Sequence[knobs.BurnRateWindow] = knobs.BURN_RATE_WINDOWS) -> str:
    """The burn-rate table in words, for panel descriptions: which alert fires over which
    windows above which factor, with which severity (from the knobs, so it cannot go stale)."""
    parts = [
        f"{row.long} and {row.short} both above {row.factor:g}x ({row.severity})" for row in rows
    ]
    return (
        f"{BURN_ALERT} fires (one rule per row, labels long_window and short_window) when "
        + "; or ".join(parts)
        + "."
    )


DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
OVERVIEW_UID = "otel-resilience-overview"
DEPENDENCY_UID = "otel-resilience-dependency"
#: the runbooks index, for panels no alert watches
RUNBOOK_INDEX = "README"

#: Circuit-breaker state as one number per breaker, for state timelines and stats.
STATE_CODES = {"closed": 0, "half_open": 1, "open": 2}
STATE_COLORS = {"closed": "green", "half_open": "yellow", "open": "red"}
#: Operator overrides of a breaker (the override gauge), as one number per breaker.
OVERRIDE_CODES = {"none": 0, "metrics_only": 1, "disabled": 2, "forced_open": 3}
OVERRIDE_COLORS = {"none": "green", "metrics_only": "blue", "disabled": "orange",
                   "forced_open": "red"}  # fmt: skip


def _mappings(codes: dict[str, int], colors: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "type": "value",
            "options": {
                str(code): {"text": state, "color": colors[state], "index": code}
                for state, code in codes.items()
            },
        }
    ]


STATE_MAPPINGS = _mappings(STATE_CODES, STATE_COLORS)
OVERRIDE_MAPPINGS = _mappings(OVERRIDE_CODES, OVERRIDE_COLORS)


def sel(*extra: str) -> str:
    """The label selector of every query: the dashboard's service and endpoint, plus ``extra``."""
    return "{" + ", ".join([f'{S}=~"$service"', f'{E}=~"$endpoint"', *extra]) + "}"


def is_(label: str, value: str) -> str:
    """The matcher ``label="value"``."""
    return f'{label}="{value}"'


def rate(metric: str, *extra: str, window: str = RATE) -> str:
    return f"rate({metric}{sel(*extra)}[{window}])"


def _grouping(by: str | None) -> str:
    return f" by ({by})" if by else ""


def sum_rate(metric: str, *extra: str, by: str | None = BY, window: str = RATE) -> str:
    return f"sum{_grouping(by)} ({rate(metric, *extra, window=window)})"


def calls_zero(by: str | None = BY, window: str = RATE) -> str:
    """0 for every dependency that made calls: what a counter nobody incremented stands for."""
    return f"{sum_rate(CALLS, by=by, window=window)} * 0"


def or_zero(expr: str, by: str | None = BY, window: str = RATE) -> str:
    """``expr``, or 0 where it has no series but the dependency made calls ("no data" only where
    there were no calls). Grouped by something other than the dependency (error_type, say), the
    0 comes as one series, only when ``expr`` has none at all (``or on()``)."""
    if by is None or set(by.split(", ")) <= set(BY.split(", ")):
        return f"(\n  {expr}\n  or\n  {calls_zero(by, window)}\n)"
    return f"(\n  {expr}\n  or on ()\n  {calls_zero(None, window)}\n)"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` where the denominator is positive (no NaN for 0/0)."""
    return f"{numerator}\n/\n({denominator} > 0)"


def error_ratio(by: str | None = BY, window: str = RATE, failed: Sequence[str] = (FAILED,)) -> str:
    """Failed calls / all calls; 0 (not "no data") for an endpoint without failures. ``failed``:
    the matchers of a failure (``BUDGET_FAILED``: only the errors that burn the budget)."""
    failures = sum_rate(CALLS, *failed, by=by, window=window)
    return ratio(or_zero(failures, by, window), sum_rate(CALLS, by=by, window=window))


def attempts_per_call(by: str | None = BY) -> str:
    """1 + retries per call that reached the dependency: never below 1, whatever the rates'
    extrapolation does, and calls the library refused (no attempt at all) do not dilute it."""
    retries = or_zero(sum_rate(RETRIES, by=by), by)
    return f"1 + {ratio(retries, sum_rate(CALLS, REACHED, by=by))}"


def quantile(q: float, buckets: str, *extra: str, by: str | None = BY) -> str:
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q:g}, sum by ({grouping}) ({rate(buckets, *extra)}))"


def budget_left(by: str | None = None) -> str:
    """The share of the ``SLO_PERIOD`` error budget left (1 untouched, 0 spent, below 0
    overspent), over the calls of the whole period: the budget-remaining rule's formula, over
    the raw counters (1, not "no data", while nothing failed)."""
    period = knobs.SLO_PERIOD
    failed = f"sum{_grouping(by)} (increase({CALLS}{sel(*BUDGET_FAILED)}[{period}]))"
    calls = f"sum{_grouping(by)} (increase({CALLS}{sel()}[{period}]))"
    spent = ratio(f"(\n  {failed}\n  or\n  {calls} * 0\n)", calls)
    return f"1 - (\n{spent}\n) / {1 - knobs.SLO_OBJECTIVE:g}"


def call_quantile(q: float, by: str | None = BY) -> str:
    """A call-duration quantile over the calls that reached the dependency: an open breaker's
    instant rejections must not make latency look better during an outage."""
    return quantile(q, CALL_BUCKETS, REACHED, by=by)


def every_sample(expr: str, window: str) -> str:
    """``expr`` (over a fixed ``window``) so that no sample falls between two steps: at a step
    longer than the window, the worst of the windows that tile the step (a subquery at the
    window's resolution); at a shorter step, ``expr`` itself (its window covers the step)."""
    return f"max_over_time(\n(\n{expr}\n)[{STEP}:{window}]\n)\nor\n(\n{expr}\n)"


def breaker_state(by: str = BY) -> str:
    """0 closed, 1 half-open, 2 open: the worst state over the processes sharing a breaker name
    and over the whole step (``max_over_time``), and open as well when the breaker opened within
    the step, even if every scrape saw it closed."""
    metric = BREAKER_STATE

    def worst(state: str) -> str:
        return f"max by ({by}) (max_over_time({metric}{sel(is_(ST, state))}[{RATE}]))"

    opened = f"sum by ({by}) (increase({TRANSITIONS}{sel(is_(ST, 'open'))}[{RATE}]))"
    return (
        f"{STATE_CODES['open']} * ({worst('open')} > 0)\n"
        f"or\n({opened} > 0) * 0 + {STATE_CODES['open']}\n"
        f"or\n{worst('half_open')} > 0\n"
        f"or\nmax by ({by}) (max_over_time({metric}{sel()}[{RATE}])) * 0"
    )


def override_state(by: str = BY) -> str:
    """The operator override of each breaker as a number (``OVERRIDE_CODES``), the most
    drastic over the processes and over the step."""
    metric = q.PROM_BREAKER_OVERRIDE
    label = q.PROM_BREAKER_OVERRIDE_LABEL
    parts = [
        f"{code} * (max by ({by}) (max_over_time({metric}{sel(is_(label, value))}[{RATE}])) > 0)"
        for value, code in sorted(OVERRIDE_CODES.items(), key=lambda item: -item[1])
        if code
    ]
    parts.append(f"max by ({by}) (max_over_time({metric}{sel()}[{RATE}])) * 0")
    return "\nor\n".join(parts)


def increments(metric: str, *extra: str, by: str) -> str:
    """How much a counter grew within each step, each increment counted once: the counter minus
    itself one step earlier (consecutive steps tile the time range, unlike overlapping rate
    windows), or its whole value for a series that is new or was reset within the step."""
    series = f"{metric}{sel(*extra)}"
    return f"sum by ({by}) (\n  ({series} - {series} offset {STEP}) >= 0\n  or\n  {series} + 0\n)"


def target(
    expr: str, legend: str, ref: str, fmt: str = "time_series", *, instant: bool = False
) -> Target:
    return Target(
        expr=expr, legendFormat=legend, refId=ref, format=fmt, datasource=DATASOURCE,
        instant=instant,
    )  # fmt: skip


def targets(*pairs: tuple[str, str]) -> list[Target]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def steps(*levels: tuple[str, float], base: str = "green") -> list[dict[str, Any]]:
    """Threshold steps: ``base`` below the first level, then each (color, value) in order. The
    base step's ``value`` is null: the schema's way to say "from -Infinity"."""
    return [{"color": base, "value": None}] + [
        {"color": color, "value": value} for color, value in levels
    ]


def _link(title: str, url: str, tooltip: str = "", *, new_tab: bool = False) -> dict[str, Any]:
    """A panel link in the full ``DashboardLink`` shape the schema asks for."""
    return {
        "title": title,
        "type": "link",
        "url": url,
        "tooltip": tooltip,
        "icon": "doc",
        "tags": [],
        "asDropdown": False,
        "targetBlank": new_tab,
        "includeVars": False,
        "keepTime": False,
    }


def runbook_url(runbook: str) -> str:
    return f"{knobs.RUNBOOK_BASE_URL}{runbook}.md"


def runbook_links(runbook: str) -> list[dict[str, Any]]:
    """The panel's link to its runbook (the one of the alert that watches what it shows), or
    to the runbooks' index."""
    title = "Runbooks" if runbook == RUNBOOK_INDEX else f"Runbook: {runbook}"
    return [
        _link(title, runbook_url(runbook), "What this panel means and what to do", new_tab=True)
    ]


def drill_down_url(*, service: str, endpoint: str) -> str:
    """The dependency dashboard for ``service`` and ``endpoint`` (already URL-encoded), with the
    data source and the time range kept, under ``GRAFANA_BASE_PATH``."""
    return (
        f"{config.base_path()}/d/{DEPENDENCY_UID}/resilience-dependency?${{datasource:queryparam}}"
        f"&var-service={service}&var-endpoint={endpoint}&${{__url_time_range}}"
    )


def drill_down_link() -> list[dict[str, Any]]:
    """A data link from a (service, endpoint) series to the dependency dashboard; the label
    values are percent-encoded (an endpoint may hold ``&``, ``#``, ``/`` or spaces)."""
    return [
        {
            "title": f"Open ${{__field.labels.{S}}} ${{__field.labels.{E}}}",
            "url": drill_down_url(
                service=f"${{__field.labels.{S}:percentencode}}",
                endpoint=f"${{__field.labels.{E}:percentencode}}",
            ),
        }
    ]


def _links(runbook: str) -> dict[str, Any]:
    return {"links": runbook_links(runbook)}


def timeseries(
    title: str,
    description: str,
    tgts: list[Target],
    unit: str,
    *,
    runbook: str = RUNBOOK_INDEX,
    thresholds: Sequence[tuple[str, float]] = (),
    stacked: bool = False,
    bars: bool = False,
    links: bool = False,
    minimum: float | None = 0,
) -> TimeSeries:
    defaults: dict[str, Any] = {}
    if links:
        defaults["links"] = drill_down_link()
    if minimum is not None:
        defaults["min"] = minimum
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=tgts,
        unit=unit,
        thresholds=steps(*thresholds),
        thresholdsStyleMode="dashed" if thresholds else "off",
        stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none"},
        drawStyle="bars" if bars else "line",
        fillOpacity=40 if (stacked or bars) else 10,
        legendDisplayMode="table",
        legendPlacement="bottom",
        legendCalcs=["mean", "max", "lastNotNull"],
        tooltipMode="multi",
        tooltipSort="desc",
        extraJson={"fieldConfig": {"defaults": defaults}, **_links(runbook)},
    )


def by_error_type(
    title: str, description: str, metric: str, unit: str, *extra: str, runbook: str = RUNBOOK_INDEX
) -> TimeSeries:
    """A stacked panel of ``metric``'s rate split by error_type (0 when there is none)."""
    return timeseries(
        title,
        description,
        targets((or_zero(sum_rate(metric, *extra, by=ET), by=ET), ERROR_TYPE)),
        unit,
        stacked=True,
        runbook=runbook,
    )


def failed_attempts() -> TimeSeries:
    return by_error_type(
        "Failed attempts by error type",
        "Attempts per second that failed, by error_type, including the ones a retry later "
        "made good: the dependency's real error rate, before the retries hide it.",
        ATTEMPTS,
        "ops",
        FAILED,
        runbook="error-budget-burn",
    )


def retries_by_error_type() -> TimeSeries:
    return by_error_type(
        "Retries per second by error type",
        "Retries per second, by the error_type of the attempt that was retried.",
        RETRIES,
        "ops",
        runbook="high-retry-rate",
    )


def stat(
    title: str,
    description: str,
    tgts: list[Target],
    unit: str,
    *,
    runbook: str = RUNBOOK_INDEX,
    thresholds: Sequence[tuple[str, float]] = (),
    mappings: list[dict[str, Any]] | None = None,
    base: str = "green",
) -> Stat:
    return Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=tgts,
        format=unit,
        thresholds=steps(*thresholds, base=base),
        colorMode="background" if (thresholds or mappings) else "value",
        graphMode="area",
        reduceCalc="lastNotNull",
        mappings=mappings or [],
        extraJson={
            "options": {
                "percentChangeColorMode": "standard",
                "showPercentChange": False,
                "wideLayout": True,
            },
            **_links(runbook),
        },
    )


def state_timeline(
    title: str,
    description: str,
    tgts: list[Target],
    *,
    runbook: str = RUNBOOK_INDEX,
    mappings: list[dict[str, Any]] = STATE_MAPPINGS,
    levels: Sequence[tuple[str, float]] = (("yellow", 1), ("red", 2)),
) -> StateTimeline:
    top = max(int(code) for mapping in mappings for code in mapping["options"])
    return StateTimeline(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=tgts,
        mappings=mappings,
        colorMode="thresholds",
        thresholds=steps(*levels),
        showValue="never",
        mergeValues=True,
        rowHeight=0.8,
        extraJson={
            "fieldConfig": {"defaults": {"unit": "none", "min": 0, "max": top}},
            **_links(runbook),
        },
    )


def heatmap(
    title: str, description: str, expr: str, unit: str, *, runbook: str = RUNBOOK_INDEX
) -> Heatmap:
    """A heatmap of a histogram's bucket rates, in the current heatmap panel's model (generate.py
    drops grafanalib's Angular-era keys)."""
    return Heatmap(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=[target(expr, "{{le}}", "A", fmt="heatmap")],
        extraJson={
            "fieldConfig": {"defaults": {"unit": unit}},
            "options": {
                "calculate": False,
                "yAxis": {"unit": unit, "axisPlacement": "left"},
                "rowsFrame": {"layout": "auto"},
                "color": {
                    "mode": "scheme",
                    "scheme": "Oranges",
                    "scale": "exponential",
                    "exponent": 0.5,
                    "fill": "dark-orange",
                    "reverse": False,
                    "steps": 64,
                },
                "cellGap": 1,
                "filterValues": {"le": 1e-9},
                "showValue": "auto",
                "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
                "legend": {"show": True},
                "exemplars": {"color": "rgba(255,0,255,0.7)"},
            },
            **_links(runbook),
        },
    )


def layout(rows: Sequence[tuple[str, Sequence[Any], int]]) -> list[Any]:
    """Place the panels: one row panel per (title, panels, height), panels sharing 24 columns."""
    placed: list[Any] = []
    y = 0
    for title, panels, height in rows:
        placed.append(RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        width = 24 // len(panels)
        for i, panel in enumerate(panels):
            panel.gridPos = GridPos(h=height, w=width, x=i * width, y=y)
            placed.append(panel)
        y += height
    return placed


def variables(*, multi: bool) -> Templating:
    """datasource, service and endpoint: ``multi`` (and All) for the overview, single values
    for the drill-down."""
    common: dict[str, Any] = {
        "dataSource": DATASOURCE,
        "refresh": 2,  # on time-range change: new dependencies show up without a reload
        "sort": 1,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*" if multi else None,
        "default": "$__all" if multi else None,
    }
    return Templating(
        list=[
            Template(
                name="datasource",
                label="Data source",
                query="prometheus",
                type="datasource",
                default="Prometheus",
            ),
            Template(
                name="service",
                label="Service",
                query=f"label_values({CALLS}, {S})",
                **common,
            ),
            Template(
                name="endpoint",
                label="Endpoint",
                query=f'label_values({CALLS}{{{S}=~"$service"}}, {E})',
                **common,
            ),
        ]
    )


#: the alerts of the bundle (every one is named Resilience...), as a Prometheus selector
ALERTS_SELECTOR = f'ALERTS{{alertname=~"Resilience.*", alertstate="firing", {S}=~"$service"}}'


def alert_annotations() -> dict[str, Any]:
    """Grafana's own annotations, and every firing bundle alert of the dashboard's services as a
    region on every time series (Prometheus's ``ALERTS`` series)."""
    return {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "datasource": DATASOURCE,
                "enable": True,
                "hide": False,
                "iconColor": "red",
                "name": "Resilience alerts",
                "target": {"expr": ALERTS_SELECTOR, "refId": "Anno", "interval": "1m"},
                "titleFormat": "{{alertname}}",
                "textFormat": f"{{{{severity}}}}: {{{{{S}}}}} {{{{{E}}}}}",
                "tagKeys": f"severity,{S},{E}",
                "useValueForTime": False,
            },
        ]
    }


def dashboard(
    title: str, uid: str, description: str, panels: list[Any], *, multi: bool
) -> Dashboard:
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["otel-resilience"],
        timezone="utc",
        graphTooltip=1,  # shared crosshair
        refresh="30s",
        time=Time("now-1h", "now"),
        templating=variables(multi=multi),
        panels=panels,
        links=[
            DashboardLink(
                title="otel-resilience",
                type="dashboards",
                tags=["otel-resilience"],
                asDropdown=True,
                includeVars=True,
                keepTime=True,
            ),
            DashboardLink(
                title="Runbooks",
                type="link",
                uri=runbook_url(RUNBOOK_INDEX),
                icon="doc",
                targetBlank=True,
                keepTime=False,
            ),
        ],
    ).auto_panel_ids()


def chaos_panel(description: str) -> Any:
    """Chaos injections per second by kind (the same panel on both dashboards)."""
    return timeseries(
        "Chaos injections per second",
        description,
        targets(
            (
                or_zero(
                    sum_rate(q.PROM_CHAOS_INJECTIONS, by=q.PROM_CHAOS_KIND),
                    by=q.PROM_CHAOS_KIND,
                ),
                f"{{{{{q.PROM_CHAOS_KIND}}}}}",
            ),
        ),
        "ops",
        stacked=True,
    )
