"""Rate limiting per service: the interface the call path uses.

The implementations (local and Redis-backed, on the ``limits`` library) are filled in by the
rate-limiting work; until then a configured ``RATE_LIMIT`` fails loudly at the first call.
"""

from __future__ import annotations

from typing import Protocol

from ._config import ReliabilityConfig

__all__ = ["RateLimiter", "get_rate_limiter"]


class RateLimiter(Protocol):
    """Admits calls at a configured rate."""

    def acquire(self, max_wait_sec: float) -> bool:
        """Take a slot, waiting up to ``max_wait_sec``; False when none came in time."""
        ...

    async def acquire_async(self, max_wait_sec: float) -> bool:
        """The asyncio twin of :meth:`acquire` (waits with ``asyncio.sleep``)."""
        ...


def get_rate_limiter(service_name: str, config: ReliabilityConfig) -> RateLimiter | None:
    """The limiter of a service, or None when its config sets no ``RATE_LIMIT``."""
    if config.RATE_LIMIT is None:
        return None
    raise NotImplementedError("RATE_LIMIT is not implemented yet")
