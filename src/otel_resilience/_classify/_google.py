"""google-api-core and google-auth.

``GoogleAPICallError`` by gRPC status, then HTTP ``code``; ``RetryInfo`` details; ``RetryError``
(google's own retry gave up) by its innermost cause; ``google.auth`` errors by type.
"""

from __future__ import annotations

import sys
from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules, exception_types
from ._http import headers_retry_after, status_error_type
from ._rpc import grpc_error_type, metadata_retry_after, retry_info_delay
from ._rules import built_in

E = ExternalServiceError
_API: Final = "google.api_core.exceptions"
_AUTH: Final = "google.auth.exceptions"

#: nested RetryErrors followed at most
_MAX_NESTED: Final = 16


def retry_error_cause(exc: BaseException) -> BaseException | None:
    """The innermost cause of a ``RetryError`` (what failed); None without a usable one."""
    retry_errors = exception_types(_API, "RetryError")
    if not isinstance(exc, retry_errors):
        return None
    seen = {id(exc)}
    cause = _innermost(getattr(exc, "cause", None), retry_errors, seen)
    return cause if isinstance(cause, BaseException) and id(cause) not in seen else None


def _innermost(
    cause: object, retry_errors: tuple[type[BaseException], ...], seen: set[int]
) -> object:
    """Follow nested RetryErrors (bounded; ``seen`` collects them, a cycle stops the walk)."""
    while isinstance(cause, retry_errors) and id(cause) not in seen and len(seen) < _MAX_NESTED:
        seen.add(id(cause))  # nested retries: the innermost cause says what failed
        cause = getattr(cause, "cause", None)
    return cause


def _retry_error(exc: BaseException) -> Classification:
    """Without the registry: the cause by these rules and the built-in ones (the registry
    classifies a ``RetryError``'s cause through its whole chain, see ``retry_error_cause``)."""
    cause = retry_error_cause(exc)
    if cause is None:
        return Classification(E.TIMEOUT)  # google's own retry ran out of time
    return classify_google(cause) or built_in(cause)


def _grpc_call() -> tuple[type, ...]:
    call = getattr(sys.modules.get("grpc"), "Call", None)
    return (call,) if isinstance(call, type) else ()


def _call_retry_after(exc: BaseException) -> float | None:
    retry_after = retry_info_delay(getattr(exc, "details", None) or ())
    if retry_after is not None:
        return retry_after
    response = getattr(exc, "response", None)
    if isinstance(response, _grpc_call()):
        # without grpcio-status the details stay unparsed in the call's trailing metadata
        return metadata_retry_after(getattr(response, "trailing_metadata", tuple)())
    return headers_retry_after(getattr(response, "headers", None))


def _grpc_status_type(exc: BaseException) -> ExternalServiceError | None:
    name = getattr(getattr(exc, "grpc_status_code", None), "name", None)
    return grpc_error_type(name, getattr(exc, "message", "")) if isinstance(name, str) else None


def _call_error_type(exc: BaseException) -> ExternalServiceError:
    """By the gRPC status code when set, else by the HTTP ``code``."""
    return (
        _grpc_status_type(exc) or status_error_type(getattr(exc, "code", None)) or E.UNKNOWN_ERROR
    )


def _api_call_error(exc: BaseException) -> Classification:
    retry_after = _call_retry_after(exc)
    return Classification(_call_error_type(exc), retry_after)


def _refresh_error(exc: BaseException) -> Classification:
    # a refresh that the server failed (``retryable``) is worth another try
    retryable = getattr(exc, "retryable", False) is True
    return Classification(E.SERVER_ERROR if retryable else E.AUTHENTICATION_ERROR)


_RULES: Final[tuple[Rule, ...]] = (
    (_API, ("RetryError",), _retry_error),
    (_API, ("GoogleAPICallError",), _api_call_error),
    (_AUTH, ("TimeoutError",), E.TIMEOUT),
    (_AUTH, ("TransportError",), E.CONNECTION_ERROR),
    (_AUTH, ("RefreshError", "DefaultCredentialsError", "OAuthError"), _refresh_error),
)


def classify_google(exc: BaseException) -> Classification | None:
    """google-api-core's and google-auth's exceptions."""
    return by_rules(exc, _RULES)
