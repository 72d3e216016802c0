"""A real redis-server on a free 127.0.0.1 port for the shared-state tests.

The fixtures live in :mod:`redis_support` (``tests/breakers`` uses them too).
"""

from redis_support import async_clients, rclient, redis_server, redis_url

__all__ = ["async_clients", "rclient", "redis_server", "redis_url"]
