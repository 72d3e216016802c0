"""The "Resilience dependency" dashboard: one dependency (service and endpoint) in detail."""

from __future__ import annotations

from alerts import config as knobs

from otel_resilience import _names as n

from ._common import (
    ATTEMPT_BUCKETS,
    ATTEMPTS,
    CALL_BUCKETS,
    CALLS,
    DEPENDENCY_UID,
    ERROR_TYPE,
    ET,
    FAST_BURN,
    RATE,
    RETRY_DELAY_BUCKETS,
    SLOW_BURN,
    ST,
    STATE_MAPPINGS,
    WHO,
    breaker_state,
    dashboard,
    error_ratio,
    failed_attempts,
    layout,
    quantile,
    retries_by_error_type,
    sel,
    stat,
    state_timeline,
    sum_rate,
    targets,
    timeseries,
)

BUDGET = 1 - knobs.SLO_OBJECTIVE


def _outcomes() -> str:
    # Successful calls carry no error_type: name them "success" for the legend.
    return f'label_replace({sum_rate(CALLS, by=ET)}, "{ET}", "success", "{ET}", "")'


def build():
    summary = [
        stat(
            "Calls per second",
            "Calls per second to this dependency, whatever their outcome.",
            targets((sum_rate(CALLS, by=None), "calls/s")),
            "reqps",
        ),
        stat(
            "Error ratio",
            f"Share of calls that failed. Orange from {SLOW_BURN:.2%} (slow burn), red from "
            f"{FAST_BURN:.2%} (fast burn) of the {knobs.SLO_OBJECTIVE:.1%} objective.",
            targets((error_ratio(by=None), "error ratio")),
            "percentunit",
            thresholds=[("orange", SLOW_BURN), ("red", FAST_BURN)],
        ),
        stat(
            f"p{knobs.LATENCY_QUANTILE * 100:g} call latency",
            f"p{knobs.LATENCY_QUANTILE * 100:g} of the call duration; red above "
            f"ResilienceHighLatency's {knobs.LATENCY_THRESHOLD_SECONDS:g}s.",
            targets((quantile(knobs.LATENCY_QUANTILE, CALL_BUCKETS, by=None), "latency")),
            "s",
            thresholds=[("red", knobs.LATENCY_THRESHOLD_SECONDS)],
        ),
        stat(
            "Attempts per call",
            "Attempts per call (retry amplification); orange above "
            f"{1 + knobs.RETRIES_PER_CALL_THRESHOLD:g}, ResilienceHighRetryRate's threshold.",
            targets((f"{sum_rate(ATTEMPTS, by=None)}\n/\n{sum_rate(CALLS, by=None)}", "attempts")),
            "short",
            thresholds=[("orange", 1 + knobs.RETRIES_PER_CALL_THRESHOLD)],
        ),
        stat(
            "Breaker state",
            "Current circuit-breaker state (the worst over all processes).",
            targets((breaker_state(), WHO)),
            "none",
            thresholds=[("yellow", 1), ("red", 2)],
            mappings=STATE_MAPPINGS,
        ),
    ]
    errors = [
        timeseries(
            "Error-budget burn rate",
            "How many times faster than sustainable the error budget of the "
            f"{knobs.SLO_OBJECTIVE:.1%} objective burns, over each window the alerts use. "
            f"ResilienceErrorBudgetBurnFast fires when {knobs.BURN_FAST_LONG_WINDOW} and "
            f"{knobs.BURN_FAST_SHORT_WINDOW} are both above {knobs.BURN_FAST_FACTOR:g}x, "
            f"ResilienceErrorBudgetBurnSlow when {knobs.BURN_SLOW_LONG_WINDOW} and "
            f"{knobs.BURN_SLOW_SHORT_WINDOW} are both above {knobs.BURN_SLOW_FACTOR:g}x.",
            targets(
                *(
                    (f"(\n{error_ratio(by=None, window=w)}\n) / {BUDGET:g}", w)
                    for w in knobs.ERROR_RATIO_WINDOWS
                )
            ),
            "suffix:x",
            thresholds=[("orange", knobs.BURN_SLOW_FACTOR), ("red", knobs.BURN_FAST_FACTOR)],
        ),
        timeseries(
            "Outcomes by error type",
            "Calls per second by outcome: success, or the error_type of the final failure.",
            targets((_outcomes(), ERROR_TYPE)),
            "reqps",
            stacked=True,
        ),
        failed_attempts(),
    ]
    latency = [
        timeseries(
            "Call vs attempt latency",
            "Quantiles of the call duration (what the caller waits for) and of the attempt "
            "duration (one try). A gap between them is time spent on retries and backoff. Dashed "
            f"line: ResilienceHighLatency's threshold ({knobs.LATENCY_THRESHOLD_SECONDS:g}s).",
            targets(
                *(
                    (quantile(q, buckets, by=None), f"{kind} p{q * 100:g}")
                    for kind, buckets in (("call", CALL_BUCKETS), ("attempt", ATTEMPT_BUCKETS))
                    for q in knobs.LATENCY_QUANTILES
                )
            ),
            "s",
            thresholds=[("red", knobs.LATENCY_THRESHOLD_SECONDS)],
        ),
        timeseries(
            "Retry delay p50 / p95",
            "How long the library waited before a retry (backoff with jitter, or Retry-After).",
            targets(
                *((quantile(q, RETRY_DELAY_BUCKETS, by=None), f"p{q * 100:g}") for q in (0.5, 0.95))
            ),
            "s",
        ),
    ]
    retries = [
        retries_by_error_type(),
        timeseries(
            "Exhausted retries by error type",
            "Calls per second that failed after their last allowed retry, by error_type.",
            targets((sum_rate(n.PROM_RETRIES_EXHAUSTED, by=ET), ERROR_TYPE)),
            "reqps",
            stacked=True,
        ),
        timeseries(
            "Timeouts per second",
            "Attempts per second that ran out of time and were abandoned.",
            targets((sum_rate(n.PROM_TIMEOUTS, by=None), "timeouts")),
            "ops",
        ),
    ]
    breaker = [
        state_timeline(
            "Circuit-breaker state",
            "closed (green), half-open (yellow), open (red) over time.",
            targets((breaker_state(), WHO)),
        ),
        timeseries(
            "Transitions by new state",
            f"Breaker state changes within each {RATE} window, by the state entered.",
            targets(
                (
                    f"sum by ({ST}) (increase({n.PROM_BREAKER_TRANSITIONS}{sel()}[{RATE}]))",
                    f"→ {{{{{ST}}}}}",
                )
            ),
            "short",
            bars=True,
        ),
        timeseries(
            "Rejections per second",
            "Calls per second the breaker rejected without trying (error_type circuit_open).",
            targets((sum_rate(n.PROM_BREAKER_REJECTIONS, by=None), "rejected")),
            "reqps",
        ),
    ]
    return dashboard(
        "Resilience dependency",
        DEPENDENCY_UID,
        "One external dependency (service and endpoint) called through otel-resilience, in "
        "detail: error budget, outcomes, latency, retries, timeouts and its circuit breaker.",
        layout(
            [
                ("Summary", summary, 4),
                ("Errors", errors, 8),
                ("Latency", latency, 8),
                ("Retries and timeouts", retries, 8),
                ("Circuit breaker", breaker, 8),
            ]
        ),
        multi=False,
    )
