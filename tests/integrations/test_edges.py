"""Edge cases of the transports and the adapter, with in-process inner transports."""

from __future__ import annotations

import gzip
import time

import httpx
import pytest
import requests
import requests.adapters
import urllib3

from otel_resilience import CallTimeoutError, ReliabilityError
from otel_resilience.httpx import AsyncResilientTransport, ResilientTransport
from otel_resilience.openai import _wants_stream
from otel_resilience.requests import ResilientAdapter


class _Closing(httpx.ByteStream):
    """A response body that records whether it was closed."""

    closed: list[bool]

    def __init__(self, content: bytes, closed: list[bool]) -> None:
        super().__init__(content)
        self.closed = closed

    def close(self) -> None:
        self.closed.append(True)

    async def aclose(self) -> None:
        self.closed.append(True)


def test_a_success_that_comes_after_the_attempts_end_is_closed_and_retried():
    closed: list[bool] = []
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.35)  # past the attempt's 0.2 s: a late answer is a timeout
        return httpx.Response(200, stream=_Closing(b"ok", closed))

    transport = ResilientTransport(httpx.MockTransport(handler), timeout_sec=0.2, max_retries=2)
    with httpx.Client(transport=transport) as client:
        assert client.get("http://svc.test/a").text == "ok"
    assert len(calls) == 2
    assert closed[:1] == [True]  # the late one, closed when the next attempt began


def test_a_late_success_on_the_last_attempt_is_closed():
    closed: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(200, stream=_Closing(b"ok", closed))

    transport = ResilientTransport(httpx.MockTransport(handler), timeout_sec=0.2, max_retries=1)
    with httpx.Client(transport=transport) as client, pytest.raises(CallTimeoutError):
        client.get("http://svc.test/a")
    assert closed == [True]


async def test_async_late_successes_are_closed():
    closed: list[bool] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(0.3)
        return httpx.Response(200, stream=_Closing(b"ok", closed))

    transport = AsyncResilientTransport(
        httpx.MockTransport(handler), timeout_sec=0.2, max_retries=2
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(CallTimeoutError):
            await client.get("http://svc.test/a")
    assert closed == [True, True]


def test_a_streaming_request_body_is_sent_once():
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    def body():
        yield b"part"

    transport = ResilientTransport(httpx.MockTransport(handler), max_retries=3)
    with httpx.Client(transport=transport) as client:
        assert client.put("http://svc.test/a", content=body()).status_code == 503
    assert calls == [1]


def test_a_429_body_that_cannot_be_decoded_is_judged_raw():
    def handler(request: httpx.Request) -> httpx.Response:
        raw = b'{"error": {"code": "insufficient_quota"}}'  # claims gzip, is not
        return httpx.Response(
            429, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(raw)
        )

    calls: list[int] = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return handler(request)

    transport = ResilientTransport(httpx.MockTransport(counting), max_retries=3)
    with httpx.Client(transport=transport) as client:
        response = client.send(client.build_request("GET", "http://svc.test/q"), stream=True)
        assert response.status_code == 429
        response.close()
    assert calls == [1]  # raw bytes still say insufficient_quota: not retried


def test_a_gzip_429_body_is_decoded_before_it_is_judged():
    body = gzip.compress(b'{"error": {"code": "insufficient_quota"}}')
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, headers={"Content-Encoding": "gzip"}, content=body)

    transport = ResilientTransport(httpx.MockTransport(handler), max_retries=3)
    with httpx.Client(transport=transport) as client:
        response = client.get("http://svc.test/q")
    assert response.json() == {"error": {"code": "insufficient_quota"}}
    assert calls == [1]


async def test_the_async_transport_builds_its_default_inner_transport():
    transport = AsyncResilientTransport()
    async with transport:
        pass
    await transport.aclose()


def test_the_sync_transport_enters_and_closes_its_inner_transport():
    with ResilientTransport() as transport:
        pass
    transport.close()


def test_retries_work_without_any_telemetry_sdk():
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503 if len(calls) < 2 else 200)

    transport = ResilientTransport(httpx.MockTransport(handler), max_retries=3)
    with httpx.Client(transport=transport) as client:
        assert client.get("http://svc.test/a").status_code == 200
    assert calls == [1, 1]


def test_wants_stream_reads_the_request_body():
    assert _wants_stream(httpx.Request("POST", "http://x", content=b'{"stream":true}'))
    assert _wants_stream(httpx.Request("POST", "http://x", content=b'{"stream": true}'))
    assert not _wants_stream(httpx.Request("POST", "http://x", content=b'{"stream": false}'))
    unread = httpx.Request("POST", "http://x", content=iter([b"{}"]))
    assert _wants_stream(unread)  # a streaming upload is never buffered


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeout",
    [(5, 10), urllib3.Timeout(connect=5, read=10), 10, None],
    ids=["pair", "urllib3-timeout", "number", "none"],
)
def test_requests_timeouts_of_every_form_are_cut_to_the_attempt(server, timeout):
    with requests.Session() as session:
        session.mount("http://", ResilientAdapter(timeout_sec=0.3, max_retries=1))
        start = time.monotonic()
        with pytest.raises(CallTimeoutError):
            session.get(f"{server.url}/slow/r?delay=3", timeout=timeout)
        assert time.monotonic() - start < 0.8


def test_requests_streaming_upload_is_sent_once(server):
    with requests.Session() as session:
        session.mount("http://", ResilientAdapter(max_retries=3))
        response = session.put(f"{server.url}/503/u", data=iter([b"part"]))
    assert response.status_code == 503
    assert server.count("/503/u") == 1


def test_requests_late_success_is_closed_and_retried(server, monkeypatch):
    original = requests.adapters.HTTPAdapter.send
    closed: list[int] = []
    calls: list[int] = []

    def slow_send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.35)
            real_close = response.close
            response.close = lambda: (closed.append(1), real_close())[1]
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", slow_send)
    with requests.Session() as session:
        session.mount("http://", ResilientAdapter(timeout_sec=0.2, max_retries=2))
        assert session.get(f"{server.url}/ok/late").status_code == 200
    assert calls == [1, 1]
    assert closed == [1]


def test_requests_late_success_on_the_last_attempt_is_closed(server, monkeypatch):
    original = requests.adapters.HTTPAdapter.send
    closed: list[int] = []

    def slow_send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        time.sleep(0.3)
        real_close = response.close
        response.close = lambda: (closed.append(1), real_close())[1]
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", slow_send)
    with requests.Session() as session:
        session.mount("http://", ResilientAdapter(timeout_sec=0.2, max_retries=1))
        with pytest.raises(ReliabilityError):
            session.get(f"{server.url}/ok/late")
    assert closed == [1]


def test_requests_adapter_refuses_urllib3_retries():
    with pytest.raises(TypeError):
        ResilientAdapter(max_retries=3, pool_block=False, **{"max_retries": 2})  # type: ignore[misc]
