"""The "Resilience overview" dashboard: every dependency's health on one page."""

from __future__ import annotations

from alerts import config as knobs

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS, OVERFLOW_ENDPOINT

from . import queries as q
from ._common import (
    ATTEMPTS,
    BY,
    CALLS,
    ERROR_TYPE,
    ET,
    FAILED,
    FAST_BURN,
    OVERRIDE_MAPPINGS,
    OVERVIEW_UID,
    PAGING_ROWS,
    RATE,
    REJECTED_TYPES,
    RETRY_DELAY_BUCKETS,
    SLOW_BURN,
    ST,
    WHO,
    E,
    attempts_per_call,
    breaker_state,
    burn_rows,
    call_quantile,
    chaos_panel,
    dashboard,
    error_ratio,
    every_sample,
    failed_attempts,
    heatmap,
    increments,
    is_,
    layout,
    or_zero,
    override_state,
    quantile,
    ratio,
    retries_by_error_type,
    sel,
    state_timeline,
    sum_rate,
    targets,
    timeseries,
)

OPENED = is_(ST, "open")
STATE_STORE_BACKEND = ATTRIBUTES.state_store_backend.label
TIMEOUTS = METRICS.timeouts.prometheus
TRANSITIONS = METRICS.breaker_transitions.prometheus
EXHAUSTED = METRICS.retries_exhausted.prometheus
STORE_ERRORS = METRICS.state_store_errors.prometheus
REJECTED = ", ".join(REJECTED_TYPES)


def per_second(title: str, description: str, metric: str, *, runbook: str = "README"):
    """A counter's rate per dependency, 0 for a dependency that made calls but no such event."""
    return timeseries(
        title,
        description,
        targets((or_zero(sum_rate(metric)), WHO)),
        "ops",
        links=True,
        runbook=runbook,
    )


def build():
    traffic = [
        timeseries(
            "Calls per second",
            "Calls completed per second by each dependency (service and endpoint), whatever their "
            "outcome; one call may make several attempts. Click a series to drill down.",
            targets((sum_rate(CALLS), WHO)),
            "reqps",
            links=True,
            runbook="error-budget-burn",
        ),
        timeseries(
            "Error ratio",
            "Share of calls that failed (any error_type: after their last retry, or rejected by "
            f"the breaker or rate limiter). Dashed lines: {SLOW_BURN:.2%} and {FAST_BURN:.2%}, "
            f"the error ratios of the two paging burn rates of the {knobs.SLO_OBJECTIVE:.1%} "
            f"objective. {burn_rows(PAGING_ROWS)} The alerts count only the errors that burn "
            f"the budget (not {', '.join(knobs.SLO_EXCLUDED_ERROR_TYPES)}).",
            targets((error_ratio(), WHO)),
            "percentunit",
            thresholds=[("orange", SLOW_BURN), ("red", FAST_BURN)],
            links=True,
            runbook="error-budget-burn",
        ),
        timeseries(
            "Failed calls by error type",
            "Calls per second that failed, by error_type (the call's final outcome). timeout, "
            "connection_error, server_error and rate_limit are the dependency's; "
            "authentication_error, permission_denied, not_found and bad_request the caller's; "
            f"{REJECTED} the library's own protection.",
            targets((or_zero(sum_rate(CALLS, FAILED, by=ET), by=ET), ERROR_TYPE)),
            "reqps",
            stacked=True,
            runbook="error-budget-burn",
        ),
        failed_attempts(),
    ]
    retries = [
        timeseries(
            "Attempts per call (retry amplification)",
            "Attempts per call that reached the dependency (1 + retries per call; calls the "
            f"library refused, {REJECTED}, made no attempt and are left out): 1 means no "
            "retries, 2 means the dependency receives twice the calls your code makes. The "
            f"dashed line ({1 + knobs.RETRIES_PER_CALL_THRESHOLD:g}) is ResilienceHighRetryRate's "
            f"threshold of {knobs.RETRIES_PER_CALL_THRESHOLD:g} retries per call.",
            targets((attempts_per_call(), WHO)),
            "short",
            thresholds=[("orange", 1 + knobs.RETRIES_PER_CALL_THRESHOLD)],
            links=True,
            minimum=1,
            runbook="high-retry-rate",
        ),
        retries_by_error_type(),
        heatmap(
            "Retry delay distribution",
            "How long the library waited before each retry (exponential backoff with jitter, or "
            "the dependency's Retry-After), as a heatmap of the retry-delay histogram.",
            f"sum by (le) (rate({RETRY_DELAY_BUCKETS}{sel()}[{RATE}]))",
            "s",
            runbook="high-retry-rate",
        ),
        timeseries(
            "Exhausted retries (share of calls)",
            "Share of calls that failed with a transient error after their last allowed retry. "
            f"Dashed line: ResilienceRetriesExhausted's threshold "
            f"({knobs.EXHAUSTED_RATIO_THRESHOLD:.0%}).",
            targets((ratio(or_zero(sum_rate(EXHAUSTED)), sum_rate(CALLS)), WHO)),
            "percentunit",
            thresholds=[("red", knobs.EXHAUSTED_RATIO_THRESHOLD)],
            links=True,
            runbook="retries-exhausted",
        ),
    ]
    latency = [
        timeseries(
            "Call latency p50 / p95 / p99",
            "Call duration quantiles of the calls that reached the dependency (every attempt, "
            "backoff and Retry-After included: what the caller waits for; calls the library "
            f"refused at once, {REJECTED}, are left out so an outage does not look fast). Dashed "
            f"line: ResilienceHighLatency's p{knobs.LATENCY_QUANTILE * 100:g} threshold "
            f"({knobs.LATENCY_THRESHOLD_SECONDS:g}s).",
            targets(
                *((call_quantile(q_), f"p{q_ * 100:g} {WHO}") for q_ in knobs.LATENCY_QUANTILES)
            ),
            "s",
            thresholds=[("red", knobs.LATENCY_THRESHOLD_SECONDS)],
            links=True,
            runbook="high-latency",
        ),
        per_second(
            "Timeouts per second",
            "Attempts per second that ran out of time (the call's timeout_sec) and were abandoned.",
            TIMEOUTS,
            runbook="excessive-timeouts",
        ),
        timeseries(
            "Timed-out attempts (share of attempts)",
            "Share of attempts that timed out. Dashed line: ResilienceExcessiveTimeouts' threshold "
            f"({knobs.TIMEOUT_RATIO_THRESHOLD:.0%}).",
            targets((ratio(or_zero(sum_rate(TIMEOUTS)), sum_rate(ATTEMPTS)), WHO)),
            "percentunit",
            thresholds=[("red", knobs.TIMEOUT_RATIO_THRESHOLD)],
            links=True,
            runbook="excessive-timeouts",
        ),
    ]
    breakers = [
        state_timeline(
            "Circuit-breaker state",
            "State of each circuit breaker over time: closed (green), half-open (yellow: probing "
            "whether the dependency recovered), open (red: calls are rejected without trying). "
            "With several processes, and within each step, the worst state wins: an opening "
            "shorter than a step still shows.",
            targets((breaker_state(), WHO)),
            runbook="circuit-breaker-stuck-open",
        ),
        timeseries(
            "Circuit-breaker transitions",
            "State changes of each breaker within each step (bar), by the new state; each "
            "change is counted in exactly one bar.",
            targets(
                (
                    increments(TRANSITIONS, by=f"{BY}, {ST}"),
                    f"{WHO} → {{{{{ST}}}}}",
                )
            ),
            "short",
            bars=True,
            runbook="circuit-breaker-opens-frequently",
        ),
        timeseries(
            f"Breaker openings (last {knobs.BREAKER_OPENS_WINDOW})",
            f"How often each breaker opened within the last {knobs.BREAKER_OPENS_WINDOW} (at a "
            "step longer than that, the most of any window within the step). Dashed "
            f"line: ResilienceCircuitBreakerOpensFrequently's threshold "
            f"({knobs.BREAKER_OPENS_THRESHOLD}).",
            targets(
                (
                    every_sample(
                        f"sum by ({BY}) (increase({TRANSITIONS}"
                        f"{sel(OPENED)}[{knobs.BREAKER_OPENS_WINDOW}]))",
                        knobs.BREAKER_OPENS_WINDOW,
                    ),
                    WHO,
                )
            ),
            "short",
            thresholds=[("red", knobs.BREAKER_OPENS_THRESHOLD)],
            links=True,
            runbook="circuit-breaker-opens-frequently",
        ),
        per_second(
            "Rejected by open breaker per second",
            "Calls per second an open (or half-open and busy) breaker rejected without trying: "
            "they fail at once with error_type circuit_open.",
            METRICS.breaker_rejections.prometheus,
            runbook="circuit-breaker-stuck-open",
        ),
        state_timeline(
            "Breaker overrides",
            "Operator overrides of each breaker (resilience_circuit_breaker_override): none "
            "(green), metrics_only (blue: the breaker only counts), disabled (orange: never "
            "opens), forced_open (red: every call rejected on purpose; no breaker or burn "
            "alert for it).",
            targets((override_state(), WHO)),
            mappings=OVERRIDE_MAPPINGS,
            levels=(("blue", 1), ("orange", 2), ("red", 3)),
            runbook="circuit-breaker-stuck-open",
        ),
    ]
    protection = [
        per_second(
            "Retries refused by the retry budget",
            "Retries per second the retry budget refused (the dependency was failing for many "
            "callers at once, so the library did not add load): the call failed instead.",
            METRICS.retry_budget_rejections.prometheus,
            runbook="high-retry-rate",
        ),
        per_second(
            "Fallbacks per second",
            "Calls per second whose failure a fallback turned into a result: the caller got an "
            "answer, but not the dependency's.",
            METRICS.fallbacks.prometheus,
        ),
        per_second(
            "Rate limiter rejections per second",
            "Calls per second the library's own rate limiter refused (error_type throttled): "
            "the application calls faster than the limit it set for the dependency.",
            METRICS.rate_limiter_rejections.prometheus,
        ),
        per_second(
            "Concurrency limit rejections per second",
            "Calls per second a full concurrency limit (bulkhead) refused (error_type "
            "concurrency_limited).",
            q.PROM_CONCURRENCY_REJECTIONS,
        ),
    ]
    load = [
        timeseries(
            "Concurrency: in flight vs limit",
            "Calls in flight (the most within each step) against the concurrency limit, summed "
            "over the processes; the limit is the service's, shared by its endpoints. No data: "
            "no concurrency limit is configured.",
            targets(
                (
                    f"sum by ({BY}) (max_over_time({q.PROM_CONCURRENCY_IN_FLIGHT}{sel()}[{RATE}]))",
                    f"in flight {WHO}",
                ),
                (
                    f"sum by ({BY}) (min_over_time({q.PROM_CONCURRENCY_LIMIT}{sel()}[{RATE}]))",
                    f"limit {WHO}",
                ),
            ),
            "short",
            links=True,
        ),
        timeseries(
            "Concurrency limit wait p95",
            "p95 of how long calls waited for a free slot of the concurrency limit.",
            targets((quantile(0.95, f"{q.PROM_CONCURRENCY_WAIT}_bucket"), f"p95 {WHO}")),
            "s",
            links=True,
        ),
        per_second(
            "Hedged attempts per second",
            "Extra attempts per second started because the first was slow (hedging): extra "
            "load on the dependency.",
            q.PROM_HEDGES,
        ),
        chaos_panel(
            "Faults, latency and outcomes injected per second by the chaos feature, by kind: "
            "anything here in production is on purpose, or a mistake.",
        ),
    ]
    health = [
        timeseries(
            "Calls to the overflow endpoint _other",
            f"Calls per second recorded under endpoint {OVERFLOW_ENDPOINT!r}: the cap on "
            "distinct (service, endpoint) pairs was reached, so endpoint names past it are "
            "merged there. Anything above 0 hides dependencies from every other panel.",
            targets(
                (
                    or_zero(
                        sum_rate(CALLS, is_(E, OVERFLOW_ENDPOINT), by=ATTRIBUTES.service.label),
                        by=ATTRIBUTES.service.label,
                    ),
                    f"{{{{{ATTRIBUTES.service.label}}}}}",
                )
            ),
            "reqps",
        ),
        timeseries(
            "State store errors per second",
            "Errors per second of the shared state store (breaker state in Redis, say), by "
            "backend: while it fails, each process falls back to its own state.",
            targets(
                (
                    f"sum by ({STATE_STORE_BACKEND}) (rate({STORE_ERRORS}[{RATE}]))"
                    f"\nor on ()\nvector(0)",
                    f"{{{{{STATE_STORE_BACKEND}}}}}",
                )
            ),
            "ops",
        ),
    ]
    return dashboard(
        "Resilience overview",
        OVERVIEW_UID,
        "Health of every external dependency called through otel-resilience: traffic, errors, "
        "retries, latency, timeouts, circuit breakers and the library's other protections. "
        "Thresholds are the alerts' thresholds.",
        layout(
            [
                ("Traffic and errors", traffic, 8),
                ("Retries", retries, 8),
                ("Latency and timeouts", latency, 8),
                ("Circuit breakers", breakers[:3], 8),
                ("Circuit-breaker rejections and overrides", breakers[3:], 8),
                ("Protection: budgets, fallbacks, limits", protection, 8),
                ("Load control, hedging and chaos", load, 8),
                ("Telemetry health", health, 8),
            ]
        ),
        multi=True,
    )
