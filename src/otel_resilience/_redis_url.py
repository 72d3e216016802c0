"""Is a ``REDIS_URL`` one redis-py can use? Checked when the config loads, not at the first call.

redis-py reads URLs with :func:`redis.connection.parse_url`, which raises on some mistakes
(``redis://host:notaport``) and silently ignores others (``redis://host:6379/notadb`` connects
to database 0). Both are refused here. ``redis`` is an optional extra, so it is imported only
when it is installed; without it the same rules are applied with :mod:`urllib.parse` (the
store cannot be used without redis-py anyway, which says so at the first call).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from ._redact import redact_text, url_secrets

#: what a REDIS_URL may look like, in words (for error messages)
ACCEPTED: Final = (
    "redis://[[user]:password@]host[:port][/db], rediss://... (TLS) or unix://[[user]:password@]"
    "/path/to/socket[?db=n], with a port from 1 to 65535 and a database number >= 0"
)

_SCHEMES: Final = ("redis", "rediss", "unix")
#: query parameters redis-py converts to numbers (a wrong one fails at the first connection)
_NUMBERS: Final[Mapping[str, Callable[[str], float]]] = MappingProxyType(
    {
        "db": int,
        "socket_timeout": float,
        "socket_connect_timeout": float,
        "socket_read_size": int,
        "max_connections": int,
        "health_check_interval": int,
        "timeout": float,
        "protocol": int,
    }
)


def _probe_redis() -> Any:
    """redis-py, or None when the optional extra is not installed (tests replace this)."""
    try:
        import redis.connection
    except ImportError:
        return None
    return redis


@functools.lru_cache(maxsize=64)
def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` (words without its secrets), or None when redis-py can use it."""
    try:
        problem = _check_with_urllib(url)
        if problem is None:
            redis = _probe_redis()
            if redis is not None:
                problem = _check_with_redis(redis, url)
    except ValueError as exc:  # urllib: "Port could not be cast to integer value as 'x'"
        problem = str(exc)
    if problem is None:
        return None
    return _scrub(problem, url)


def _check_with_urllib(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not url.startswith(parts.scheme + "://"):
        return "the scheme must be redis://, rediss:// or unix://"
    address = _socket_problem if parts.scheme == "unix" else _host_problem
    return _query_problem(parts) or address(parts)


def _query_problem(parts: SplitResult) -> str | None:
    query = parse_qs(parts.query, keep_blank_values=True)
    for name, convert in _NUMBERS.items():
        for value in query.get(name, ()):
            try:
                number = convert(value)
            except ValueError:
                return f"the query parameter {name}={value!r} is not a number"
            if number < 0:
                return f"the query parameter {name}={value!r} is negative"
    return None


def _socket_problem(parts: SplitResult) -> str | None:
    return None if unquote(parts.path) else "a unix:// URL needs the socket's path"


def _host_problem(parts: SplitResult) -> str | None:
    if not parts.hostname:
        return "the host is missing"
    if parts.port == 0:  # ValueError for a port that is not a number from 0 to 65535
        return "the port must be from 1 to 65535"
    db = unquote(parts.path)
    if db not in ("", "/") and re.fullmatch(r"/[0-9]+", db) is None:
        shown = db[1:] if db.startswith("/") else db
        return f"the database {shown!r} is not a number >= 0"
    return None


def _check_with_redis(redis: Any, url: str) -> str | None:
    try:
        pool = redis.ConnectionPool.from_url(url)
        # builds a connection object without connecting: unknown query parameters fail here,
        # not at the first command (where every call would see an "unreachable" store)
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        return f"redis-py refuses it ({exc})"
    return None


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's password, in case a message quoted part of it."""
    return redact_text(text, url_secrets(url))
