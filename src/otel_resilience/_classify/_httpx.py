"""httpx (and its successor httpx2): exception type; ``HTTPStatusError.response``."""

from __future__ import annotations

from .._errors import ExternalServiceError
from ._base import Classification, Classifier, Rule, by_rules
from ._http import by_status

E = ExternalServiceError


def _status_error(exc: BaseException) -> Classification | None:
    response = getattr(exc, "response", None)
    return by_status(getattr(response, "status_code", None), getattr(response, "headers", None))


def _rules(package: str) -> tuple[Rule, ...]:
    return (
        (package, ("HTTPStatusError",), _status_error),
        (package, ("TimeoutException",), E.TIMEOUT),
        (package, ("NetworkError", "RemoteProtocolError", "ProxyError"), E.CONNECTION_ERROR),
        (
            package,
            ("LocalProtocolError", "UnsupportedProtocol", "InvalidURL", "TooManyRedirects"),
            E.BAD_REQUEST,
        ),
        (package, ("DecodingError",), E.SERVER_ERROR),
    )


def httpx_classifier(package: str) -> Classifier:
    """The classifier of httpx or a package with httpx's exception classes (httpx2)."""
    rules = _rules(package)

    def classify_httpx(exc: BaseException) -> Classification | None:
        return by_rules(exc, rules)

    classify_httpx.__name__ = f"classify_{package}"
    return classify_httpx
