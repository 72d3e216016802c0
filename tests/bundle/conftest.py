"""Fixtures of the observability-bundle tests: the repository root on sys.path, server binaries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .servers import require

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `dashboards` and `alerts` live at the top of the repository
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require("amtool")
