"""What every classifier shares: the verdict type, guarded attribute reads, exception lookup.

Nothing here imports a client library: exception classes are read from ``sys.modules``, which
holds a library whenever one of its exceptions exists.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeGuard, cast

from .._errors import ExternalServiceError

E = ExternalServiceError


@dataclass(frozen=True, slots=True)
class Classification:
    """What a classifier decided: the error type and, if the service said so, ``Retry-After``."""

    error_type: ExternalServiceError
    retry_after: float | None = None


#: A classifier looks at an exception and returns a Classification, or None to pass.
Classifier = Callable[[BaseException], Classification | None]

#: What a rule decides for a matching exception: a fixed error type, or a function that looks
#: further (and may pass with None).
Verdict: TypeAlias = ExternalServiceError | Classifier

#: One row of a classifier's table: (module, exception class names, verdict).
Rule: TypeAlias = tuple[str, tuple[str, ...], Verdict]

#: exceptions followed along ``__cause__`` / ``__context__`` at most
_MAX_CHAIN: Final = 16


def attr(obj: object, name: str) -> object:
    """``getattr(obj, name, None)`` that survives a property raising anything."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def clean_seconds(seconds: object) -> float | None:
    """A finite number >= 0, or None (NaN, infinities and non-numbers are not a delay)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    try:
        result = float(seconds)
    except (OverflowError, ValueError):  # an int too large for a float
        return None
    if not math.isfinite(result):
        return None
    return max(0.0, result)


def checked(found: object) -> Classification | None:
    """A classifier's answer when it is a usable Classification (finite delay), else None."""
    if not _is_classification(found):
        return None
    retry_after = found.retry_after
    cleaned = None if retry_after is None else clean_seconds(retry_after)
    return found if cleaned == retry_after else Classification(found.error_type, cleaned)


def _is_classification(found: object) -> TypeGuard[Classification]:
    # a classifier may have put anything in error_type
    return isinstance(found, Classification) and isinstance(
        cast(object, found.error_type), ExternalServiceError
    )


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or its ``repr``, or its type name: whichever does not raise first."""
    for render in (str, repr):  # both return a str or raise (TypeError for a non-str)
        try:
            return render(exc)
        except Exception:
            continue
    try:
        return type(exc).__name__
    except Exception:  # pragma: no cover - a type always has a name
        return "exception"


def exception_types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The named exception classes of an already imported ``module`` (none if it is not)."""
    mod = sys.modules.get(module)
    if mod is None:
        return ()
    return tuple(filter(_is_exception_class, (getattr(mod, name, None) for name in names)))


def _is_exception_class(cls: object) -> TypeGuard[type[BaseException]]:
    return isinstance(cls, type) and issubclass(cls, BaseException)


def by_rules(exc: BaseException, rules: Iterable[Rule]) -> Classification | None:
    """The verdict of the first rule whose classes ``exc`` is an instance of (None: no rule)."""
    for module, names, verdict in rules:
        if isinstance(exc, exception_types(module, *names)):
            return _apply(verdict, exc)
    return None


def _apply(verdict: Verdict, exc: BaseException) -> Classification | None:
    if isinstance(verdict, ExternalServiceError):
        return Classification(verdict)
    return verdict(exc)


def chain(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and the exceptions it was raised from or during (bounded, cycle-safe)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def connection_or_timeout(exc: BaseException) -> Classification:
    """A transport failure: ``timeout`` when a timeout caused it, else ``connection_error``."""
    timed_out = any(isinstance(link, TimeoutError) for link in chain(exc))
    return Classification(E.TIMEOUT if timed_out else E.CONNECTION_ERROR)
