"""The dashboard previews: rendered from recorded real data, one per dashboard, kept current."""

from __future__ import annotations

import json

from dashboards import queries, render_previews

PREVIEWS = render_previews.OUT


def test_there_is_a_committed_preview_per_dashboard():
    for path in queries.dashboard_files():
        png = PREVIEWS / path.with_suffix(".png").name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_the_recorded_data_covers_every_panel_query_of_the_current_dashboards():
    # a new or renumbered panel needs new data: `python -m dashboards.render_previews`
    recorded = json.loads(render_previews.DATA.read_text())["panels"]
    for path in queries.dashboard_files():
        doc = json.loads(path.read_text())
        for panel, target in queries.queries(doc):
            key = f"{doc['uid']}/{panel['id']}/{target['refId']}"
            assert key in recorded, f"{path.name}: no preview data for {panel['title']!r}"


def test_previews_render_from_the_recorded_data(tmp_path):
    assert render_previews.main(["--data", str(render_previews.DATA), "--out", str(tmp_path)]) == 0
    for path in queries.dashboard_files():
        png = tmp_path / path.with_suffix(".png").name
        assert png.stat().st_size > 50_000  # a picture with panels in it, not an empty canvas
