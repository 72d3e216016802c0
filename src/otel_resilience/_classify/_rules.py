"""The built-in rules for any exception: builtin type and errno, HTTP status, message keywords.

Tried after the application's classifiers and the client libraries' ones, strongest first.
"""

from __future__ import annotations

import errno
import re
import socket
from types import MappingProxyType
from typing import Any, Final

from .._errors import ExternalServiceError
from ._base import Classification, attr, safe_str
from ._http import find_retry_after, find_status, status_to_error_type

E = ExternalServiceError

_CONNECTION_ERRNOS: Final = (
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.ENOTCONN,
    errno.EADDRNOTAVAIL,
)
#: ``OSError.errno`` -> error type (a driver's own OSError subclass carries them too)
_ERRNOS: Final = MappingProxyType(
    {errno.ETIMEDOUT: E.TIMEOUT, **dict.fromkeys(_CONNECTION_ERRNOS, E.CONNECTION_ERROR)}
)


def _by_errno(exc: OSError) -> ExternalServiceError | None:
    code: Any = attr(exc, "errno")  # anything may be there; an unhashable value raises
    return _ERRNOS.get(code)


def by_type(exc: BaseException) -> ExternalServiceError | None:
    """``TimeoutError``, the ``ConnectionError`` family, DNS errors, connection errnos."""
    if isinstance(exc, TimeoutError):  # socket.timeout and asyncio.TimeoutError are aliases
        return E.TIMEOUT
    if isinstance(exc, ConnectionError | socket.gaierror | socket.herror):
        return E.CONNECTION_ERROR
    if isinstance(exc, OSError):
        return _by_errno(exc)
    return None


# --- message keywords: the last resort -----------------------------------------------------

_KEYWORDS: Final[tuple[tuple[ExternalServiceError, tuple[str, ...]], ...]] = (
    (E.TIMEOUT, ("timeout", "timed out", "deadline")),
    (E.RATE_LIMIT, ("rate limit", "rate-limit", "ratelimit", "too many requests", "429", "quota")),
    (
        E.AUTHENTICATION_ERROR,
        ("unauthorized", "unauthenticated", "authentication", "invalid api key", "401"),
    ),
    (E.PERMISSION_DENIED, ("permission denied", "forbidden", "access denied", "403")),
    (E.NOT_FOUND, ("not found", "404", "no such")),
    (
        E.CONNECTION_ERROR,
        ("connection", "connect", "refused", "reset by peer", "unreachable", "dns", "network"),
    ),
    (
        E.SERVER_ERROR,
        (
            "internal server error",
            "service unavailable",
            "bad gateway",
            "server error",
            "500",
            "502",
            "503",
        ),
    ),
    (E.BAD_REQUEST, ("bad request", "invalid", "400", "422")),
)


def _keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a keyword list; numbers (status codes) match only as whole numbers."""
    parts = [
        rf"(?<!\d){re.escape(word)}(?!\d)" if word.isdigit() else re.escape(word)
        for word in keywords
    ]
    return re.compile("|".join(parts))


_KEYWORD_PATTERNS: Final = tuple(
    (error_type, _keyword_pattern(keywords)) for error_type, keywords in _KEYWORDS
)


def by_message(exc: BaseException) -> ExternalServiceError:
    """The first error type whose keywords the message contains, else ``unknown_error``."""
    text = safe_str(exc).lower()
    for error_type, pattern in _KEYWORD_PATTERNS:
        if pattern.search(text) is not None:
            return error_type
    return E.UNKNOWN_ERROR


def _guarded_type(exc: BaseException) -> ExternalServiceError | None:
    try:
        return by_type(exc)
    except Exception:  # isinstance() raises when the exception's __class__ property does
        return None


def _by_status(exc: BaseException) -> ExternalServiceError | None:
    status = find_status(exc)
    return None if status is None else status_to_error_type(status)


def built_in(exc: BaseException) -> Classification:
    """Type, then HTTP status, then message keywords; ``Retry-After`` wherever it is."""
    retry_after = find_retry_after(exc)  # every attribute read in it is guarded
    error_type = _guarded_type(exc) or _by_status(exc) or by_message(exc)
    return Classification(error_type, retry_after)
