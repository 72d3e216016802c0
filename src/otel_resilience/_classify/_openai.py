"""openai: exception type, then ``status_code``; ``retry-after-ms`` / ``Retry-After``."""

from __future__ import annotations

from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules
from ._http import headers_retry_after, status_error_type

E = ExternalServiceError
_MOD: Final = "openai"

_CLASSES: Final = (
    ("APITimeoutError", E.TIMEOUT),  # before APIConnectionError, its base
    ("APIConnectionError", E.CONNECTION_ERROR),
    ("RateLimitError", E.RATE_LIMIT),
    ("AuthenticationError", E.AUTHENTICATION_ERROR),
    ("PermissionDeniedError", E.PERMISSION_DENIED),
    ("NotFoundError", E.NOT_FOUND),
    ("BadRequestError", E.BAD_REQUEST),
    ("UnprocessableEntityError", E.BAD_REQUEST),
    ("APIResponseValidationError", E.SERVER_ERROR),
    ("LengthFinishReasonError", E.BAD_REQUEST),
    ("ContentFilterFinishReasonError", E.BAD_REQUEST),
)


def _status_error(exc: BaseException) -> Classification:
    """Any other ``APIStatusError`` (``InternalServerError``, a 409, ...): by its status."""
    return Classification(status_error_type(getattr(exc, "status_code", None)) or E.SERVER_ERROR)


_RULES: Final[tuple[Rule, ...]] = (
    *((_MOD, (name,), error_type) for name, error_type in _CLASSES),
    (_MOD, ("APIStatusError",), _status_error),
)


def classify_openai(exc: BaseException) -> Classification | None:
    """openai's exceptions by type (a status error by its status), with the response's delay."""
    response = getattr(exc, "response", None)
    retry_after = headers_retry_after(getattr(response, "headers", None))
    found = by_rules(exc, _RULES)
    return None if found is None else Classification(found.error_type, retry_after)
