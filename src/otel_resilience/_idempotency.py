"""Whether a failed request provably never reached the service (safe to send again).

A call made with ``idempotent=False`` (a POST that creates a ticket, say) is retried only when
the failure proves the request was not processed: the connection was refused or never
established, the host name did not resolve, the server refused it with ``Retry-After`` (429, or
a 5xx that said when to come back), or the library itself refused a nested call. Never after a
timeout or a reset in the middle of the exchange: the server may have done the work.

The proof is read from the exception chain (``__cause__``, ``__context__``, urllib3's
``reason``, wrapped arguments) by class name, so no client library is imported. Types are read
with ``type()`` and attributes with guarded lookups: a hostile exception cannot make this raise.
"""

from __future__ import annotations

from typing import Final, cast

from ._errors import ExternalServiceError, ReliabilityError

E = ExternalServiceError

#: exception classes (module.qualname, matched anywhere in the MRO) raised only when the request
#: was never sent: refused or unestablished connections and name-resolution failures
NOT_SENT: Final = frozenset(
    {
        "builtins.ConnectionRefusedError",
        "socket.gaierror",
        "httpx.ConnectError",
        "httpx.ConnectTimeout",
        "httpcore.ConnectError",
        "httpcore.ConnectTimeout",
        "urllib3.exceptions.NewConnectionError",
        "urllib3.exceptions.ConnectTimeoutError",
        "urllib3.exceptions.NameResolutionError",
        "requests.exceptions.ConnectTimeout",
        "aiohttp.client_exceptions.ClientConnectorError",
        "aiohttp.client_exceptions.ClientConnectorDNSError",
    }
)

#: the library's own refusals (a nested call that was never attempted)
_REFUSED: Final = frozenset({E.CIRCUIT_OPEN, E.THROTTLED})

#: how far down an exception chain to look
_MAX_DEPTH: Final = 8


def request_not_processed(error: ReliabilityError, exc: BaseException | None) -> bool:
    """True when the failed attempt provably did not reach (or was refused by) the service."""
    kind = error.error_type
    if kind in _REFUSED:
        return True
    if kind in (E.RATE_LIMIT, E.SERVER_ERROR) and error.retry_after is not None:
        return True  # the server answered "come back later": it did not do the work
    return exc is not None and _chain_proves_not_sent(exc)


def _chain_proves_not_sent(exc: BaseException) -> bool:
    seen: set[int] = set()
    todo: list[tuple[BaseException, int]] = [(exc, 0)]
    while todo:
        current, depth = todo.pop()
        if id(current) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(current))
        if _not_sent_type(type(current)):
            return True
        todo.extend((linked, depth + 1) for linked in _linked(current))
    return False


def _not_sent_type(kind: type) -> bool:
    return any(f"{klass.__module__}.{klass.__qualname__}" in NOT_SENT for klass in kind.__mro__)


def _linked(exc: BaseException) -> list[BaseException]:
    """The exceptions an exception wraps: its cause, context, ``reason`` and arguments."""
    try:
        args = tuple(BaseException.__getattribute__(exc, "args"))
    except Exception:  # a hostile exception's args
        args = ()
    linked = (exc.__cause__, exc.__context__, _reason(exc), *args)
    return [cast(BaseException, item) for item in linked if issubclass(type(item), BaseException)]


def _reason(exc: BaseException) -> object:
    try:
        return object.__getattribute__(exc, "reason")
    except Exception:  # absent (most exceptions), or a hostile descriptor
        return None
