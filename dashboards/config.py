"""The knobs of the dashboards (the alerts' knobs are in ``alerts/config.py``; the dashboards read
those too). Change a value, run ``python -m dashboards.generate`` and commit the JSON.
"""

from __future__ import annotations

import re
from typing import Final

#: Where Grafana is served, as the path its drill-down links start with: ``""`` for Grafana at
#: the root of its host (``http://grafana:3000/d/...``), ``"/grafana"`` behind a reverse proxy
#: that serves it under ``/grafana`` (Grafana's ``root_url`` with ``serve_from_sub_path``).
GRAFANA_BASE_PATH: Final = ""

#: The Grafana release the dashboards' model (``schemaVersion``) is that of. 39 is Grafana
#: 10.3 to 11.2; every later Grafana migrates it on load, none needs an Angular plugin for it.
SCHEMA_VERSION: Final = 39

_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def base_path(value: str | None = None) -> str:
    """``value`` (by default ``GRAFANA_BASE_PATH``) checked: empty, or ``/segment[/segment...]``
    without a trailing slash."""
    if value is None:
        value = GRAFANA_BASE_PATH
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        raise ValueError(
            f"dashboards.config.GRAFANA_BASE_PATH = {value!r} is not a path prefix: use '' "
            "(Grafana at the root of its host) or a path such as '/grafana' (a leading slash, "
            "no trailing slash, letters, digits and . _ ~ - in each segment)"
        )
    return value
