"""OpenAI SDK integration: clients with one retry layer, this library's.

>>> from otel_resilience.openai import client
>>> llm = client(api_key="sk-...", base_url="http://127.0.0.1:9/v1")
>>> llm.max_retries
0
>>> llm.close()

:func:`client` and :func:`async_client` return a real ``openai.OpenAI`` / ``openai.AsyncOpenAI``
with the SDK's own retries off (``max_retries=0``) and an HTTP client whose transport is this
library's (:mod:`otel_resilience.httpx`). Every request is one resilient call of service
``"openai"`` and an endpoint named after the API path below the base URL, as the seed names
them: ``chat.completions``, ``embeddings``, ``responses``, ``files.content`` (ids dropped).

- 429 and 5xx are retried; the wait is ``retry-after-ms``, ``Retry-After`` or the
  ``x-ratelimit-reset-*`` of the exhausted limit; a 429 ``insufficient_quota`` is
  ``permission_denied``: not retried, not a breaker failure (money, not time, fixes it);
- 401/403/404/400/422 fail at once, uncounted by the breaker;
- the SDK's errors are unchanged when the server answered (``openai.RateLimitError`` after the
  last attempt); with no answer (timeouts, refused connections, open breaker) the caller gets a
  :class:`~otel_resilience.ReliabilityError`;
- POSTs are retried as the SDK itself does (``idempotent=True``): pass ``idempotent=False`` for
  one attempt per request; a non-streaming reply's body is read inside the attempt; a stream
  (``stream=True``) retries only its opening: once events flow, a broken stream is the caller's.

See docs/integrations/openai.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._http_integration import DEFAULT_MAX_ROUTES, dotted_route
from .httpx import AsyncResilientTransport, ResilientTransport

if TYPE_CHECKING:
    import openai

__all__ = ["async_client", "client"]

#: the service name of every request (the seed's)
SERVICE = "openai"


def _library(client_class: type) -> Any:
    """The httpx-like package the SDK's default HTTP client comes from (httpx2 or httpx)."""
    for base in client_class.__mro__:
        package = base.__module__.partition(".")[0]
        if package in ("httpx", "httpx2"):
            return sys.modules[package]
    raise RuntimeError(  # pragma: no cover - every SDK version builds on one of the two
        f"cannot tell which HTTP library {client_class.__name__} is built on"
    )


def _wants_stream(request: Any) -> bool:
    """Whether a request asks for a server-sent event stream (``"stream": true``)."""
    try:
        body = request.content
    except Exception:  # a streaming upload: never buffered
        return True
    return b'"stream":true' in body or b'"stream": true' in body


class _Names:
    """Endpoint names from the path below the client's base URL (known once it is built)."""

    __slots__ = ("prefix",)

    def __init__(self) -> None:
        self.prefix = ""

    def __call__(self, method: str, path: str) -> str:
        return dotted_route(path, self.prefix)


def _check(options: dict[str, Any]) -> None:
    if "http_client" in options:
        raise TypeError(
            "http_client is built by otel_resilience.openai; pass transport= (an inner httpx"
            " transport) to change how requests are sent"
        )
    if "max_retries" in options:
        raise TypeError(
            "max_retries of the SDK stays 0 (one retry layer); pass attempts= for this"
            " library's attempts per request"
        )


def client(
    *,
    service: str = SERVICE,
    attempts: int | None = None,
    timeout_sec: float | None = None,
    deadline_sec: float | None = None,
    idempotent: bool | Callable[[Any], bool] = True,
    transport: Any = None,
    max_routes: int = DEFAULT_MAX_ROUTES,
    **options: Any,
) -> openai.OpenAI:
    """An ``openai.OpenAI`` whose every request is a resilient call (SDK retries off).

    Args:
        service: the service name (default ``"openai"``).
        attempts: attempts in all per request (default ``HTTP_RETRIES`` of the service).
        timeout_sec: limit of each attempt (default ``HTTP_TIMEOUT_SEC``); the SDK's
            ``timeout=`` still applies, whichever is shorter.
        deadline_sec: total time of one request across attempts (default ``DEADLINE_SEC``).
        idempotent: whether POSTs are retried (default True, as the SDK does).
        transport: the inner httpx transport (default the SDK's HTTP library's own).
        max_routes: distinct endpoint names before ``_other``.
        **options: passed to ``openai.OpenAI`` (``api_key``, ``base_url``, ``timeout`` ...).
    """
    import openai

    made = _make(
        openai.OpenAI,
        openai.DefaultHttpxClient,
        ResilientTransport,
        "HTTPTransport",
        transport,
        (service, attempts, timeout_sec, deadline_sec, idempotent, max_routes),
        options,
    )
    return cast("openai.OpenAI", made)


def async_client(
    *,
    service: str = SERVICE,
    attempts: int | None = None,
    timeout_sec: float | None = None,
    deadline_sec: float | None = None,
    idempotent: bool | Callable[[Any], bool] = True,
    transport: Any = None,
    max_routes: int = DEFAULT_MAX_ROUTES,
    **options: Any,
) -> openai.AsyncOpenAI:
    """The asyncio twin of :func:`client`: an ``openai.AsyncOpenAI``; same arguments."""
    import openai

    made = _make(
        openai.AsyncOpenAI,
        openai.DefaultAsyncHttpxClient,
        AsyncResilientTransport,
        "AsyncHTTPTransport",
        transport,
        (service, attempts, timeout_sec, deadline_sec, idempotent, max_routes),
        options,
    )
    return cast("openai.AsyncOpenAI", made)


def _make(
    sdk_class: Any,
    http_client: Any,
    resilient_class: Any,
    default_transport: str,
    transport: Any,
    policy: tuple[str, int | None, float | None, float | None, Any, int],
    options: dict[str, Any],
) -> Any:
    """An SDK client (sync or async) on the resilient transport (sync or async), SDK retries
    off: both clients' one body. ``policy``: service, attempts, timeout_sec, deadline_sec,
    idempotent and max_routes, as given to :func:`client`."""
    _check(options)
    service, attempts, timeout_sec, deadline_sec, idempotent, max_routes = policy
    lib = _library(http_client)
    names = _Names()
    resilient = resilient_class(
        transport if transport is not None else getattr(lib, default_transport)(),
        service=service,
        timeout_sec=timeout_sec,
        max_retries=attempts,
        deadline_sec=deadline_sec,
        idempotent=idempotent,
        max_routes=max_routes,
        buffer=lambda request: not _wants_stream(request),
        route=names,
    )
    sdk = sdk_class(max_retries=0, http_client=http_client(transport=resilient), **options)
    names.prefix = sdk.base_url.path
    return sdk
