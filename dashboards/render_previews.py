"""Render preview pictures of the dashboards from real Prometheus data (Grafana cannot run here).

    python -m dashboards.render_previews            # run the end-to-end test, save, render
    python -m dashboards.render_previews --data docs/previews/data.json   # render saved data

The data are the query_range results of every panel's queries, recorded by the end-to-end test
(tests/bundle/test_bundle_e2e.py) from a real Prometheus scraping a real workload of the library.
The pictures imitate Grafana's layout (the dashboards' own grid, titles, units, thresholds, value
mappings); they are previews drawn with matplotlib, not Grafana screenshots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from . import queries

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "previews"
DATA = OUT / "data.json"

BG, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#fade2a", "#96d98d", "#ffb357", "#ca95e5", "#ff9830"]  # fmt: skip
COLORS = {"green": "#73bf69", "yellow": "#fade2a", "orange": "#ff9830", "red": "#f2495c"}
MAX_LEGEND = 8
TICK_ROOM = 0.035  # of the figure's width, left of each panel, for the y tick labels
GAP = 0.01  # of the figure's width, between panels
ROW_UNIT = 0.42  # inches per Grafana grid row
WIDTH = 20.0  # inches for 24 grid columns


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def _fmt(unit: str, value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit in ("reqps", "ops"):
        return f"{value:.3g} {'req/s' if unit == 'reqps' else 'ops/s'}"
    if unit.startswith("suffix:"):
        return f"{value:.3g}{unit.removeprefix('suffix:')}"
    return f"{value:.3g}"


def _series(results: list[dict[str, Any]], start: float) -> list[tuple[dict, list, list]]:
    out = []
    for r in results:
        xs = [float(t) - start for t, _ in r["values"]]
        ys = [float(v) for _, v in r["values"]]
        out.append((r["metric"], xs, ys))
    return out


def _steps(panel: dict[str, Any]) -> list[tuple[str, float]]:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    return [(s["color"], s["value"]) for s in steps if s["value"] is not None]


def _style(ax: Any) -> None:
    ax.set_facecolor(PANEL)
    ax.tick_params(colors=TEXT, labelsize=6.5)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.grid(color=GRID, linewidth=0.5)


def _timeseries(ax: Any, panel: dict, data: list, unit: str, start: float) -> None:
    _style(ax)
    custom = panel["fieldConfig"]["defaults"].get("custom", {})
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    lines = []
    for target, results in data:
        for labels, xs, ys in _series(results, start):
            lines.append((_legend(target["legendFormat"], labels), xs, ys))
    ymax = 0.0
    if stacked and lines:
        xs = lines[0][1]
        aligned = [ys if len(ys) == len(xs) else [0.0] * len(xs) for _, _, ys in lines]
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(lines))]
        ax.stackplot(xs, *aligned, labels=[name for name, _, _ in lines], colors=colors, alpha=0.7)
        ymax = max((sum(v) for v in zip(*aligned, strict=True)), default=0.0)
    else:
        for i, (name, xs, ys) in enumerate(lines):
            color = PALETTE[i % len(PALETTE)]
            finite = [y for y in ys if not math.isnan(y)]
            ymax = max([ymax, *finite])
            if bars:
                ax.bar(xs, ys, width=1.6, label=name, color=color, alpha=0.8)
            else:
                ax.plot(xs, ys, label=name, color=color, linewidth=1.2)
    for color, value in _steps(panel):
        if value <= max(ymax, 1e-12) * 1.6:
            ax.axhline(value, color=COLORS.get(color, color), linestyle="--", linewidth=1)
        else:
            ax.text(0.99, 0.97, f"threshold {_fmt(unit, value)} (above)", transform=ax.transAxes,
                    ha="right", va="top", fontsize=6, color=COLORS.get(color, color))  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(lambda v, _: _fmt(unit, v))
    if lines:
        handles, names = ax.get_legend_handles_labels()
        if len(names) > MAX_LEGEND:  # Grafana would scroll; a picture cannot
            handles = handles[: MAX_LEGEND - 1]
            names = [*names[: MAX_LEGEND - 1], f"... {len(lines) - MAX_LEGEND + 1} more"]
            handles.append(Rectangle((0, 0), 0, 0, alpha=0))
        ax.legend(handles, names, fontsize=5.5, loc="upper left", facecolor=PANEL,
                  edgecolor=GRID, labelcolor=TEXT, ncol=2 if len(names) > 4 else 1,
                  framealpha=0.8)  # fmt: skip


def _mapping(panel: dict) -> dict[str, tuple[str, str]]:
    out = {}
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        for value, shown in mapping.get("options", {}).items():
            out[value] = (shown["text"], COLORS.get(shown["color"], shown["color"]))
    return out


def _state_timeline(ax: Any, panel: dict, data: list, start: float) -> None:
    _style(ax)
    ax.grid(False)
    mapping = _mapping(panel)
    rows = [
        (_legend(t["legendFormat"], labels), xs, ys)
        for t, results in data
        for labels, xs, ys in _series(results, start)
    ]
    rows.sort(key=lambda r: r[0])
    for i, (_, xs, ys) in enumerate(rows):
        for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
            width = (xs[j + 1] - x) if j + 1 < len(xs) else 2.0
            color = mapping.get(str(int(y)), ("?", "#888888"))[1]
            ax.add_patch(Rectangle((x, i + 0.1), width, 0.8, color=color, linewidth=0))
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [r[0] for r in rows])
    ax.set_ylim(0, max(len(rows), 1))
    if rows:
        ax.set_xlim(min(r[1][0] for r in rows), max(r[1][-1] for r in rows) + 2)
    handles = [Rectangle((0, 0), 1, 1, color=c) for _, (_, c) in sorted(mapping.items())]
    ax.legend(handles, [t for _, (t, _) in sorted(mapping.items())], fontsize=6, ncol=3,
              loc="upper center", bbox_to_anchor=(0.5, -0.12), facecolor=PANEL,
              edgecolor=GRID, labelcolor=TEXT)  # fmt: skip


def _heatmap(ax: Any, data: list, start: float) -> None:
    _style(ax)
    ax.grid(False)
    (_, results), *_ = data
    buckets = sorted(
        ((float(r["metric"]["le"]), ys, xs) for r in results for _, xs, ys in _series([r], start)),
        key=lambda b: b[0],
    )
    if not buckets:
        return
    xs = buckets[0][2]
    rows, labels, previous = [], [], [0.0] * len(xs)
    for le, ys, _ in buckets:
        ys = ys if len(ys) == len(xs) else [0.0] * len(xs)
        rows.append([max(0.0, y - p) for y, p in zip(ys, previous, strict=True)])
        labels.append("+Inf" if math.isinf(le) else _fmt("s", le))
        previous = ys
    keep = [i for i, row in enumerate(rows) if any(v > 0 for v in row)] or [0]
    lo, hi = max(0, keep[0] - 1), min(len(rows), keep[-1] + 2)
    grid = rows[lo:hi]
    ax.imshow(grid, aspect="auto", origin="lower", cmap="Oranges",
              extent=(xs[0], xs[-1], 0, len(grid)), interpolation="nearest")  # fmt: skip
    ax.set_yticks([i + 0.5 for i in range(len(grid))], labels[lo:hi])
    ax.set_ylabel("delay ≤", color=TEXT, fontsize=6.5)


def _stat(ax: Any, panel: dict, data: list, unit: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    values = [float(r["values"][-1][1]) for _, results in data for r in results if r["values"]]
    value = max(values) if values else float("nan")
    mapping = _mapping(panel)
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    base = next((s["color"] for s in steps if s["value"] is None), "green")
    color = COLORS.get(base, base)  # the color below the first threshold
    for step_color, threshold in _steps(panel):
        if value >= threshold:
            color = COLORS.get(step_color, step_color)
    if mapping and not math.isnan(value):
        text, color = mapping.get(str(int(value)), (_fmt(unit, value), color))
    else:
        text = _fmt(unit, value)
    ax.set_facecolor(color)
    ax.text(0.5, 0.42, text, ha="center", va="center", fontsize=16, color="white",
            weight="bold", transform=ax.transAxes)  # fmt: skip


def render(doc: dict[str, Any], recorded: dict[str, Any], out: Path) -> None:
    start = recorded["start"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in doc["panels"])
    height = bottom * ROW_UNIT + 1.0
    fig = plt.figure(figsize=(WIDTH, height), facecolor=BG)
    service, endpoint = recorded.get("variables", {}).get(doc["uid"], (".*", ".*"))
    variables = (
        "Variables: all services, all endpoints."
        if (service, endpoint) == (".*", ".*")
        else f"Variables: service={service}, endpoint={endpoint}."
    )
    fig.text(
        0.01, 1 - 0.35 / height, doc["title"], color=TEXT, fontsize=15, weight="bold", va="top"
    )
    fig.text(0.99, 1 - 0.38 / height,
             "PREVIEW rendered with matplotlib from real Prometheus data of the end-to-end test "
             "(tests/bundle/test_bundle_e2e.py); not a Grafana screenshot. x axis: seconds since "
             f"the workload started. {variables}",
             color="#8e8e8e", fontsize=8, ha="right", va="top")  # fmt: skip
    top = 0.8  # inches kept for the titles above

    def box(grid: dict, pad_top: float = 0.0) -> tuple[float, float, float, float]:
        x = grid["x"] / 24
        w = grid["w"] / 24
        y_in = top + grid["y"] * ROW_UNIT + pad_top
        h_in = grid["h"] * ROW_UNIT - pad_top
        return x + TICK_ROOM, 1 - (y_in + h_in) / height, w - TICK_ROOM - GAP, h_in / height

    for panel in doc["panels"]:
        grid = panel["gridPos"]
        if panel["type"] == "row":
            fig.text(grid["x"] / 24 + 0.005, 1 - (top + grid["y"] * ROW_UNIT + 0.25) / height,
                     panel["title"], color=TEXT, fontsize=11, weight="bold")  # fmt: skip
            continue
        data = [
            (t, recorded["panels"].get(f"{doc['uid']}/{panel['id']}/{t['refId']}", []))
            for t in panel["targets"]
        ]
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        x, y, w, h = box(grid, pad_top=0.35)
        inner_h = h - 0.55 / height if panel["type"] != "stat" else h
        shift = 0.05 if panel["type"] == "state-timeline" else 0.0
        ax = fig.add_axes((x + shift, y + (h - inner_h), w - shift, inner_h))
        title_y = y + h + 0.08 / height
        fig.text(x, title_y, panel["title"], color=TEXT, fontsize=8.5, weight="bold")
        if panel["type"] == "timeseries":
            _timeseries(ax, panel, data, unit, start)
        elif panel["type"] == "state-timeline":
            _state_timeline(ax, panel, data, start)
        elif panel["type"] == "heatmap":
            _heatmap(ax, data, start)
        elif panel["type"] == "stat":
            _stat(ax, panel, data, unit)
        if not any(results for _, results in data):
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center",
                    color="#8e8e8e", fontsize=11)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=BG)
    plt.close(fig)


def collect(data_file: Path, seconds: int) -> None:
    """Run the end-to-end test, letting it record every panel's data into ``data_file``."""
    env = {**os.environ, "OTEL_RESILIENCE_PREVIEW_DATA": str(data_file),
           "OTEL_RESILIENCE_PREVIEW_SECONDS": str(seconds)}  # fmt: skip
    test = "tests/bundle/test_bundle_e2e.py::test_every_dashboard_query_returns_data[pull]"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--no-cov", "-p", "no:cacheprovider", test],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    if not data_file.exists():
        raise SystemExit(f"the end-to-end test recorded no data into {data_file} (skipped?)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.render_previews", description=__doc__
    )
    parser.add_argument("--data", type=Path, help="recorded data (default: run the e2e test)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    parser.add_argument("--seconds", type=int, default=90, help="workload time before recording")
    args = parser.parse_args(argv)
    data_file = args.data
    if data_file is None:
        data_file = DATA
        with tempfile.TemporaryDirectory() as tmp:
            recorded_file = Path(tmp) / "data.json"
            collect(recorded_file, args.seconds)
            data_file.parent.mkdir(parents=True, exist_ok=True)
            data_file.write_text(recorded_file.read_text())
    recorded = json.loads(data_file.read_text())
    for path in queries.dashboard_files():
        doc = json.loads(path.read_text())
        out = args.out / path.with_suffix(".png").name
        render(doc, recorded, out)
        print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
