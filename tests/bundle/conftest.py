"""Fixtures of the observability-bundle tests: the repository root on sys.path, server binaries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `dashboards` and `alerts` live at the top of the repository
    sys.path.insert(0, str(ROOT))

from .servers import require  # noqa: E402  (needs nothing from the path above, but reads better here)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require("amtool")
