"""Regenerate every generated file of the observability bundle, or check that none is stale.

    python -m dashboards.generate           # write dashboards/*.json and alerts/*.yml
    python -m dashboards.generate --check   # exit 1, naming each stale file, if any would change

The dashboards (grafanalib) and the alert rules share the knobs of ``alerts/config.py``, so they
are generated together.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts import rules
from grafanalib._gen import DashboardEncoder

from . import config, dependency, overview
from ._common import alert_annotations

ROOT = Path(__file__).resolve().parent.parent

DASHBOARDS = {
    "resilience-overview.json": overview.build,
    "resilience-dependency.json": dependency.build,
}


#: what a current Grafana reads of a dashboard, a panel, a query and a variable; everything else
#: grafanalib writes is a legacy key (``rows``, ``span``, ``height``, ``hideControls``, Angular
#: heatmap options, ``intervalFactor`` ...) that modernize() drops
DASHBOARD_KEYS = frozenset(
    {"annotations", "description", "editable", "fiscalYearStartMonth", "graphTooltip", "links",
     "liveNow", "panels", "refresh", "schemaVersion", "tags", "templating", "time", "timepicker",
     "timezone", "title", "uid", "version"}
)  # fmt: skip
PANEL_KEYS = frozenset(
    {"datasource", "description", "fieldConfig", "gridPos", "id", "links", "options",
     "targets", "title", "type", "transparent"}
)  # fmt: skip
ROW_KEYS = frozenset({"collapsed", "gridPos", "id", "panels", "title", "type"})
#: a Prometheus query as Grafana saves it; no ``intervalFactor`` (deprecated: its step of 2x
#: ``$__interval`` skipped half the samples) and no ``maxDataPoints`` on the panel (Grafana
#: then uses the panel's width in pixels)
TARGET_KEYS = frozenset(
    {"datasource", "editorMode", "expr", "format", "legendFormat", "range", "refId"}
)
VARIABLE_KEYS = frozenset(
    {"allValue", "current", "datasource", "hide", "includeAll", "label", "multi",
     "name", "options", "query", "refresh", "sort", "type"}
)  # fmt: skip
TIMEPICKER_KEYS = frozenset({"refresh_intervals"})


def _no_nulls(value: Any, keep: bool = False) -> Any:
    """``value`` without null members; a threshold step keeps its null (from -Infinity)."""
    if isinstance(value, dict):
        return {
            k: _no_nulls(v, keep=(k == "steps"))
            for k, v in value.items()
            if v is not None or (keep and k == "value")
        }
    if isinstance(value, list):
        if keep:
            return [
                {k: v for k, v in step.items() if v is not None or k == "value"} for step in value
            ]
        return [_no_nulls(v) for v in value]
    return value


def _only(doc: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k in keys}


def _target(target: dict[str, Any]) -> dict[str, Any]:
    out = _only(target, TARGET_KEYS)
    # a range query, or an instant one where the panel shows one number over a long window
    # (grafanalib writes ``instant: false`` on every target)
    if target.get("instant"):
        out.update(editorMode="code", instant=True)
    else:
        out.update(editorMode="code", range=True)
    return out


def _panel(panel: dict[str, Any]) -> dict[str, Any]:
    if panel["type"] == "row":
        row = _only(panel, ROW_KEYS)
        row.update(collapsed=False, panels=[_panel(p) for p in panel.get("panels", [])])
        return row
    out = _only(panel, PANEL_KEYS)
    out["targets"] = [_target(t) for t in panel.get("targets", [])]
    defaults = out.setdefault("fieldConfig", {}).setdefault("defaults", {})
    out["fieldConfig"].setdefault("overrides", [])
    if panel["type"] == "heatmap":  # grafanalib's Heatmap writes Angular-era keys only
        defaults.pop("thresholds", None)
        defaults.setdefault("custom", {}).update(
            hideFrom={"legend": False, "tooltip": False, "viz": False},
            scaleDistribution={"type": "linear"},
        )
    if panel["type"] == "stat" and not defaults.get("custom"):
        defaults.pop("custom", None)  # the stat panel has no custom field config
    options = out.setdefault("options", {})
    if "legend" in options and panel["type"] != "heatmap":
        options["legend"].setdefault("showLegend", True)
        options["legend"].setdefault("calcs", [])
    if "tooltip" in options and panel["type"] != "heatmap":
        options["tooltip"]["sort"] = "desc"  # the largest value first
    return out


def _variable(variable: dict[str, Any]) -> dict[str, Any]:
    out = _only(variable, VARIABLE_KEYS)
    if not out.get("multi"):
        out.pop("allValue", None)
    current = out.get("current", {})
    if current.get("value") in ("$__all", None):
        out["current"] = (
            {"selected": True, "text": ["All"], "value": ["$__all"]} if out.get("multi") else {}
        )
    else:
        out["current"] = {"selected": True, "text": current["text"], "value": current["value"]}
    if not out["current"]:
        del out["current"]
    return out


def modernize(doc: dict[str, Any]) -> dict[str, Any]:
    """grafanalib's output in the model of a current Grafana (``config.SCHEMA_VERSION``): legacy
    keys and explicit nulls dropped, the alert annotations added, UTC and a shared crosshair."""
    doc = _no_nulls(doc)
    out = _only(doc, DASHBOARD_KEYS)
    out.update(
        schemaVersion=config.SCHEMA_VERSION,
        fiscalYearStartMonth=0,
        liveNow=False,
        annotations=alert_annotations(),
        panels=[_panel(p) for p in doc["panels"]],
        templating={"list": [_variable(v) for v in doc["templating"]["list"]]},
        timepicker=_only(doc.get("timepicker", {}), TIMEPICKER_KEYS),
    )
    return out


def dashboard_json(build: Callable[[], Any]) -> str:
    data = json.loads(json.dumps(build().to_json_data(), cls=DashboardEncoder))
    return json.dumps(modernize(data), indent=2, sort_keys=True) + "\n"


def render() -> dict[Path, str]:
    """Every generated file, by path, with the text it must have."""
    config.base_path()  # a bad GRAFANA_BASE_PATH fails here, naming itself
    files = {
        ROOT / "dashboards" / name: dashboard_json(build) for name, build in DASHBOARDS.items()
    }
    files.update({ROOT / "alerts" / name: text for name, text in rules.render().items()})
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if a file would change"
    )
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        outdated = stale(files)
        for path in outdated:
            print(
                f"{path.relative_to(ROOT)} is stale: regenerating it changes it. "
                "Run `python -m dashboards.generate` (or `make dashboards`) and commit the result.",
                file=sys.stderr,
            )
        if outdated:
            return 1
        print(f"{len(files)} generated files are up to date.")
        return 0
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
