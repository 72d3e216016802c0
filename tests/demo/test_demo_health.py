"""The health API: breaker status as data, over HTTP, and read back from /metrics."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from otel_resilience import get_circuit_breaker_manager
from otel_resilience._health import (
    HealthServer,
    breaker_status,
    breakers_from_prometheus,
    health_report,
)
from otel_resilience._names import PROM_BREAKER_STATE

from .conftest import all_threads

pytestmark = pytest.mark.usefixtures("clean_library")


def _open(service, endpoint, failures=5):
    breaker = get_circuit_breaker_manager().get_breaker(service, endpoint)
    for _ in range(failures):
        breaker.record_failure(breaker.try_acquire())
    return breaker


def test_no_breakers_is_healthy():
    assert health_report()["status"] == "ok"
    assert health_report()["breakers"] == []


def test_report_lists_each_breaker_with_state_failures_and_time_to_probe():
    _open("clamav", "scan")
    get_circuit_breaker_manager().get_breaker("gcs", "upload")
    report = health_report()
    assert report["status"] == "degraded"
    scan, upload = report["breakers"]
    assert (scan["service_name"], scan["endpoint"], scan["state"]) == ("clamav", "scan", "open")
    assert scan["failure_count"] == 5
    assert 0 < scan["seconds_until_probe"] <= 60  # the default CB_RESET_SEC
    assert upload == {
        "service_name": "gcs",
        "endpoint": "upload",
        "state": "closed",
        "failure_count": 0,
        "seconds_until_probe": None,
        "override": None,
    }
    json.dumps(report)  # JSON-able as it is


def test_breaker_status_is_sorted_by_service_then_endpoint():
    for service, endpoint in [("openai", "chat"), ("gcs", "upload"), ("gcs", "download")]:
        get_circuit_breaker_manager().get_breaker(service, endpoint)
    assert [(b["service_name"], b["endpoint"]) for b in breaker_status()] == [
        ("gcs", "download"),
        ("gcs", "upload"),
        ("openai", "chat"),
    ]


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_health_server_serves_the_report_and_stops_its_thread():
    before = all_threads()
    _open("clamav", "scan")
    with HealthServer("127.0.0.1", 0) as server:
        status, body = _get(server.url)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server.url.replace("/health", "/nope"), timeout=5)
        caught.value.close()
    assert status == 200
    assert body["status"] == "degraded"
    assert body["breakers"][0]["state"] == "open"
    assert caught.value.code == 404
    assert all_threads() - before == set()


def test_health_server_reports_a_failing_report_as_500_and_keeps_serving():
    calls = []

    def report():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"status": "ok", "breakers": []}

    with HealthServer("127.0.0.1", 0, report=report) as server:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server.url, timeout=5)
        caught.value.close()
        assert _get(server.url) == (200, {"status": "ok", "breakers": []})
    assert caught.value.code == 500


def test_health_server_on_a_taken_port_raises_oserror():
    with HealthServer("127.0.0.1", 0) as first, pytest.raises(OSError, match="in use"):
        HealthServer("127.0.0.1", first.address[1])


def _line(service, endpoint, state, value, extra=""):
    return (
        f'{PROM_BREAKER_STATE}{{resilience_service="{service}",resilience_endpoint="{endpoint}",'
        f'resilience_circuit_breaker_state="{state}"{extra}}} {value}'
    )


def test_states_are_read_back_from_a_prometheus_page():
    page = "\n".join(
        [
            "# HELP resilience_circuit_breaker_state State of the breaker",
            "# TYPE resilience_circuit_breaker_state gauge",
            _line("clamav", "scan", "closed", "0.0"),
            _line("clamav", "scan", "open", "1.0"),
            _line("clamav", "scan", "half_open", "0.0"),
            _line("gcs", "upload", "closed", "1.0", ',otel_scope_name="otel_resilience"'),
            'resilience_retries_total{resilience_service="x",resilience_endpoint="y"} 3.0',
            _line("weird", 'a\\"b', "half_open", "1"),
        ]
    )
    found = [(b["service_name"], b["endpoint"], b["state"]) for b in breakers_from_prometheus(page)]
    assert found == [
        ("clamav", "scan", "open"),
        ("gcs", "upload", "closed"),
        ("weird", 'a"b', "half_open"),
    ]


def test_a_page_without_breakers_has_none():
    assert breakers_from_prometheus("resilience_retries_total 1\n# EOF\n") == []


@pytest.mark.parametrize(
    ("states", "status"),
    [
        pytest.param([("scan", "closed"), ("upload", "closed")], "ok", id="all-closed"),
        pytest.param([("scan", "closed"), ("upload", "half_open")], "degraded", id="one-probing"),
        pytest.param([], "ok", id="no-breakers"),
    ],
)
def test_the_report_of_another_process_is_read_from_its_metrics_page(states, status):
    from otel_resilience import health_report_from_prometheus

    before = time.time()
    page = "\n".join(_line("gcs", endpoint, state, "1.0") for endpoint, state in states)
    report = health_report_from_prometheus(page)
    assert set(report) == set(health_report())
    assert report["status"] == status
    assert before <= report["time"] <= time.time()
    assert [(b["endpoint"], b["state"], b["failure_count"]) for b in report["breakers"]] == [
        (endpoint, state, None) for endpoint, state in sorted(states)
    ]


def test_closing_the_health_server_lets_a_request_in_progress_finish_and_joins_its_thread():
    before = all_threads()
    serving = threading.Event()

    def slow_report():
        serving.set()
        time.sleep(0.3)
        return {"status": "ok", "breakers": []}

    answers = []
    with HealthServer("127.0.0.1", 0, report=slow_report) as server:
        client = threading.Thread(target=lambda: answers.append(_get(server.url)))
        client.start()
        assert serving.wait(5)
    # close() returned: the connection's thread has ended, and the client got its answer
    assert all_threads() - before - {client} == set()
    client.join(5)
    assert answers == [(200, {"status": "ok", "breakers": []})]


def test_closing_the_health_server_drops_an_idle_connection_and_joins_its_thread():
    import socket

    before = all_threads()
    server = HealthServer("127.0.0.1", 0, timeout=30).start()
    with socket.create_connection(server.address, timeout=5) as idle:
        time.sleep(0.1)  # accepted: a thread waits for its request
        assert len(all_threads() - before) == 2  # the server's and the connection's
        started = time.monotonic()
        server.close()
        took = time.monotonic() - started
        assert all_threads() - before == set()
        assert idle.recv(1) == b""  # the server closed it
    assert took < 2.0
