"""The "Resilience dependency" dashboard: one dependency (service and endpoint) in detail."""

from __future__ import annotations

from alerts import config as knobs

from otel_resilience.telemetry_contract import METRICS

from . import queries as q
from ._common import (
    ATTEMPT_BUCKETS,
    BUDGET_FAILED,
    CALLS,
    DEPENDENCY_UID,
    ERROR_TYPE,
    ET,
    FAST_BURN,
    OVERRIDE_MAPPINGS,
    PAGING_ROWS,
    REJECTED_TYPES,
    RETRY_DELAY_BUCKETS,
    SLOW_BURN,
    ST,
    STATE_MAPPINGS,
    WHO,
    E,
    attempts_per_call,
    breaker_state,
    budget_left,
    burn_rows,
    call_quantile,
    chaos_panel,
    dashboard,
    error_ratio,
    every_sample,
    failed_attempts,
    increments,
    layout,
    or_zero,
    override_state,
    quantile,
    retries_by_error_type,
    sel,
    stat,
    state_timeline,
    sum_rate,
    target,
    targets,
    timeseries,
)

BUDGET = 1 - knobs.SLO_OBJECTIVE
REJECTED = ", ".join(REJECTED_TYPES)
TIMEOUTS = METRICS.timeouts.prometheus
TRANSITIONS = METRICS.breaker_transitions.prometheus
EXHAUSTED = METRICS.retries_exhausted.prometheus


def _outcomes() -> str:
    # Successful calls carry no error_type: name them "success" for the legend.
    return f'label_replace({sum_rate(CALLS, by=ET)}, "{ET}", "success", "{ET}", "")'


def _burn_rate(window: str) -> str:
    # the errors that burn the budget, as in the alerts (not the caller's own bad requests)
    ratio = error_ratio(by=None, window=window, failed=BUDGET_FAILED)
    return every_sample(f"(\n{ratio}\n) / {BUDGET:g}", window)


def per_second(title: str, description: str, metric: str, legend: str, *, runbook: str = "README"):
    return timeseries(
        title,
        description,
        targets((or_zero(sum_rate(metric, by=None), by=None), legend)),
        "ops",
        runbook=runbook,
    )


def build():
    summary = [
        stat(
            "Calls per second",
            "Calls per second to this dependency, whatever their outcome.",
            targets((sum_rate(CALLS, by=None), "calls/s")),
            "reqps",
            runbook="error-budget-burn",
        ),
        stat(
            "Error ratio",
            f"Share of calls that failed. Orange from {SLOW_BURN:.2%} (slow burn), red from "
            f"{FAST_BURN:.2%} (fast burn) of the {knobs.SLO_OBJECTIVE:.1%} objective; the "
            "alerts count only the errors that burn the budget (not "
            f"{', '.join(knobs.SLO_EXCLUDED_ERROR_TYPES)}): see the burn-rate panel.",
            targets((error_ratio(by=None), "error ratio")),
            "percentunit",
            thresholds=[("orange", SLOW_BURN), ("red", FAST_BURN)],
            runbook="error-budget-burn",
        ),
        stat(
            f"p{knobs.LATENCY_QUANTILE * 100:g} call latency",
            f"p{knobs.LATENCY_QUANTILE * 100:g} of the duration of the calls that reached the "
            f"dependency ({REJECTED} left out); red above ResilienceHighLatency's "
            f"{knobs.LATENCY_THRESHOLD_SECONDS:g}s.",
            targets((call_quantile(knobs.LATENCY_QUANTILE, by=None), "latency")),
            "s",
            thresholds=[("red", knobs.LATENCY_THRESHOLD_SECONDS)],
            runbook="high-latency",
        ),
        stat(
            "Attempts per call",
            "Attempts per call that reached the dependency (1 + retries per call: retry "
            f"amplification); orange above {1 + knobs.RETRIES_PER_CALL_THRESHOLD:g}, "
            "ResilienceHighRetryRate's threshold.",
            targets((attempts_per_call(by=None), "attempts")),
            "short",
            thresholds=[("orange", 1 + knobs.RETRIES_PER_CALL_THRESHOLD)],
            runbook="high-retry-rate",
        ),
        stat(
            "Breaker state",
            "Circuit-breaker state (the worst over all processes and over the step).",
            targets((breaker_state(), WHO)),
            "none",
            thresholds=[("yellow", 1), ("red", 2)],
            mappings=STATE_MAPPINGS,
            runbook="circuit-breaker-stuck-open",
        ),
        stat(
            "Breaker override",
            "Operator override of the breaker: none, metrics_only, disabled or forced_open "
            "(resilience_circuit_breaker_override; CB_MANUAL_STATE, force_open(), disable()). "
            "A breaker forced open or disabled on purpose raises no breaker or burn alert.",
            targets((override_state(), WHO)),
            "none",
            thresholds=[("blue", 1), ("orange", 2), ("red", 3)],
            mappings=OVERRIDE_MAPPINGS,
            runbook="circuit-breaker-stuck-open",
        ),
    ]
    errors = [
        timeseries(
            "Error-budget burn rate",
            "How many times faster than sustainable the error budget of the "
            f"{knobs.SLO_OBJECTIVE:.1%} objective burns, over each window of the paging alerts "
            "(at a step longer than a window, the worst of the windows within the step), "
            "counting the errors the alerts count (not "
            f"{', '.join(knobs.SLO_EXCLUDED_ERROR_TYPES)}). "
            f"{burn_rows(PAGING_ROWS)}",
            targets(*((_burn_rate(w), w) for w in knobs.ERROR_RATIO_WINDOWS)),
            "suffix:x",
            thresholds=[("orange", knobs.BURN_SLOW_FACTOR), ("red", knobs.BURN_FAST_FACTOR)],
            runbook="error-budget-burn",
        ),
        stat(
            f"Error budget left ({knobs.SLO_PERIOD})",
            f"Share of the {knobs.SLO_PERIOD} error budget of the {knobs.SLO_OBJECTIVE:.1%} "
            "objective still left: 1 untouched, 0 spent, below 0 overspent. Calls that failed "
            f"with {', '.join(knobs.SLO_EXCLUDED_ERROR_TYPES)} do not spend it (the caller's own "
            "mistakes and load control), as in the burn-rate alerts. Over the data Prometheus "
            "keeps: with less than the period stored, over what it has.",
            [target(budget_left(), "budget left", "A", instant=True)],
            "percentunit",
            thresholds=[("orange", 0.0), ("green", 0.25)],
            base="red",
            runbook="error-budget-burn",
        ),
        timeseries(
            "Outcomes by error type",
            "Calls per second by outcome: success, or the error_type of the final failure.",
            targets((_outcomes(), ERROR_TYPE)),
            "reqps",
            stacked=True,
            runbook="error-budget-burn",
        ),
        failed_attempts(),
    ]
    latency = [
        timeseries(
            "Call vs attempt latency",
            "Quantiles of the call duration (what the caller waits for, over the calls that "
            f"reached the dependency: {REJECTED} left out) and of the attempt duration (one "
            "try). A gap between them is time spent on retries and backoff. Dashed "
            f"line: ResilienceHighLatency's threshold ({knobs.LATENCY_THRESHOLD_SECONDS:g}s).",
            targets(
                *(
                    (call_quantile(q_, by=None), f"call p{q_ * 100:g}")
                    for q_ in knobs.LATENCY_QUANTILES
                ),
                *(
                    (quantile(q_, ATTEMPT_BUCKETS, by=None), f"attempt p{q_ * 100:g}")
                    for q_ in knobs.LATENCY_QUANTILES
                ),
            ),
            "s",
            thresholds=[("red", knobs.LATENCY_THRESHOLD_SECONDS)],
            runbook="high-latency",
        ),
        timeseries(
            "Retry delay p50 / p95",
            "How long the library waited before a retry (backoff with jitter, or Retry-After).",
            targets(
                *(
                    (quantile(q_, RETRY_DELAY_BUCKETS, by=None), f"p{q_ * 100:g}")
                    for q_ in (0.5, 0.95)
                )
            ),
            "s",
            runbook="high-retry-rate",
        ),
        timeseries(
            "Concurrency: in flight vs limit",
            "Calls in flight (the most within each step) against the concurrency limit, summed "
            "over the processes. The limit is the service's, shared by its endpoints (each "
            "reports it: counted once per process). No data: no concurrency limit is configured.",
            targets(
                (
                    f"sum (max_over_time({q.PROM_CONCURRENCY_IN_FLIGHT}{sel()}[$__rate_interval]))",
                    "in flight",
                ),
                (
                    f"sum (max without ({E}) (min_over_time({q.PROM_CONCURRENCY_LIMIT}{sel()}"
                    "[$__rate_interval])))",
                    "limit",
                ),
            ),
            "short",
        ),
    ]
    retries = [
        retries_by_error_type(),
        timeseries(
            "Exhausted retries by error type",
            "Calls per second that failed after their last allowed retry, by error_type.",
            targets((or_zero(sum_rate(EXHAUSTED, by=ET), by=ET), ERROR_TYPE)),
            "reqps",
            stacked=True,
            runbook="retries-exhausted",
        ),
        per_second(
            "Timeouts per second",
            "Attempts per second that ran out of time and were abandoned.",
            TIMEOUTS,
            "timeouts",
            runbook="excessive-timeouts",
        ),
        per_second(
            "Retries refused by the retry budget",
            "Retries per second the retry budget refused: the call failed instead of adding "
            "load to a dependency failing for many callers.",
            METRICS.retry_budget_rejections.prometheus,
            "refused retries",
            runbook="high-retry-rate",
        ),
    ]
    protection = [
        per_second(
            "Fallbacks per second",
            "Calls per second whose failure a fallback turned into a result.",
            METRICS.fallbacks.prometheus,
            "fallbacks",
        ),
        per_second(
            "Rate limiter rejections per second",
            "Calls per second the library's own rate limiter refused (error_type throttled).",
            METRICS.rate_limiter_rejections.prometheus,
            "throttled",
        ),
        per_second(
            "Concurrency limit rejections per second",
            "Calls per second a full concurrency limit refused (error_type concurrency_limited).",
            q.PROM_CONCURRENCY_REJECTIONS,
            "rejected",
        ),
        per_second(
            "Hedged attempts per second",
            "Extra attempts per second started because the first was slow (hedging).",
            q.PROM_HEDGES,
            "hedges",
        ),
        chaos_panel(
            "Faults, latency and outcomes injected per second by the chaos feature, by kind.",
        ),
    ]
    breaker = [
        state_timeline(
            "Circuit-breaker state",
            "closed (green), half-open (yellow), open (red) over time; within each step the "
            "worst state wins, so an opening shorter than a step still shows.",
            targets((breaker_state(), WHO)),
            runbook="circuit-breaker-stuck-open",
        ),
        timeseries(
            "Transitions by new state",
            "Breaker state changes within each step (bar), by the state entered; each change "
            "is counted in exactly one bar.",
            targets((increments(TRANSITIONS, by=ST), f"→ {{{{{ST}}}}}")),
            "short",
            bars=True,
            runbook="circuit-breaker-opens-frequently",
        ),
        per_second(
            "Rejections per second",
            "Calls per second the breaker rejected without trying (error_type circuit_open).",
            METRICS.breaker_rejections.prometheus,
            "rejected",
            runbook="circuit-breaker-stuck-open",
        ),
    ]
    return dashboard(
        "Resilience dependency",
        DEPENDENCY_UID,
        "One external dependency (service and endpoint) called through otel-resilience, in "
        "detail: error budget, outcomes, latency, retries, timeouts, its circuit breaker and "
        "the library's other protections.",
        layout(
            [
                ("Summary", summary, 4),
                ("Errors", errors, 8),
                ("Latency and load", latency, 8),
                ("Retries and timeouts", retries, 8),
                ("Protection, hedging and chaos", protection, 8),
                ("Circuit breaker", breaker, 8),
            ]
        ),
        multi=False,
    )
