"""Read the generated dashboards back: their panels, their queries, and the queries made runnable.

Used by the tests (every query names only library metrics; every query returns data on a real
Prometheus) and by ``render_previews.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS

HERE = Path(__file__).resolve().parent


def load(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())


def dashboard_files() -> list[Path]:
    return sorted(HERE.glob("*.json"))


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are containers, not panels)."""
    for panel in doc["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of the dashboard."""
    for panel in panels(doc):
        for tgt in panel.get("targets", []):
            yield panel, tgt


def variable_queries(doc: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["query"] for v in doc["templating"]["list"] if v["type"] == "query"}


def runnable(
    expr: str,
    rate_interval: str = "15s",
    service: str = ".*",
    endpoint: str = ".*",
    interval: str | None = None,
) -> str:
    """The query as Grafana would send it: variables at "All" unless a value is given.

    ``$__interval`` (the step) is ``interval``, by default the scrape interval that
    ``rate_interval`` (at least 4 of them) implies when it is a whole number of seconds.
    """
    if interval is None:
        interval = _quarter(rate_interval)
    values = {"service": service, "endpoint": endpoint}
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", interval)
    return re.sub(r"\$\{?(service|endpoint)\}?", lambda m: values[m.group(1)], expr)


def _quarter(duration: str) -> str:
    match = re.fullmatch(r"(\d+)s", duration)
    if not match:
        return duration
    return f"{max(1, int(match.group(1)) // 4)}s"


# --- names of the metrics the library does not emit yet (``emitted=False`` in the contract) -------
# The dashboards query them already, so the panels are ready (and show "no data", which is the
# truth) until the metrics land.
PROM_BREAKER_OVERRIDE = METRICS.breaker_override.prometheus
#: the override gauge's label (the attribute ``resilience.circuit_breaker.override``)
PROM_BREAKER_OVERRIDE_LABEL = ATTRIBUTES.breaker_override.label
PROM_CONCURRENCY_LIMIT = METRICS.concurrency_limit.prometheus
PROM_CONCURRENCY_IN_FLIGHT = METRICS.concurrency_in_flight.prometheus
PROM_CONCURRENCY_REJECTIONS = METRICS.concurrency_rejections.prometheus
PROM_CONCURRENCY_WAIT = METRICS.concurrency_wait.prometheus
PROM_HEDGES = METRICS.hedges.prometheus
PROM_CHAOS_INJECTIONS = METRICS.chaos_injections.prometheus
#: the chaos counter's label (the attribute ``resilience.chaos.kind``)
PROM_CHAOS_KIND = ATTRIBUTES.chaos_kind.label
#: the ``error.type`` of a call a concurrency limit refused (a new ``ExternalServiceError`` value)
CONCURRENCY_LIMITED = "concurrency_limited"
assert CONCURRENCY_LIMITED in ATTRIBUTES.error_type.values  # WIRE(load control): recorded now

#: every series name of the metrics above (histograms with their three suffixes)
SECOND_ROUND_SERIES = frozenset(
    {
        PROM_BREAKER_OVERRIDE,
        PROM_CONCURRENCY_LIMIT,
        PROM_CONCURRENCY_IN_FLIGHT,
        PROM_CONCURRENCY_REJECTIONS,
        PROM_HEDGES,
        PROM_CHAOS_INJECTIONS,
        *(f"{PROM_CONCURRENCY_WAIT}{suffix}" for suffix in ("_bucket", "_sum", "_count")),
    }
)
SECOND_ROUND_LABELS = frozenset({PROM_BREAKER_OVERRIDE_LABEL, PROM_CHAOS_KIND})

#: the gauges and histograms above, not emitted yet: no ``or 0`` stands in for them (no limit
#: configured is "no data", the truth). The override gauge is not among them: the library
#: exports it for every breaker.
SECOND_ROUND_NO_DATA = (
    PROM_CONCURRENCY_LIMIT,
    PROM_CONCURRENCY_IN_FLIGHT,
    PROM_CONCURRENCY_WAIT,
)


def awaits_second_round(expr: str) -> bool:
    """Whether ``expr`` shows "no data" until the library emits a reserved gauge or
    histogram (for a test that asks every other panel for data)."""
    return any(re.search(rf"\b{name}(_bucket)?\{{", expr) for name in SECOND_ROUND_NO_DATA)
