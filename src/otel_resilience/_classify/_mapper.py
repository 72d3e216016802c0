"""From any exception to the :class:`ReliabilityError` a call raises."""

from __future__ import annotations

from typing import Final

from .._config import ReliabilityConfig, get_config
from .._errors import ERROR_CLASSES, ExternalServiceError, ReliabilityError, with_retry_policy
from .._scrub import MESSAGE_LIMIT, redact
from ._base import attr, clean_seconds, safe_str
from ._registry import Classifiers, _is_ours, default_classifiers

#: what redacting falls back to when the service's config cannot be read
_DEFAULT_PATTERNS = ("default",)


def _config(service_name: str) -> ReliabilityConfig | None:
    try:
        return get_config(service_name)
    except Exception:  # a broken environment: the safe defaults below
        return None


def _redact(text: str, config: ReliabilityConfig | None) -> str:
    patterns = _DEFAULT_PATTERNS if config is None else config.REDACT_PATTERNS
    return redact(text, patterns, MESSAGE_LIMIT)


def redact_detail(text: str, service_name: str) -> str:
    """``text`` with the service's ``REDACT_PATTERNS`` applied, cut to the message limit.

    A config that cannot be read redacts with the default patterns: a broken environment must
    not let a secret through.
    """
    return _redact(text, _config(service_name))


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


def _registry(classifiers: Classifiers | None) -> Classifiers:
    if classifiers is None:
        return default_classifiers()
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
    classifiers: Classifiers | None = None,
) -> ReliabilityError:
    """Map an external service error to a standardized :class:`ReliabilityError`.

    ``classifiers`` is the registry of your own classifiers to consult (the one
    :func:`register_classifier` adds to when None). The returned error is not raised:
    ``raise mapped from error`` keeps the original as ``__cause__``.

    >>> from otel_resilience import ExternalServiceError, map_external_error
    >>> err = map_external_error("gcs", "upload", ConnectionResetError("reset by peer"))
    >>> err.error_type is ExternalServiceError.CONNECTION_ERROR
    True
    >>> map_external_error("openai", "chat", Exception("Request timed out")).error_type.value
    'timeout'
    """
    registry = _registry(classifiers)
    if _is_ours(error) and well_formed(error):
        return error  # type: ignore[return-value]
    found = registry.classify(error)
    config = _config(service_name)
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
