"""HTTP evidence: status codes, header lookup, ``Retry-After`` and ``retry-after-ms``."""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, attr, clean_seconds

E = ExternalServiceError

_STATUS: Final = MappingProxyType(
    {
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
)

#: the error type of the other statuses of a class (4xx, 5xx)
_STATUS_CLASSES: Final = MappingProxyType({4: E.BAD_REQUEST, 5: E.SERVER_ERROR})

#: urllib3's and requests' message when a retry policy gave up on error statuses
_TOO_MANY_ERRORS: Final = re.compile(r"too many (\d{3}) error responses")


def status_to_error_type(status: int) -> ExternalServiceError | None:
    """The error type of an HTTP status; None for statuses that are not errors (< 400)."""
    return _STATUS.get(status) or _STATUS_CLASSES.get(status // 100)


def valid_status(value: object) -> int | None:
    """``value`` when it is an int HTTP status (100-599), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int(value)
    return None


def status_error_type(value: object) -> ExternalServiceError | None:
    """The error type of ``value`` read as an HTTP status (None: not an error status)."""
    status = valid_status(value)
    return None if status is None else status_to_error_type(status)


def find_status(exc: BaseException) -> int | None:
    """An HTTP status on the exception or its ``.response`` (``status_code``, ``status``)."""
    for holder in (exc, attr(exc, "response")):  # attr(None, ...) is None: no status
        for name in ("status_code", "status"):
            status = valid_status(attr(holder, name))
            if status is not None:
                return status
    return None


def too_many_errors(exc: BaseException) -> Classification:
    """A retry policy that gave up: the status in "too many 503 error responses", else 5xx."""
    match = _TOO_MANY_ERRORS.search(str(exc))
    error_type = status_to_error_type(int(match.group(1))) if match else None
    return Classification(error_type or E.SERVER_ERROR)


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
    return clean_seconds(seconds)


def _as_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    return str.strip(value) if isinstance(value, str) else None


def _parse_retry_after(value: object, now: float | None) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = _as_text(value)
    return _parse_text(text, now) if text else None


def _parse_text(text: str, now: float | None) -> float | None:
    try:
        return float(text)
    except ValueError:
        return _parse_date(text, now)


def _parse_date(text: str, now: float | None) -> float | None:
    when = parsedate_to_datetime(text)  # ValueError, OverflowError, ...: caught by the caller
    if when.tzinfo is None:  # HTTP-dates are GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def header(headers: object, name: str) -> object:
    """``headers.get(name)`` (or its lower-case form); None when anything misbehaves."""
    get = attr(headers, "get")
    if not callable(get):
        return None
    try:
        value = get(name)
        return get(name.lower()) if value is None else value
    except Exception:  # a foreign headers object that misbehaves is no reason to fail
        return None


def find_retry_after(exc: BaseException) -> float | None:
    """``exc.retry_after``, else ``Retry-After`` of ``exc.response.headers`` / ``exc.headers``."""
    direct = attr(exc, "retry_after")
    if direct is not None:
        return parse_retry_after(direct)
    for holder in (attr(exc, "response"), exc):  # attr(None, ...) is None: no headers
        value = header(attr(holder, "headers"), "Retry-After")
        if value is not None:
            return parse_retry_after(value)
    return None


def headers_retry_after(headers: object) -> float | None:
    """``retry-after-ms`` (OpenAI, Azure) or ``Retry-After`` (seconds or an HTTP-date)."""
    millis = parse_retry_after(header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    return parse_retry_after(header(headers, "Retry-After"))


def by_status(status: object, headers: object = None) -> Classification | None:
    """Classify an HTTP error response; None for a status that is not an error."""
    error_type = status_error_type(status)
    if error_type is None:
        return None
    return Classification(error_type, headers_retry_after(headers))
