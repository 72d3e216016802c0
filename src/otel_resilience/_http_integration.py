"""The HTTP logic shared by the httpx, requests and OpenAI integrations, written once.

Everything here is free of any client library: the integrations hand in a method, an authority,
a path, headers and (for a failure) the status and body, and get back names, an attempt count,
a per-attempt I/O timeout and a verdict on the response.

One request through an integration::

    resilient_call(service, endpoint, attempt, <attempts by idempotency>, cooperative timeout)
    └── attempt n: I/O timeout = min(client's own, remaining_time()); resend count n-1
        ├── 2xx/3xx response -> returned as is
        └── 4xx/5xx response -> body buffered, ResponseFailure raised (retried if transient)

After the last attempt the caller gets the **last response** whenever the server answered (the
client's usual handling applies: ``raise_for_status()``, the OpenAI SDK's ``RateLimitError``);
a :class:`ReliabilityError` only when there is no response to give (timeout, connection error,
open breaker, the library's own rate limiter).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import trace

from ._classify import parse_retry_after, status_to_error_type
from ._errors import ExternalServiceError, ReliabilityError

E = ExternalServiceError

#: the stable HTTP semantic-convention attribute attempt spans carry from the second attempt on
ATTR_RESEND_COUNT: Final = "http.request.resend_count"
#: the endpoint name of routes past the cardinality cap (the telemetry's own overflow name)
OVERFLOW_ROUTE: Final = "_other"
#: methods that can be sent twice with the effect of once (RFC 9110, 9.2.2)
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: the header that makes a POST or PATCH safe to send again
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
#: distinct endpoint names one integration object makes before naming the rest ``_other``
DEFAULT_MAX_ROUTES: Final = 64
#: the largest error body read to classify a failure (the rest is still returned to the caller)
MAX_ERROR_BODY: Final = 64 * 1024

_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$")
_HEX: Final = re.compile(r"^[0-9a-fA-F]{16,}$")
_DIGIT: Final = re.compile(r"\d")
#: one term of an OpenAI-style duration: ``6m0s``, ``20ms``, ``1h2m3.5s``
_DURATION_TERM: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
#: the seconds in one of each unit of a duration term
_UNIT_SECONDS: Final = MappingProxyType({"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001})

Naming = str | Callable[[Any], str] | None


def is_id_like(segment: str) -> bool:
    """Whether a path segment is an identifier rather than a route word.

    Numbers, UUIDs, long hex strings, and segments of 8+ characters with a digit in them
    (``file-abc123``, ``resp_67ccd2be``, ``2024-01-01``); short words with a digit (``v1``,
    ``gpt-4o``) are kept: the cardinality cap bounds the rest.

    >>> [is_id_like(s) for s in ("users", "42", "v1", "file-abc123")]
    [False, True, False, True]
    """
    if _is_route_word(segment):  # the common case
        return False
    return _is_number_or_hex(segment) or _is_long_with_digit(segment)


def _is_route_word(segment: str) -> bool:
    return len(segment) < 16 and segment.isalpha()


def _is_number_or_hex(segment: str) -> bool:
    return segment.isdigit() or _matches_id_pattern(segment)


def _matches_id_pattern(segment: str) -> bool:
    """A UUID or a long hex string."""
    return any(pattern.match(segment) for pattern in (_UUID, _HEX))


def _is_long_with_digit(segment: str) -> bool:
    return len(segment) >= 8 and _DIGIT.search(segment) is not None


def route_of(method: str, path: str) -> str:
    """``"GET /users/{id}"``: the method and the path with id-like segments collapsed.

    >>> route_of("get", "/users/42/orders/9f1c2e3a-1b2c-4d5e-8f90-123456789abc")
    'GET /users/{id}/orders/{id}'
    """
    segments = [_route_part(s) for s in path.split("/") if s]
    return f"{method.upper()} /{'/'.join(segments)}"


def _route_part(segment: str) -> str:
    return "{id}" if is_id_like(segment) else segment


def dotted_route(path: str, prefix: str = "") -> str:
    """``"chat.completions"``: the path below ``prefix``, id-like segments dropped, dot-joined.

    >>> dotted_route("/v1/chat/completions", "/v1")
    'chat.completions'
    >>> dotted_route("/v1/files/file-abc123/content", "/v1")
    'files.content'
    """
    return ".".join(_route_words(_below(path, prefix.rstrip("/")))) or "root"


def _route_words(path: str) -> list[str]:
    return [s for s in path.split("/") if _is_route_segment(s)]


def _below(path: str, prefix: str) -> str:
    """``path`` without a leading ``prefix`` (a whole-segment match only)."""
    return path[len(prefix) :] if _is_under(path, prefix) else path


def _is_under(path: str, prefix: str) -> bool:
    return bool(prefix) and (path == prefix or path.startswith(prefix + "/"))


def _is_route_segment(segment: str) -> bool:
    return bool(segment) and not is_id_like(segment)


def parse_duration(value: object) -> float | None:
    """Seconds of an ``x-ratelimit-reset-*`` value: ``"1s"``, ``"6m0s"``, ``"20ms"`` or ``"1.5"``.

    Total: None for anything else.

    >>> [parse_duration(v) for v in ("6m0s", "20ms", "1.5", "soon")]
    [360.0, 0.02, 1.5, None]
    """
    if not isinstance(value, str):
        return None
    seconds = _seconds_of(value.strip())
    return seconds if _is_wait(seconds) else None


def _seconds_of(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return _sum_of_terms(text)


def _term_seconds(match: re.Match[str]) -> float:
    """The seconds of one duration term (``"6m"``: 360.0)."""
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _is_wait(seconds: float | None) -> bool:
    return seconds is not None and _is_finite_wait(seconds)


def _is_finite_wait(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds >= 0.0


def _sum_of_terms(text: str) -> float | None:
    """``"6m0s"`` as seconds; None unless ``text`` is wholly made of duration terms."""
    pos, total = 0, 0.0
    for match in _DURATION_TERM.finditer(text):
        if match.start() != pos:
            return None
        total += _term_seconds(match)
        pos = match.end()
    return total if 0 < pos == len(text) else None


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if isinstance(value, str) else None


def retry_after_of(status: int, headers: Mapping[str, str]) -> float | None:
    """The wait a failure response asks for, in seconds; None when it asks for none.

    ``retry-after-ms``, then ``Retry-After`` (seconds or an HTTP-date), then, for a 429, the
    ``x-ratelimit-reset-*`` of the exhausted limit (``x-ratelimit-remaining-* = 0``; the longer
    one when both are; the shorter reset when the headers do not say which limit was hit).
    """
    seconds = _asked_wait(headers)
    if seconds is not None or status != 429:
        return seconds
    return _ratelimit_reset(headers)


def _asked_wait(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (as seconds), else ``Retry-After``; None when neither is valid."""
    millis = parse_retry_after(_get(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    return parse_retry_after(_get(headers, "retry-after"))


def _ratelimit_reset(headers: Mapping[str, str]) -> float | None:
    """The reset of the exhausted limit (the longer of both), else the shorter reset."""
    resets: list[float] = []
    exhausted: list[float] = []
    for limit in ("requests", "tokens"):
        reset = parse_duration(_get(headers, f"x-ratelimit-reset-{limit}"))
        if reset is not None:
            resets.append(reset)
            if _is_exhausted(headers, limit):
                exhausted.append(reset)
    return _pick_reset(exhausted, resets)


def _pick_reset(exhausted: list[float], resets: list[float]) -> float | None:
    """The longest reset of an exhausted limit, else the shortest reset; None when none."""
    return max(exhausted) if exhausted else min(resets, default=None)


def _is_exhausted(headers: Mapping[str, str], limit: str) -> bool:
    return (_get(headers, f"x-ratelimit-remaining-{limit}") or "").strip() == "0"


def is_insufficient_quota(body: bytes) -> bool:
    """Whether a 429 body is OpenAI's ``insufficient_quota`` (billing, not a rate)."""
    if b"insufficient_quota" not in body:
        return False
    error = _error_object(body)
    return error is not None and "insufficient_quota" in (error.get("code"), error.get("type"))


def _error_object(body: bytes) -> dict[str, Any] | None:
    """The ``error`` object of a JSON error body; None when the body has none."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return _error_of(payload)


def _error_of(payload: object) -> dict[str, Any] | None:
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else None


class ResponseFailure(ReliabilityError):
    """An attempt's error response, raised so the call path retries and counts it.

    Never reaches the caller: the integration catches it and returns :attr:`response`.
    """

    def __init__(
        self,
        error_type: ExternalServiceError,
        service_name: str,
        endpoint: str,
        message: str,
        *,
        response: Any,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error_type, service_name, endpoint, message, retry_after=retry_after)
        self.response = response


def _check_options(
    service: object, endpoint: object, idempotent: object, max_routes: object
) -> None:
    """Refuse a bad option of :class:`HttpPolicy`, naming it and what is accepted."""
    naming = "a non-empty string, a callable receiving the request, or None"
    checks: tuple[tuple[str, object, Callable[[object], bool], type[Exception], str], ...] = (
        ("service", service, _is_naming, TypeError, naming),
        ("endpoint", endpoint, _is_naming, TypeError, naming),
        (
            "idempotent",
            idempotent,
            _is_idempotency,
            TypeError,
            "None (by method), True, False or a callable receiving the request",
        ),
        ("max_routes", max_routes, _is_count, ValueError, "an integer >= 1"),
    )
    for name, value, accepted, error, what in checks:
        if not accepted(value):
            raise error(f"{name} must be {what}, got {value!r}")


def _is_naming(value: object) -> bool:
    return value is None or callable(value) or _is_text(value)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_idempotency(value: object) -> bool:
    return value is None or isinstance(value, bool) or callable(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class HttpPolicy:
    """Naming, attempts and the verdict on responses for one integration object.

    Args:
        service: the service name; default the URL's authority (``host[:port]``); or a callable
            receiving the client's request.
        endpoint: the endpoint name; default the route (``"GET /users/{id}"``); or a callable.
        timeout_sec, max_retries, deadline_sec: as for :func:`resilient_call` (``max_retries``
            applies to requests that may be repeated; the others get one attempt).
        idempotent: None (decide by method: POST and PATCH only with an ``Idempotency-Key``
            header), True or False for every request, or a callable receiving the request.
        max_routes: distinct endpoint names made by default naming before ``_other``.
        route: how a default endpoint name is made from (method, path).
    """

    __slots__ = (
        "_idempotent",
        "_lock",
        "_max_routes",
        "_route",
        "_routes",
        "deadline_sec",
        "endpoint",
        "max_retries",
        "service",
        "timeout_sec",
    )

    def __init__(
        self,
        service: Naming = None,
        endpoint: Naming = None,
        *,
        timeout_sec: float | None = None,
        max_retries: int | None = None,
        deadline_sec: float | None = None,
        idempotent: bool | Callable[[Any], bool] | None = None,
        max_routes: int = DEFAULT_MAX_ROUTES,
        route: Callable[[str, str], str] = route_of,
    ) -> None:
        _check_options(service, endpoint, idempotent, max_routes)
        self.service = service
        self.endpoint = endpoint
        self.timeout_sec = timeout_sec
        self.max_retries = max_retries
        self.deadline_sec = deadline_sec
        self._idempotent = idempotent
        self._max_routes = max_routes
        self._route = route
        self._routes: set[str] = set()
        self._lock = threading.Lock()

    def service_for(self, request: Any, authority: str) -> str:
        service = self.service
        if service is None:
            return authority
        if isinstance(service, str):
            return service
        return service(request)

    def endpoint_for(self, request: Any, method: str, path: str) -> str:
        endpoint = self.endpoint
        if isinstance(endpoint, str):
            return endpoint
        if endpoint is not None:
            return endpoint(request)
        return self._capped(self._route(method, path))

    def _capped(self, name: str) -> str:
        if name in self._routes:
            return name
        return self._admitted(name)

    def _admitted(self, name: str) -> str:
        """``name`` added to the routes while there is room, else :data:`OVERFLOW_ROUTE`."""
        routes = self._routes
        with self._lock:
            if len(routes) < self._max_routes:
                routes.add(name)
                return name
        return OVERFLOW_ROUTE

    def attempts_for(self, request: Any, method: str, headers: Mapping[str, str]) -> int | None:
        """``max_retries`` for a request that may be sent again, 1 for one that may not."""
        return self.max_retries if self._repeatable(request, method, headers) else 1

    def _repeatable(self, request: Any, method: str, headers: Mapping[str, str]) -> bool:
        idempotent = self._idempotent
        if idempotent is None:
            return _repeatable_by_method(method, headers)
        if isinstance(idempotent, bool):
            return idempotent
        return bool(idempotent(request))

    def failure(
        self,
        service: str,
        endpoint: str,
        status: int,
        reason: str,
        headers: Mapping[str, str],
        body: bytes,
        response: Any,
    ) -> ResponseFailure:
        """The failure an error response (status >= 400) stands for.

        A 429 whose body says ``insufficient_quota`` is ``permission_denied``: the account is
        not allowed more until someone acts (billing), so it is neither retried nor counted
        against the breaker, and any wait the headers ask for is dropped.
        """
        error_type = status_to_error_type(status) or E.UNKNOWN_ERROR
        retry_after = retry_after_of(status, headers)
        detail = f"HTTP {status} {reason}".rstrip()
        if _is_quota_refusal(status, body):
            error_type, retry_after = E.PERMISSION_DENIED, None
            detail += " (insufficient_quota)"
        return ResponseFailure(
            error_type,
            service,
            endpoint,
            f"{error_type.value} calling {service} ({endpoint}): {detail}",
            response=response,
            retry_after=retry_after,
        )


def _repeatable_by_method(method: str, headers: Mapping[str, str]) -> bool:
    """Idempotent by RFC 9110, or a POST/PATCH carrying an ``Idempotency-Key``."""
    return method.upper() in IDEMPOTENT_METHODS or bool(headers.get(IDEMPOTENCY_KEY))


def _is_quota_refusal(status: int, body: bytes) -> bool:
    """A 429 whose (first :data:`MAX_ERROR_BODY` bytes of) body says ``insufficient_quota``."""
    return status == 429 and is_insufficient_quota(body[:MAX_ERROR_BODY])


def io_timeout(own: float | None, left: float | None) -> float | None:
    """The I/O timeout of one attempt: the client's own, never past the attempt's end."""
    return own if left is None else _within(own, left)


def _within(own: float | None, left: float) -> float:
    """``own`` cut to ``left`` (``left`` when there is no ``own``)."""
    return left if own is None or own > left else own


def mark_resend(number: int) -> None:
    """Put ``http.request.resend_count`` on the attempt span (the current span) of a resend."""
    if number > 1:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(ATTR_RESEND_COUNT, number - 1)
