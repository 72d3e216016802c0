"""The client-library classifiers, looked up by the top-level package of an exception's class.

A library is only inspected when the application already imported it: its classifier reads
the exception classes from ``sys.modules`` and imports nothing.

=================  ===========================================================================
library            evidence
=================  ===========================================================================
httpx, httpx2      exception type; ``HTTPStatusError.response`` status and headers
requests           exception type (a ``ConnectionError`` caused by a read timeout is a timeout);
                   ``HTTPError.response`` status and headers
urllib3            exception type (``MaxRetryError`` is judged by its ``reason``)
aiohttp            exception type; ``ClientResponseError.status`` and ``.headers``
grpc               ``RpcError.code()``; retry hints in the trailing metadata
                   (``grpc-retry-pushback-ms``, ``retry-after``, ``google.rpc.RetryInfo``)
botocore           ``ClientError`` error code, then ``ResponseMetadata.HTTPStatusCode``;
                   exception type for transport errors
openai             exception type, then ``status_code``; ``retry-after-ms`` / ``Retry-After``
google             ``google.api_core`` errors by gRPC status, then HTTP ``code``;
                   ``RetryInfo`` details; ``google.auth`` errors by type
redis              exception type (``redis.exceptions`` and ``redis.asyncio`` share them)
clamd              exception type (a ``ConnectionError`` caused by a timeout is a timeout)
=================  ===========================================================================

See ``docs/classifiers.md`` for the full table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from ._aiohttp import classify_aiohttp
from ._base import Classifier
from ._botocore import classify_botocore
from ._clamd import classify_clamd
from ._google import classify_google, retry_error_cause
from ._grpc import classify_grpc
from ._httpx import httpx_classifier
from ._openai import classify_openai
from ._redis import classify_redis
from ._requests import classify_requests
from ._urllib3 import classify_urllib3

#: top-level package name -> classifier for that library's exceptions
CLIENT_CLASSIFIERS: Final[Mapping[str, Classifier]] = MappingProxyType(
    {
        "httpx": httpx_classifier("httpx"),
        "httpx2": httpx_classifier("httpx2"),
        "requests": classify_requests,
        "urllib3": classify_urllib3,
        "aiohttp": classify_aiohttp,
        "grpc": classify_grpc,
        "botocore": classify_botocore,
        "openai": classify_openai,
        "google": classify_google,
        "redis": classify_redis,
        "clamd": classify_clamd,
    }
)

#: top-level package name -> the exception a wrapper of that library stands for (or None):
#: the registry classifies that one instead, through its whole chain
WRAPPED_CAUSES: Final[Mapping[str, Callable[[BaseException], BaseException | None]]] = (
    MappingProxyType({"google": retry_error_cause})
)


def library_for(
    exc: BaseException, libraries: Mapping[str, Classifier] = CLIENT_CLASSIFIERS
) -> str | None:
    """The package in ``libraries`` defining ``exc``'s class or the nearest base in its MRO."""
    for cls in type(exc).__mro__:
        module = cls.__module__
        if module == "builtins":
            return None
        package = module.partition(".")[0]
        if package in libraries:
            return package
    return None  # pragma: no cover - the last class of any MRO, object, is a builtin


def classifier_for(exc: BaseException) -> Classifier | None:
    """The client-library classifier for ``exc``, found by walking its class's MRO."""
    library = library_for(exc)
    return None if library is None else CLIENT_CLASSIFIERS[library]
