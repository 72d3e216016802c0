"""google-cloud-storage with one retry layer: every HTTP request through the requests adapter.

>>> from google.auth.credentials import AnonymousCredentials
>>> from otel_resilience.gcs import storage_client
>>> client = storage_client(project="demo", credentials=AnonymousCredentials())
>>> client.close()

:func:`storage_client` builds a ``google.cloud.storage.Client`` and mounts a
:class:`~otel_resilience.requests.ResilientAdapter` on its HTTP session. Each HTTP request is then
one resilient call of service ``gcs``, named as the operation: ``upload``, ``download``, ``get``,
``list``, ``update``, ``delete``, ``copy``, ``compose``, ``bucket`` (anything else ``other``).

One retry layer, ours. The SDK's own retry (``retry=DEFAULT_RETRY``, up to 120 s) stays in its
code but never fires: everything it would retry (connection errors, timeouts, 408, 429, 5xx)
reaches it as a :class:`~otel_resilience.ReliabilityError`, which its predicate does not retry.
Other error responses (404, 403, 412, ...) come as the SDK's usual exceptions (``NotFound``, ...).

Writes are retried only when a retry cannot write twice: an upload, copy, compose or metadata
update only with a generation precondition (``if_generation_match=`` or
``if_metageneration_match=``); without one it is a single attempt, because a request that timed
out may still be written after the server resumes. Reads, deletes and resumable-upload chunks are
retried. ``google.cloud.storage`` is imported by this module only (``otel-resilience[gcs]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import SplitResult, parse_qs, urlsplit

import requests
from google.cloud import storage  # type: ignore[import-untyped]

from ._classify import status_to_error_type
from ._errors import ERROR_CLASSES, ExternalServiceError, ReliabilityError
from ._runtime import check_attempts as _check_attempts
from ._timeout import validate_timeout
from .requests import ResilientAdapter

__all__ = ["endpoint_of", "is_repeatable", "storage_client"]

#: statuses the SDK's retry repeats (``google.cloud.storage.retry``): they must not reach it
_SDK_RETRIES: Final = frozenset({408, 429, 500, 502, 503, 504})
#: query parameters that make a write safe to repeat
_PRECONDITIONS: Final = ("ifGenerationMatch", "ifMetagenerationMatch")
#: the attempts of one request, counted on the request object (no state outside it)
_ATTEMPTS: Final = "_otel_resilience_attempts"
#: methods a request may always be sent again with
_REPEATABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
#: the endpoint of an object request by the segment after the object's name
_VERB_ENDPOINTS: Final = MappingProxyType(
    {"rewriteTo": "copy", "copyTo": "copy", "compose": "compose"}
)
#: the endpoint of a plain object request by method (any other method: ``update``)
_METHOD_ENDPOINTS: Final = MappingProxyType({"GET": "get", "HEAD": "get", "DELETE": "delete"})


def _object_path(path: str) -> tuple[str, list[str]]:
    """``("upload" | "download" | "", parts after /storage/v1/)`` of a GCS JSON API path."""
    kind, parts = _media_kind([p for p in path.split("/") if p])
    return kind, _api_parts(parts)


def _api_parts(parts: list[str]) -> list[str]:
    """``parts`` after a leading ``storage/v1``."""
    return parts[2:] if parts[:2] == ["storage", "v1"] else parts


def _media_kind(parts: list[str]) -> tuple[str, list[str]]:
    """``("upload" | "download", the rest)`` of a media path, else ``("", parts)``."""
    if parts[:1] in (["upload"], ["download"]):
        return parts[0], parts[1:]
    return "", parts


def endpoint_of(request: Any) -> str:
    """The operation a GCS JSON API request performs (its endpoint name).

    >>> import requests
    >>> def name(method, url):
    ...     return endpoint_of(requests.Request(method, url).prepare())
    >>> name("POST", "https://storage.googleapis.com/upload/storage/v1/b/bkt/o?uploadType=multipart")
    'upload'
    >>> name("GET", "https://storage.googleapis.com/download/storage/v1/b/bkt/o/a.txt?alt=media")
    'download'
    >>> name("GET", "https://storage.googleapis.com/storage/v1/b/bkt/o/a.txt")
    'get'
    """
    url = _url(request)
    kind, parts = _object_path(url.path)
    if kind:
        return kind
    if "alt=media" in url.query.split("&"):
        return "download"
    return _json_api_endpoint(_method(request), parts)


def _method(request: Any) -> str:
    return (request.method or "GET").upper()


def _url(request: Any) -> SplitResult:
    return urlsplit(request.url or "")


def _json_api_endpoint(method: str, parts: list[str]) -> str:
    """The endpoint of ``/storage/v1/...`` split into ``parts`` (after ``storage/v1``)."""
    if parts[:1] != ["b"]:
        return "other"
    if parts[2:3] != ["o"]:  # /b, /b/{bucket}, /b/{bucket}/iam, ...
        return "bucket"
    if len(parts) == 3:  # /b/{bucket}/o
        return _objects_endpoint(method)
    return _object_endpoint(method, "".join(parts[4:5]))


def _objects_endpoint(method: str) -> str:
    """The endpoint of ``/b/{bucket}/o``: listing the objects, or a (simple) upload."""
    return "list" if method == "GET" else "upload"


def _object_endpoint(method: str, verb: str) -> str:
    """The endpoint of ``/b/{bucket}/o/{object}`` (``verb``: the segment after it, or "")."""
    return _VERB_ENDPOINTS.get(verb) or _METHOD_ENDPOINTS.get(method, "update")


def is_repeatable(request: Any) -> bool:
    """Whether sending ``request`` twice cannot write twice.

    Reads and deletes may be repeated; a chunk of a resumable upload session too (the session
    knows what it has); other writes only with a generation or metageneration precondition.
    """
    method = _method(request)
    if method in _REPEATABLE_METHODS:
        return True
    return _is_repeatable_write(method, parse_qs(_url(request).query))


def _is_repeatable_write(method: str, query: Mapping[str, object]) -> bool:
    """A resumable upload's chunk, or a write with a (meta)generation precondition."""
    if method == "PUT" and "upload_id" in query:
        return True
    return any(name in query for name in _PRECONDITIONS)


class _Counting(requests.adapters.HTTPAdapter):
    """Counts the attempts the adapter above it sends, on the request itself."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        setattr(request, _ATTEMPTS, getattr(request, _ATTEMPTS, 0) + 1)
        return super().send(request, *args, **kwargs)


class _StorageAdapter(ResilientAdapter, _Counting):
    """The requests adapter, whose last transient failure is a ReliabilityError (which the
    SDK's retry predicate does not retry) rather than a response it would send again."""

    def __init__(self, service_name: str, **options: Any) -> None:
        super().__init__(service_name, endpoint_of, idempotent=is_repeatable, **options)
        self._service_name = service_name

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        if response.status_code not in _SDK_RETRIES:
            return response
        raise _final_failure(self._service_name, request, response)


def _final_failure(
    service: str, request: requests.PreparedRequest, response: requests.Response
) -> ReliabilityError:
    error_type = status_to_error_type(response.status_code) or ExternalServiceError.SERVER_ERROR
    endpoint = endpoint_of(request)
    cls = ERROR_CLASSES.get(error_type, ReliabilityError)
    return cls(
        error_type,
        service,
        endpoint,
        f"{error_type.value} calling {service} ({endpoint}): HTTP {response.status_code}"
        f" {response.reason or ''}".rstrip(),
        attempts=getattr(request, _ATTEMPTS, 1),
    )


def storage_client(
    project: str | None = None,
    credentials: Any = None,
    *,
    client_options: Mapping[str, Any] | None = None,
    service_name: str = "gcs",
    timeout_sec: float | None = None,
    max_retries: int | None = None,
    deadline_sec: float | None = None,
    **client_kwargs: Any,
) -> storage.Client:
    """A ``google.cloud.storage.Client`` whose HTTP requests are resilient calls.

    Args:
        project, credentials, client_options, **client_kwargs: ``storage.Client``'s
            (``_http`` is refused: the client's own authorized session is the one adapted).
        service_name: the service of the calls (``gcs``).
        timeout_sec, max_retries, deadline_sec: per request, as in
            :func:`~otel_resilience.resilient_call` (defaults from the service's config).
            The SDK's ``timeout=`` argument still applies, cut to the attempt's time left.
    """
    _check_client_options(service_name, timeout_sec, max_retries, deadline_sec, client_kwargs)
    client = storage.Client(
        project=project,
        credentials=credentials,
        client_options=_options_dict(client_options),
        **client_kwargs,
    )
    adapter = _StorageAdapter(
        service_name, timeout_sec=timeout_sec, max_retries=max_retries, deadline_sec=deadline_sec
    )
    session = client._http  # the SDK's AuthorizedSession, made on first use
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return client


def _check_client_options(
    service_name: object,
    timeout_sec: float | None,
    max_retries: int | None,
    deadline_sec: float | None,
    client_kwargs: Mapping[str, Any],
) -> None:
    """Refuse a bad option of :func:`storage_client`, naming it and what is accepted."""
    _check_service_name(service_name)
    validate_timeout("timeout_sec", timeout_sec)
    validate_timeout("deadline_sec", deadline_sec)
    if max_retries is not None:
        _check_attempts(max_retries)  # raises naming max_retries and the accepted range
    if "_http" in client_kwargs:
        raise TypeError(
            "_http is not accepted: storage_client adapts the client's own authorized session;"
            " mount otel_resilience.requests.ResilientAdapter on your session yourself instead"
        )


def _check_service_name(service_name: object) -> None:
    if not isinstance(service_name, str) or not service_name:
        raise TypeError(f"service_name must be a non-empty string, got {service_name!r}")


def _options_dict(client_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(client_options) if client_options is not None else None
