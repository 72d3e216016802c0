"""redis-py (sync and ``redis.asyncio`` share the exception classes): exception type."""

from __future__ import annotations

from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules

E = ExternalServiceError
_MOD: Final = "redis.exceptions"

_RULES: Final[tuple[Rule, ...]] = tuple(
    (_MOD, (name,), error_type)
    for name, error_type in (
        # subclasses before their bases: the first three are ConnectionErrors, the rest
        # ResponseErrors
        ("AuthenticationError", E.AUTHENTICATION_ERROR),
        ("AuthenticationWrongNumberOfArgsError", E.AUTHENTICATION_ERROR),
        ("AuthorizationError", E.PERMISSION_DENIED),
        ("BusyLoadingError", E.SERVER_ERROR),
        ("TimeoutError", E.TIMEOUT),
        ("ConnectionError", E.CONNECTION_ERROR),
        ("InvalidResponse", E.CONNECTION_ERROR),  # not a Redis server on the other end
        ("NoPermissionError", E.PERMISSION_DENIED),
        ("TryAgainError", E.SERVER_ERROR),
        ("ClusterDownError", E.SERVER_ERROR),
        ("ReadOnlyError", E.SERVER_ERROR),  # a failover is in progress
        ("OutOfMemoryError", E.SERVER_ERROR),
        ("ClusterError", E.SERVER_ERROR),
        ("SlotNotCoveredError", E.SERVER_ERROR),
        ("ResponseError", E.BAD_REQUEST),
        ("DataError", E.BAD_REQUEST),
    )
)


def classify_redis(exc: BaseException) -> Classification | None:
    """redis-py's exceptions by type."""
    return by_rules(exc, _RULES)
