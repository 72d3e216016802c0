"""Classifiers for well-known client libraries.

Looked up by the top-level package of an exception's class (or one of its bases), so a library is
only inspected when the application already imported it. Nothing here imports a client library:
the exception classes are read from ``sys.modules``, which holds the library whenever one of its
exceptions exists, and a class that a version of the library lacks is simply not matched.

=================  ===========================================================================
library            evidence
=================  ===========================================================================
httpx, httpx2      exception type; ``HTTPStatusError.response`` status and headers
requests           exception type (a ``ConnectionError`` caused by a read timeout is a timeout);
                   ``HTTPError.response`` status and headers
urllib3            exception type (``MaxRetryError`` is judged by its ``reason``)
aiohttp            exception type; ``ClientResponseError.status`` and ``.headers``
grpc               ``RpcError.code()``; retry hints in the trailing metadata
                   (``grpc-retry-pushback-ms``, ``retry-after``, ``google.rpc.RetryInfo``)
botocore           ``ClientError`` error code, then ``ResponseMetadata.HTTPStatusCode``;
                   exception type for transport errors
openai             exception type, then ``status_code``; ``retry-after-ms`` / ``Retry-After``
google             ``google.api_core`` errors by gRPC status, then HTTP ``code``;
                   ``RetryInfo`` details; ``google.auth`` errors by type
redis              exception type (``redis.exceptions`` and ``redis.asyncio`` share them)
clamd              exception type (a ``ConnectionError`` caused by a timeout is a timeout)
=================  ===========================================================================

See ``docs/classifiers.md`` for the full table.
"""

from __future__ import annotations

import importlib
import itertools
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Final

from ._classify_clamd import classify_clamd  # WIRE(integrations)
from ._errors import ExternalServiceError
from ._mapping import Classification, Classifier, _header, parse_retry_after, status_to_error_type

E = ExternalServiceError

__all__ = ["CLIENT_CLASSIFIERS", "classifier_for"]


# --- helpers -------------------------------------------------------------------------------


def _types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The named exception classes of an already imported ``module`` (none if it is not)."""
    mod = sys.modules.get(module)
    if mod is None:
        return ()
    found: list[type[BaseException]] = []
    for name in names:
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _status(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _retry_after(headers: object) -> float | None:
    """``retry-after-ms`` (OpenAI, Azure) or ``Retry-After`` (seconds or an HTTP-date)."""
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        seconds = parse_retry_after(millis)
        if seconds is not None:
            return seconds / 1000.0
    return parse_retry_after(_header(headers, "Retry-After"))


def _by_status(status: object, headers: object = None) -> Classification | None:
    """Classify an HTTP error response; None for a status that is not an error."""
    code = _status(status)
    error_type = None if code is None else status_to_error_type(code)
    if error_type is None:
        return None
    return Classification(error_type, _retry_after(headers))


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and the exceptions it was raised from or during (bounded, cycle-safe)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _caused_by_timeout(exc: BaseException) -> bool:
    return any(isinstance(link, TimeoutError) for link in _chain(exc))


def _fixed(error_type: ExternalServiceError) -> Classification:
    return Classification(error_type)


# --- httpx (and its successor httpx2) ------------------------------------------------------


def _httpx_classifier(package: str) -> Classifier:
    def classify_httpx(exc: BaseException) -> Classification | None:
        if isinstance(exc, _types(package, "HTTPStatusError")):
            response = getattr(exc, "response", None)
            return _by_status(
                getattr(response, "status_code", None), getattr(response, "headers", None)
            )
        if isinstance(exc, _types(package, "TimeoutException")):
            return _fixed(E.TIMEOUT)
        if isinstance(exc, _types(package, "NetworkError", "RemoteProtocolError", "ProxyError")):
            return _fixed(E.CONNECTION_ERROR)
        if isinstance(
            exc,
            _types(
                package,
                "LocalProtocolError",
                "UnsupportedProtocol",
                "InvalidURL",
                "TooManyRedirects",
            ),
        ):
            return _fixed(E.BAD_REQUEST)
        if isinstance(exc, _types(package, "DecodingError")):
            return _fixed(E.SERVER_ERROR)
        return None

    classify_httpx.__name__ = f"classify_{package}"
    return classify_httpx


# --- requests and urllib3 ------------------------------------------------------------------

_TOO_MANY_ERRORS: Final = re.compile(r"too many (\d{3}) error responses")


def _classify_requests(exc: BaseException) -> Classification | None:
    mod = "requests.exceptions"
    if isinstance(exc, _types(mod, "HTTPError")):
        response = getattr(exc, "response", None)
        if response is not None:
            found = _by_status(getattr(response, "status_code", None), response.headers)
            if found is not None:
                return found
    # ConnectTimeout is both a Timeout and a ConnectionError
    if isinstance(exc, _types(mod, "Timeout")):
        return _fixed(E.TIMEOUT)
    if isinstance(exc, _types(mod, "RetryError")):
        match = _TOO_MANY_ERRORS.search(str(exc))
        error_type = status_to_error_type(int(match.group(1))) if match else None
        return _fixed(error_type or E.SERVER_ERROR)
    if isinstance(exc, _types(mod, "ConnectionError", "ChunkedEncodingError")):
        # a timeout while streaming the body surfaces as a ConnectionError
        return _fixed(E.TIMEOUT if _caused_by_timeout(exc) else E.CONNECTION_ERROR)
    if isinstance(exc, _types(mod, "ContentDecodingError", "JSONDecodeError")):
        return _fixed(E.SERVER_ERROR)  # the response was not what the server promised
    if isinstance(
        exc,
        _types(
            mod,
            "URLRequired",
            "MissingSchema",
            "InvalidSchema",
            "InvalidURL",
            "InvalidHeader",
            "InvalidJSONError",
            "TooManyRedirects",
        ),
    ):
        return _fixed(E.BAD_REQUEST)
    return None


def _classify_urllib3(exc: BaseException) -> Classification | None:
    mod = "urllib3.exceptions"
    if isinstance(exc, _types(mod, "MaxRetryError")):
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException) and reason is not exc:
            return _classify_urllib3(reason)
        return _fixed(E.CONNECTION_ERROR)
    if isinstance(exc, _types(mod, "ResponseError")):  # too many error responses
        match = _TOO_MANY_ERRORS.search(str(exc))
        error_type = status_to_error_type(int(match.group(1))) if match else None
        return _fixed(error_type or E.SERVER_ERROR)
    # NewConnectionError subclasses ConnectTimeoutError: a refused connection is not a timeout
    if isinstance(exc, _types(mod, "NewConnectionError")):
        return _fixed(E.CONNECTION_ERROR)
    if isinstance(exc, _types(mod, "TimeoutError")):
        return _fixed(E.TIMEOUT)
    if isinstance(
        exc, _types(mod, "ProtocolError", "ProxyError", "SSLError", "PoolError", "IncompleteRead")
    ):
        return _fixed(E.TIMEOUT if _caused_by_timeout(exc) else E.CONNECTION_ERROR)
    if isinstance(exc, _types(mod, "DecodeError", "HeaderParsingError")):
        return _fixed(E.SERVER_ERROR)
    if isinstance(exc, _types(mod, "LocationValueError")):
        return _fixed(E.BAD_REQUEST)
    return None


# --- aiohttp -------------------------------------------------------------------------------


def _classify_aiohttp(exc: BaseException) -> Classification | None:
    mod = "aiohttp.client_exceptions"
    protocol_errors = _types("aiohttp.http_exceptions", "HttpProcessingError")
    if isinstance(exc, _types(mod, "ServerTimeoutError")):  # also a ServerConnectionError
        return _fixed(E.TIMEOUT)
    if isinstance(exc, _types(mod, "TooManyRedirects")):
        return _fixed(E.BAD_REQUEST)
    if isinstance(exc, _types(mod, "ContentTypeError")):  # not the body the server promised
        return _fixed(E.SERVER_ERROR)
    if isinstance(exc, _types(mod, "ClientResponseError")):
        if protocol_errors and isinstance(exc.__cause__, protocol_errors):
            # the parser's verdict on a malformed response, not a status the server sent
            return _fixed(E.CONNECTION_ERROR)
        return _by_status(getattr(exc, "status", None), getattr(exc, "headers", None))
    if isinstance(exc, _types(mod, "ClientConnectionError", "ClientPayloadError")):
        return _fixed(E.CONNECTION_ERROR)
    if protocol_errors and isinstance(exc, protocol_errors):
        return _fixed(E.CONNECTION_ERROR)
    if isinstance(exc, _types(mod, "InvalidURL", "RedirectClientError", "NonHttpUrlClientError")):
        return _fixed(E.BAD_REQUEST)
    return None


# --- gRPC ----------------------------------------------------------------------------------

_GRPC_CODES: Final[Mapping[str, ExternalServiceError]] = {
    "DEADLINE_EXCEEDED": E.TIMEOUT,
    "UNAVAILABLE": E.SERVER_ERROR,  # or CONNECTION_ERROR, see _grpc_error_type
    "RESOURCE_EXHAUSTED": E.RATE_LIMIT,
    "UNAUTHENTICATED": E.AUTHENTICATION_ERROR,
    "PERMISSION_DENIED": E.PERMISSION_DENIED,
    "NOT_FOUND": E.NOT_FOUND,
    "INVALID_ARGUMENT": E.BAD_REQUEST,
    "FAILED_PRECONDITION": E.BAD_REQUEST,
    "OUT_OF_RANGE": E.BAD_REQUEST,
    "ALREADY_EXISTS": E.BAD_REQUEST,
    "UNIMPLEMENTED": E.BAD_REQUEST,
    "ABORTED": E.SERVER_ERROR,  # a concurrency conflict; gRPC advises retrying
    "INTERNAL": E.SERVER_ERROR,
    "UNKNOWN": E.SERVER_ERROR,
    "DATA_LOSS": E.SERVER_ERROR,
    "CANCELLED": E.UNKNOWN_ERROR,
}

#: words gRPC's own transport errors use for UNAVAILABLE when no connection could be had
_GRPC_TRANSPORT_WORDS: Final = ("connect", "socket", "goaway", "reset", "dns", "resolve")


def _grpc_error_type(name: str, details: object) -> ExternalServiceError | None:
    error_type = _GRPC_CODES.get(name)
    if error_type is E.SERVER_ERROR and name == "UNAVAILABLE":
        text = str(details or "").lower()
        if any(word in text for word in _GRPC_TRANSPORT_WORDS):
            return E.CONNECTION_ERROR
    return error_type


def _duration_seconds(duration: object) -> float | None:
    seconds = getattr(duration, "seconds", None)
    nanos = getattr(duration, "nanos", 0)
    if not isinstance(seconds, int) or not isinstance(nanos, int):
        return None
    return max(0.0, seconds + nanos / 1e9)


def _retry_info_delay(details: Iterable[object]) -> float | None:
    for detail in details:
        if type(detail).__name__ == "RetryInfo":
            return _duration_seconds(getattr(detail, "retry_delay", None))
    return None


def _status_details_delay(blob: bytes) -> float | None:
    """The ``RetryInfo`` delay inside a serialized ``google.rpc.Status``, if protobufs exist."""
    try:
        status_pb2 = importlib.import_module("google.rpc.status_pb2")
        error_details_pb2 = importlib.import_module("google.rpc.error_details_pb2")
    except ImportError:  # googleapis-common-protos is optional
        return None
    try:
        status = status_pb2.Status.FromString(blob)
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                return _duration_seconds(info.retry_delay)
    except Exception:  # a malformed blob is no hint, and no reason to lose the status code
        return None
    return None


#: trailing metadata entries read at most (a hostile or broken iterable may never end)
_MAX_METADATA: Final = 256


def _grpc_retry_after(metadata: object) -> float | None:
    if not isinstance(metadata, Iterable):
        return None
    found: dict[str, object] = {}
    for item in itertools.islice(metadata, _MAX_METADATA):
        key, value = getattr(item, "key", None), getattr(item, "value", None)
        if key is None and isinstance(item, tuple) and len(item) == 2:
            key, value = item
        if isinstance(key, str):
            found[key.lower()] = value
    pushback = found.get("grpc-retry-pushback-ms")
    if pushback is not None:
        millis = parse_retry_after(pushback)
        if millis is not None:
            return millis / 1000.0
    blob = found.get("grpc-status-details-bin")
    if isinstance(blob, bytes):
        delay = _status_details_delay(blob)
        if delay is not None:
            return delay
    return parse_retry_after(found.get("retry-after"))


def _classify_grpc(exc: BaseException) -> Classification | None:
    if not isinstance(exc, _types("grpc", "RpcError")):
        return None
    code = getattr(exc, "code", None)
    status = code() if callable(code) else code
    name = getattr(status, "name", None)
    if not isinstance(name, str):
        return None
    details = getattr(exc, "details", None)
    error_type = _grpc_error_type(name, details() if callable(details) else details)
    if error_type is None:
        return None
    metadata = getattr(exc, "trailing_metadata", None)
    retry_after = _grpc_retry_after(metadata() if callable(metadata) else metadata)
    return Classification(error_type, retry_after)


# --- botocore ------------------------------------------------------------------------------

#: botocore's own list of throttling codes (``botocore.retries.standard``)
_AWS_THROTTLING: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_AWS_CODES: Final[Mapping[str, ExternalServiceError]] = {
    **dict.fromkeys(_AWS_THROTTLING, E.RATE_LIMIT),
    **dict.fromkeys(
        (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "IncompleteSignature",
            "MissingAuthenticationToken",
            "AuthFailure",
            "InvalidToken",
            "TokenRefreshRequired",
        ),
        E.AUTHENTICATION_ERROR,
    ),
    **dict.fromkeys(
        ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AllAccessDisabled"),
        E.PERMISSION_DENIED,
    ),
    **dict.fromkeys(
        (
            "NoSuchKey",
            "NoSuchBucket",
            "NoSuchUpload",
            "NoSuchVersion",
            "ResourceNotFoundException",
            "NotFound",
            "404",
        ),
        E.NOT_FOUND,
    ),
    **dict.fromkeys(("RequestTimeout", "RequestTimeoutException"), E.TIMEOUT),
    **dict.fromkeys(
        (
            "InternalError",
            "InternalFailure",
            "InternalServerError",
            "ServiceUnavailable",
            "ServiceUnavailableException",
        ),
        E.SERVER_ERROR,
    ),
}


def _classify_botocore(exc: BaseException) -> Classification | None:
    mod = "botocore.exceptions"
    if isinstance(exc, _types(mod, "ClientError")):
        response = getattr(exc, "response", None)
        if not isinstance(response, Mapping):
            return None
        error = response.get("Error")
        code = error.get("Code") if isinstance(error, Mapping) else None
        metadata = response.get("ResponseMetadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        headers = metadata.get("HTTPHeaders")
        error_type = _AWS_CODES.get(code) if isinstance(code, str) else None
        if error_type is not None:
            return Classification(error_type, _retry_after(headers))
        return _by_status(metadata.get("HTTPStatusCode"), headers)
    if isinstance(exc, _types(mod, "ReadTimeoutError", "ConnectTimeoutError")):
        return _fixed(E.TIMEOUT)
    if isinstance(exc, _types(mod, "ConnectionError", "HTTPClientError")):
        return _fixed(E.TIMEOUT if _caused_by_timeout(exc) else E.CONNECTION_ERROR)
    if isinstance(
        exc,
        _types(
            mod,
            "NoCredentialsError",
            "PartialCredentialsError",
            "CredentialRetrievalError",
            "NoAuthTokenError",
            "TokenRetrievalError",
            "UnauthorizedSSOTokenError",
        ),
    ):
        return _fixed(E.AUTHENTICATION_ERROR)
    if isinstance(exc, _types(mod, "ParamValidationError", "NoRegionError")):
        return _fixed(E.BAD_REQUEST)
    return None


# --- openai --------------------------------------------------------------------------------

_OPENAI_CLASSES: Final = (
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


def _classify_openai(exc: BaseException) -> Classification | None:
    response = getattr(exc, "response", None)
    retry_after = _retry_after(getattr(response, "headers", None))
    for name, error_type in _OPENAI_CLASSES:
        if isinstance(exc, _types("openai", name)):
            return Classification(error_type, retry_after)
    if isinstance(exc, _types("openai", "APIStatusError")):  # InternalServerError, 409, ...
        status = _status(getattr(exc, "status_code", None))
        by_status = None if status is None else status_to_error_type(status)
        return Classification(by_status or E.SERVER_ERROR, retry_after)
    return None


# --- google-api-core and google-auth -------------------------------------------------------


def _grpc_call() -> tuple[type, ...]:
    grpc = sys.modules.get("grpc")
    call = getattr(grpc, "Call", None)
    return (call,) if isinstance(call, type) else ()


def _classify_google(exc: BaseException) -> Classification | None:
    api = "google.api_core.exceptions"
    retry_errors = _types(api, "RetryError")
    if isinstance(exc, retry_errors):
        seen = {id(exc)}
        cause = getattr(exc, "cause", None)
        while isinstance(cause, retry_errors) and id(cause) not in seen and len(seen) < 16:
            seen.add(id(cause))  # nested retries: the innermost cause says what failed
            cause = getattr(cause, "cause", None)
        if isinstance(cause, BaseException) and id(cause) not in seen:
            from ._mapping import classify

            return classify(cause)
        return _fixed(E.TIMEOUT)  # google's own retry ran out of time
    if isinstance(exc, _types(api, "GoogleAPICallError")):
        response = getattr(exc, "response", None)
        retry_after = _retry_info_delay(getattr(exc, "details", None) or ())
        if retry_after is None and isinstance(response, _grpc_call()):
            # without grpcio-status the details stay unparsed in the call's trailing metadata
            retry_after = _grpc_retry_after(getattr(response, "trailing_metadata", tuple)())
        elif retry_after is None:
            retry_after = _retry_after(getattr(response, "headers", None))
        error_type = None
        grpc_code = getattr(exc, "grpc_status_code", None)
        name = getattr(grpc_code, "name", None)
        if isinstance(name, str):
            error_type = _grpc_error_type(name, getattr(exc, "message", ""))
        if error_type is None:
            status = _status(getattr(exc, "code", None))
            error_type = None if status is None else status_to_error_type(status)
        return Classification(error_type or E.UNKNOWN_ERROR, retry_after)
    auth = "google.auth.exceptions"
    if isinstance(exc, _types(auth, "TimeoutError")):
        return _fixed(E.TIMEOUT)
    if isinstance(exc, _types(auth, "TransportError")):
        return _fixed(E.CONNECTION_ERROR)
    if isinstance(exc, _types(auth, "RefreshError", "DefaultCredentialsError", "OAuthError")):
        # a refresh that the server failed (``retryable``) is worth another try
        retryable = getattr(exc, "retryable", False) is True
        return _fixed(E.SERVER_ERROR if retryable else E.AUTHENTICATION_ERROR)
    return None


# --- redis ---------------------------------------------------------------------------------

_REDIS_CLASSES: Final = (
    # subclasses before their bases: the first three are ConnectionErrors, the rest ResponseErrors
    ("AuthenticationError", E.AUTHENTICATION_ERROR),
    ("AuthenticationWrongNumberOfArgsError", E.AUTHENTICATION_ERROR),
    ("AuthorizationError", E.PERMISSION_DENIED),
    ("BusyLoadingError", E.SERVER_ERROR),
    ("TimeoutError", E.TIMEOUT),
    ("ConnectionError", E.CONNECTION_ERROR),
    ("InvalidResponse", E.CONNECTION_ERROR),  # not a Redis server on the other end
    ("NoPermissionError", E.PERMISSION_DENIED),
    ("TryAgainError", E.SERVER_ERROR),
    ("ClusterDownError", E.SERVER_ERROR),
    ("ReadOnlyError", E.SERVER_ERROR),  # a failover is in progress
    ("OutOfMemoryError", E.SERVER_ERROR),
    ("ClusterError", E.SERVER_ERROR),
    ("SlotNotCoveredError", E.SERVER_ERROR),
    ("ResponseError", E.BAD_REQUEST),
    ("DataError", E.BAD_REQUEST),
)


def _classify_redis(exc: BaseException) -> Classification | None:
    for name, error_type in _REDIS_CLASSES:
        if isinstance(exc, _types("redis.exceptions", name)):
            return _fixed(error_type)
    return None


# --- registry ------------------------------------------------------------------------------

#: top-level package name -> classifier for that library's exceptions
CLIENT_CLASSIFIERS: dict[str, Classifier] = {
    "httpx": _httpx_classifier("httpx"),
    "httpx2": _httpx_classifier("httpx2"),
    "requests": _classify_requests,
    "urllib3": _classify_urllib3,
    "aiohttp": _classify_aiohttp,
    "grpc": _classify_grpc,
    "botocore": _classify_botocore,
    "openai": _classify_openai,
    "google": _classify_google,
    "redis": _classify_redis,
    "clamd": classify_clamd,  # WIRE(integrations)
}


def classifier_for(exc: BaseException) -> Classifier | None:
    """The client-library classifier for ``exc``, found by walking its class's MRO."""
    if not CLIENT_CLASSIFIERS:
        return None
    for cls in type(exc).__mro__:
        module = cls.__module__
        if module == "builtins":
            return None
        found = CLIENT_CLASSIFIERS.get(module.partition(".")[0])
        if found is not None:
            return found
    return None
