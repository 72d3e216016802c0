"""httpx (sync, async, httpx2) and requests through the integrations, against the fault server.

Every scenario checks the outcome, the requests the server saw, the attempts the library
reported (spans and the attempt-duration histogram), and the breaker.
"""

from __future__ import annotations

import threading
import time

import pytest

import otel_resilience
from otel_resilience import (
    CallTimeoutError,
    CircuitOpenError,
    ExternalServiceError,
    ReliabilityError,
)

from ._drivers import DRIVERS, Driver

E = ExternalServiceError

pytestmark = pytest.mark.parametrize("driver_class", DRIVERS, ids=[d.name for d in DRIVERS])


def _authority(server) -> str:
    return server.url.removeprefix("http://")


def _breaker(service: str, endpoint: str):
    return otel_resilience.get_circuit_breaker_manager().breaker_for(service, endpoint)


def test_success_is_one_request_one_attempt_named_by_authority_and_route(
    driver_class: type[Driver], server, otel
):
    response = driver_class().send("GET", f"{server.url}/ok/users/42")

    assert response.status_code == 200
    assert server.count("/ok/users/42") == 1
    service, endpoint = _authority(server), "GET /ok/users/{id}"
    [call] = otel.call_spans(service, endpoint)
    assert call.attributes["resilience.attempts"] == 1
    assert "error.type" not in call.attributes
    [attempt] = otel.attempt_spans(service, endpoint)
    assert "http.request.resend_count" not in attempt.attributes
    assert otel.attempts_reported(service) == 1


def test_server_errors_are_retried_and_the_last_response_is_returned(
    driver_class: type[Driver], server, otel
):
    response = driver_class().send("GET", f"{server.url}/503")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == 503  # the body is still there for the caller
    service, endpoint = _authority(server), "GET /{id}"  # 503 reads as an id
    assert server.count("/503") == 3 == otel.attempts_reported(service)
    attempts = sorted(otel.attempt_spans(service, endpoint), key=lambda s: s.start_time)
    assert [a.attributes.get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    assert all(a.attributes["error.type"] == "server_error" for a in attempts)
    [call] = otel.call_spans(service, endpoint)
    assert call.attributes["error.type"] == "server_error"
    assert _breaker(service, endpoint).failure_count == 3


def test_a_flaky_server_recovers_within_the_call(driver_class: type[Driver], server, otel):
    response = driver_class().send("GET", f"{server.url}/flaky/a?fail=2")

    assert response.status_code == 200
    assert response.json()["attempt"] == 3
    service = _authority(server)
    assert server.count("/flaky/a") == 3 == otel.attempts_reported(service)
    [call] = otel.call_spans(service, "GET /flaky/a")
    assert "error.type" not in call.attributes  # a retried-then-successful call is a success


def test_retry_after_is_honoured(driver_class: type[Driver], server, otel):
    start = time.monotonic()
    response = driver_class(max_retries=2).send("GET", f"{server.url}/429/w?retry_after=1")
    elapsed = time.monotonic() - start

    assert response.status_code == 429
    assert 1.0 <= elapsed < 1.8
    assert server.count("/429/w") == 2 == otel.attempts_reported(_authority(server))


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, "authentication_error"), (403, "permission_denied"), (404, "not_found")],
)
def test_a_client_error_fails_once_without_retry_or_breaker_count(
    driver_class: type[Driver], server, otel, status, error_type
):
    response = driver_class().send("GET", f"{server.url}/{status}")

    assert response.status_code == status
    service, endpoint = _authority(server), "GET /{id}"
    assert server.count(f"/{status}") == 1 == otel.attempts_reported(service)
    [call] = otel.call_spans(service, endpoint)
    assert call.attributes["error.type"] == error_type
    assert _breaker(service, endpoint).failure_count == 0


def test_post_without_idempotency_key_is_sent_once(driver_class: type[Driver], server, otel):
    response = driver_class().send("POST", f"{server.url}/500/p")

    assert response.status_code == 500
    assert server.count("/500/p") == 1 == otel.attempts_reported(_authority(server))


def test_post_with_idempotency_key_is_retried(driver_class: type[Driver], server, otel):
    response = driver_class().send(
        "POST", f"{server.url}/500/k", headers={"Idempotency-Key": "order-1"}
    )

    assert response.status_code == 500
    assert server.count("/500/k") == 3 == otel.attempts_reported(_authority(server))


def test_an_outage_opens_the_breaker_and_recovery_closes_it(
    driver_class: type[Driver], server, otel, breaker_clock
):
    driver = driver_class(service="inventory", endpoint="lookup", max_retries=1)
    for _ in range(5):  # CB_FAIL_THRESHOLD
        with pytest.raises(ReliabilityError) as caught:
            driver.send("GET", f"{server.refused_url}/ok")
        assert caught.value.error_type is E.CONNECTION_ERROR
    with pytest.raises(CircuitOpenError):
        driver.send("GET", f"{server.url}/ok")
    assert server.count("/ok") == 0  # rejected without a request
    assert _breaker("inventory", "lookup").state.value == "open"

    breaker_clock.advance(61)  # past CB_RESET_SEC: the next call is the probe
    assert driver.send("GET", f"{server.url}/ok").status_code == 200
    assert _breaker("inventory", "lookup").state.value == "closed"
    assert server.count("/ok") == 1


def test_the_clients_own_timeout_is_cut_to_the_attempts_time(
    driver_class: type[Driver], server, otel
):
    driver = driver_class(timeout_sec=0.3, max_retries=2)
    start = time.monotonic()
    with pytest.raises(CallTimeoutError) as caught:
        driver.send("GET", f"{server.url}/slow/t?delay=3", timeout=30)
    elapsed = time.monotonic() - start

    assert caught.value.attempts == 2
    assert 0.55 <= elapsed < 1.2
    assert server.settled_count("/slow/t", 2) == 2 == otel.attempts_reported(_authority(server))


def _timed_call(driver: Driver, url: str) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        driver.send("GET", url)
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
def test_a_frozen_server_times_out_on_time(
    driver_class: type[Driver], frozen_fault_server, otel, where
):
    driver = driver_class(timeout_sec=0.5, max_retries=2)
    assert driver.send("GET", f"{frozen_fault_server.url}/ok").status_code == 200
    frozen_fault_server.freeze()
    if where == "main-thread":
        error, elapsed = _timed_call(driver, f"{frozen_fault_server.url}/ok")
    else:
        found: list[tuple[BaseException | None, float]] = []
        worker = threading.Thread(
            target=lambda: found.append(_timed_call(driver, f"{frozen_fault_server.url}/ok"))
        )
        worker.start()
        worker.join(10)
        [(error, elapsed)] = found

    assert isinstance(error, CallTimeoutError)
    assert error.attempts == 2
    assert 0.95 <= elapsed < 1.6
    service = frozen_fault_server.url.removeprefix("http://")
    assert otel.attempts_reported(service) == 3  # the warm-up and the two timed-out attempts


def test_metrics_follow_the_telemetry_contract(driver_class: type[Driver], server, otel):
    from support import counter_points

    driver_class().send("GET", f"{server.url}/flaky/m?fail=1")

    service = _authority(server)
    base = (("resilience.endpoint", "GET /flaky/m"), ("resilience.service", service))
    retries = counter_points(otel.reader, "resilience.retries")
    assert retries == {tuple(sorted((*base, ("error.type", "server_error")))): 1}
    calls = otel.histogram_counts("resilience.call.duration")
    assert calls == {base: 1}  # a success after a retry: no error.type
    attempts = otel.histogram_counts("resilience.attempt.duration")
    assert attempts == {base: 1, tuple(sorted((*base, ("error.type", "server_error")))): 1}
