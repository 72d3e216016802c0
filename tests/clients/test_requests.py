"""requests and urllib3 against the fault server: every fault maps to its error type."""

from __future__ import annotations

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from faultserver import FaultServer

from ._cases import (
    HTTP_FAULTS,
    TIMEOUT_SEC,
    E,
    Fault,
    assert_classified,
    expect_hits,
    timeout_for,
    url_for,
)


@pytest.mark.parametrize("fault", HTTP_FAULTS)
def test_requests_fault_is_classified(fault_server: FaultServer, fault: Fault):
    def call() -> None:
        with requests.Session() as session:
            session.get(
                url_for(fault_server, fault), timeout=timeout_for(fault.path)
            ).raise_for_status()

    with pytest.raises(requests.RequestException) as caught:
        call()

    assert_classified(caught.value, "requests", fault)
    expect_hits(fault_server, fault)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("429?retry_after=0", E.RATE_LIMIT, id="429"),
        pytest.param("503", E.SERVER_ERROR, id="503"),
    ],
)
def test_requests_retries_exhausted_by_status_keep_the_status_meaning(
    fault_server: FaultServer, path: str, expected
):
    retry = Retry(total=1, status_forcelist=[429, 503], backoff_factor=0)
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        with pytest.raises(requests.exceptions.RetryError) as caught:
            session.get(f"{fault_server.url}/{path}", timeout=TIMEOUT_SEC)

    assert_classified(caught.value, "requests", Fault(path, expected))
    assert fault_server.count("/" + path.split("?")[0]) == 2


@pytest.mark.parametrize(
    ("url", "error"),
    [
        pytest.param("127.0.0.1/ok", requests.exceptions.MissingSchema, id="missing-schema"),
        pytest.param("gopher://127.0.0.1/", requests.exceptions.InvalidSchema, id="bad-schema"),
        pytest.param("http://", requests.exceptions.InvalidURL, id="invalid-url"),
    ],
)
def test_requests_url_mistakes_are_bad_requests(url: str, error):
    with pytest.raises(error) as caught:
        requests.get(url, timeout=TIMEOUT_SEC)

    assert_classified(caught.value, "requests", Fault("-", E.BAD_REQUEST))


def test_requests_invalid_json_body_from_the_server_is_a_server_error(fault_server: FaultServer):
    response = requests.get(f"{fault_server.url}/not-json", timeout=TIMEOUT_SEC)
    with pytest.raises(requests.exceptions.JSONDecodeError) as caught:
        response.json()

    assert_classified(caught.value, "requests", Fault("-", E.SERVER_ERROR))


URLLIB3_FAULTS = [
    pytest.param(Fault("refuse", E.CONNECTION_ERROR), id="connection-refused"),
    pytest.param(Fault("reset", E.CONNECTION_ERROR), id="reset-mid-response"),
    pytest.param(Fault("close", E.CONNECTION_ERROR), id="closed-without-response"),
    pytest.param(Fault("malformed", E.CONNECTION_ERROR), id="malformed-status-line"),
    pytest.param(Fault("slow?delay=5", E.TIMEOUT), id="slow-headers-read-timeout"),
    pytest.param(Fault("slow-body?delay=5", E.TIMEOUT), id="slow-body-read-timeout"),
]


@pytest.mark.parametrize("retries", [False, 0], ids=["retries-off", "max-retry-error"])
@pytest.mark.parametrize("fault", URLLIB3_FAULTS)
def test_urllib3_fault_is_classified(fault_server: FaultServer, fault: Fault, retries):
    with (
        urllib3.PoolManager(timeout=timeout_for(fault.path), retries=retries) as pool,
        pytest.raises(urllib3.exceptions.HTTPError) as caught,
    ):
        pool.request("GET", url_for(fault_server, fault))

    assert_classified(caught.value, "urllib3", fault)
    expect_hits(fault_server, fault)


@pytest.mark.parametrize(
    ("status", "expected"),
    [pytest.param(429, E.RATE_LIMIT, id="429"), pytest.param(502, E.SERVER_ERROR, id="502")],
)
def test_urllib3_too_many_error_responses_keep_the_status_meaning(
    fault_server: FaultServer, status: int, expected
):
    retry = Retry(total=1, status_forcelist=[status], backoff_factor=0)
    with (
        urllib3.PoolManager(retries=retry) as pool,
        pytest.raises(urllib3.exceptions.MaxRetryError) as caught,
    ):
        pool.request("GET", f"{fault_server.url}/{status}?retry_after=0")

    assert_classified(caught.value, "urllib3", Fault("-", expected))
    assert fault_server.count(f"/{status}") == 2
