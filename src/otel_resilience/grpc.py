"""gRPC client interceptors: every unary-unary RPC of a channel is one resilient call.

>>> from otel_resilience.grpc import resilient_channel
>>> channel = resilient_channel("127.0.0.1:50051")   # grpc.enable_retries=0 and the interceptor
>>> channel.close()

What each RPC gets (sync channels and ``grpc.aio`` alike)::

    stub.Method(request, timeout=5)          the caller's timeout: the deadline of the whole call
    └── resilient_call("pkg.Service", "Method", ...)  service/endpoint from "/pkg.Service/Method"
        ├── attempt 1: timeout = what is left of the attempt (cooperative: never interrupted)
        ├── failed and transient? backoff; grpc-retry-pushback-ms (trailing metadata) wins
        └── attempt 2: metadata grpc-previous-rpc-attempts=1, ...

Only unary-unary RPCs are intercepted; streaming RPCs pass through untouched (a stream cannot be
re-sent once messages flowed). After the last attempt the caller gets what the HTTP integrations
give: the server's answer when there was one (the last ``grpc.RpcError``: ``NOT_FOUND``,
``RESOURCE_EXHAUSTED``, ...), a :class:`~otel_resilience.ReliabilityError` when there was none
(a timeout, no connection, an open breaker), the last ``grpc.RpcError`` as its ``__cause__``.
Only this module imports ``grpc`` (the extra ``otel-resilience[grpc]``); ``import
otel_resilience`` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import grpc
import grpc.aio

from ._call import resilient_call, resilient_call_async
from ._errors import ExternalServiceError, ReliabilityError
from ._runtime import check_attempts as _check_attempts
from ._timeout import remaining_time, validate_timeout

__all__ = [
    "PREVIOUS_ATTEMPTS",
    "AsyncResilienceInterceptor",
    "ResilienceInterceptor",
    "method_names",
    "resilient_aio_channel",
    "resilient_channel",
]

#: the metadata key gRPC's own retries send on every retry (the gRPC A6 design)
PREVIOUS_ATTEMPTS: Final = "grpc-previous-rpc-attempts"
#: the channel option that turns gRPC's built-in retries (and their service-config policy) off
_NO_RETRIES: Final = ("grpc.enable_retries", 0)

Names = Callable[[str], tuple[str, str]]


def method_names(method: str | bytes) -> tuple[str, str]:
    """``("pkg.Service", "Method")`` from a full method name ``"/pkg.Service/Method"``.

    >>> method_names("/helloworld.Greeter/SayHello")
    ('helloworld.Greeter', 'SayHello')
    >>> method_names("odd")
    ('grpc', 'odd')
    """
    service, _, name = str(_text(method)).strip("/").rpartition("/")
    return (service or "grpc", name or "unknown")


def _text(method: str | bytes) -> str:
    """A method name given as bytes decoded (invalid UTF-8 replaced); a str as is."""
    return method.decode("utf-8", "replace") if isinstance(method, bytes) else method


class _Options:
    """The validated settings an interceptor applies to every RPC (shared by the twins)."""

    __slots__ = ("deadline_sec", "max_retries", "names", "service_name", "timeout_sec")

    def __init__(
        self,
        service_name: str | None,
        names: Names | None,
        timeout_sec: float | None,
        max_retries: int | None,
        deadline_sec: float | None,
    ) -> None:
        _check_naming(service_name, names)
        self.service_name = service_name
        self.names = method_names if names is None else names
        self.timeout_sec = validate_timeout("timeout_sec", timeout_sec)
        self.max_retries = _checked_attempts(max_retries)
        self.deadline_sec = validate_timeout("deadline_sec", deadline_sec)

    def call_names(self, method: str | bytes) -> tuple[str, str]:
        service, endpoint = self.names(_text(method))
        return (self.service_name or service, endpoint)

    def call_options(self, caller_timeout: float | None) -> dict[str, Any]:
        """The options of one RPC's resilient call; its deadline is the caller's RPC timeout,
        else the configured one."""
        return {
            "timeout_sec": self.timeout_sec,
            "max_retries": self.max_retries,
            "deadline_sec": self._deadline(caller_timeout),
            "timeout_mode": "cooperative",
        }

    def _deadline(self, caller_timeout: float | None) -> float | None:
        if caller_timeout is None:
            return self.deadline_sec
        return caller_timeout if caller_timeout > 0 else 1e-9  # an RPC already due: at once


def _check_naming(service_name: object, names: object) -> None:
    """Refuse a bad ``service_name`` or ``names`` of the interceptors, naming what is accepted."""
    _check_service_name(service_name)
    if not _is_names(names):
        raise TypeError(
            "names must be a callable taking the full method name ('/pkg.Service/Method')"
            f" and returning (service, endpoint), or None; got {names!r}"
        )


def _check_service_name(service_name: object) -> None:
    if service_name is not None and not _is_text(service_name):
        raise TypeError(f"service_name must be a non-empty string or None, got {service_name!r}")


def _is_names(names: object) -> bool:
    return names is None or callable(names)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _checked_attempts(max_retries: int | None) -> int | None:
    if max_retries is not None:
        _check_attempts(max_retries)  # raises naming max_retries and the accepted range
    return max_retries


#: failures in which no server answered: the caller gets the ReliabilityError
_NO_ANSWER: Final = frozenset({ExternalServiceError.TIMEOUT, ExternalServiceError.CONNECTION_ERROR})


def _raise_servers_answer(error: ReliabilityError) -> None:
    """Raise the last attempt's ``grpc.RpcError`` when a server answered it with a status (as
    the HTTP integrations return the last response); return when none did (a timeout, no
    connection, a call the breaker or the rate limiter refused, a request not sent)."""
    cause = error.__cause__
    if error.error_type not in _NO_ANSWER and isinstance(cause, grpc.RpcError):
        raise cause from None


def _local_error(service: str, endpoint: str, exc: BaseException) -> ReliabilityError:
    """A failure before anything was sent (a request the serializer refused, a closed
    channel): the caller's mistake, so neither retried nor counted against the breaker."""
    return ReliabilityError(
        ExternalServiceError.BAD_REQUEST,
        service,
        endpoint,
        f"bad_request calling {service} ({endpoint}): the RPC could not be sent:"
        f" {type(exc).__name__}: {exc}",
    )


def _metadata(metadata: Any, number: int, aio: bool) -> Any:
    """The caller's metadata, plus ``grpc-previous-rpc-attempts`` on a retry."""
    if number == 1:
        return metadata
    entries = (*_without_previous(metadata), (PREVIOUS_ATTEMPTS, str(number - 1)))
    return grpc.aio.Metadata(*entries) if aio else entries


def _without_previous(metadata: Any) -> tuple[tuple[str, Any], ...]:
    """The caller's metadata entries, less any ``grpc-previous-rpc-attempts`` of theirs."""
    return tuple((k, v) for k, v in (metadata or ()) if k != PREVIOUS_ATTEMPTS)


class ResilienceInterceptor(grpc.UnaryUnaryClientInterceptor):
    """A ``grpc.UnaryUnaryClientInterceptor``: each RPC becomes a :func:`resilient_call`.

    Args:
        service_name: the service of every RPC (default: ``pkg.Service`` of the method name).
        names: a callable mapping the full method name to ``(service, endpoint)``
            (default :func:`method_names`).
        timeout_sec, max_retries: as in :func:`~otel_resilience.resilient_call`
            (defaults from the service's config).
        deadline_sec: the whole call's limit when the caller passes no ``timeout=``.

    Use it on a channel built with ``grpc.enable_retries=0`` (:func:`resilient_channel` does
    both), or gRPC's own retries would run underneath.
    """

    def __init__(
        self,
        service_name: str | None = None,
        *,
        names: Names | None = None,
        timeout_sec: float | None = None,
        max_retries: int | None = None,
        deadline_sec: float | None = None,
    ) -> None:
        self._options = _Options(service_name, names, timeout_sec, max_retries, deadline_sec)

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        options = self._options
        service, endpoint = options.call_names(client_call_details.method)
        numbers = iter(range(1, 1 << 30))

        def attempt() -> Any:
            details = client_call_details._replace(
                timeout=remaining_time(),
                metadata=_metadata(client_call_details.metadata, next(numbers), aio=False),
            )
            outcome = continuation(details, request)
            failure = outcome.exception()  # the RPC's error, or a local one grpc wrapped
            if failure is None:
                return outcome
            if isinstance(failure, grpc.RpcError):
                raise failure
            raise _local_error(service, endpoint, failure) from failure

        try:
            return resilient_call(
                service, endpoint, attempt, **options.call_options(client_call_details.timeout)
            )
        except ReliabilityError as error:
            _raise_servers_answer(error)
            raise


class AsyncResilienceInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """The ``grpc.aio.UnaryUnaryClientInterceptor`` twin of :class:`ResilienceInterceptor`
    (same arguments)."""

    def __init__(
        self,
        service_name: str | None = None,
        *,
        names: Names | None = None,
        timeout_sec: float | None = None,
        max_retries: int | None = None,
        deadline_sec: float | None = None,
    ) -> None:
        self._options = _Options(service_name, names, timeout_sec, max_retries, deadline_sec)

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        options = self._options
        service, endpoint = options.call_names(client_call_details.method)
        numbers = iter(range(1, 1 << 30))

        async def attempt() -> Any:
            details = client_call_details._replace(
                timeout=remaining_time(),
                metadata=_metadata(client_call_details.metadata, next(numbers), aio=True),
            )
            try:
                call = await continuation(details, request)
                await call  # raises the RPC's error
            except grpc.RpcError:
                raise
            except Exception as exc:
                raise _local_error(service, endpoint, exc) from exc
            return call

        try:
            return await resilient_call_async(
                service, endpoint, attempt, **options.call_options(client_call_details.timeout)
            )
        except ReliabilityError as error:
            _raise_servers_answer(error)
            raise


def _channel_options(options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    found = list(options or ())
    for item in found:
        _check_channel_option(item)
    return [*found, _NO_RETRIES]


def _check_channel_option(item: object) -> None:
    """Refuse an option that is not a (name, value) pair, or that turns gRPC's retries on."""
    name, value = _pair(item)
    if name == _NO_RETRIES[0] and value not in (0, False):
        raise ValueError(
            f"options set {name}={value!r}: gRPC's own retries would run under the"
            " interceptor's (a second retry layer); leave it out or set it to 0"
        )


def _pair(item: object) -> tuple[Any, Any]:
    if not isinstance(item, tuple) or len(item) != 2:
        raise TypeError(f"options must be (name, value) pairs, got {item!r}")
    return item[0], item[1]


def resilient_channel(
    target: str,
    credentials: Any = None,
    *,
    options: Sequence[tuple[str, Any]] | None = None,
    service_name: str | None = None,
    names: Names | None = None,
    timeout_sec: float | None = None,
    max_retries: int | None = None,
    deadline_sec: float | None = None,
) -> Any:
    """A ``grpc.Channel`` to ``target`` (secure with ``credentials``, else insecure) whose own
    retries are off (``grpc.enable_retries=0``) and whose unary-unary RPCs are resilient calls.

    The keyword arguments after ``options`` are :class:`ResilienceInterceptor`'s.
    """
    interceptor = ResilienceInterceptor(
        service_name,
        names=names,
        timeout_sec=timeout_sec,
        max_retries=max_retries,
        deadline_sec=deadline_sec,
    )
    opts = _channel_options(options)
    if credentials is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        channel = grpc.secure_channel(target, credentials, options=opts)
    return grpc.intercept_channel(channel, interceptor)


def resilient_aio_channel(
    target: str,
    credentials: Any = None,
    *,
    options: Sequence[tuple[str, Any]] | None = None,
    service_name: str | None = None,
    names: Names | None = None,
    timeout_sec: float | None = None,
    max_retries: int | None = None,
    deadline_sec: float | None = None,
    interceptors: Sequence[Any] = (),
) -> Any:
    """The ``grpc.aio`` twin of :func:`resilient_channel` (``interceptors`` run inside ours)."""
    interceptor = AsyncResilienceInterceptor(
        service_name,
        names=names,
        timeout_sec=timeout_sec,
        max_retries=max_retries,
        deadline_sec=deadline_sec,
    )
    opts = _channel_options(options)
    chain = [interceptor, *interceptors]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=chain)
    return grpc.aio.secure_channel(target, credentials, options=opts, interceptors=chain)
