"""requests integration: an ``HTTPAdapter`` that makes every request of a session resilient.

>>> import requests
>>> from otel_resilience.requests import ResilientAdapter
>>> session = requests.Session()
>>> session.mount("https://", ResilientAdapter()); session.mount("http://", ResilientAdapter())
>>> session.close()

The behaviour is the httpx transport's (docs/integrations/requests.md): each request is one
:func:`~otel_resilience.resilient_call` named after the URL's authority and route; each
attempt's ``timeout`` is the request's own, cut to the attempt's remaining time (cooperative);
429/5xx responses are retried with ``Retry-After``; POST and PATCH only with an
``Idempotency-Key`` header; urllib3's own retries are off (``max_retries=0``); after the last
attempt the caller gets the last response when the server answered, a
:class:`~otel_resilience.ReliabilityError` when it did not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters

from ._call import resilient_call
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

__all__ = ["ResilientAdapter"]


def _own_timeouts(timeout: Any) -> tuple[float | None, float | None]:
    """(connect, read) of a requests ``timeout`` argument (a number, a pair or None)."""
    if isinstance(timeout, tuple):
        connect, read = timeout
        return connect, read
    if _is_plain(timeout):
        return timeout, timeout
    # a urllib3 Timeout object
    return getattr(timeout, "connect_timeout", None), getattr(timeout, "read_timeout", None)


def _is_plain(timeout: Any) -> bool:
    """None or one number for both the connect and the read timeout."""
    return timeout is None or isinstance(timeout, int | float)


def _target(request: requests.PreparedRequest) -> tuple[str, str, str]:
    """(authority ``host[:port]`` without credentials, method, path) of ``request``."""
    url = urlsplit(request.url or "")
    return url.netloc.rpartition("@")[2], request.method or "GET", url.path


def _replayable(request: requests.PreparedRequest) -> bool:
    body = request.body
    return body is None or isinstance(body, bytes | str)


def _attempts(policy: HttpPolicy, request: requests.PreparedRequest, method: str) -> int | None:
    """The policy's attempts for ``request``; 1 when its body cannot be sent again."""
    attempts = policy.attempts_for(request, method, request.headers)
    return attempts if _replayable(request) else 1


class ResilientAdapter(requests.adapters.HTTPAdapter):
    """A requests transport adapter: mount it on a ``Session`` for a URL prefix.

    Args:
        service: service name (default the URL's authority), or a callable given the
            ``PreparedRequest``.
        endpoint: endpoint name (default the route ``"GET /users/{id}"``), or a callable.
        timeout_sec: limit of each attempt (default ``HTTP_TIMEOUT_SEC`` of the service).
        max_retries: attempts in all for a request that may be repeated (default
            ``HTTP_RETRIES``); urllib3's own retries stay off.
        deadline_sec: total time of one request across attempts (default ``DEADLINE_SEC``).
        idempotent: None (by method and ``Idempotency-Key``), True, False, or a callable given
            the request.
        max_routes: distinct default endpoint names before ``_other``.
        **adapter_options: passed to ``requests.adapters.HTTPAdapter`` (``pool_connections``,
            ``pool_maxsize``, ``pool_block``); ``max_retries`` there is refused.
    """

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
        **adapter_options: Any,
    ) -> None:
        self._policy = HttpPolicy(
            service,
            endpoint,
            timeout_sec=timeout_sec,
            max_retries=max_retries,
            deadline_sec=deadline_sec,
            idempotent=idempotent,
            max_routes=max_routes,
            route=route_of,
        )
        super().__init__(max_retries=0, **adapter_options)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | Any | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        policy = self._policy
        authority, method, path = _target(request)
        service = policy.service_for(request, authority)
        endpoint = policy.endpoint_for(request, method, path)
        attempts = _attempts(policy, request, method)
        options = {"stream": stream, "verify": verify, "cert": cert, "proxies": proxies}
        attempt = _Attempt(super().send, request, options, timeout, policy, service, endpoint)
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
            return failure.response  # type: ignore[no-any-return]
        except ReliabilityError:
            attempt.discard_late()
            raise


class _Attempt:
    """One request's attempts: each sends it once with the attempt's timeouts and judges the
    response (the shared HTTP policy)."""

    __slots__ = (
        "_endpoint",
        "_number",
        "_options",
        "_own",
        "_pending",
        "_policy",
        "_request",
        "_send",
        "_service",
    )

    def __init__(
        self,
        send: Callable[..., requests.Response],
        request: requests.PreparedRequest,
        options: dict[str, Any],
        timeout: Any,
        policy: HttpPolicy,
        service: str,
        endpoint: str,
    ) -> None:
        self._send = send
        self._request = request
        self._options = options
        self._own = _own_timeouts(timeout)
        self._policy = policy
        self._service = service
        self._endpoint = endpoint
        self._number = 0
        #: a success not handed back yet (closed if its attempt still ends as a timeout)
        self._pending: requests.Response | None = None

    def discard_late(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()

    def __call__(self) -> requests.Response:
        self._number += 1
        mark_resend(self._number)
        self.discard_late()  # a success that came after its attempt's end
        left = remaining_time()
        connect, read = self._own
        io: Any = (io_timeout(connect, left), io_timeout(read, left))
        response = self._send(self._request, timeout=io, **self._options)
        status = response.status_code
        if status < 400:
            self._pending = response
            return response
        body = response.content  # buffered: the connection goes back to the pool
        raise self._policy.failure(
            self._service,
            self._endpoint,
            status,
            response.reason or "",
            response.headers,
            body,
            response,
        )
