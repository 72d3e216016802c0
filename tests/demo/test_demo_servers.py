"""The stand-in services over real HTTP: each failure mode they promise, and a clean shutdown."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from otel_resilience import ExternalServiceError, map_external_error
from otel_resilience.demo._scenarios import Knobs
from otel_resilience.demo._servers import StandInServices

from .conftest import all_threads

#: no latency and no failures: each test turns on the one it looks at
QUIET = Knobs(
    llm_latency_ms=(0.0, 0.0),
    llm_rate_limit=0.0,
    llm_server_error=0.0,
    storage_latency_ms=(0.0, 0.0),
    storage_reset=0.0,
    storage_slow_read=0.0,
    av_latency_ms=(0.0, 0.0),
    av_timeout=0.0,
)

CHAT = {"model": "stand-in", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c


def test_quiet_services_answer_every_operation(client):
    with StandInServices(QUIET, seed=1) as services:
        urls = services.urls
        chat = client.post(f"{urls['openai']}/v1/chat/completions", json=CHAT)
        upload = client.put(f"{urls['gcs']}/upload/doc-1", content=b"contents")
        download = client.get(f"{urls['gcs']}/download/doc-1")
        scan = client.post(f"{urls['clamav']}/scan", content=b"X5O!P%@AP EICAR")
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == "summary of hello"
    assert upload.json() == {"name": "doc-1", "size": 8}
    assert download.content == b"contents"
    assert scan.json() == {"result": "infected", "bytes": 15}
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())


@pytest.mark.parametrize(
    ("scale", "header"),
    [
        pytest.param(1.0, "2", id="nominal-scale"),
        pytest.param(0.1, "1", id="compressed-but-never-below-one-second"),
    ],
)
def test_rate_limited_llm_answers_429_with_retry_after(client, scale, header):
    with StandInServices(replace(QUIET, llm_rate_limit=1.0), time_scale=scale) as services:
        response = client.post(f"{services.urls['openai']}/v1/chat/completions", json=CHAT)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == header
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    mapped = map_external_error("openai", "chat.completions", caught.value)
    assert mapped.error_type is ExternalServiceError.RATE_LIMIT
    assert mapped.retry_after == float(header)


def test_llm_server_errors_are_5xx(client):
    with StandInServices(replace(QUIET, llm_server_error=1.0), seed=3) as services:
        statuses = {
            client.post(f"{services.urls['openai']}/v1/chat/completions", json=CHAT).status_code
            for _ in range(20)
        }
    assert statuses <= {500, 502, 503}
    assert len(statuses) > 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("PUT", "/upload/a", id="upload"),
        pytest.param("GET", "/download/a", id="download"),
    ],
)
def test_storage_resets_the_connection(client, method, path):
    with StandInServices(replace(QUIET, storage_reset=1.0)) as services:
        with pytest.raises(httpx.TransportError) as caught:
            client.request(
                method, services.urls["gcs"] + path, content=b"x" if method == "PUT" else None
            )
        assert services.counters[("gcs", "reset")] == 1
    assert map_external_error("gcs", "upload", caught.value).error_type is (
        ExternalServiceError.CONNECTION_ERROR
    )


def test_storage_slow_read_trickles_the_body(client):
    knobs = replace(QUIET, storage_slow_read=1.0, storage_slow_read_ms=400.0)
    with StandInServices(knobs) as services:
        client.put(f"{services.urls['gcs']}/upload/big", content=b"y" * 1000)
        started = time.monotonic()
        response = client.get(f"{services.urls['gcs']}/download/big")
        took = time.monotonic() - started
    assert response.content == b"y" * 1000  # complete, just slow
    assert took >= 0.3
    # each chunk arrives well within httpx's per-read timeout: only a whole-attempt timeout
    # (the library's) bounds such a read
    assert services.counters[("gcs", "slow_read")] == 1


def test_antivirus_hang_outlasts_the_client_timeout(client):
    knobs = replace(QUIET, av_timeout=1.0, av_hang_ms=5000.0)
    with StandInServices(knobs) as services:
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{services.urls['clamav']}/scan", content=b"x", timeout=0.2)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0  # close() woke the hanging handler


def test_antivirus_is_down_inside_the_outage_window_and_recovers_after(client):
    now = [0.0]
    knobs = replace(QUIET, av_outage=(0.5, 0.8))  # 30 s to 48 s of each 60 s period
    with StandInServices(knobs, clock=lambda: now[0]) as services:
        url = f"{services.urls['clamav']}/scan"
        seen = []
        for at in (10.0, 31.0, 47.9, 48.0, 60.0 + 31.0):
            now[0] = at
            try:
                seen.append((at, client.post(url, content=b"x").status_code))
            except httpx.TransportError:
                seen.append((at, "down"))
    assert seen == [(10.0, 200), (31.0, "down"), (47.9, "down"), (48.0, 200), (91.0, "down")]


def test_unknown_paths_are_404(client):
    with StandInServices(QUIET) as services:
        assert client.get(f"{services.urls['openai']}/v2/nothing").status_code == 404
        assert client.post(f"{services.urls['clamav']}/nothing").status_code == 404


def test_close_joins_every_thread_even_with_keep_alive_connections_open():
    before = all_threads()
    services = StandInServices(replace(QUIET, av_timeout=1.0, av_hang_ms=10_000.0)).start()
    client = httpx.Client(timeout=0.1)
    client.get(f"{services.urls['gcs']}/download/a")  # leaves a keep-alive connection open
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{services.urls['clamav']}/scan", content=b"x")  # leaves a handler hanging
    started = time.monotonic()
    services.close()
    assert time.monotonic() - started < 2.0
    client.close()
    assert all_threads() - before == set()


def test_a_client_that_resets_mid_request_prints_no_traceback(capsys):
    import socket as socket_module
    import struct
    from urllib.parse import urlsplit

    services = StandInServices(QUIET).start()
    try:
        url = urlsplit(services.urls["gcs"])
        sock = socket_module.create_connection((url.hostname, url.port))
        sock.sendall(b"GET /download/a HT")  # half a request line, then a reset (RST)
        sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        with httpx.Client(timeout=5.0) as client:  # the server still answers others
            assert client.get(f"{services.urls['gcs']}/download/a").status_code == 200
    finally:
        services.close()
    assert "Traceback" not in capsys.readouterr().err
