"""The standard error types of every external call.

Exception tree::

    Exception
    └── ReliabilityError              an external call failed (``.error_type`` says how)
        ├── CircuitOpenError          rejected by an open circuit breaker, nothing was attempted
        ├── ThrottledError            refused by the library's own rate limiter
        ├── ConcurrencyLimitedError   refused by the service's concurrency limit (bulkhead full)
        └── CallTimeoutError          an attempt ran out of time (also a builtin ``TimeoutError``)

``ReliabilityError.error_type`` is always set, so ``except ReliabilityError`` plus a look at
``error_type`` is enough (the seed's error-handling example); the subclasses exist for callers who
prefer ``except CircuitOpenError``. The original exception is the ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import ClassVar, Final


class ExternalServiceError(Enum):
    """How an external call failed. The values are the ``error.type`` of the telemetry."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    RATE_LIMIT = "rate_limit"
    AUTHENTICATION_ERROR = "authentication_error"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"
    UNKNOWN_ERROR = "unknown_error"
    CIRCUIT_OPEN = "circuit_open"
    THROTTLED = "throttled"
    CONCURRENCY_LIMITED = "concurrency_limited"


#: Failures worth another attempt: the service may answer differently next time.
#: ``UNKNOWN_ERROR`` joins them unless ``RETRY_UNKNOWN_ERRORS`` is off.
TRANSIENT_ERRORS: Final = frozenset(
    {
        ExternalServiceError.TIMEOUT,
        ExternalServiceError.CONNECTION_ERROR,
        ExternalServiceError.RATE_LIMIT,
        ExternalServiceError.SERVER_ERROR,
    }
)

#: The caller's fault, not the service's: never retried, never counted as a breaker failure.
CLIENT_ERRORS: Final = frozenset(
    {
        ExternalServiceError.AUTHENTICATION_ERROR,
        ExternalServiceError.PERMISSION_DENIED,
        ExternalServiceError.NOT_FOUND,
        ExternalServiceError.BAD_REQUEST,
    }
)


def is_retryable(error_type: ExternalServiceError, retry_unknown: bool = True) -> bool:
    """Whether a failure of this type is worth another attempt.

    ``retry_unknown`` is the service's ``RETRY_UNKNOWN_ERRORS``.
    """
    return error_type in TRANSIENT_ERRORS or (
        retry_unknown and error_type is ExternalServiceError.UNKNOWN_ERROR
    )


class ReliabilityError(Exception):
    """A call to an external service failed.

    Attributes:
        error_type: how it failed (an :class:`ExternalServiceError`).
        service_name: the service called, e.g. ``"openai"``.
        endpoint: the operation called, e.g. ``"chat.completions"``.
        attempts: how many attempts ran (0 when the call was rejected before any attempt).
        retry_after: seconds the service asked us to wait (``Retry-After``), if it said so.
    """

    #: the ``RETRY_UNKNOWN_ERRORS`` of the service whose call built this error (see
    #: :func:`with_retry_policy`); an error built elsewhere follows the default config
    _retry_unknown: bool = True

    def __init__(
        self,
        error_type: ExternalServiceError,
        service_name: str,
        endpoint: str,
        message: str | None = None,
        *,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.error_type = error_type
        self.service_name = service_name
        self.endpoint = endpoint
        self.attempts = attempts
        self.retry_after = retry_after
        self.message = message or f"{error_type.value} calling {service_name} ({endpoint})"
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} [{self.error_type.value}; attempts={self.attempts}]"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error_type={self.error_type},"
            f" service_name={self.service_name!r}, endpoint={self.endpoint!r},"
            f" attempts={self.attempts}, retry_after={self.retry_after})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        """Picklable across processes, keywords and the retry policy included, by the public
        class name only."""
        args = (self.error_type, self.service_name, self.endpoint, self.message)
        state = {
            "attempts": self.attempts,
            "retry_after": self.retry_after,
            "_retry_unknown": self._retry_unknown,
        }
        return (type(self), args, state)

    @property
    def retryable(self) -> bool:
        """Whether the failure is transient: what the retries of its call decided.

        ``UNKNOWN_ERROR`` counts unless the service that built the error has
        ``RETRY_UNKNOWN_ERRORS`` off.
        """
        return is_retryable(self.error_type, self._retry_unknown)


def with_retry_policy(error: ReliabilityError, retry_unknown: bool) -> ReliabilityError:
    """``error``, marked with its service's ``RETRY_UNKNOWN_ERRORS`` so that ``.retryable``
    agrees with the retry decision of its call."""
    error._retry_unknown = retry_unknown
    return error


def _rebuild(
    cls: type[ReliabilityError],
    error_type: ExternalServiceError,
    service_name: str,
    endpoint: str,
    message: str,
    attempts: int,
    retry_after: float | None,
    retry_unknown: bool = True,
) -> ReliabilityError:
    """Unpickles errors pickled by version 0.1.0 (a queue or cache may still hold some)."""
    error = cls(
        error_type, service_name, endpoint, message, attempts=attempts, retry_after=retry_after
    )
    return with_retry_policy(error, retry_unknown)


class _Refusal(ReliabilityError):
    """An error raised without an attempt (or for a refused one): its error type and message
    have per-class defaults, so the library and users build it from service and endpoint."""

    #: the error type when none is given, and the message's template
    _TYPE: ClassVar[ExternalServiceError]
    _MESSAGE: ClassVar[str]

    def __init__(
        self,
        error_type: ExternalServiceError | None = None,
        service_name: str = "",
        endpoint: str = "",
        message: str | None = None,
        *,
        attempts: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            self._TYPE if error_type is None else error_type,
            service_name,
            endpoint,
            message or self._MESSAGE.format(service=service_name, endpoint=endpoint),
            attempts=attempts,
            retry_after=retry_after,
        )


class CircuitOpenError(_Refusal):
    """The breaker of (service, endpoint) is open: the call was rejected without an attempt."""

    _TYPE = ExternalServiceError.CIRCUIT_OPEN
    _MESSAGE = "circuit breaker for {service} ({endpoint}) is open"


class ThrottledError(_Refusal):
    """The library's own rate limiter refused the call: nothing was attempted."""

    _TYPE = ExternalServiceError.THROTTLED
    _MESSAGE = "rate limit for {service} ({endpoint}) reached"


class ConcurrencyLimitedError(_Refusal):
    """The service's concurrency limit was full (and stayed full for the allowed wait).

    Nothing was sent for the refused attempt; it is never retried and never counts against the
    breaker.
    """

    _TYPE = ExternalServiceError.CONCURRENCY_LIMITED
    _MESSAGE = "concurrency limit of {service} reached; call to {endpoint} refused"


class CallTimeoutError(ReliabilityError, TimeoutError):
    """An attempt did not finish within its timeout (``except TimeoutError`` catches it too)."""


#: The class :func:`map_external_error` builds for each error type.
ERROR_CLASSES: Final[Mapping[ExternalServiceError, type[ReliabilityError]]] = MappingProxyType(
    {
        ExternalServiceError.TIMEOUT: CallTimeoutError,
        ExternalServiceError.CIRCUIT_OPEN: CircuitOpenError,
        ExternalServiceError.THROTTLED: ThrottledError,
        ExternalServiceError.CONCURRENCY_LIMITED: ConcurrencyLimitedError,
    }
)
