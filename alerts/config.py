"""The knobs of the alerts: every threshold, window and ``for:`` duration, named and explained.

Change a value here, run ``python -m dashboards.generate`` (it rewrites the rule files and the
dashboards, whose panel thresholds read the same knobs), then update the promtool tests under
``alerts/tests/`` that pin the old value. Durations are Prometheus duration strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# --- where the runbooks live -----------------------------------------------------------------
#: Every alert's ``runbook_url`` is this base plus ``<runbook>.md`` (files in ``docs/runbooks/``).
#: Point it at your fork or wiki if you copy the rules.
RUNBOOK_BASE_URL: Final = (
    "https://github.com/otel-resilience/otel-resilience/blob/main/docs/runbooks/"
)

# --- who is calling ----------------------------------------------------------------------------
#: Labels that tell callers apart (e.g. ``("job",)``), kept by every aggregation of the rules and
#: dashboards next to the dependency's labels, so one app's total outage is not diluted by another
#: app's healthy traffic to the same dependency. Empty: every caller of a dependency is one.
CALLER_LABELS: Final[tuple[str, ...]] = ()

# --- where the dashboards live ----------------------------------------------------------------
#: Every alert's ``dashboard_url`` starts with this Grafana base URL (the compose stack's Grafana
#: by default; no trailing slash). Alerts about one dependency link to the drill-down dashboard
#: with ``var-service`` (and ``var-endpoint``) filled in and URL-encoded; the others link to the
#: overview.
GRAFANA_BASE_URL: Final = "http://127.0.0.1:3000"
DEPENDENCY_DASHBOARD_UID: Final = "otel-resilience-dependency"
OVERVIEW_DASHBOARD_UID: Final = "otel-resilience-overview"

# --- which process reported a series ---------------------------------------------------------
#: Labels that tell one process (replica) of an application from another. Circuit breakers live
#: in a process, so the breaker alerts are evaluated per process: N replicas each opening once
#: are not N openings, and one replica stuck open is not hidden by another that closes. On the
#: pull path Prometheus sets ``job``/``instance`` from the scrape target; on the OTLP path the
#: collector's Prometheus exporter sets them from the resource (``service.name``,
#: ``service.instance.id``) and the compose Prometheus keeps them (``honor_labels: true``).
PROCESS_LABELS: Final[tuple[str, ...]] = ("job", "instance")

# --- traffic floor ---------------------------------------------------------------------------
#: Every ratio alert (error budget burn, latency, retries, timeouts, exhausted retries) stays quiet
#: below this many calls per second over its window (0.01/s = 3 calls in 5 minutes), so that one
#: failure out of two calls on an idle endpoint does not page anyone.
MIN_CALLS_PER_SECOND: Final = 0.01

# --- service degradation: error-budget burn rate (Google SRE workbook, chapter 5) --------------
#: The availability objective of a dependency, as the fraction of calls that succeed. A call
#: succeeds when it has no ``error_type`` (a retried-then-successful call is a success); calls
#: rejected by an open breaker count as failures, because the caller got nothing.
SLO_OBJECTIVE: Final = 0.999
#: The period the error budget is counted over (the budget-remaining recording rule).
SLO_PERIOD: Final = "30d"
#: Error types that do not burn the dependency's budget: the caller's own mistakes
#: (``bad_request``, ``not_found``) and the caller's own load control (``throttled``: the
#: library's rate limiter; ``concurrency_limited``: its bulkhead). They still count as calls.
SLO_EXCLUDED_ERROR_TYPES: Final[tuple[str, ...]] = (
    "bad_request",
    "not_found",
    "throttled",
    "concurrency_limited",
)


@dataclass(frozen=True, slots=True)
class BurnRateWindow:
    """One row of the multiwindow, multi-burn-rate table (SRE workbook, table 5-8).

    The alert fires when the error ratio over both ``long`` and ``short`` exceeds ``factor``
    times the budget (1 - objective), for ``for_``; ``short`` makes it resolve soon after the
    errors stop.
    """

    factor: float
    long: str
    short: str
    for_: str
    severity: str  # "critical" pages, "warning" opens a ticket


#: THE table: every burn-rate alert and every error-ratio window come from it.
#: 14.4x over 1h spends 2% of a 30-day budget; 6x over 6h, 5%; 3x over 1d, 10%; 1x over 3d, 10%.
BURN_RATE_WINDOWS: Final[tuple[BurnRateWindow, ...]] = (
    BurnRateWindow(factor=14.4, long="1h", short="5m", for_="2m", severity="critical"),
    BurnRateWindow(factor=6.0, long="6h", short="30m", for_="15m", severity="critical"),
    BurnRateWindow(factor=3.0, long="1d", short="2h", for_="1h", severity="warning"),
    BurnRateWindow(factor=1.0, long="3d", short="6h", for_="3h", severity="warning"),
)

_UNITS: Final = {"m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    """Seconds of a simple Prometheus duration such as ``5m``, ``1h`` or ``3d``."""
    return int(duration[:-1]) * _UNITS[duration[-1]]


def _windows(rows: tuple[BurnRateWindow, ...]) -> tuple[str, ...]:
    return tuple(sorted({w for row in rows for w in (row.long, row.short)}, key=seconds))


#: Every window the call rates, budget-burning error rates and error ratios are recorded over
#: (all of the table's, shortest first).
RECORDED_WINDOWS: Final = _windows(BURN_RATE_WINDOWS)
#: The windows of the paging rows (5m, 30m, 1h, 6h): the ones the dashboards' burn-rate panel
#: shows. Every one of them is recorded.
ERROR_RATIO_WINDOWS: Final = _windows(
    tuple(row for row in BURN_RATE_WINDOWS if row.severity == "critical")
)
#: The first two rows under the names the dashboards use (fast: the first page, slow: the second).
BURN_FAST_FACTOR: Final = BURN_RATE_WINDOWS[0].factor
BURN_FAST_LONG_WINDOW: Final = BURN_RATE_WINDOWS[0].long
BURN_FAST_SHORT_WINDOW: Final = BURN_RATE_WINDOWS[0].short
BURN_FAST_FOR: Final = BURN_RATE_WINDOWS[0].for_
BURN_SLOW_FACTOR: Final = BURN_RATE_WINDOWS[1].factor
BURN_SLOW_LONG_WINDOW: Final = BURN_RATE_WINDOWS[1].long
BURN_SLOW_SHORT_WINDOW: Final = BURN_RATE_WINDOWS[1].short
BURN_SLOW_FOR: Final = BURN_RATE_WINDOWS[1].for_

# --- service degradation: latency ------------------------------------------------------------
#: The call-latency quantile the latency alert watches (calls, not attempts: retries and backoff
#: included, which is what the caller waits for) ...
LATENCY_QUANTILE: Final = 0.95
#: ... the value it must stay under, in seconds ...
LATENCY_THRESHOLD_SECONDS: Final = 5.0
#: ... and for how long it may exceed it before someone is told.
LATENCY_FOR: Final = "10m"
#: Quantiles recorded for the latency panels and the alert.
LATENCY_QUANTILES: Final = (0.5, 0.95, 0.99)
#: Error types of calls that never reached the dependency: a fast rejection must not make the
#: latency look better during an outage, so the latency rules leave these calls out.
NOT_REACHING_ERROR_TYPES: Final[tuple[str, ...]] = (
    "circuit_open",
    "throttled",
    "concurrency_limited",
)

# --- high retry rates ------------------------------------------------------------------------
#: Retries per call (0.5 = one call in two needs a retry; attempts per call = 1 + this). Every
#: retry is extra load on a dependency that is already struggling: retry amplification.
RETRIES_PER_CALL_THRESHOLD: Final = 0.5
RETRIES_FOR: Final = "10m"

# --- excessive timeouts ----------------------------------------------------------------------
#: Fraction of attempts that ran out of time.
TIMEOUT_RATIO_THRESHOLD: Final = 0.05
TIMEOUTS_FOR: Final = "5m"

# --- retries exhausted -----------------------------------------------------------------------
#: Fraction of calls that failed after the last allowed retry: the failure reached the caller
#: although the error was transient.
EXHAUSTED_RATIO_THRESHOLD: Final = 0.01
EXHAUSTED_FOR: Final = "5m"

# --- circuit breaker opens frequently ----------------------------------------------------------
#: Openings (transitions to ``open``) of one breaker in one process within the window that count
#: as "frequent", with a recovery (a transition to ``closed``) between each two: a dependency that
#: is simply down opens its breaker again after every failed half-open probe, but never closes
#: it, and that is ResilienceCircuitBreakerStuckOpen's case, not this one. (The library starts
#: every breaker's transition counters at 0, so ``increase()`` sees the first opening.)
BREAKER_OPENS_THRESHOLD: Final = 3
BREAKER_OPENS_WINDOW: Final = "15m"
BREAKER_OPENS_FOR: Final = "0m"

# --- concurrency limit saturated (load control) -------------------------------------------------
#: Share of a dependency's calls its own concurrency limit refused (``concurrency_limited``) over
#: the window: the application asks for more than the limit lets through. The limit is per
#: service, so the alert is per dependency (all its endpoints together).
CONCURRENCY_REFUSED_RATIO_THRESHOLD: Final = 0.1
CONCURRENCY_REFUSED_WINDOW: Final = "15m"
CONCURRENCY_REFUSED_FOR: Final = "15m"

# --- silence ----------------------------------------------------------------------------------
#: A dependency whose breaker series were reported within this window but are absent now has
#: stopped reporting (the alert then stays on for at most this long).
STOPPED_REPORTING_WINDOW: Final = "1h"
STOPPED_REPORTING_FOR: Final = "5m"
#: A scrape target (the collector, its own metrics, the app) down for this long.
TARGET_DOWN_FOR: Final = "5m"
#: The collector refusing data (memory limiter) or failing to export it, for this long.
COLLECTOR_FOR: Final = "5m"
#: State-store (Redis) errors, for this long.
STATE_STORE_ERRORS_FOR: Final = "5m"
#: The endpoint cap is reached (metrics of new endpoints go to ``_other``), for this long.
ENDPOINT_OVERFLOW_FOR: Final = "1m"

# --- circuit breaker stuck open ----------------------------------------------------------------
#: How long a breaker may stay open without once closing again. The seed's default reset timeout
#: is 60s, so a healthy dependency closes its breaker within a minute or two.
BREAKER_STUCK_FOR: Final = "10m"
#: The gauge is sampled: a half-open probe caught by one scrape must not reset the ``for:`` clock,
#: so the alert looks at the highest value over this window (longer than the reset timeout).
BREAKER_STUCK_SMOOTHING: Final = "2m"
