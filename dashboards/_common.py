"""Building blocks shared by the dashboards: selectors, PromQL helpers and panel factories.

Every query follows TELEMETRY.md: it selects on the library's labels only (never ``job``,
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
    YAxis,
)

from otel_resilience import _names as n

S = n.PROM_SERVICE
E = n.PROM_ENDPOINT
ET = n.PROM_ERROR_TYPE
ST = n.PROM_BREAKER_STATE_LABEL
BY = f"{S}, {E}"
RATE = "$__rate_interval"
WHO = f"{{{{{S}}}}} {{{{{E}}}}}"

CALLS = f"{n.PROM_CALL_DURATION}_count"
CALL_BUCKETS = f"{n.PROM_CALL_DURATION}_bucket"
ATTEMPTS = f"{n.PROM_ATTEMPT_DURATION}_count"
ATTEMPT_BUCKETS = f"{n.PROM_ATTEMPT_DURATION}_bucket"
RETRY_DELAY_BUCKETS = f"{n.PROM_RETRY_DELAY}_bucket"
FAILED = f'{ET}!=""'

ERROR_TYPE = f"{{{{{ET}}}}}"
#: error ratios at which the slow and the fast error-budget burn alerts fire
SLOW_BURN = knobs.BURN_SLOW_FACTOR * (1 - knobs.SLO_OBJECTIVE)
FAST_BURN = knobs.BURN_FAST_FACTOR * (1 - knobs.SLO_OBJECTIVE)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
OVERVIEW_UID = "otel-resilience-overview"
DEPENDENCY_UID = "otel-resilience-dependency"

#: Circuit-breaker state as one number per breaker, for state timelines and stats.
STATE_CODES = {"closed": 0, "half_open": 1, "open": 2}
STATE_COLORS = {"closed": "green", "half_open": "yellow", "open": "red"}
STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            str(code): {"text": state, "color": STATE_COLORS[state], "index": code}
            for state, code in STATE_CODES.items()
        },
    }
]


def sel(*extra: str) -> str:
    """The label selector of every query: the dashboard's service and endpoint, plus ``extra``."""
    return "{" + ", ".join([f'{S}=~"$service"', f'{E}=~"$endpoint"', *extra]) + "}"


def rate(metric: str, *extra: str, window: str = RATE) -> str:
    return f"rate({metric}{sel(*extra)}[{window}])"


def sum_rate(metric: str, *extra: str, by: str | None = BY, window: str = RATE) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(metric, *extra, window=window)})"


def error_ratio(by: str | None = BY, window: str = RATE) -> str:
    """Failed calls / all calls; 0 (not "no data") for an endpoint without failures."""
    failed = sum_rate(CALLS, FAILED, by=by, window=window)
    calls = sum_rate(CALLS, by=by, window=window)
    return f"(\n  {failed}\n  or\n  {calls} * 0\n)\n/\n{calls}"


def quantile(q: float, buckets: str, by: str | None = BY) -> str:
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q:g}, sum by ({grouping}) ({rate(buckets)}))"


def breaker_state(by: str = BY) -> str:
    """0 closed, 1 half-open, 2 open: the worst state over the processes sharing a breaker name."""
    metric = n.PROM_BREAKER_STATE
    is_open = sel(f'{ST}="open"')
    half_open = sel(f'{ST}="half_open"')
    return (
        f"max by ({by}) ({STATE_CODES['open']} * {metric}{is_open}) > 0\n"
        f"or\nmax by ({by}) ({metric}{half_open}) > 0\n"
        f"or\nmax by ({by}) ({metric}{sel()}) * 0"
    )


def target(expr: str, legend: str, ref: str, fmt: str = "time_series") -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, format=fmt, datasource=DATASOURCE)


def targets(*pairs: tuple[str, str]) -> list[Target]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def steps(*levels: tuple[str, float]) -> list[dict[str, Any]]:
    """Threshold steps: green below the first level, then each (color, value) in order."""
    return [{"color": "green", "value": None}] + [
        {"color": color, "value": value} for color, value in levels
    ]


def drill_down_link() -> list[dict[str, Any]]:
    """A data link from a (service, endpoint) series to the dependency dashboard."""
    return [
        {
            "title": f"Open ${{__field.labels.{S}}} ${{__field.labels.{E}}}",
            "url": (
                f"/d/{DEPENDENCY_UID}/resilience-dependency?${{datasource:queryparam}}"
                f"&var-service=${{__field.labels.{S}}}&var-endpoint=${{__field.labels.{E}}}"
                "&${__url_time_range}"
            ),
        }
    ]


def timeseries(
    title: str,
    description: str,
    tgts: list[Target],
    unit: str,
    *,
    thresholds: Sequence[tuple[str, float]] = (),
    stacked: bool = False,
    bars: bool = False,
    links: bool = False,
    minimum: float | None = 0,
) -> TimeSeries:
    extra: dict[str, Any] = {}
    if links:
        extra = {"fieldConfig": {"defaults": {"links": drill_down_link()}}}
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
        valueMin=minimum,
        extraJson=extra,
    )


def by_error_type(title: str, description: str, metric: str, unit: str, *extra: str) -> TimeSeries:
    """A stacked panel of ``metric``'s rate split by error_type."""
    return timeseries(
        title,
        description,
        targets((sum_rate(metric, *extra, by=ET), ERROR_TYPE)),
        unit,
        stacked=True,
    )


def failed_attempts() -> TimeSeries:
    return by_error_type(
        "Failed attempts by error type",
        "Attempts per second that failed, by error_type, including the ones a retry later "
        "made good: the dependency's real error rate, before the retries hide it.",
        ATTEMPTS,
        "ops",
        FAILED,
    )


def retries_by_error_type() -> TimeSeries:
    return by_error_type(
        "Retries per second by error type",
        "Retries per second, by the error_type of the attempt that was retried.",
        n.PROM_RETRIES,
        "ops",
    )


def stat(
    title: str,
    description: str,
    tgts: list[Target],
    unit: str,
    *,
    thresholds: Sequence[tuple[str, float]] = (),
    mappings: list[dict[str, Any]] | None = None,
) -> Stat:
    return Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=tgts,
        format=unit,
        thresholds=steps(*thresholds),
        colorMode="background" if (thresholds or mappings) else "value",
        graphMode="area",
        reduceCalc="lastNotNull",
        mappings=mappings or [],
    )


def state_timeline(title: str, description: str, tgts: list[Target]) -> StateTimeline:
    return StateTimeline(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=tgts,
        mappings=STATE_MAPPINGS,
        colorMode="thresholds",
        thresholds=steps(("yellow", 1), ("red", 2)),
        showValue="never",
        mergeValues=True,
        rowHeight=0.8,
        extraJson={"fieldConfig": {"defaults": {"unit": "none", "min": 0, "max": 2}}},
    )


def heatmap(title: str, description: str, expr: str, unit: str) -> Heatmap:
    return Heatmap(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=[target(expr, "{{le}}", "A", fmt="heatmap")],
        dataFormat="tsbuckets",
        hideZeroBuckets=True,
        yAxis=YAxis(format=unit),
        extraJson={
            "fieldConfig": {"defaults": {"unit": unit}},
            "options": {
                "calculate": False,
                "yAxis": {"unit": unit},
                "color": {"scheme": "Oranges"},
            },
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


def dashboard(
    title: str, uid: str, description: str, panels: list[Any], *, multi: bool
) -> Dashboard:
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["otel-resilience"],
        timezone="browser",
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
            )
        ],
    ).auto_panel_ids()
