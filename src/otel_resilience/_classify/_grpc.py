"""grpcio (sync and ``grpc.aio``): ``RpcError.code()``; retry hints in the trailing metadata."""

from __future__ import annotations

from .._errors import ExternalServiceError
from ._base import Classification, exception_types
from ._rpc import grpc_error_type, metadata_retry_after


def _called(exc: BaseException, name: str) -> object:
    """``exc.name()`` when it is a method (grpc's call errors), else the attribute itself."""
    value = getattr(exc, name, None)
    return value() if callable(value) else value


def _error_type(exc: BaseException) -> ExternalServiceError | None:
    name = getattr(_called(exc, "code"), "name", None)
    if not isinstance(name, str):
        return None
    return grpc_error_type(name, _called(exc, "details"))


def classify_grpc(exc: BaseException) -> Classification | None:
    """An ``RpcError`` by its status code, with the retry delay of its trailing metadata."""
    if not isinstance(exc, exception_types("grpc", "RpcError")):
        return None
    error_type = _error_type(exc)
    if error_type is None:
        return None
    return Classification(error_type, metadata_retry_after(_called(exc, "trailing_metadata")))
