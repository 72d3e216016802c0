"""The "Resilience overview" dashboard: every dependency's health on one page."""

from __future__ import annotations

from alerts import config as knobs

from otel_resilience import _names as n

from ._common import (
    ATTEMPTS,
    BY,
    CALL_BUCKETS,
    CALLS,
    ERROR_TYPE,
    ET,
    FAILED,
    FAST_BURN,
    OVERVIEW_UID,
    RATE,
    RETRY_DELAY_BUCKETS,
    SLOW_BURN,
    ST,
    WHO,
    breaker_state,
    dashboard,
    error_ratio,
    failed_attempts,
    heatmap,
    layout,
    quantile,
    retries_by_error_type,
    sel,
    state_timeline,
    sum_rate,
    targets,
    timeseries,
)

OPENED = f'{ST}="open"'


def build():
    traffic = [
        timeseries(
            "Calls per second",
            "Calls completed per second by each dependency (service and endpoint), whatever their "
            "outcome; one call may make several attempts. Click a series to drill down.",
            targets((sum_rate(CALLS), WHO)),
            "reqps",
            links=True,
        ),
        timeseries(
            "Error ratio",
            "Share of calls that failed (any error_type: after their last retry, or rejected by "
            f"the breaker or rate limiter). Dashed lines: {SLOW_BURN:.2%} is the slow-burn and "
            f"{FAST_BURN:.2%} the fast-burn threshold of the {knobs.SLO_OBJECTIVE:.1%} objective "
            "(ResilienceErrorBudgetBurnSlow/Fast, which use 30m-6h and 5m-1h windows).",
            targets((error_ratio(), WHO)),
            "percentunit",
            thresholds=[("orange", SLOW_BURN), ("red", FAST_BURN)],
            links=True,
        ),
        timeseries(
            "Failed calls by error type",
            "Calls per second that failed, by error_type (the call's final outcome). timeout, "
            "connection_error, server_error and rate_limit are the dependency's; "
            "authentication_error, permission_denied, not_found and bad_request the caller's; "
            "circuit_open and throttled the library's own protection.",
            targets((sum_rate(CALLS, FAILED, by=ET), ERROR_TYPE)),
            "reqps",
            stacked=True,
        ),
        failed_attempts(),
    ]
    retries = [
        timeseries(
            "Attempts per call (retry amplification)",
            "Attempts per call: 1 means no retries, 2 means the dependency receives twice the "
            f"calls your code makes. The dashed line ({1 + knobs.RETRIES_PER_CALL_THRESHOLD:g}) is "
            f"ResilienceHighRetryRate's threshold of {knobs.RETRIES_PER_CALL_THRESHOLD:g} retries "
            "per call.",
            targets((f"{sum_rate(ATTEMPTS)}\n/\n{sum_rate(CALLS)}", WHO)),
            "short",
            thresholds=[("orange", 1 + knobs.RETRIES_PER_CALL_THRESHOLD)],
            links=True,
        ),
        retries_by_error_type(),
        heatmap(
            "Retry delay distribution",
            "How long the library waited before each retry (exponential backoff with jitter, or "
            "the dependency's Retry-After), as a heatmap of the retry-delay histogram.",
            f"sum by (le) (rate({RETRY_DELAY_BUCKETS}{sel()}[{RATE}]))",
            "s",
        ),
        timeseries(
            "Exhausted retries (share of calls)",
            "Share of calls that failed with a transient error after their last allowed retry. "
            f"Dashed line: ResilienceRetriesExhausted's threshold "
            f"({knobs.EXHAUSTED_RATIO_THRESHOLD:.0%}).",
            targets((f"{sum_rate(n.PROM_RETRIES_EXHAUSTED)}\n/\n{sum_rate(CALLS)}", WHO)),
            "percentunit",
            thresholds=[("red", knobs.EXHAUSTED_RATIO_THRESHOLD)],
            links=True,
        ),
    ]
    latency = [
        timeseries(
            "Call latency p50 / p95 / p99",
            "Call duration quantiles (every attempt, backoff and Retry-After included: what the "
            f"caller waits for). Dashed line: ResilienceHighLatency's p"
            f"{knobs.LATENCY_QUANTILE * 100:g} threshold ({knobs.LATENCY_THRESHOLD_SECONDS:g}s).",
            targets(
                *(
                    (quantile(q, CALL_BUCKETS), f"p{q * 100:g} {WHO}")
                    for q in knobs.LATENCY_QUANTILES
                )
            ),
            "s",
            thresholds=[("red", knobs.LATENCY_THRESHOLD_SECONDS)],
            links=True,
        ),
        timeseries(
            "Timeouts per second",
            "Attempts per second that ran out of time (the call's timeout_sec) and were abandoned.",
            targets((sum_rate(n.PROM_TIMEOUTS), WHO)),
            "ops",
            links=True,
        ),
        timeseries(
            "Timed-out attempts (share of attempts)",
            "Share of attempts that timed out. Dashed line: ResilienceExcessiveTimeouts' threshold "
            f"({knobs.TIMEOUT_RATIO_THRESHOLD:.0%}).",
            targets((f"{sum_rate(n.PROM_TIMEOUTS)}\n/\n{sum_rate(ATTEMPTS)}", WHO)),
            "percentunit",
            thresholds=[("red", knobs.TIMEOUT_RATIO_THRESHOLD)],
            links=True,
        ),
    ]
    breakers = [
        state_timeline(
            "Circuit-breaker state",
            "State of each circuit breaker over time: closed (green), half-open (yellow: probing "
            "whether the dependency recovered), open (red: calls are rejected without trying). "
            "With several processes, the worst state wins.",
            targets((breaker_state(), WHO)),
        ),
        timeseries(
            "Circuit-breaker transitions",
            f"State changes of each breaker within each {RATE} window, by the new state.",
            targets(
                (
                    f"sum by ({BY}, {ST}) (increase({n.PROM_BREAKER_TRANSITIONS}{sel()}[{RATE}]))",
                    f"{WHO} → {{{{{ST}}}}}",
                )
            ),
            "short",
            bars=True,
        ),
        timeseries(
            f"Breaker openings (last {knobs.BREAKER_OPENS_WINDOW})",
            f"How often each breaker opened within the last {knobs.BREAKER_OPENS_WINDOW}. Dashed "
            f"line: ResilienceCircuitBreakerOpensFrequently's threshold "
            f"({knobs.BREAKER_OPENS_THRESHOLD}).",
            targets(
                (
                    f"sum by ({BY}) (increase({n.PROM_BREAKER_TRANSITIONS}"
                    f"{sel(OPENED)}[{knobs.BREAKER_OPENS_WINDOW}]))",
                    WHO,
                )
            ),
            "short",
            thresholds=[("red", knobs.BREAKER_OPENS_THRESHOLD)],
            links=True,
        ),
        timeseries(
            "Rejected by open breaker per second",
            "Calls per second an open (or half-open and busy) breaker rejected without trying: "
            "they fail at once with error_type circuit_open.",
            targets((sum_rate(n.PROM_BREAKER_REJECTIONS), WHO)),
            "reqps",
            links=True,
        ),
    ]
    return dashboard(
        "Resilience overview",
        OVERVIEW_UID,
        "Health of every external dependency called through otel-resilience: traffic, errors, "
        "retries, latency, timeouts and circuit breakers. Thresholds are the alerts' thresholds.",
        layout(
            [
                ("Traffic and errors", traffic, 8),
                ("Retries", retries, 8),
                ("Latency and timeouts", latency, 8),
                ("Circuit breakers", breakers, 8),
            ]
        ),
        multi=True,
    )
