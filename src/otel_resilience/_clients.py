"""Classifiers for well-known client libraries (filled in by the client-classifier work).

Looked up by the top-level package of an exception's class (or one of its bases), so a library is
only inspected when the application already imported it.
"""

from __future__ import annotations

from ._mapping import Classifier

#: top-level package name -> classifier for that library's exceptions
CLIENT_CLASSIFIERS: dict[str, Classifier] = {}


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
