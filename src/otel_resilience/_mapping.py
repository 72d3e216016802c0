"""Map any exception from an external call to an :class:`ExternalServiceError`.

Order of evidence, strongest first:

1. a :class:`ReliabilityError` (from a nested ``resilient_call``) keeps its classification;
2. classifiers registered with :func:`register_classifier` (the application's own);
3. classifiers for well-known client libraries (httpx, requests, grpc, botocore, openai, ...),
   looked up by the exception's module, so nothing is imported that the application did not import;
4. the exception's type (``TimeoutError``, the ``ConnectionError`` family, ``OSError`` errnos);
5. an HTTP status found on the exception (``.status_code``, ``.status``, ``.response.status_code``);
6. keywords in the message (the seed's rule), the last resort.

``Retry-After`` (seconds or an HTTP-date) is read from ``.retry_after`` or the headers of
``.response`` / ``.headers`` when present.

Classification is total: whatever the exception does (a ``__str__`` or a property that raises, a
date that overflows, a headers object that misbehaves, a registered classifier that raises or
returns nonsense), the rule that fails is skipped and the others decide, down to
``unknown_error``. Nothing raised while classifying ever reaches the caller.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

from ._config import get_config
from ._errors import ERROR_CLASSES, ExternalServiceError, ReliabilityError
from ._scrub import MESSAGE_LIMIT, redact

E = ExternalServiceError


@dataclass(frozen=True, slots=True)
class Classification:
    """What a classifier decided: the error type and, if the service said so, ``Retry-After``."""

    error_type: ExternalServiceError
    retry_after: float | None = None


#: A classifier looks at an exception and returns a Classification, or None to pass.
Classifier = Callable[[BaseException], Classification | None]

_user_classifiers: list[Classifier] = []
_user_lock = threading.Lock()


def register_classifier(classifier: Classifier) -> Callable[[], None]:
    """Add a classifier consulted before the built-in rules; returns a function that removes it.

    >>> from otel_resilience import Classification, ExternalServiceError, map_external_error
    >>> from otel_resilience import register_classifier
    >>> class QuotaExceeded(Exception): ...
    >>> remove = register_classifier(
    ...     lambda exc: Classification(ExternalServiceError.RATE_LIMIT, retry_after=2.0)
    ...     if isinstance(exc, QuotaExceeded) else None
    ... )
    >>> error = map_external_error("openai", "chat", QuotaExceeded("over quota"))
    >>> error.error_type, error.retry_after
    (<ExternalServiceError.RATE_LIMIT: 'rate_limit'>, 2.0)
    >>> remove()
    """
    if not callable(classifier):
        raise TypeError(f"classifier must be callable, got {type(classifier).__name__}")
    with _user_lock:
        _user_classifiers.insert(0, classifier)

    def remove() -> None:
        with _user_lock:
            if classifier in _user_classifiers:
                _user_classifiers.remove(classifier)

    return remove


# --- status codes --------------------------------------------------------------------------

_STATUS: Final[Mapping[int, ExternalServiceError]] = {
    400: E.BAD_REQUEST,
    401: E.AUTHENTICATION_ERROR,
    403: E.PERMISSION_DENIED,
    404: E.NOT_FOUND,
    407: E.AUTHENTICATION_ERROR,
    408: E.TIMEOUT,
    410: E.NOT_FOUND,
    429: E.RATE_LIMIT,
    504: E.TIMEOUT,
}


def status_to_error_type(status: int) -> ExternalServiceError | None:
    """The error type of an HTTP status; None for statuses that are not errors (< 400)."""
    if status in _STATUS:
        return _STATUS[status]
    if 500 <= status <= 599:
        return E.SERVER_ERROR
    if 400 <= status <= 499:
        return E.BAD_REQUEST
    return None


def _attr(obj: object, name: str) -> object:
    """``getattr(obj, name, None)`` that survives a property raising anything."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _find_status(exc: BaseException) -> int | None:
    for holder in (exc, _attr(exc, "response")):
        if holder is None:
            continue
        for attr in ("status_code", "status"):
            value = _attr(holder, attr)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return int(value)
    return None


# --- Retry-After ---------------------------------------------------------------------------


def parse_retry_after(value: object, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Total: any value gives None or a finite number >= 0, it never raises.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> parse_retry_after("soon") is None
    True
    >>> parse_retry_after("Wed, 21 Oct 99999999999999999999 07:28:00 GMT") is None
    True
    """
    try:
        seconds = _parse_retry_after(value, now)
    except Exception:  # a value no rule can read (an overflowing date, a hostile str subclass)
        return None
    return _clean_seconds(seconds)


def _clean_seconds(seconds: object) -> float | None:
    """A finite number >= 0, or None (NaN, infinities and non-numbers are not a delay)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    try:
        result = float(seconds)
    except (OverflowError, ValueError):  # an int too large for a float
        return None
    if not math.isfinite(result):
        return None
    return max(0.0, result)


def _parse_retry_after(value: object, now: float | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if not isinstance(value, str):
        return None
    text = str.strip(value)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    when = parsedate_to_datetime(text)  # ValueError, OverflowError, ...: caught by the caller
    if when.tzinfo is None:  # HTTP-dates are GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _header(headers: object, name: str) -> object:
    if headers is None:
        return None
    try:
        get = getattr(headers, "get", None)
        if get is None:
            return None
        value = get(name)
        if value is None:
            value = get(name.lower())
    except Exception:  # a foreign headers object that misbehaves is no reason to fail
        return None
    return value


def _find_retry_after(exc: BaseException) -> float | None:
    direct = _attr(exc, "retry_after")
    if direct is not None:
        return parse_retry_after(direct)
    for holder in (_attr(exc, "response"), exc):
        if holder is None:
            continue
        value = _header(_attr(holder, "headers"), "Retry-After")
        if value is not None:
            return parse_retry_after(value)
    return None


# --- types and errnos ----------------------------------------------------------------------

_TIMEOUT_ERRNOS: Final = frozenset({errno.ETIMEDOUT})
_CONNECTION_ERRNOS: Final = frozenset(
    {
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
    }
)


def _by_type(exc: BaseException) -> ExternalServiceError | None:
    if isinstance(exc, TimeoutError):  # socket.timeout and asyncio.TimeoutError are aliases
        return E.TIMEOUT
    if isinstance(exc, ConnectionError | socket.gaierror | socket.herror):
        return E.CONNECTION_ERROR
    if isinstance(exc, OSError):
        code = _attr(exc, "errno")
        if code in _TIMEOUT_ERRNOS:
            return E.TIMEOUT
        if code in _CONNECTION_ERRNOS:
            return E.CONNECTION_ERROR
    return None


# --- message keywords (the seed's rule, last resort) ---------------------------------------

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


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or its ``repr``, or its type name: whichever does not raise first."""
    for render in (str, repr):  # both return a str or raise (TypeError for a non-str)
        try:
            return render(exc)
        except Exception:
            continue
    try:
        return type(exc).__name__
    except Exception:  # pragma: no cover - a type always has a name
        return "exception"


def _by_message(exc: BaseException) -> ExternalServiceError:
    text = safe_str(exc).lower()
    for error_type, pattern in _KEYWORD_PATTERNS:
        if pattern.search(text) is not None:
            return error_type
    return E.UNKNOWN_ERROR


# --- the classifier chain ------------------------------------------------------------------


def _checked(found: object) -> Classification | None:
    """A classifier's answer when it is a usable Classification (finite delay), else None."""
    if not isinstance(found, Classification):
        return None
    error_type: object = found.error_type  # a classifier may have put anything there
    if not isinstance(error_type, ExternalServiceError):
        return None
    retry_after = found.retry_after
    if retry_after is None:
        return found
    cleaned = _clean_seconds(retry_after)
    if cleaned == retry_after:
        return found
    return Classification(found.error_type, cleaned)


def _client_classification(exc: BaseException) -> Classification | None:
    from ._clients import classifier_for  # late: keeps import of the core light

    try:
        classifier = classifier_for(exc)
        if classifier is None:
            return None
        return _checked(classifier(exc))
    except Exception:  # a broken client classifier must not break error handling
        return None


def _built_in(exc: BaseException) -> Classification:
    retry_after = _find_retry_after(exc)  # every attribute read in it is guarded
    error_type: ExternalServiceError | None = None
    try:
        error_type = _by_type(exc)
    except Exception:  # isinstance() raises when the exception's __class__ property does
        error_type = None
    if error_type is None:
        status = _find_status(exc)
        if status is not None:
            error_type = status_to_error_type(status)
    if error_type is None:
        error_type = _by_message(exc)
    return Classification(error_type, retry_after)


def classify(exc: BaseException) -> Classification:
    """Classify one exception (see the module docstring for the order of evidence).

    Never raises: a rule that fails is skipped, the last resort is ``unknown_error``.
    """
    try:
        return _classify(exc)
    except Exception:  # a hostile object (its __class__ raises): nothing can be read from it
        return Classification(E.UNKNOWN_ERROR)


def _is_ours(exc: BaseException) -> bool:
    try:
        return isinstance(exc, ReliabilityError)
    except Exception:  # isinstance() raises when the exception's __class__ property does
        return False


def _well_formed(error: BaseException) -> bool:
    """A ReliabilityError whose fields are all there (a subclass may skip ``__init__``)."""
    retry_after = _attr(error, "retry_after")
    return (
        isinstance(_attr(error, "error_type"), ExternalServiceError)
        and isinstance(_attr(error, "service_name"), str)
        and isinstance(_attr(error, "endpoint"), str)
        and isinstance(_attr(error, "message"), str)
        and isinstance(_attr(error, "attempts"), int)
        and (retry_after is None or _clean_seconds(retry_after) == retry_after)
    )


def _classify(exc: BaseException) -> Classification:
    if _is_ours(exc):
        error_type, retry_after = _attr(exc, "error_type"), _attr(exc, "retry_after")
        found = _checked(Classification(error_type, retry_after))  # type: ignore[arg-type]
        return found or Classification(E.UNKNOWN_ERROR)
    for classifier in tuple(_user_classifiers):
        try:
            found = _checked(classifier(exc))
        except Exception:  # the application's classifier is not allowed to break the call
            found = None
        if found is not None:
            return found
    found = _client_classification(exc)
    if found is not None:
        return found
    return _built_in(exc)


def _redact(text: str, service_name: str) -> str:
    try:
        patterns = get_config(service_name).REDACT_PATTERNS
    except Exception:  # a broken environment must not let a secret through
        patterns = ("default",)
    return redact(text, patterns, MESSAGE_LIMIT)


def map_external_error(
    service_name: str, endpoint: str, error: BaseException, *, attempts: int = 1
) -> ReliabilityError:
    """Map an external service error to a standardized :class:`ReliabilityError`.

    The returned error is not raised: ``raise mapped from error`` keeps the original as
    ``__cause__``.

    >>> from otel_resilience import ExternalServiceError, map_external_error
    >>> err = map_external_error("gcs", "upload", ConnectionResetError("reset by peer"))
    >>> err.error_type is ExternalServiceError.CONNECTION_ERROR
    True
    >>> map_external_error("openai", "chat", Exception("Request timed out")).error_type.value
    'timeout'
    """
    if _is_ours(error) and _well_formed(error):
        return error  # type: ignore[return-value]
    found = classify(error)
    cls = ERROR_CLASSES.get(found.error_type, ReliabilityError)
    detail = _redact(safe_str(error), service_name) or type(error).__name__
    message = f"{found.error_type.value} calling {service_name} ({endpoint}): {detail}"
    return cls(
        found.error_type,
        service_name,
        endpoint,
        message,
        attempts=attempts,
        retry_after=found.retry_after,
    )
