"""The contract suite's Redis server: the fixtures of ``tests/redis`` (``redis_support``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "redis"))

from redis_support import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]
