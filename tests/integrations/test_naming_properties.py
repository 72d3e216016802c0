"""Invariants of the gRPC and GCS integrations' naming and idempotency rules (Hypothesis)."""

from __future__ import annotations

import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_resilience.gcs import endpoint_of, is_repeatable
from otel_resilience.grpc import method_names

GCS_ENDPOINTS = {
    "upload",
    "download",
    "get",
    "list",
    "update",
    "delete",
    "copy",
    "compose",
    "bucket",
    "other",
}
segment = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"))
paths = st.lists(segment, max_size=8).map(lambda parts: "/" + "/".join(parts))
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
queries = st.lists(
    st.sampled_from(["alt=media", "ifGenerationMatch=0", "upload_id=x", "uploadType=multipart"]),
    max_size=3,
).map("&".join)


@settings(max_examples=200, deadline=None)
@given(method=methods, path=paths, query=queries)
@example(method="POST", path="/upload/storage/v1/b/b/o", query="")
@example(method="GET", path="/", query="")
def test_gcs_endpoints_are_a_closed_set_and_writes_need_a_precondition(
    method: str, path: str, query: str
):
    url = "https://storage.googleapis.com" + path + ("?" + query if query else "")
    request = requests.Request(method, url).prepare()
    assert endpoint_of(request) in GCS_ENDPOINTS  # bounded cardinality, whatever the path
    if method in ("POST", "PATCH") and "ifGenerationMatch" not in query:
        assert not is_repeatable(request)  # a write without precondition is sent once
    if method in ("GET", "HEAD", "DELETE"):
        assert is_repeatable(request)


@settings(max_examples=200, deadline=None)
@given(service=segment.filter(bool), method=segment.filter(bool))
@example(service="pkg.Service", method="Method")
def test_grpc_method_names_round_trip(service: str, method: str):
    full = f"/{service}/{method}"
    assert method_names(full) == (service, method)
    assert method_names(full.encode()) == (service, method)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_grpc_method_names_are_never_empty(text: str):
    service, endpoint = method_names(text)
    assert service
    assert endpoint
