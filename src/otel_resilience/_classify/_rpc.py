"""gRPC status evidence, shared by grpcio and google-api-core: codes and retry hints."""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any, Final

from .._errors import ExternalServiceError
from ._http import parse_retry_after

E = ExternalServiceError

GRPC_CODES: Final = MappingProxyType(
    {
        "DEADLINE_EXCEEDED": E.TIMEOUT,
        "UNAVAILABLE": E.SERVER_ERROR,  # or CONNECTION_ERROR, see grpc_error_type
        "RESOURCE_EXHAUSTED": E.RATE_LIMIT,
        "UNAUTHENTICATED": E.AUTHENTICATION_ERROR,
        "PERMISSION_DENIED": E.PERMISSION_DENIED,
        "NOT_FOUND": E.NOT_FOUND,
        "INVALID_ARGUMENT": E.BAD_REQUEST,
        "FAILED_PRECONDITION": E.BAD_REQUEST,
        "OUT_OF_RANGE": E.BAD_REQUEST,
        "ALREADY_EXISTS": E.BAD_REQUEST,
        "UNIMPLEMENTED": E.BAD_REQUEST,
        "ABORTED": E.SERVER_ERROR,  # a concurrency conflict; gRPC advises retrying
        "INTERNAL": E.SERVER_ERROR,
        "UNKNOWN": E.SERVER_ERROR,
        "DATA_LOSS": E.SERVER_ERROR,
        "CANCELLED": E.UNKNOWN_ERROR,
    }
)

#: words gRPC's own transport errors use for UNAVAILABLE when no connection could be had
_TRANSPORT_WORDS: Final = ("connect", "socket", "goaway", "reset", "dns", "resolve")

#: trailing metadata entries read at most (a hostile or broken iterable may never end)
_MAX_METADATA: Final = 256


def grpc_error_type(name: str, details: object) -> ExternalServiceError | None:
    """The error type of a status code name; ``UNAVAILABLE`` from the transport is a connection."""
    if name == "UNAVAILABLE" and _transport_failure(details):
        return E.CONNECTION_ERROR
    return GRPC_CODES.get(name)


def _transport_failure(details: object) -> bool:
    text = str(details or "").lower()
    return any(word in text for word in _TRANSPORT_WORDS)


def _duration_seconds(duration: object) -> float | None:
    seconds = getattr(duration, "seconds", None)
    nanos = getattr(duration, "nanos", 0)
    if not isinstance(seconds, int) or not isinstance(nanos, int):
        return None
    return max(0.0, seconds + nanos / 1e9)


def retry_info_delay(details: Iterable[object]) -> float | None:
    """The delay of the first ``google.rpc.RetryInfo`` among parsed status details."""
    for detail in details:
        if type(detail).__name__ == "RetryInfo":
            return _duration_seconds(getattr(detail, "retry_delay", None))
    return None


def _status_details_delay(blob: object) -> float | None:
    """The ``RetryInfo`` delay inside a serialized ``google.rpc.Status``, if protobufs exist."""
    if not isinstance(blob, bytes):
        return None
    try:
        status_pb2 = importlib.import_module("google.rpc.status_pb2")
        error_details_pb2 = importlib.import_module("google.rpc.error_details_pb2")
    except ImportError:  # googleapis-common-protos is optional
        return None
    try:
        return _packed_retry_delay(status_pb2, error_details_pb2, blob)
    except Exception:  # a malformed blob is no hint, and no reason to lose the status code
        return None


def _packed_retry_delay(status_pb2: Any, error_details_pb2: Any, blob: bytes) -> float | None:
    for detail in status_pb2.Status.FromString(blob).details:
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return _duration_seconds(info.retry_delay)
    return None


def _entry(item: object) -> tuple[object, object]:
    """(key, value) of one metadata entry: a ``_Metadatum`` or a 2-tuple."""
    key, value = getattr(item, "key", None), getattr(item, "value", None)
    if key is None and isinstance(item, tuple) and len(item) == 2:
        key, value = item
    return key, value


def _metadata(metadata: object) -> dict[str, object]:
    """The first ``_MAX_METADATA`` entries of trailing metadata, by lower-case key."""
    found: dict[str, object] = {}
    if isinstance(metadata, Iterable):
        for item in itertools.islice(metadata, _MAX_METADATA):
            key, value = _entry(item)
            if isinstance(key, str):
                found[key.lower()] = value
    return found


def _pushback(millis: object) -> float | None:
    delay = parse_retry_after(millis)
    return None if delay is None else delay / 1000.0


def metadata_retry_after(metadata: object) -> float | None:
    """The retry delay in trailing metadata: pushback, then ``RetryInfo``, then ``retry-after``."""
    found = _metadata(metadata)
    pushback = _pushback(found.get("grpc-retry-pushback-ms"))
    if pushback is not None:
        return pushback
    delay = _status_details_delay(found.get("grpc-status-details-bin"))
    if delay is not None:
        return delay
    return parse_retry_after(found.get("retry-after"))
