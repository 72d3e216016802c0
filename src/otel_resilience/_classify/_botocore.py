"""botocore (boto3): ``ClientError`` error code, then ``ResponseMetadata.HTTPStatusCode``;
exception type for transport errors."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .._errors import ExternalServiceError
from ._base import Classification, Rule, by_rules, connection_or_timeout
from ._http import by_status, headers_retry_after

E = ExternalServiceError
_MOD: Final = "botocore.exceptions"

#: botocore's own list of throttling codes (``botocore.retries.standard``)
_THROTTLING: Final = (
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
)
_AUTHENTICATION: Final = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AuthFailure",
    "InvalidToken",
    "TokenRefreshRequired",
)
_NOT_FOUND: Final = (
    "NoSuchKey",
    "NoSuchBucket",
    "NoSuchUpload",
    "NoSuchVersion",
    "ResourceNotFoundException",
    "NotFound",
    "404",
)
_SERVER: Final = (
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
)
_PERMISSION: Final = (
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AllAccessDisabled",
)
_TIMEOUT: Final = ("RequestTimeout", "RequestTimeoutException")

#: error code of a ``ClientError`` -> error type (other codes: by the HTTP status)
AWS_CODES: Final = MappingProxyType(
    {
        **dict.fromkeys(_THROTTLING, E.RATE_LIMIT),
        **dict.fromkeys(_AUTHENTICATION, E.AUTHENTICATION_ERROR),
        **dict.fromkeys(_PERMISSION, E.PERMISSION_DENIED),
        **dict.fromkeys(_NOT_FOUND, E.NOT_FOUND),
        **dict.fromkeys(_TIMEOUT, E.TIMEOUT),
        **dict.fromkeys(_SERVER, E.SERVER_ERROR),
    }
)


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else MappingProxyType({})


def _code_error_type(response: Mapping[str, object]) -> ExternalServiceError | None:
    code = _mapping(response.get("Error")).get("Code")
    return AWS_CODES.get(code) if isinstance(code, str) else None


def _client_error(exc: BaseException) -> Classification | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    metadata = _mapping(response.get("ResponseMetadata"))
    headers = metadata.get("HTTPHeaders")
    error_type = _code_error_type(response)
    if error_type is not None:
        return Classification(error_type, headers_retry_after(headers))
    return by_status(metadata.get("HTTPStatusCode"), headers)


_RULES: Final[tuple[Rule, ...]] = (
    (_MOD, ("ClientError",), _client_error),
    (_MOD, ("ReadTimeoutError", "ConnectTimeoutError"), E.TIMEOUT),
    (_MOD, ("ConnectionError", "HTTPClientError"), connection_or_timeout),
    (
        _MOD,
        (
            "NoCredentialsError",
            "PartialCredentialsError",
            "CredentialRetrievalError",
            "NoAuthTokenError",
            "TokenRetrievalError",
            "UnauthorizedSSOTokenError",
        ),
        E.AUTHENTICATION_ERROR,
    ),
    (_MOD, ("ParamValidationError", "NoRegionError"), E.BAD_REQUEST),
)


def classify_botocore(exc: BaseException) -> Classification | None:
    """botocore's exceptions: service errors by code or status, the rest by type."""
    return by_rules(exc, _RULES)
