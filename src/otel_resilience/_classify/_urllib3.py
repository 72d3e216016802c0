"""urllib3: exception type (``MaxRetryError`` is judged by its ``reason``)."""

from __future__ import annotations

from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules, connection_or_timeout
from ._http import too_many_errors

E = ExternalServiceError
_MOD: Final = "urllib3.exceptions"


def _max_retry(exc: BaseException) -> Classification | None:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException) and reason is not exc:
        return classify_urllib3(reason)
    return Classification(E.CONNECTION_ERROR)


_RULES: Final[tuple[Rule, ...]] = (
    (_MOD, ("MaxRetryError",), _max_retry),
    (_MOD, ("ResponseError",), too_many_errors),  # too many error responses
    # NewConnectionError subclasses ConnectTimeoutError: a refused connection is not a timeout
    (_MOD, ("NewConnectionError",), E.CONNECTION_ERROR),
    (_MOD, ("TimeoutError",), E.TIMEOUT),
    (
        _MOD,
        ("ProtocolError", "ProxyError", "SSLError", "PoolError", "IncompleteRead"),
        connection_or_timeout,
    ),
    (_MOD, ("DecodeError", "HeaderParsingError"), E.SERVER_ERROR),
    (_MOD, ("LocationValueError",), E.BAD_REQUEST),
)


def classify_urllib3(exc: BaseException) -> Classification | None:
    """urllib3's exceptions by type."""
    return by_rules(exc, _RULES)
