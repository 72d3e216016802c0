"""The classifier of the ``clamd`` package's exceptions (ClamAV's daemon client), by type.

``clamd.ConnectionError`` covers both a connection that could not be made and a read that failed;
a read that timed out (``socket.timeout`` as its context) is a ``timeout``. The package is never
imported here: the classes are read from ``sys.modules``, where the package is whenever one of its
exceptions exists.
"""

from __future__ import annotations

import sys
from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification

E = ExternalServiceError

#: subclasses before their bases
_CLASSES: Final = (
    ("BufferTooLongError", E.BAD_REQUEST),  # the data exceeds the daemon's StreamMaxLength
    ("ResponseError", E.SERVER_ERROR),  # an answer that is an error or not an answer at all
    ("ConnectionError", E.CONNECTION_ERROR),
    ("ClamdError", E.UNKNOWN_ERROR),
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it (16 links at most)."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(links) < 16:
        links.append(current)
        current = _cause(current)
    return links


def _cause(exc: BaseException) -> BaseException | None:
    """What ``exc`` was raised from, else what it was raised while handling."""
    return exc.__cause__ or exc.__context__


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(link, TimeoutError) for link in _chain(exc))


def _error_type(exc: BaseException) -> ExternalServiceError | None:
    """The type of the first ``clamd`` class (subclasses first) ``exc`` is an instance of."""
    module = sys.modules.get("clamd")
    for name, error_type in _CLASSES:
        if _is_instance(exc, getattr(module, name, None)):
            return error_type
    return None


def _is_instance(exc: BaseException, cls: object) -> bool:
    """Whether ``cls`` is a class (the module may lack it) and ``exc`` one of its instances."""
    return isinstance(cls, type) and isinstance(exc, cls)


def classify_clamd(exc: BaseException) -> Classification | None:
    """The error type of a ``clamd`` exception; None for anything else."""
    error_type = _error_type(exc)
    if error_type is None:
        return None
    return Classification(_refined(error_type, exc))


def _refined(error_type: ExternalServiceError, exc: BaseException) -> ExternalServiceError:
    """A ``connection_error`` caused by a timeout is a ``timeout``."""
    return E.TIMEOUT if error_type is E.CONNECTION_ERROR and _timed_out(exc) else error_type
