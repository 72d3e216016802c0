"""Shared helpers of the torture suite: the redis-server helpers of tests/redis, importable here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "redis_support" not in sys.modules:  # tests/redis/conftest.py may have imported it already
    _path = Path(__file__).resolve().parent.parent / "redis" / "redis_support.py"
    _spec = importlib.util.spec_from_file_location("redis_support", _path)
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["redis_support"] = _module
    _spec.loader.exec_module(_module)
