"""otel_resilience.gcs: google-cloud-storage against gcp-storage-emulator (behind a fault proxy)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
import requests
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials

import otel_resilience
from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
    get_circuit_breaker_manager,
)
from otel_resilience.gcs import endpoint_of, is_repeatable, storage_client
from support import FakeClock
from telemetry.helpers import Otel, attrs, recorded

from .gcs_support import Emulator, FaultProxy, emulator_process, gcs, gcs_proxy
from .otel_support import otel

__all__ = ["emulator_process", "gcs", "gcs_proxy", "otel"]  # fixtures used by name

E = ExternalServiceError
_names = itertools.count()
UPLOAD = "POST /upload/"
DOWNLOAD = "GET /download/"


def _fast(**service: Any) -> None:
    otel_resilience.configure(
        services={"gcs": {"HTTP_BACKOFF_BASE_MS": 1, "HTTP_TIMEOUT_SEC": 5, **service}}
    )


def _bucket(proxy: FaultProxy, **options: Any) -> Any:
    """A new bucket, made through the resilient client; the proxy's record cleared after."""
    client = storage_client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": proxy.url},
        **options,
    )
    bucket = client.create_bucket(f"bucket-{next(_names)}")
    proxy.plan()
    return bucket


def _attempts(otel: Otel, name: str) -> list[int]:
    return [
        int((s.attributes or {})["resilience.attempts"]) for s in otel.spans() if s.name == name
    ]


# --- success ------------------------------------------------------------------------------------


def test_upload_and_download_are_one_request_each(gcs: FaultProxy, otel: Otel):
    bucket = _bucket(gcs)
    bucket.blob("a.txt").upload_from_string(b"hello")
    assert bucket.blob("a.txt").download_as_bytes() == b"hello"

    assert (gcs.count(UPLOAD), gcs.count(DOWNLOAD), gcs.count()) == (1, 1, 2)
    assert _attempts(otel, "gcs upload") == [1]
    assert _attempts(otel, "gcs download") == [1]
    assert _attempts(otel, "gcs bucket") == [1]  # create_bucket
    upload = next(s for s in otel.spans() if s.name == "gcs upload attempt")
    assert "http.request.resend_count" not in (upload.attributes or {})
    assert recorded(otel.metrics(), "resilience.call.duration") == {
        attrs("gcs", "bucket"): 1,
        attrs("gcs", "upload"): 1,
        attrs("gcs", "download"): 1,
    }


def test_metadata_list_and_delete_are_named_after_the_operation(gcs: FaultProxy, otel: Otel):
    bucket = _bucket(gcs)
    blob = bucket.blob("m.txt")
    blob.upload_from_string(b"x")
    blob.reload()
    assert [b.name for b in bucket.list_blobs()] == ["m.txt"]
    blob.delete()
    names = {s.name for s in otel.spans() if not s.name.endswith("attempt")}
    assert names == {"gcs bucket", "gcs upload", "gcs get", "gcs list", "gcs delete"}


# --- retries: Retry-After, reads, and writes only with a precondition ----------------------------


def test_a_download_is_retried_after_the_servers_retry_after(
    gcs: FaultProxy, clock: FakeClock, otel: Otel
):
    bucket = _bucket(gcs)
    bucket.blob("r.txt").upload_from_string(b"data")
    gcs.plan("503;retry-after=2")
    assert bucket.blob("r.txt").download_as_bytes() == b"data"
    assert clock.sleeps == [2.0]  # the server's wait, not the 1 s backoff
    assert gcs.count(DOWNLOAD) == 2
    attempts = [s for s in otel.spans() if s.name == "gcs download attempt"]
    assert [(s.attributes or {}).get("http.request.resend_count") for s in attempts] == [None, 1]
    retry = otel.span("gcs download").events[0]
    assert (retry.name, (retry.attributes or {})["resilience.retry.delay_s"]) == ("retry", 2.0)


def test_the_sdk_adds_no_retries_of_its_own(gcs: FaultProxy, otel: Otel):
    """Three attempts of ours, then the SDK's retry (DEFAULT_RETRY, 120 s) sends nothing more."""
    _fast(HTTP_RETRIES=3)
    bucket = _bucket(gcs)
    bucket.blob("s.txt").upload_from_string(b"data")
    gcs.plan(default="503")
    with pytest.raises(ReliabilityError) as caught:
        bucket.blob("s.txt").download_as_bytes()
    assert caught.value.error_type is E.SERVER_ERROR
    assert caught.value.attempts == 3
    assert gcs.count(DOWNLOAD) == 3  # the requests the server saw == the attempts reported
    assert _attempts(otel, "gcs download") == [3]


def test_an_upload_without_precondition_is_a_single_attempt(gcs: FaultProxy):
    _fast(HTTP_RETRIES=3)
    bucket = _bucket(gcs)
    gcs.plan("503")
    with pytest.raises(ReliabilityError) as caught:
        bucket.blob("u.txt").upload_from_string(b"data")
    assert caught.value.attempts == 1
    assert gcs.count(UPLOAD) == 1


def test_an_upload_with_a_generation_precondition_is_retried(gcs: FaultProxy):
    _fast(HTTP_RETRIES=3)
    bucket = _bucket(gcs)
    gcs.plan("503", "500")
    bucket.blob("g.txt").upload_from_string(b"data", if_generation_match=0)
    assert gcs.count(UPLOAD) == 3
    assert bucket.blob("g.txt").download_as_bytes() == b"data"


# --- non-retryable errors and the breaker -------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "error"),
    [("404", google_errors.NotFound), ("403", google_errors.Forbidden)],
    ids=["not-found", "forbidden"],
)
def test_a_client_error_fails_once_without_breaker_count(
    gcs: FaultProxy, action: str, error: type[Exception]
):
    _fast(CB_FAIL_THRESHOLD=1)
    bucket = _bucket(gcs)
    gcs.plan(default=action)
    for _ in range(2):
        with pytest.raises(error):  # what a user of the SDK expects
            bucket.blob("missing.txt").download_as_bytes()
    assert gcs.count(DOWNLOAD) == 2
    status = get_circuit_breaker_manager().breaker_for("gcs", "download").status()
    assert (status.state, status.failure_count) == ("closed", 0)


def test_a_real_missing_object_is_the_sdks_not_found(gcs: FaultProxy):
    bucket = _bucket(gcs)
    with pytest.raises(google_errors.NotFound):
        bucket.blob("nothing-here.txt").download_as_bytes()
    assert gcs.count(DOWNLOAD) == 1


def test_an_outage_opens_the_breaker_and_recovery_closes_it(gcs: FaultProxy, clock: FakeClock):
    _fast(HTTP_RETRIES=2, CB_FAIL_THRESHOLD=2, CB_RESET_SEC=15)
    bucket = _bucket(gcs)
    bucket.blob("o.txt").upload_from_string(b"data")
    gcs.plan(default="503")
    with pytest.raises(ReliabilityError):
        bucket.blob("o.txt").download_as_bytes()
    with pytest.raises(CircuitOpenError):
        bucket.blob("o.txt").download_as_bytes()
    assert gcs.count(DOWNLOAD) == 2  # the rejected call (and the SDK) sent nothing

    gcs.plan()
    clock.advance(15)
    assert bucket.blob("o.txt").download_as_bytes() == b"data"
    assert get_circuit_breaker_manager().breaker_for("gcs", "download").status().state == "closed"


# --- a frozen server ----------------------------------------------------------------------------


def _frozen_download(bucket: Any) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        bucket.blob("f.txt").download_as_bytes()
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
def test_a_frozen_server_times_out_on_time(
    gcs: FaultProxy, emulator_process: Emulator, clock: FakeClock, where: str
):
    bucket = _bucket(gcs, timeout_sec=0.5, max_retries=2)
    bucket.blob("f.txt").upload_from_string(b"data")
    gcs.plan()
    emulator_process.freeze()
    if where == "main-thread":
        error, elapsed = _frozen_download(bucket)
    else:
        found: list[tuple[BaseException | None, float]] = []
        worker = threading.Thread(target=lambda: found.append(_frozen_download(bucket)))
        worker.start()
        worker.join(10)
        ((error, elapsed),) = found
    emulator_process.thaw()
    assert isinstance(error, CallTimeoutError)
    assert error.attempts == 2
    assert 0.9 <= elapsed < 2.5  # two attempts of 0.5 s (the backoff is on the fake clock)
    assert gcs.settled_count(DOWNLOAD) == 2


def test_a_timed_out_upload_is_not_retried_and_may_still_be_written(
    gcs: FaultProxy, emulator_process: Emulator
):
    """Why a write is retried only with a precondition: the first one lands after all."""
    bucket = _bucket(gcs, timeout_sec=0.5, max_retries=3)
    emulator_process.freeze()
    with pytest.raises(CallTimeoutError) as caught:
        bucket.blob("late.txt").upload_from_string(b"late data")
    emulator_process.thaw()
    assert caught.value.attempts == 1
    assert gcs.settled_count(UPLOAD) == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not bucket.blob("late.txt").exists():
        time.sleep(0.1)
    assert bucket.blob("late.txt").download_as_bytes() == b"late data"


# --- names, idempotency and bad input -----------------------------------------------------------

BASE = "https://storage.googleapis.com"


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "repeatable"),
    [
        ("POST", "/upload/storage/v1/b/b/o?uploadType=multipart", "upload", False),
        (
            "POST",
            "/upload/storage/v1/b/b/o?uploadType=multipart&ifGenerationMatch=0",
            "upload",
            True,
        ),
        ("PUT", "/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=x", "upload", True),
        ("GET", "/download/storage/v1/b/b/o/a?alt=media", "download", True),
        ("GET", "/storage/v1/b/b/o/a?alt=media", "download", True),
        ("GET", "/storage/v1/b/b/o/a", "get", True),
        ("GET", "/storage/v1/b/b/o", "list", True),
        ("POST", "/storage/v1/b/b/o", "upload", False),
        ("DELETE", "/storage/v1/b/b/o/a", "delete", True),
        ("PATCH", "/storage/v1/b/b/o/a", "update", False),
        ("PATCH", "/storage/v1/b/b/o/a?ifMetagenerationMatch=3", "update", True),
        ("POST", "/storage/v1/b/b/o/a/rewriteTo/b/c/o/d", "copy", False),
        ("POST", "/storage/v1/b/b/o/a/compose", "compose", False),
        ("POST", "/storage/v1/b?project=p", "bucket", False),
        ("GET", "/storage/v1/b/b/iam", "bucket", True),
        ("GET", "/storage/v1/b/b/o/a/acl", "get", True),
        ("POST", "/storage/v1/b/b/o/a/acl", "update", False),
        ("GET", "/batch/storage/v1", "other", True),
    ],
)
def test_endpoints_and_repeatability(method: str, path: str, endpoint: str, repeatable: bool):
    request = requests.Request(method, BASE + path).prepare()
    assert endpoint_of(request) == endpoint
    assert is_repeatable(request) is repeatable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout_sec": -1}, "timeout_sec"),
        ({"max_retries": 500}, "max_retries must be an integer from 0 to 100"),
        ({"deadline_sec": 0}, "deadline_sec"),
    ],
    ids=["timeout", "retries", "deadline"],
)
def test_bad_limits_are_refused_before_a_client_is_made(kwargs: dict[str, Any], match: str):
    with pytest.raises(ValueError, match=match):
        storage_client(project="p", credentials=AnonymousCredentials(), **kwargs)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="service_name must be a non-empty string"):
        storage_client(project="p", credentials=AnonymousCredentials(), service_name="")
    with pytest.raises(TypeError, match="_http is not accepted"):
        storage_client(project="p", credentials=AnonymousCredentials(), _http=requests.Session())


def test_a_refused_connection_is_a_connection_error_not_120_s_of_sdk_retries():
    """google-cloud-storage alone retries a refused connection for up to 120 s."""
    import socket

    _fast(HTTP_RETRIES=3)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = storage_client(
            project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        )
        start = time.monotonic()
        with pytest.raises(ReliabilityError) as caught:
            client.bucket("b").blob("a").download_as_bytes()
    assert time.monotonic() - start < 2.0
    assert caught.value.error_type is E.CONNECTION_ERROR
    assert caught.value.attempts == 3
