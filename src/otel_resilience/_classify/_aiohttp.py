"""aiohttp: exception type; ``ClientResponseError.status`` and ``.headers``."""

from __future__ import annotations

from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules, exception_types
from ._http import by_status

E = ExternalServiceError
_MOD: Final = "aiohttp.client_exceptions"
_HTTP: Final = "aiohttp.http_exceptions"


def _response_error(exc: BaseException) -> Classification | None:
    if isinstance(exc.__cause__, exception_types(_HTTP, "HttpProcessingError")):
        # the parser's verdict on a malformed response, not a status the server sent
        return Classification(E.CONNECTION_ERROR)
    return by_status(getattr(exc, "status", None), getattr(exc, "headers", None))


_RULES: Final[tuple[Rule, ...]] = (
    (_MOD, ("ServerTimeoutError",), E.TIMEOUT),  # also a ServerConnectionError
    (_MOD, ("TooManyRedirects",), E.BAD_REQUEST),
    (_MOD, ("ContentTypeError",), E.SERVER_ERROR),  # not the body the server promised
    (_MOD, ("ClientResponseError",), _response_error),
    (_MOD, ("ClientConnectionError", "ClientPayloadError"), E.CONNECTION_ERROR),
    (_HTTP, ("HttpProcessingError",), E.CONNECTION_ERROR),
    (_MOD, ("InvalidURL", "RedirectClientError", "NonHttpUrlClientError"), E.BAD_REQUEST),
)


def classify_aiohttp(exc: BaseException) -> Classification | None:
    """aiohttp's exceptions by type; a response error by its status."""
    return by_rules(exc, _RULES)
