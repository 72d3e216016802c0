"""The recording and alerting rules, built from ``alerts.config`` and ``otel_resilience._names``.

Recording rules follow the ``level:metric:operations`` convention: ``level`` lists the labels the
result keeps (``resilience_service_endpoint``), ``metric`` the series it comes from and
``operations`` what was done to it (``rate5m``, ``ratio_rate1h``). Every alert carries
``severity``, ``summary``, ``description`` and a ``runbook_url`` into ``docs/runbooks/``.
Queries follow TELEMETRY.md: they aggregate with ``sum by`` / ``max by`` over the library's
labels only, so the extra labels of either export path (``job``, ``instance``, ``otel_scope_*``)
do not matter, and no ``le`` value appears anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from otel_resilience import _names as n

from . import config as c

S = n.PROM_SERVICE
E = n.PROM_ENDPOINT
ET = n.PROM_ERROR_TYPE
ST = n.PROM_BREAKER_STATE_LABEL
BY = f"{S}, {E}"
LEVEL = "resilience_service_endpoint"

CALLS = f"{n.PROM_CALL_DURATION}_count"
CALL_BUCKETS = f"{n.PROM_CALL_DURATION}_bucket"
ATTEMPTS = f"{n.PROM_ATTEMPT_DURATION}_count"
FAILED = f'{ET}!=""'

# --- recording rule names (the alerts and the tests refer to them) -----------------------------
CALL_RATE = f"{LEVEL}:{CALLS}:rate5m"
CALL_ERROR_RATE_BY_TYPE = f"{LEVEL}_{ET}:{CALLS}:rate5m"
ATTEMPT_RATE = f"{LEVEL}:{ATTEMPTS}:rate5m"
RETRY_RATE = f"{LEVEL}:{n.PROM_RETRIES}:rate5m"
TIMEOUT_RATE = f"{LEVEL}:{n.PROM_TIMEOUTS}:rate5m"
EXHAUSTED_RATE = f"{LEVEL}:{n.PROM_RETRIES_EXHAUSTED}:rate5m"
ATTEMPTS_PER_CALL = f"{LEVEL}:resilience_attempts_per_call:ratio_rate5m"
BUCKET_RATE = f"{LEVEL}_le:{CALL_BUCKETS}:rate5m"
LATENCY_QUANTILE = f"{LEVEL}_quantile:{n.PROM_CALL_DURATION}:histogram_quantile5m"


def error_ratio(window: str) -> str:
    """Name of the recorded fraction of failed calls over ``window``."""
    return f"{LEVEL}:resilience_call_errors_per_call:ratio_rate{window}"


def _quantile_label(q: float) -> str:
    return format(q, "g")


def _percent(x: float) -> str:
    return format(x * 100, "g") + "%"


def _recording_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {"record": CALL_RATE, "expr": f"sum by ({BY}) (rate({CALLS}[5m]))"},
        {
            "record": CALL_ERROR_RATE_BY_TYPE,
            "expr": f"sum by ({BY}, {ET}) (rate({CALLS}{{{FAILED}}}[5m]))",
        },
    ]
    # "or ... * 0": an endpoint without a single failure gets a ratio of 0, not no data.
    rules += [
        {
            "record": error_ratio(w),
            "expr": (
                f"(\n  sum by ({BY}) (rate({CALLS}{{{FAILED}}}[{w}]))\n"
                f"  or\n  sum by ({BY}) (rate({CALLS}[{w}])) * 0\n)\n"
                f"/\nsum by ({BY}) (rate({CALLS}[{w}]))"
            ),
        }
        for w in c.ERROR_RATIO_WINDOWS
    ]
    rules += [
        {"record": ATTEMPT_RATE, "expr": f"sum by ({BY}) (rate({ATTEMPTS}[5m]))"},
        {"record": ATTEMPTS_PER_CALL, "expr": f"{ATTEMPT_RATE}\n/\n{CALL_RATE}"},
        {"record": RETRY_RATE, "expr": f"sum by ({BY}) (rate({n.PROM_RETRIES}[5m]))"},
        {"record": TIMEOUT_RATE, "expr": f"sum by ({BY}) (rate({n.PROM_TIMEOUTS}[5m]))"},
        {
            "record": EXHAUSTED_RATE,
            "expr": f"sum by ({BY}) (rate({n.PROM_RETRIES_EXHAUSTED}[5m]))",
        },
        {"record": BUCKET_RATE, "expr": f"sum by ({BY}, le) (rate({CALL_BUCKETS}[5m]))"},
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


@dataclass(frozen=True, slots=True)
class Alert:
    """One alerting rule; ``runbook`` names its page in ``docs/runbooks/`` (without ``.md``)."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    runbook: str

    def to_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{c.RUNBOOK_BASE_URL}{self.runbook}.md",
            },
        }


WHO = f"{{{{ $labels.{S} }}}} {{{{ $labels.{E} }}}}"
ENOUGH_TRAFFIC = f"{CALL_RATE} >= {c.MIN_CALLS_PER_SECOND:g}"


def _burn(factor: float, long: str, short: str) -> str:
    limit = f"({factor:g} * (1 - {c.SLO_OBJECTIVE:g}))"
    return (
        f"(\n  {error_ratio(long)} > {limit}\n"
        f"  and\n  {error_ratio(short)} > {limit}\n)\n"
        f"and\n{ENOUGH_TRAFFIC}"
    )


ALERTS: tuple[Alert, ...] = (
    Alert(
        name="ResilienceErrorBudgetBurnFast",
        expr=_burn(c.BURN_FAST_FACTOR, c.BURN_FAST_LONG_WINDOW, c.BURN_FAST_SHORT_WINDOW),
        for_=c.BURN_FAST_FOR,
        severity="critical",
        summary=f"{WHO} is burning its error budget fast.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of calls to {WHO} failed over the last "
            f"{c.BURN_FAST_LONG_WINDOW} (and still over the last {c.BURN_FAST_SHORT_WINDOW}): "
            f"{c.BURN_FAST_FACTOR:g}x the rate a {_percent(c.SLO_OBJECTIVE)} objective can "
            "sustain. At this pace the 30-day error budget is gone in about "
            f"{30 * 24 / c.BURN_FAST_FACTOR:.0f} hours."
        ),
        runbook="error-budget-burn",
    ),
    Alert(
        name="ResilienceErrorBudgetBurnSlow",
        expr=_burn(c.BURN_SLOW_FACTOR, c.BURN_SLOW_LONG_WINDOW, c.BURN_SLOW_SHORT_WINDOW),
        for_=c.BURN_SLOW_FOR,
        severity="warning",
        summary=f"{WHO} is burning its error budget.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of calls to {WHO} failed over the last "
            f"{c.BURN_SLOW_LONG_WINDOW} (and still over the last {c.BURN_SLOW_SHORT_WINDOW}): "
            f"{c.BURN_SLOW_FACTOR:g}x the rate a {_percent(c.SLO_OBJECTIVE)} objective can "
            "sustain. At this pace the 30-day error budget is gone in about "
            f"{30 / c.BURN_SLOW_FACTOR:.0f} days."
        ),
        runbook="error-budget-burn",
    ),
    Alert(
        name="ResilienceHighLatency",
        expr=(
            f'{LATENCY_QUANTILE}{{quantile="{_quantile_label(c.LATENCY_QUANTILE)}"}}'
            f" > {c.LATENCY_THRESHOLD_SECONDS:g}"
        ),
        for_=c.LATENCY_FOR,
        severity="warning",
        summary=f"{WHO} calls are slow.",
        description=(
            f"The p{c.LATENCY_QUANTILE * 100:g} latency of calls to {WHO}, retries and backoff "
            f"included, is {{{{ $value | humanizeDuration }}}}, above "
            f"{c.LATENCY_THRESHOLD_SECONDS:g}s for {c.LATENCY_FOR}."
        ),
        runbook="high-latency",
    ),
    Alert(
        name="ResilienceHighRetryRate",
        expr=(
            f"(\n  {RETRY_RATE}\n  /\n  {CALL_RATE}\n) > {c.RETRIES_PER_CALL_THRESHOLD:g}\n"
            f"and\n{ENOUGH_TRAFFIC}"
        ),
        for_=c.RETRIES_FOR,
        severity="warning",
        summary=f"{WHO} needs many retries.",
        description=(
            f'Calls to {WHO} need {{{{ $value | printf "%.2f" }}}} retries each on average '
            f"(threshold {c.RETRIES_PER_CALL_THRESHOLD:g}) for {c.RETRIES_FOR}: the dependency "
            "is failing transiently and the retries multiply the load on it."
        ),
        runbook="high-retry-rate",
    ),
    Alert(
        name="ResilienceExcessiveTimeouts",
        expr=(
            f"(\n  {TIMEOUT_RATE}\n  /\n  {ATTEMPT_RATE}\n) > {c.TIMEOUT_RATIO_THRESHOLD:g}\n"
            f"and\n{ENOUGH_TRAFFIC}"
        ),
        for_=c.TIMEOUTS_FOR,
        severity="warning",
        summary=f"{WHO} attempts are timing out.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the attempts to call {WHO} ran out of "
            f"time (threshold {_percent(c.TIMEOUT_RATIO_THRESHOLD)}) for {c.TIMEOUTS_FOR}."
        ),
        runbook="excessive-timeouts",
    ),
    Alert(
        name="ResilienceRetriesExhausted",
        expr=(
            f"(\n  {EXHAUSTED_RATE}\n  /\n  {CALL_RATE}\n) > {c.EXHAUSTED_RATIO_THRESHOLD:g}\n"
            f"and\n{ENOUGH_TRAFFIC}"
        ),
        for_=c.EXHAUSTED_FOR,
        severity="warning",
        summary=f"{WHO} calls fail after every retry.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the calls to {WHO} failed with a "
            "transient error after the last allowed retry (threshold "
            f"{_percent(c.EXHAUSTED_RATIO_THRESHOLD)}) for {c.EXHAUSTED_FOR}."
        ),
        runbook="retries-exhausted",
    ),
    Alert(
        name="ResilienceCircuitBreakerOpensFrequently",
        expr=(
            f"sum by ({BY}) (\n"
            f'  increase({n.PROM_BREAKER_TRANSITIONS}{{{ST}="open"}}[{c.BREAKER_OPENS_WINDOW}])\n'
            f") >= {c.BREAKER_OPENS_THRESHOLD}"
        ),
        for_=c.BREAKER_OPENS_FOR,
        severity="warning",
        summary=f"The circuit breaker of {WHO} keeps opening.",
        description=(
            f'The circuit breaker of {WHO} opened {{{{ $value | printf "%.0f" }}}} times in '
            f"the last {c.BREAKER_OPENS_WINDOW} (threshold {c.BREAKER_OPENS_THRESHOLD}): the "
            "dependency recovers briefly and fails again."
        ),
        runbook="circuit-breaker-opens-frequently",
    ),
    Alert(
        name="ResilienceCircuitBreakerStuckOpen",
        expr=(
            f"(\n  max by ({BY}) (\n    max_over_time("
            f'{n.PROM_BREAKER_STATE}{{{ST}="open"}}[{c.BREAKER_STUCK_SMOOTHING}])\n  ) == 1\n)\n'
            f"unless on ({BY})\n(\n  sum by ({BY}) (\n    increase("
            f'{n.PROM_BREAKER_TRANSITIONS}{{{ST}="closed"}}[{c.BREAKER_STUCK_SMOOTHING}])\n'
            "  ) > 0\n)"
        ),
        for_=c.BREAKER_STUCK_FOR,
        severity="critical",
        summary=f"The circuit breaker of {WHO} is stuck open.",
        description=(
            f"The circuit breaker of {WHO} has been open for {c.BREAKER_STUCK_FOR} without "
            "closing once: every call to it is rejected (error_type circuit_open) and its "
            "half-open probes keep failing."
        ),
        runbook="circuit-breaker-stuck-open",
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
