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
    expr: str, rate_interval: str = "15s", service: str = ".*", endpoint: str = ".*"
) -> str:
    """The query as Grafana would send it: variables at "All" unless a value is given."""
    values = {"service": service, "endpoint": endpoint}
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?(service|endpoint)\}?", lambda m: values[m.group(1)], expr)
