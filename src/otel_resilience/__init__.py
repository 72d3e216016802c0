"""otel-resilience: resilient, observable calls to external dependencies in one line."""

from __future__ import annotations

from ._errors import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
)
from ._mapping import map_external_error, register_classifier

__version__ = "0.1.0"

__all__ = [
    "CallTimeoutError",
    "CircuitOpenError",
    "ExternalServiceError",
    "ReliabilityError",
    "ThrottledError",
    "__version__",
    "map_external_error",
    "register_classifier",
]
