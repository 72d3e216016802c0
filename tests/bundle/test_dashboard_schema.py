"""Both dashboards type-check against the pinned @grafana/schema (dashboards/schema/), and are in
the model of a current Grafana: no legacy grafanalib keys, no explicit nulls, shared crosshair,
sorted tooltips, UTC.

The schema check needs node and npm: ``npm ci`` installs the lockfile's packages into
dashboards/schema/node_modules (gitignored). Locally it skips when npm is missing; with CI=true it
fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dashboards import config, generate, queries

SCHEMA_DIR = queries.HERE / "schema"
DOCS = {path.name: json.loads(path.read_text()) for path in queries.dashboard_files()}
#: keys grafanalib writes that a current Grafana does not read (or reads only to migrate)
LEGACY_KEYS = {"rows", "span", "height", "minSpan", "hideControls", "sharedCrosshair", "style",
               "intervalFactor", "maxDataPoints", "step", "cards", "dataFormat", "heatmap",
               "hideZeroBuckets", "highlightCards", "xAxis", "yBucketBound", "reverseYBuckets",
               "__inputs", "gnetId", "error", "editable_panel", "auto_count", "auto_min",
               "tagsQuery", "tagValuesQuery", "useTags"}  # fmt: skip


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (Debian package 'nodejs'/'npm'); CI installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _versions(lockfile: Path) -> dict[str, str]:
    packages = json.loads(lockfile.read_text()).get("packages", {})
    return {name: meta.get("version", "") for name, meta in packages.items() if name}


def _locked() -> dict[str, str]:
    return _versions(SCHEMA_DIR / "package-lock.json")


def _installed() -> dict[str, str]:
    """What ``npm ci`` installed last (npm's own record in node_modules), or nothing."""
    stamp = SCHEMA_DIR / "node_modules" / ".package-lock.json"
    return _versions(stamp) if stamp.exists() else {}


@pytest.fixture(scope="module")
def checker() -> list[str]:
    """``node check.mjs`` with the lockfile's packages installed (``npm ci``, once per lockfile)."""
    npm, node = _tool("npm"), _tool("node")
    if _installed() != _locked():
        result = subprocess.run(
            [npm, "ci", "--prefix", str(SCHEMA_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return [node, str(SCHEMA_DIR / "check.mjs")]


def _check(checker: list[str], *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*checker, *map(str, files)], capture_output=True, text=True, timeout=300, check=False
    )


def test_both_dashboards_match_the_pinned_grafana_schema(checker):
    result = _check(checker, *queries.dashboard_files())
    assert result.returncode == 0, result.stderr
    pinned = json.loads((SCHEMA_DIR / "package.json").read_text())["devDependencies"]
    assert f"match @grafana/schema {pinned['@grafana/schema']}" in result.stdout


@pytest.mark.parametrize(
    ("where", "key", "value", "named"),
    [
        ("panel", "span", 12, "span"),
        ("target", "intervalFactor", 2, "intervalFactor"),
        ("dashboard", "rows", [], "rows"),
        ("options", "tooltip", {"mode": "sideways", "sort": "desc"}, "sideways"),
    ],
)
def test_the_checker_rejects_a_legacy_key_or_a_wrong_value_naming_it(
    checker, tmp_path, where, key, value, named
):
    doc = json.loads(json.dumps(DOCS["resilience-overview.json"]))
    panel = next(p for p in doc["panels"] if p["type"] == "timeseries")
    into: dict[str, Any] = {
        "panel": panel,
        "target": panel["targets"][0],
        "dashboard": doc,
        "options": panel["options"],
    }[where]
    into[key] = value
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    result = _check(checker, broken)
    assert result.returncode == 1
    assert named in result.stderr


def _walk(value: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """(path, key, value) of every member of every object."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.append((path, k, v))
            found += _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _walk(v, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("name", sorted(DOCS))
def test_current_model_without_legacy_keys_or_nulls(name):
    doc = DOCS[name]
    assert doc["schemaVersion"] == config.SCHEMA_VERSION >= 39
    members = _walk(doc)
    legacy = {(path, key) for path, key, _ in members if key in LEGACY_KEYS}
    assert not legacy
    # the one null the schema has: a threshold base step's value (from -Infinity)
    nulls = {(p, k) for p, k, v in members if v is None}
    assert all(k == "value" and ".thresholds.steps[0]" in p for p, k in nulls), nulls


@pytest.mark.parametrize("name", sorted(DOCS))
def test_shared_crosshair_sorted_tooltips_and_utc(name):
    doc = DOCS[name]
    assert doc["graphTooltip"] == 1
    assert doc["timezone"] == "utc"
    for panel in queries.panels(doc):
        if panel["type"] in ("timeseries", "state-timeline"):
            assert panel["options"]["tooltip"]["sort"] == "desc", panel["title"]


@pytest.mark.parametrize("build", generate.DASHBOARDS.values(), ids=list(generate.DASHBOARDS))
def test_grafanalib_alone_writes_legacy_keys_that_modernize_drops(build):
    raw = json.loads(json.dumps(build().to_json_data(), cls=generate.DashboardEncoder))
    raw_keys = {key for _, key, _ in _walk(raw)}
    assert {"rows", "span", "maxDataPoints", "intervalFactor", "hideControls"} <= raw_keys
    assert raw["schemaVersion"] < 39
    modern = generate.modernize(raw)
    assert not {key for _, key, _ in _walk(modern)} & LEGACY_KEYS
    assert modern["schemaVersion"] == config.SCHEMA_VERSION


def test_a_bad_base_path_is_refused_naming_the_knob():
    assert config.base_path("") == ""
    assert config.base_path("/grafana/ops") == "/grafana/ops"
    for bad in ("grafana", "/grafana/", "/a b", "http://x/grafana", 3):
        with pytest.raises(ValueError, match=r"GRAFANA_BASE_PATH = .* is not a path prefix"):
            config.base_path(bad)
