"""aiohttp against the fault server: every fault maps to its error type."""

from __future__ import annotations

import aiohttp
import pytest

from faultserver import FaultServer
from otel_resilience._classify import Classification
from support import classify

from ._cases import (
    HTTP_FAULTS,
    SLOW_TIMEOUT_SEC,
    TIMEOUT_SEC,
    E,
    Fault,
    assert_classified,
    expect_hits,
    timeout_for,
    url_for,
)


def _session(seconds: float = TIMEOUT_SEC, **kwargs) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    return aiohttp.ClientSession(timeout=timeout, **kwargs)


@pytest.mark.parametrize("fault", HTTP_FAULTS)
async def test_aiohttp_fault_is_classified(fault_server: FaultServer, fault: Fault):
    async with _session(timeout_for(fault.path), raise_for_status=True) as session:
        with pytest.raises(aiohttp.ClientError) as caught:
            async with session.get(url_for(fault_server, fault)) as response:
                await response.read()

    assert_classified(caught.value, "aiohttp", fault)
    # aiohttp itself resends an idempotent request once when the server hangs up without answering
    expect_hits(fault_server, fault, hits=2 if fault.path == "close" else 1)


async def test_aiohttp_total_timeout_is_a_timeout(fault_server: FaultServer):
    timeout = aiohttp.ClientTimeout(total=SLOW_TIMEOUT_SEC)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(TimeoutError) as caught:
            async with session.get(f"{fault_server.url}/slow?delay=5") as response:
                await response.read()

    # aiohttp raises the builtin TimeoutError here: the generic rules classify it
    assert type(caught.value) is TimeoutError
    assert classify(caught.value) == Classification(E.TIMEOUT)


async def test_aiohttp_unexpected_content_type_is_a_server_error(fault_server: FaultServer):
    async with _session() as session, session.get(f"{fault_server.url}/ok") as response:
        with pytest.raises(aiohttp.ContentTypeError) as caught:
            await response.json(content_type="text/html")

    assert caught.value.status == 200
    assert_classified(caught.value, "aiohttp", Fault("-", E.SERVER_ERROR))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("ftp://127.0.0.1/x", E.BAD_REQUEST, id="non-http-url"),
        pytest.param("http://", E.BAD_REQUEST, id="invalid-url"),
    ],
)
async def test_aiohttp_url_mistakes_are_bad_requests(url: str, expected):
    async with _session() as session:
        with pytest.raises(aiohttp.ClientError) as caught:
            await session.get(url)

    assert_classified(caught.value, "aiohttp", Fault("-", expected))


async def test_aiohttp_redirect_loop_is_a_bad_request(fault_server: FaultServer):
    async with _session() as session:
        with pytest.raises(aiohttp.TooManyRedirects) as caught:
            await session.get(f"{fault_server.url}/redirect-loop", max_redirects=2)

    assert_classified(caught.value, "aiohttp", Fault("-", E.BAD_REQUEST))
