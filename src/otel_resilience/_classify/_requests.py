"""requests: exception type (a ``ConnectionError`` caused by a read timeout is a timeout);
``HTTPError.response`` status and headers."""

from __future__ import annotations

from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules, connection_or_timeout, exception_types
from ._http import by_status, too_many_errors

E = ExternalServiceError
_MOD: Final = "requests.exceptions"

_RULES: Final[tuple[Rule, ...]] = (
    # ConnectTimeout is both a Timeout and a ConnectionError
    (_MOD, ("Timeout",), E.TIMEOUT),
    (_MOD, ("RetryError",), too_many_errors),
    # a timeout while streaming the body surfaces as a ConnectionError
    (_MOD, ("ConnectionError", "ChunkedEncodingError"), connection_or_timeout),
    # the response was not what the server promised
    (_MOD, ("ContentDecodingError", "JSONDecodeError"), E.SERVER_ERROR),
    (
        _MOD,
        (
            "URLRequired",
            "MissingSchema",
            "InvalidSchema",
            "InvalidURL",
            "InvalidHeader",
            "InvalidJSONError",
            "TooManyRedirects",
        ),
        E.BAD_REQUEST,
    ),
)


def _http_error(exc: BaseException) -> Classification | None:
    if not isinstance(exc, exception_types(_MOD, "HTTPError")):
        return None
    response = getattr(exc, "response", None)
    if response is None:
        return None
    return by_status(getattr(response, "status_code", None), response.headers)


def classify_requests(exc: BaseException) -> Classification | None:
    """An error status of the response first, then the exception type."""
    return _http_error(exc) or by_rules(exc, _RULES)
