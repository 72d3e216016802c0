"""From any exception to the :class:`ReliabilityError` a call raises."""

from __future__ import annotations

from typing import Final

from .._config import ReliabilityConfig
from .._errors import ERROR_CLASSES, ExternalServiceError, ReliabilityError, with_retry_policy
from .._scrub import MESSAGE_LIMIT, redact
from ._base import attr, clean_seconds, safe_str
from ._registry import Classifiers, _is_ours

#: what redacting falls back to when the service's config cannot be read
_DEFAULT_PATTERNS = ("default",)


def _redact(text: str, config: ReliabilityConfig | None) -> str:
    patterns = _DEFAULT_PATTERNS if config is None else config.REDACT_PATTERNS
    return redact(text, patterns, MESSAGE_LIMIT)


def redact_detail(text: str, config: ReliabilityConfig | None) -> str:
    """``text`` with the service's ``REDACT_PATTERNS`` applied, cut to the message limit.

    No config (the service's could not be read) redacts with the default patterns: a broken
    environment must not let a secret through.
    """
    return _redact(text, config)


#: the fields of a ReliabilityError and their types
_FIELDS: Final = (
    ("error_type", ExternalServiceError),
    ("service_name", str),
    ("endpoint", str),
    ("message", str),
    ("attempts", int),
)


def _usable_delay(retry_after: object) -> bool:
    return retry_after is None or clean_seconds(retry_after) == retry_after


def well_formed(error: BaseException) -> bool:
    """A ReliabilityError whose fields are all there (a subclass may skip ``__init__``)."""
    typed = all(isinstance(attr(error, name), kind) for name, kind in _FIELDS)
    return typed and _usable_delay(attr(error, "retry_after"))


def _registry(classifiers: Classifiers) -> Classifiers:
    if not isinstance(classifiers, Classifiers):
        raise TypeError(
            f"classifiers must be a Classifiers registry or None, got {type(classifiers).__name__}"
        )
    return classifiers


def _detail(error: BaseException, config: ReliabilityConfig | None) -> str:
    """The exception's redacted message, else its type name."""
    return _redact(safe_str(error), config) or type(error).__name__


def _retry_unknown(config: ReliabilityConfig | None) -> bool:
    return True if config is None else config.RETRY_UNKNOWN_ERRORS


def map_external_error(
    service_name: str,
    endpoint: str,
    error: BaseException,
    *,
    attempts: int = 1,
    classifiers: Classifiers,
    config: ReliabilityConfig | None,
) -> ReliabilityError:
    """Map an external service error to a standardized :class:`ReliabilityError`, with the
    user classifiers of ``classifiers`` and the service's ``config`` (redaction patterns and
    ``RETRY_UNKNOWN_ERRORS``; None: the defaults). The public wrapper is
    ``otel_resilience.map_external_error``."""
    registry = _registry(classifiers)
    if _is_ours(error) and well_formed(error):
        return error  # type: ignore[return-value]
    found = registry.classify(error)
    cls = ERROR_CLASSES.get(found.error_type, ReliabilityError)
    message = f"{found.error_type.value} calling {service_name} ({endpoint}): "
    mapped = cls(
        found.error_type,
        service_name,
        endpoint,
        message + _detail(error, config),
        attempts=attempts,
        retry_after=found.retry_after,
    )
    return with_retry_policy(mapped, _retry_unknown(config))
