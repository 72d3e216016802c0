"""httpx (sync and async) against the fault server: every fault maps to its error type."""

from __future__ import annotations

import httpx
import pytest

from faultserver import FaultServer

from ._cases import (
    HTTP_FAULTS,
    E,
    Fault,
    assert_classified,
    expect_hits,
    timeout_for,
    url_for,
)


@pytest.mark.parametrize("fault", HTTP_FAULTS)
def test_httpx_fault_is_classified(fault_server: FaultServer, fault: Fault):
    with (
        httpx.Client(timeout=timeout_for(fault.path)) as client,
        pytest.raises(httpx.HTTPError) as caught,
    ):
        client.get(url_for(fault_server, fault)).raise_for_status()

    assert_classified(caught.value, "httpx", fault)
    expect_hits(fault_server, fault)


@pytest.mark.parametrize("fault", HTTP_FAULTS)
async def test_httpx_async_fault_is_classified(fault_server: FaultServer, fault: Fault):
    async with httpx.AsyncClient(timeout=timeout_for(fault.path)) as client:
        with pytest.raises(httpx.HTTPError) as caught:
            (await client.get(url_for(fault_server, fault))).raise_for_status()

    assert_classified(caught.value, "httpx", fault)
    expect_hits(fault_server, fault)


@pytest.mark.parametrize(
    ("make_error", "expected"),
    [
        pytest.param(lambda: httpx.Client().get("ftp://127.0.0.1/x"), E.BAD_REQUEST, id="scheme"),
        pytest.param(lambda: httpx.Client().get("http://[::1"), E.BAD_REQUEST, id="invalid-url"),
    ],
)
def test_httpx_request_mistakes_are_bad_requests(make_error, expected):
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the exact type is under test
        make_error()

    assert_classified(caught.value, "httpx", Fault("-", expected))


def test_httpx_redirect_loop_is_a_bad_request(fault_server: FaultServer):
    def to_self(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": str(request.url)})

    with (
        httpx.Client(transport=httpx.MockTransport(to_self), max_redirects=2) as client,
        pytest.raises(httpx.TooManyRedirects) as caught,
    ):
        client.get(f"{fault_server.url}/ok", follow_redirects=True)

    assert_classified(caught.value, "httpx", Fault("-", E.BAD_REQUEST))
