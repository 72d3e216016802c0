"""The knobs of the alerts: every threshold, window and ``for:`` duration, named and explained.

Change a value here, run ``python -m dashboards.generate`` (it rewrites the rule files and the
dashboards, whose panel thresholds read the same knobs), then update the promtool tests under
``alerts/tests/`` that pin the old value. Durations are Prometheus duration strings.
"""

from __future__ import annotations

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

# --- traffic floor ---------------------------------------------------------------------------
#: Ratio alerts (error budget burn, retries, timeouts, exhausted retries) stay quiet below this
#: many calls per second over 5m (0.01/s = 3 calls in 5 minutes), so that one failure out of two
#: calls on an idle endpoint does not page anyone.
MIN_CALLS_PER_SECOND: Final = 0.01

# --- service degradation: error-budget burn rate (Google SRE workbook, chapter 5) --------------
#: The availability objective of a dependency, as the fraction of calls that succeed. A call
#: succeeds when it has no ``error_type`` (a retried-then-successful call is a success); calls
#: rejected by an open breaker or the rate limiter count as failures, because the caller got none.
SLO_OBJECTIVE: Final = 0.999
#: Page when 2% of a 30-day budget burns in one hour: 14.4x the sustainable rate, over 1h,
#: confirmed by the last 5m so the alert resolves soon after the errors stop.
BURN_FAST_FACTOR: Final = 14.4
BURN_FAST_LONG_WINDOW: Final = "1h"
BURN_FAST_SHORT_WINDOW: Final = "5m"
BURN_FAST_FOR: Final = "2m"
#: Warn when 5% of the budget burns in six hours: 6x, over 6h, confirmed by the last 30m.
BURN_SLOW_FACTOR: Final = 6.0
BURN_SLOW_LONG_WINDOW: Final = "6h"
BURN_SLOW_SHORT_WINDOW: Final = "30m"
BURN_SLOW_FOR: Final = "15m"
#: Every window the error ratio is recorded over (the union of the ones above).
ERROR_RATIO_WINDOWS: Final = ("5m", "30m", "1h", "6h")

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
#: Openings (transitions to ``open``) of one breaker within the window that count as "frequent".
#: Note: the first opening of a process creates the counter series at 1, which ``increase()``
#: cannot see, so a fresh process needs one opening more than this.
BREAKER_OPENS_THRESHOLD: Final = 3
BREAKER_OPENS_WINDOW: Final = "15m"
BREAKER_OPENS_FOR: Final = "0m"

# --- circuit breaker stuck open ----------------------------------------------------------------
#: How long a breaker may stay open without once closing again. The seed's default reset timeout
#: is 60s, so a healthy dependency closes its breaker within a minute or two.
BREAKER_STUCK_FOR: Final = "10m"
#: The gauge is sampled: a half-open probe caught by one scrape must not reset the ``for:`` clock,
#: so the alert looks at the highest value over this window (longer than the reset timeout).
BREAKER_STUCK_SMOOTHING: Final = "2m"
