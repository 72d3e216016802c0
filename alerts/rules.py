"""The recording and alerting rules, built from ``alerts.config`` and the telemetry contract
(``otel_resilience.telemetry_contract``).

Recording rules follow the ``level:metric:operations`` convention: ``level`` lists the labels the
result keeps (``resilience_service_endpoint``), ``metric`` the series it comes from and
``operations`` what was done to it (``rate5m``, ``ratio_rate1h``). Every alert carries
``severity``, ``summary``, ``description``, a ``runbook_url`` into ``docs/runbooks/`` and a
``dashboard_url``. Queries follow the contract: they aggregate with ``sum by`` / ``max by`` over
the library's labels plus ``CALLER_LABELS`` (the breaker alerts also keep ``PROCESS_LABELS``:
a breaker lives in one process), never filter on the values of the export paths' own labels
(``job``, ``instance``, ``otel_scope_*``), and name no ``le`` value. The alerts about the
pipeline itself (``up``, the collector's ``otelcol_*`` counters, the Watchdog) are the
exception: they are about targets, by ``job`` and ``instance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS, OVERFLOW_ENDPOINT

from . import config as c

S = ATTRIBUTES.service.label
E = ATTRIBUTES.endpoint.label
ET = ATTRIBUTES.error_type.label
ST = ATTRIBUTES.breaker_state.label
OV = ATTRIBUTES.breaker_override.label
BACKEND = ATTRIBUTES.state_store_backend.label
RETRIES = METRICS.retries.prometheus
TIMEOUTS = METRICS.timeouts.prometheus
BREAKER_STATE = METRICS.breaker_state.prometheus
TRANSITIONS = METRICS.breaker_transitions.prometheus
EXHAUSTED = METRICS.retries_exhausted.prometheus
STORE_ERRORS = METRICS.state_store_errors.prometheus


def _unique(*labels: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(labels))


#: the labels the rules keep: a dependency is (callers, service), an endpoint of it adds endpoint,
#: a breaker lives in one process (``PROCESS_LABELS``) of one caller
CALLER = tuple(c.CALLER_LABELS)
PAIR = _unique(*CALLER, S, E)
DEPENDENCY = _unique(*CALLER, S)
PROCESS = _unique(*c.PROCESS_LABELS, *CALLER, S, E)
BY = ", ".join(PAIR)
BY_DEPENDENCY = ", ".join(DEPENDENCY)
BY_PROCESS = ", ".join(PROCESS)
BY_BACKEND = ", ".join(_unique(*CALLER, BACKEND))
LEVEL = "_".join((*CALLER, "resilience_service_endpoint"))  # the labels it keeps

CALLS = f"{METRICS.call_duration.prometheus}_count"
CALL_BUCKETS = f"{METRICS.call_duration.prometheus}_bucket"
ATTEMPTS = f"{METRICS.attempt_duration.prometheus}_count"
FAILED = f'{ET}!=""'


def _alternatives(values: tuple[str, ...]) -> str:
    return "|".join(values)


#: calls that failed with an error that burns the error budget
BUDGET_FAILED = (
    f'{ET}!="", {ET}!~"{_alternatives(c.SLO_EXCLUDED_ERROR_TYPES)}"'
    if c.SLO_EXCLUDED_ERROR_TYPES
    else FAILED
)
#: calls that reached the dependency (not rejected before an attempt)
REACHED = f'{ET}!~"{_alternatives(c.NOT_REACHING_ERROR_TYPES)}"'


def call_rate(window: str) -> str:
    """Name of the recorded rate of calls over ``window``."""
    return f"{LEVEL}:{CALLS}:rate{window}"


def budget_error_rate(window: str) -> str:
    """Name of the recorded rate of calls that failed with a budget-burning error."""
    return f"{LEVEL}:resilience_call_budget_errors:rate{window}"


def error_ratio(window: str) -> str:
    """Name of the recorded fraction of calls that failed with a budget-burning error."""
    return f"{LEVEL}:resilience_call_errors_per_call:ratio_rate{window}"


# --- recording rule names (the alerts, the dashboards and the tests refer to them) -------------
CALL_RATE = call_rate("5m")
CALL_ERROR_RATE_BY_TYPE = f"{LEVEL}_{ET}:{CALLS}:rate5m"
REACHED_CALL_RATE = f"{LEVEL}:resilience_calls_reached:rate5m"
ATTEMPT_RATE = f"{LEVEL}:{ATTEMPTS}:rate5m"
RETRY_RATE = f"{LEVEL}:{RETRIES}:rate5m"
TIMEOUT_RATE = f"{LEVEL}:{TIMEOUTS}:rate5m"
EXHAUSTED_RATE = f"{LEVEL}:{EXHAUSTED}:rate5m"
ATTEMPTS_PER_CALL = f"{LEVEL}:resilience_attempts_per_call:ratio_rate5m"
BUCKET_RATE = f"{LEVEL}_le:{CALL_BUCKETS}:rate5m"
LATENCY_QUANTILE = f"{LEVEL}_quantile:{METRICS.call_duration.prometheus}:histogram_quantile5m"
#: fraction of the error budget of ``SLO_PERIOD`` left (1 = untouched, 0 = spent, < 0 = overspent)
BUDGET_REMAINING = f"{LEVEL}:resilience_call_error_budget:remaining{c.SLO_PERIOD}"


def _quantile_label(q: float) -> str:
    return format(q, "g")


def _percent(x: float) -> str:
    return format(x * 100, "g") + "%"


def _recording_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "record": CALL_ERROR_RATE_BY_TYPE,
            "expr": f"sum by ({BY}, {ET}) (rate({CALLS}{{{FAILED}}}[5m]))",
        },
    ]
    for w in c.RECORDED_WINDOWS:
        rules += [
            {"record": call_rate(w), "expr": f"sum by ({BY}) (rate({CALLS}[{w}]))"},
            {
                "record": budget_error_rate(w),
                "expr": f"sum by ({BY}) (rate({CALLS}{{{BUDGET_FAILED}}}[{w}]))",
            },
            # "or ... * 0": an endpoint without a single failure gets a ratio of 0, not no data
            {
                "record": error_ratio(w),
                "expr": (
                    f"(\n  {budget_error_rate(w)}\n  or\n  {call_rate(w)} * 0\n)\n/\n{call_rate(w)}"
                ),
            },
        ]
    budget = f"(1 - {c.SLO_OBJECTIVE:g})"
    period = c.SLO_PERIOD
    rules += [
        {
            "record": BUDGET_REMAINING,
            "expr": (
                f"1 - (\n  (\n    sum_over_time({budget_error_rate('5m')}[{period}])\n    or\n"
                f"    sum_over_time({CALL_RATE}[{period}]) * 0\n  )\n"
                f"  /\n  sum_over_time({CALL_RATE}[{period}])\n) / {budget}"
            ),
        },
        {"record": REACHED_CALL_RATE, "expr": f"sum by ({BY}) (rate({CALLS}{{{REACHED}}}[5m]))"},
        {"record": ATTEMPT_RATE, "expr": f"sum by ({BY}) (rate({ATTEMPTS}[5m]))"},
        # over the calls that reached the dependency: a rejected call makes no attempt
        {"record": ATTEMPTS_PER_CALL, "expr": f"{ATTEMPT_RATE}\n/\n{REACHED_CALL_RATE}"},
        {"record": RETRY_RATE, "expr": f"sum by ({BY}) (rate({RETRIES}[5m]))"},
        {
            "record": TIMEOUT_RATE,
            "expr": f"sum by ({BY}) (rate({TIMEOUTS}[5m]))",
        },
        {
            "record": EXHAUSTED_RATE,
            "expr": f"sum by ({BY}) (rate({EXHAUSTED}[5m]))",
        },
        {
            "record": BUCKET_RATE,
            "expr": f"sum by ({BY}, le) (rate({CALL_BUCKETS}{{{REACHED}}}[5m]))",
        },
    ]
    for q in c.LATENCY_QUANTILES:
        rules.append(
            {
                "record": LATENCY_QUANTILE,
                "expr": f"histogram_quantile({q}, {BUCKET_RATE})",
                "labels": {"quantile": _quantile_label(q)},
            }
        )
    return rules


def _label(name: str) -> str:
    return f"{{{{ $labels.{name} }}}}"


def _query(name: str) -> str:
    return f"{{{{ $labels.{name} | urlquery }}}}"


DASHBOARD = f"{c.GRAFANA_BASE_URL}/d/{c.DEPENDENCY_DASHBOARD_UID}/"
OVERVIEW = f"{c.GRAFANA_BASE_URL}/d/{c.OVERVIEW_DASHBOARD_UID}/"


def dashboard_url(labels: tuple[str, ...]) -> str:
    """The ``dashboard_url`` of an alert whose result keeps ``labels``: the drill-down with the
    dependency (and endpoint) filled in and URL-encoded; the overview for the other alerts."""
    if S not in labels:
        return OVERVIEW
    query = f"var-service={_query(S)}"
    if E in labels:
        query += f"&var-endpoint={_query(E)}"
    return f"{DASHBOARD}?{query}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alerting rule; ``runbook`` names its page in ``docs/runbooks/`` (without ``.md``),
    ``keeps`` the labels its result carries (for the dashboard link)."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    runbook: str
    keeps: tuple[str, ...] = PAIR
    labels: tuple[tuple[str, str], ...] = ()

    def to_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **dict(self.labels)},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{c.RUNBOOK_BASE_URL}{self.runbook}.md",
                "dashboard_url": dashboard_url(self.keeps),
            },
        }


WHO = f"{_label(S)} {_label(E)}"
IN_PROCESS = " ".join(_label(label) for label in c.PROCESS_LABELS)
FOR_CALLER = "".join(f" (caller {_label(label)})" for label in CALLER)


def _floor(window: str) -> str:
    return f"{call_rate(window)} >= {c.MIN_CALLS_PER_SECOND:g}"


ENOUGH_TRAFFIC = _floor("5m")


def _overridden(by: str, values: tuple[str, ...]) -> str:
    """Series of the breakers an operator put in one of ``values`` on purpose."""
    selector = f'{METRICS.breaker_override.prometheus}{{{OV}=~"{_alternatives(values)}"}}'
    return f"max by ({by}) ({selector}) == 1"


#: a breaker forced open rejects every call (circuit_open): on purpose, so no page for it
FORCED_OPEN = _overridden(BY, ("forced_open",))
#: forced open or disabled: the breaker alerts say nothing about such a breaker
OVERRIDDEN_BREAKER = _overridden(BY_PROCESS, ("forced_open", "disabled"))


def _burn_alert(row: c.BurnRateWindow) -> Alert:
    limit = f"({row.factor:g} * (1 - {c.SLO_OBJECTIVE:g}))"
    spent = row.factor * c.seconds(row.long) / c.seconds(c.SLO_PERIOD)
    hours = c.seconds(c.SLO_PERIOD) / row.factor / 3600
    pace = f"about {hours:.0f} hours" if hours < 72 else f"about {hours / 24:.0f} days"
    return Alert(
        name="ResilienceErrorBudgetBurn",
        expr=(
            f"(\n  {error_ratio(row.long)} > {limit}\n"
            f"  and\n  {error_ratio(row.short)} > {limit}\n)\n"
            f"and on ({BY})\n{_floor(row.long)}\n"
            f"unless on ({BY})\n{FORCED_OPEN}"
        ),
        for_=row.for_,
        severity=row.severity,
        labels=(("long_window", row.long), ("short_window", row.short)),
        summary=f"{WHO}{FOR_CALLER} is burning its error budget {row.factor:g}x too fast.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of calls to {WHO}{FOR_CALLER} failed over "
            f"the last {row.long} (and still over the last {row.short}): {row.factor:g}x the "
            f"rate a {_percent(c.SLO_OBJECTIVE)} objective can sustain, spending "
            f"{spent:.0%} of the {c.SLO_PERIOD} error budget per {row.long}. At this pace the "
            f"budget is gone in {pace}."
        ),
        runbook="error-budget-burn",
    )


def _stopped_reporting() -> str:
    window = c.STOPPED_REPORTING_WINDOW
    return (
        f"group by ({BY_DEPENDENCY}) (max_over_time({BREAKER_STATE}[{window}]))\n"
        f"unless on ({BY_DEPENDENCY})\n"
        f"group by ({BY_DEPENDENCY}) ({BREAKER_STATE})"
    )


#: the collector's own counters, named with or without ``_total`` (it changed across versions)
COLLECTOR_SIGNALS = ("metric_points", "spans", "log_records")


def _collector_rate(prefix: str, by: str) -> str:
    parts = [
        f'  label_replace(rate({{__name__=~"{prefix}{signal}(_total)?"}}[5m]), '
        f'"signal", "{signal}", "", "")'
        for signal in COLLECTOR_SIGNALS
    ]
    return f"sum by ({by}) (\n" + "\n  or\n".join(parts) + "\n) > 0"


def _overflow() -> str:
    other = f'{E}="{OVERFLOW_ENDPOINT}"'
    return (
        f"group by ({BY_DEPENDENCY}) ({CALLS}{{{other}}})\n"
        f"or\ngroup by ({BY_DEPENDENCY}) ({BREAKER_STATE}{{{other}}})"
    )


def _saturated() -> str:
    """Share of a dependency's calls refused by its own concurrency limit, with a traffic floor."""
    window = c.CONCURRENCY_REFUSED_WINDOW
    refused = f'{CALLS}{{{ET}="concurrency_limited"}}'
    all_calls = f"sum by ({BY_DEPENDENCY}) (rate({CALLS}[{window}]))"
    return (
        f"(\n  sum by ({BY_DEPENDENCY}) (rate({refused}[{window}]))\n  /\n  {all_calls}\n)"
        f" > {c.CONCURRENCY_REFUSED_RATIO_THRESHOLD:g}\n"
        f"and on ({BY_DEPENDENCY})\n{all_calls} >= {c.MIN_CALLS_PER_SECOND:g}"
    )


#: the alerts of the collector and the scrape targets keep these labels
TARGET = ("job", "instance")

ALERTS: tuple[Alert, ...] = (
    *(_burn_alert(row) for row in c.BURN_RATE_WINDOWS),
    Alert(
        name="ResilienceHighLatency",
        expr=(
            f'{LATENCY_QUANTILE}{{quantile="{_quantile_label(c.LATENCY_QUANTILE)}"}}'
            f" > {c.LATENCY_THRESHOLD_SECONDS:g}\n"
            f"and on ({BY})\n{REACHED_CALL_RATE} >= {c.MIN_CALLS_PER_SECOND:g}"
        ),
        for_=c.LATENCY_FOR,
        severity="warning",
        summary=f"{WHO} calls are slow.",
        description=(
            f"The p{c.LATENCY_QUANTILE * 100:g} latency of calls to {WHO}{FOR_CALLER} that "
            "reached it (calls an open breaker or a local limit rejected are left out), "
            f"retries and backoff included, is {{{{ $value | humanizeDuration }}}}, above "
            f"{c.LATENCY_THRESHOLD_SECONDS:g}s for {c.LATENCY_FOR}."
        ),
        runbook="high-latency",
    ),
    Alert(
        name="ResilienceHighRetryRate",
        expr=(
            # per call that reached the dependency: an open breaker's fast rejections (no
            # attempt, no retry) must not dilute the ratio, as in the dashboards
            f"(\n  {RETRY_RATE}\n  /\n  {REACHED_CALL_RATE}\n) > {c.RETRIES_PER_CALL_THRESHOLD:g}\n"
            f"and on ({BY})\n{REACHED_CALL_RATE} >= {c.MIN_CALLS_PER_SECOND:g}"
        ),
        for_=c.RETRIES_FOR,
        severity="warning",
        summary=f"{WHO} needs many retries.",
        description=(
            f"Calls to {WHO}{FOR_CALLER} that reached it need "
            f'{{{{ $value | printf "%.2f" }}}} retries each on average (threshold '
            f"{c.RETRIES_PER_CALL_THRESHOLD:g}; calls an open breaker or a local limit rejected "
            f"are left out) for {c.RETRIES_FOR}: the dependency is failing transiently and the "
            "retries multiply the load on it."
        ),
        runbook="high-retry-rate",
    ),
    Alert(
        name="ResilienceExcessiveTimeouts",
        expr=(
            f"(\n  {TIMEOUT_RATE}\n  /\n  {ATTEMPT_RATE}\n) > {c.TIMEOUT_RATIO_THRESHOLD:g}\n"
            f"and on ({BY})\n{ENOUGH_TRAFFIC}"
        ),
        for_=c.TIMEOUTS_FOR,
        severity="warning",
        summary=f"{WHO} attempts are timing out.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the attempts to call {WHO}{FOR_CALLER} "
            f"ran out of time (threshold {_percent(c.TIMEOUT_RATIO_THRESHOLD)}) for "
            f"{c.TIMEOUTS_FOR}."
        ),
        runbook="excessive-timeouts",
    ),
    Alert(
        name="ResilienceRetriesExhausted",
        expr=(
            f"(\n  {EXHAUSTED_RATE}\n  /\n  {CALL_RATE}\n) > {c.EXHAUSTED_RATIO_THRESHOLD:g}\n"
            f"and on ({BY})\n{ENOUGH_TRAFFIC}"
        ),
        for_=c.EXHAUSTED_FOR,
        severity="warning",
        summary=f"{WHO} calls fail after every retry.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the calls to {WHO}{FOR_CALLER} failed "
            "with a transient error after the last allowed retry (threshold "
            f"{_percent(c.EXHAUSTED_RATIO_THRESHOLD)}) for {c.EXHAUSTED_FOR}."
        ),
        runbook="retries-exhausted",
    ),
    Alert(
        name="ResilienceCircuitBreakerOpensFrequently",
        expr=(
            f"(\n  sum by ({BY_PROCESS}) (\n"
            f'    increase({TRANSITIONS}{{{ST}="open"}}[{c.BREAKER_OPENS_WINDOW}])\n'
            f"  ) >= {c.BREAKER_OPENS_THRESHOLD}\n"
            f"  and on ({BY_PROCESS})\n  sum by ({BY_PROCESS}) (\n"
            f'    increase({TRANSITIONS}{{{ST}="closed"}}'
            f"[{c.BREAKER_OPENS_WINDOW}])\n"
            f"  ) >= {c.BREAKER_OPENS_THRESHOLD - 1}\n)\n"
            f"unless on ({BY_PROCESS})\n{OVERRIDDEN_BREAKER}"
        ),
        for_=c.BREAKER_OPENS_FOR,
        severity="warning",
        summary=f"The circuit breaker of {WHO} keeps opening in {IN_PROCESS}.",
        description=(
            f"The circuit breaker of {WHO} in process {IN_PROCESS} opened "
            f'{{{{ $value | printf "%.0f" }}}} times in the last {c.BREAKER_OPENS_WINDOW} '
            f"and closed in between (threshold {c.BREAKER_OPENS_THRESHOLD}): the dependency "
            "recovers briefly and fails again."
        ),
        runbook="circuit-breaker-opens-frequently",
        keeps=PROCESS,
    ),
    Alert(
        name="ResilienceCircuitBreakerStuckOpen",
        expr=(
            f"(\n  max by ({BY_PROCESS}) (\n    max_over_time("
            f'{BREAKER_STATE}{{{ST}="open"}}[{c.BREAKER_STUCK_SMOOTHING}])\n  ) == 1\n'
            f"  unless on ({BY_PROCESS})\n  sum by ({BY_PROCESS}) (\n    increase("
            f'{TRANSITIONS}{{{ST}="closed"}}[{c.BREAKER_STUCK_SMOOTHING}])\n'
            f"  ) > 0\n)\nunless on ({BY_PROCESS})\n{OVERRIDDEN_BREAKER}"
        ),
        for_=c.BREAKER_STUCK_FOR,
        severity="critical",
        summary=f"The circuit breaker of {WHO} is stuck open in {IN_PROCESS}.",
        description=(
            f"The circuit breaker of {WHO} in process {IN_PROCESS} has been open for "
            f"{c.BREAKER_STUCK_FOR} without closing once: every call to it from that process "
            "is rejected (error_type circuit_open) and its half-open probes keep failing. "
            "A breaker forced open or disabled on purpose does not raise this alert."
        ),
        runbook="circuit-breaker-stuck-open",
        keeps=PROCESS,
    ),
    Alert(
        name="ResilienceDependencyStoppedReporting",
        expr=_stopped_reporting(),
        for_=c.STOPPED_REPORTING_FOR,
        severity="warning",
        summary=f"{_label(S)}{FOR_CALLER} stopped reporting metrics.",
        description=(
            f"The circuit breakers of {_label(S)}{FOR_CALLER} were reported within the last "
            f"{c.STOPPED_REPORTING_WINDOW} but no process reports them now: the application "
            "stopped, lost its telemetry pipeline, or no longer calls the dependency. Every "
            "other alert about it is blind until it reports again."
        ),
        runbook="dependency-stopped-reporting",
        keeps=DEPENDENCY,
    ),
    Alert(
        name="ResilienceTargetDown",
        expr="up == 0",
        for_=c.TARGET_DOWN_FOR,
        severity="warning",
        summary="Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
        description=(
            "The scrape target {{ $labels.instance }} of job {{ $labels.job }} has been down "
            f"for {c.TARGET_DOWN_FOR}. If it is the collector or the application, the "
            "resilience metrics behind every other alert are missing."
        ),
        runbook="target-down",
        keeps=TARGET,
    ),
    Alert(
        name="ResilienceCollectorRefusingData",
        expr=_collector_rate("otelcol_receiver_refused_", "job, instance, receiver, signal"),
        for_=c.COLLECTOR_FOR,
        severity="warning",
        summary="The OpenTelemetry Collector {{ $labels.instance }} refuses {{ $labels.signal }}.",
        description=(
            "Receiver {{ $labels.receiver }} of the collector {{ $labels.instance }} refused "
            '{{ $value | printf "%.1f" }} {{ $labels.signal }} per second for '
            f"{c.COLLECTOR_FOR} (usually the memory limiter): applications' telemetry is lost."
        ),
        runbook="collector-refusing-data",
        keeps=TARGET,
    ),
    Alert(
        name="ResilienceCollectorExportFailing",
        expr=_collector_rate("otelcol_exporter_send_failed_", "job, instance, exporter, signal"),
        for_=c.COLLECTOR_FOR,
        severity="warning",
        summary="The OpenTelemetry Collector {{ $labels.instance }} cannot export.",
        description=(
            "Exporter {{ $labels.exporter }} of the collector {{ $labels.instance }} failed to "
            'send {{ $value | printf "%.1f" }} {{ $labels.signal }} per second for '
            f"{c.COLLECTOR_FOR}: the backend behind it is down or refusing the data."
        ),
        runbook="collector-export-failing",
        keeps=TARGET,
    ),
    Alert(
        name="ResilienceStateStoreErrors",
        expr=f"sum by ({BY_BACKEND}) (rate({STORE_ERRORS}[5m])) > 0",
        for_=c.STATE_STORE_ERRORS_FOR,
        severity="warning",
        summary=f"The {_label(BACKEND)} breaker state store is failing{FOR_CALLER}.",
        description=(
            f'{{{{ $value | printf "%.2f" }}}} errors per second talking to the '
            f"{_label(BACKEND)} state store for {c.STATE_STORE_ERRORS_FOR}: the shared circuit "
            "breakers fall back to each process's local state, so replicas no longer agree on "
            "open circuits."
        ),
        runbook="state-store-errors",
        keeps=CALLER,
    ),
    Alert(
        name="ResilienceConcurrencyLimitSaturated",
        expr=_saturated(),
        for_=c.CONCURRENCY_REFUSED_FOR,
        severity="warning",
        summary=f"{_label(S)}{FOR_CALLER} refuses many calls by its own concurrency limit.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the calls to {_label(S)}{FOR_CALLER} "
            "were refused by its own concurrency limit (error_type concurrency_limited, threshold "
            f"{_percent(c.CONCURRENCY_REFUSED_RATIO_THRESHOLD)}) over the last "
            f"{c.CONCURRENCY_REFUSED_WINDOW}, for {c.CONCURRENCY_REFUSED_FOR}: the application "
            "asks for more than the limit lets through (or the dependency got slower and holds "
            "its slots longer)."
        ),
        runbook="concurrency-limit-saturated",
        keeps=DEPENDENCY,
    ),
    Alert(
        name="ResilienceEndpointOverflow",
        expr=_overflow(),
        for_=c.ENDPOINT_OVERFLOW_FOR,
        severity="warning",
        summary=f'{_label(S)} reports endpoints as "{OVERFLOW_ENDPOINT}".',
        description=(
            "The application reached its cap of distinct (service, endpoint) pairs: metrics of "
            f'new endpoints of {_label(S)}{FOR_CALLER} go to {E}="{OVERFLOW_ENDPOINT}", so '
            "their alerts and panels are merged. Endpoint names are probably built from IDs."
        ),
        runbook="endpoint-overflow",
        keeps=DEPENDENCY,
    ),
    Alert(
        name="ResilienceWatchdog",
        expr="vector(1)",
        for_="0m",
        severity="none",
        summary="The alerting pipeline works (always firing).",
        description=(
            "Always firing, routed to the heartbeat receiver: if the heartbeat stops arriving, "
            "Prometheus, its rules or Alertmanager are broken and no other alert can reach you."
        ),
        runbook="watchdog",
        keeps=(),
    ),
)


def recording_groups() -> dict[str, Any]:
    return {"groups": [{"name": "otel-resilience.rules", "rules": _recording_rules()}]}


def alerting_groups() -> dict[str, Any]:
    return {"groups": [{"name": "otel-resilience.alerts", "rules": [a.to_rule() for a in ALERTS]}]}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the longer expressions) as ``|`` blocks, the way people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Generated by `python -m dashboards.generate` from alerts/rules.py and the knobs in\n"
    "# alerts/config.py: edit those, then regenerate. CI fails when this file is stale.\n"
)

RECORDING_FILE = "resilience.rules.yml"
ALERTING_FILE = "resilience.alerts.yml"


def dump(doc: dict[str, Any]) -> str:
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def render() -> dict[str, str]:
    """The rule files, by name relative to ``alerts/``."""
    return {
        RECORDING_FILE: dump(recording_groups()),
        ALERTING_FILE: dump(alerting_groups()),
    }
