"""httpx integration: transports that make every request of a client resilient and traced.

>>> import httpx
>>> from otel_resilience.httpx import ResilientTransport
>>> client = httpx.Client(transport=ResilientTransport())
>>> client.close()

:class:`ResilientTransport` (sync) and :class:`AsyncResilientTransport` (asyncio) wrap any inner
transport (default ``httpx.HTTPTransport()`` / ``httpx.AsyncHTTPTransport()``; transports of
``httpx2``, httpx's successor, work the same). Each request is one :func:`resilient_call`:

- service: the URL's authority (``api.example.com``, ``127.0.0.1:8080``) unless given; endpoint:
  the route, ``"GET /users/{id}"`` (id-like segments collapsed, at most ``max_routes`` names,
  then ``_other``), or a name or callable you give;
- each attempt's I/O timeouts (connect, read, write, pool) are the client's own, cut to the
  attempt's remaining time: timeouts are cooperative, nothing is interrupted;
- 429 and 5xx responses are failures (retried, counted by the breaker), ``Retry-After``,
  ``retry-after-ms`` and ``x-ratelimit-reset-*`` set the wait; other 4xx are failures that are
  neither retried nor counted;
- GET, HEAD, OPTIONS, PUT, DELETE are retried; POST and PATCH only with an ``Idempotency-Key``
  header; a streaming request body is sent once;
- after the last attempt the client gets the last response when the server answered, and a
  :class:`~otel_resilience.ReliabilityError` when it did not (timeout, connection error, open
  breaker).

See docs/integrations/httpx.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

from ._call import resilient_call, resilient_call_async
from ._errors import ReliabilityError
from ._http_integration import (
    DEFAULT_MAX_ROUTES,
    HttpPolicy,
    Naming,
    ResponseFailure,
    io_timeout,
    mark_resend,
    route_of,
)
from ._timeout import remaining_time

__all__ = ["AsyncResilientTransport", "ResilientTransport"]

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


def _authority(url: Any) -> str:
    host = url.host
    port = url.port
    return f"{host}:{port}" if port is not None else str(host)


def _library(obj: object) -> Any:
    """The httpx-like package an object comes from (``httpx`` or ``httpx2``)."""
    return sys.modules[type(obj).__module__.partition(".")[0]]


class _Exchange:
    """One request's attempts: their I/O timeouts, resend count and verdict on each response."""

    __slots__ = (
        "_endpoint",
        "_own",
        "_policy",
        "_service",
        "buffer",
        "number",
        "pending",
        "request",
    )

    def __init__(
        self, request: Any, policy: HttpPolicy, service: str, endpoint: str, buffer: bool
    ) -> None:
        self.request = request
        self.buffer = buffer
        self._policy = policy
        self._service = service
        self._endpoint = endpoint
        own = request.extensions.get("timeout") or {}
        self._own = {key: own.get(key) for key in _TIMEOUT_KEYS}
        self.number = 0
        #: a successful response not handed back yet (closed if the attempt still fails)
        self.pending: Any = None

    def start(self) -> Any:
        """Begin an attempt; returns a success of an earlier attempt that came too late."""
        self.number += 1
        mark_resend(self.number)
        left = remaining_time()
        own = self._own
        self.request.extensions["timeout"] = {
            key: io_timeout(own[key], left) for key in _TIMEOUT_KEYS
        }
        return self.discard()

    def verdict(self, response: Any, raw: bytes | None) -> Any:
        """``response`` (or its buffered copy, given its ``raw`` body) when it is a success;
        raises :class:`ResponseFailure` otherwise."""
        if raw is None:
            self.pending = response
            return response
        status = response.status_code
        lib = _library(response)
        buffered = lib.Response(
            status,
            headers=response.headers,
            stream=lib.ByteStream(raw),
            extensions=response.extensions,
            request=self.request,
        )
        if status < 400:
            return buffered
        raise self._policy.failure(
            self._service,
            self._endpoint,
            status,
            response.reason_phrase,
            response.headers,
            _failure_body(lib, response, raw),
            buffered,
        )

    def unbuffered(self, response: Any) -> bool:
        """Whether ``response`` is a success handed back as it streams (no buffering)."""
        return response.status_code < 400 and not self.buffer

    def discard(self) -> Any:
        """The successful response that came too late, to be closed."""
        pending, self.pending = self.pending, None
        return pending


def _failure_body(lib: Any, response: Any, raw: bytes) -> bytes:
    """The body a failure is classified by: a 429's as the client would decode it
    (Content-Encoding; the raw bytes when that fails), nothing for another status."""
    if response.status_code != 429:
        return b""
    try:
        return bytes(lib.Response(429, headers=response.headers, content=raw).content)
    except Exception:
        return raw


def _replayable(request: Any) -> bool:
    return isinstance(request.stream, _library(request).ByteStream)


class _Base:
    #: the httpx transport made when none is given, the method an inner transport must have,
    #: and what it is called in the error
    _DEFAULT: ClassVar[str]
    _HANDLE: ClassVar[str]
    _KIND: ClassVar[str]

    __slots__ = ("_buffer", "_inner", "_policy")

    def __init__(
        self,
        transport: Any = None,
        *,
        service: Naming = None,
        endpoint: Naming = None,
        timeout_sec: float | None = None,
        max_retries: int | None = None,
        deadline_sec: float | None = None,
        idempotent: bool | Callable[[Any], bool] | None = None,
        max_routes: int = DEFAULT_MAX_ROUTES,
        buffer: bool | Callable[[Any], bool] = False,
        route: Callable[[str, str], str] = route_of,
    ) -> None:
        if transport is None:
            import httpx

            transport = getattr(httpx, self._DEFAULT)()
        elif not callable(getattr(transport, self._HANDLE, None)):
            raise TypeError(
                f"transport must be {self._KIND} (with {self._HANDLE}), got"
                f" {type(transport).__name__}"
            )
        if not (isinstance(buffer, bool) or callable(buffer)):
            raise TypeError(
                f"buffer must be True, False or a callable receiving the request, got {buffer!r}"
            )
        self._inner = transport
        self._buffer = buffer
        self._policy = HttpPolicy(
            service,
            endpoint,
            timeout_sec=timeout_sec,
            max_retries=max_retries,
            deadline_sec=deadline_sec,
            idempotent=idempotent,
            max_routes=max_routes,
            route=route,
        )

    def _plan(self, request: Any) -> tuple[str, str, int | None, _Exchange]:
        policy = self._policy
        url = request.url
        method = request.method
        service = policy.service_for(request, _authority(url))
        endpoint = policy.endpoint_for(request, method, url.path)
        attempts = policy.attempts_for(request, method, request.headers)
        if not _replayable(request):
            attempts = 1
        buffer = self._wants_buffer(request)
        return service, endpoint, attempts, _Exchange(request, policy, service, endpoint, buffer)

    def _wants_buffer(self, request: Any) -> bool:
        buffer = self._buffer
        return buffer if isinstance(buffer, bool) else bool(buffer(request))


class ResilientTransport(_Base):
    """A sync httpx transport: every request through it is a :func:`resilient_call`.

    Args:
        transport: the transport that does the I/O (default ``httpx.HTTPTransport()``).
        service: service name (default the URL's authority), or a callable given the request.
        endpoint: endpoint name (default the route ``"GET /users/{id}"``), or a callable.
        timeout_sec: limit of each attempt (default ``HTTP_TIMEOUT_SEC`` of the service).
        max_retries: attempts in all for a request that may be repeated (default
            ``HTTP_RETRIES``).
        deadline_sec: total time of one request across attempts (default ``DEADLINE_SEC``).
        idempotent: None (by method and ``Idempotency-Key``), True, False, or a callable given
            the request.
        max_routes: distinct default endpoint names before ``_other``.
        route: how a default endpoint name is made from (method, path); default
            ``"GET /users/{id}"``.
        buffer: read a successful response's body inside the attempt (True, or a callable
            given the request), so a slow or broken body is retried within the attempt's time;
            default False: the body streams to the caller after the attempt ended.
    """

    _DEFAULT = "HTTPTransport"
    _HANDLE = "handle_request"
    _KIND = "a sync httpx transport"

    __slots__ = ()

    def handle_request(self, request: Any) -> Any:
        service, endpoint, attempts, exchange = self._plan(request)
        inner = self._inner

        def attempt() -> Any:
            late = exchange.start()
            if late is not None:
                late.close()
            response = inner.handle_request(request)
            if exchange.unbuffered(response):
                return exchange.verdict(response, None)
            try:
                raw = b"".join(response.stream)  # raw bytes, as sent (Content-Encoding kept)
            finally:
                response.close()
            return exchange.verdict(response, raw)

        policy = self._policy
        try:
            return resilient_call(
                service,
                endpoint,
                attempt,
                policy.timeout_sec,
                attempts,
                deadline_sec=policy.deadline_sec,
                timeout_mode="cooperative",
            )
        except ResponseFailure as failure:
            return failure.response
        except ReliabilityError:
            late = exchange.discard()
            if late is not None:
                late.close()
            raise

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> ResilientTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self._inner.__exit__(*args)


class AsyncResilientTransport(_Base):
    """The asyncio twin of :class:`ResilientTransport` (default inner transport
    ``httpx.AsyncHTTPTransport()``); same arguments."""

    _DEFAULT = "AsyncHTTPTransport"
    _HANDLE = "handle_async_request"
    _KIND = "an async httpx transport"

    __slots__ = ()

    async def handle_async_request(self, request: Any) -> Any:
        service, endpoint, attempts, exchange = self._plan(request)
        inner = self._inner

        async def attempt() -> Any:
            late = exchange.start()
            if late is not None:
                await late.aclose()
            response = await inner.handle_async_request(request)
            if exchange.unbuffered(response):
                return exchange.verdict(response, None)
            try:
                raw = b"".join([chunk async for chunk in response.stream])
            finally:
                await response.aclose()
            return exchange.verdict(response, raw)

        policy = self._policy
        try:
            return await resilient_call_async(
                service,
                endpoint,
                attempt,
                policy.timeout_sec,
                attempts,
                deadline_sec=policy.deadline_sec,
                timeout_mode="cooperative",
            )
        except ResponseFailure as failure:
            return failure.response
        except ReliabilityError:
            late = exchange.discard()
            if late is not None:
                await late.aclose()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncResilientTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self._inner.__aexit__(*args)
