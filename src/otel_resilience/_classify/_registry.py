"""The classifier chain and the registry of the application's own classifiers.

Order of evidence, strongest first:

1. a :class:`ReliabilityError` (from a nested ``resilient_call``) keeps its classification;
2. the classifiers registered on the :class:`Classifiers` registry (the application's own);
3. the classifier of the client library the exception comes from (``_libraries``), looked up
   by the exception's module, so nothing is imported that the application did not import; a
   library's wrapper exception (google's ``RetryError``) is judged by the exception it wraps;
4. the exception's type (``TimeoutError``, the ``ConnectionError`` family, ``OSError`` errnos);
5. an HTTP status found on the exception (``.status_code``, ``.status``, ``.response.status_code``);
6. keywords in the message, the last resort.

Classification is total: whatever the exception does (a ``__str__`` or a property that raises, a
date that overflows, a headers object that misbehaves, a registered classifier that raises or
returns nonsense), the rule that fails is skipped and the others decide, down to
``unknown_error``. Nothing raised while classifying ever reaches the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType

from .._errors import ExternalServiceError, ReliabilityError
from ._base import Classification, Classifier, attr, checked
from ._libraries import CLIENT_CLASSIFIERS, WRAPPED_CAUSES, library_for
from ._rules import built_in

E = ExternalServiceError


class Classifiers:
    """A registry of classifiers consulted before the built-in rules, newest first.

    ``libraries`` replaces the client-library classifiers (by top-level package name); by
    default the built-in ones. Registering and removing are thread-safe; classifying reads a
    snapshot and takes no lock.

    >>> from otel_resilience import Classification, Classifiers, ExternalServiceError
    >>> class QuotaExceeded(Exception): ...
    >>> registry = Classifiers()
    >>> remove = registry.register(
    ...     lambda exc: Classification(ExternalServiceError.RATE_LIMIT, retry_after=2.0)
    ...     if isinstance(exc, QuotaExceeded) else None
    ... )
    >>> registry.classify(QuotaExceeded("out of credits"))
    Classification(error_type=<ExternalServiceError.RATE_LIMIT: 'rate_limit'>, retry_after=2.0)
    >>> remove()
    >>> registry.classify(QuotaExceeded("out of credits")).error_type.value
    'unknown_error'
    """

    __slots__ = ("_entries", "_libraries", "_lock")

    def __init__(self, *, libraries: Mapping[str, Classifier] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: tuple[Classifier, ...] = ()
        self._libraries = _library_table(libraries)

    def register(self, classifier: Classifier) -> Callable[[], None]:
        """Add a classifier consulted before the others; returns a function that removes it."""
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {type(classifier).__name__}")
        with self._lock:
            self._entries = (classifier, *self._entries)

        def remove() -> None:
            with self._lock:
                if classifier in self._entries:
                    entries = list(self._entries)
                    entries.remove(classifier)
                    self._entries = tuple(entries)

        return remove

    def clear(self) -> None:
        """Forget every registered classifier (the built-in rules stay)."""
        with self._lock:
            self._entries = ()

    @property
    def registered(self) -> tuple[Classifier, ...]:
        """The registered classifiers, newest first."""
        return self._entries

    def classify(self, exc: BaseException) -> Classification:
        """Classify one exception (see the module docstring for the order of evidence).

        Never raises: a rule that fails is skipped, the last resort is ``unknown_error``.
        """
        try:
            return _classify(exc, self)
        except Exception:  # a hostile object (its __class__ raises): nothing can be read from it
            return Classification(E.UNKNOWN_ERROR)

    def _from_library(self, exc: BaseException) -> Classification | None:
        try:
            library = library_for(exc, self._libraries)
            return None if library is None else self._by_library(library, exc)
        except Exception:  # a broken client classifier must not break error handling
            return None

    def _by_library(self, library: str, exc: BaseException) -> Classification | None:
        cause = _wrapped_cause(library, exc)
        if cause is not None:  # a wrapper: what it wraps decides, through the whole chain
            return self.classify(cause)
        return checked(self._libraries[library](exc))


def _library_table(libraries: Mapping[str, Classifier] | None) -> Mapping[str, Classifier]:
    if libraries is None:
        return CLIENT_CLASSIFIERS
    if not isinstance(libraries, Mapping):
        raise TypeError(
            "libraries must be a mapping of package name to classifier,"
            f" got {type(libraries).__name__}"
        )
    return MappingProxyType(dict(libraries))


def _wrapped_cause(library: str, exc: BaseException) -> BaseException | None:
    unwrap = WRAPPED_CAUSES.get(library)
    return None if unwrap is None else unwrap(exc)


def _is_ours(exc: BaseException) -> bool:
    try:
        return isinstance(exc, ReliabilityError)
    except Exception:  # isinstance() raises when the exception's __class__ property does
        return False


def _own(exc: BaseException) -> Classification:
    error_type, retry_after = attr(exc, "error_type"), attr(exc, "retry_after")
    found = checked(Classification(error_type, retry_after))  # type: ignore[arg-type]
    return found or Classification(E.UNKNOWN_ERROR)


def _from_user(exc: BaseException, entries: tuple[Classifier, ...]) -> Classification | None:
    for classifier in entries:
        found = _ask(classifier, exc)
        if found is not None:
            return found
    return None


def _ask(classifier: Classifier, exc: BaseException) -> Classification | None:
    try:
        return checked(classifier(exc))
    except Exception:  # the application's classifier is not allowed to break the call
        return None


def _classify(exc: BaseException, registry: Classifiers) -> Classification:
    if _is_ours(exc):
        return _own(exc)
    return _from_user(exc, registry.registered) or registry._from_library(exc) or built_in(exc)


def classify(exc: BaseException, classifiers: Classifiers) -> Classification:
    """Classify ``exc`` with ``classifiers``; never raises."""
    return classifiers.classify(exc)
