"""Invariants of the HTTP integrations, over any sequence of server answers (Hypothesis), and the
per-call ``timeout_mode`` they rely on."""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import otel_resilience
from otel_resilience import ReliabilityConfig, resilient_call, resilient_call_async
from otel_resilience.httpx import ResilientTransport

RETRIED = {429, 500, 502, 503}
STATUSES = st.sampled_from([200, 201, 304, 400, 401, 404, 429, 500, 502, 503])


def _expected_calls(statuses: list[int], attempts: int) -> int:
    for index, status in enumerate(statuses[:attempts]):
        if status not in RETRIED:
            return index + 1
    return min(len(statuses), attempts)


@given(
    statuses=st.lists(STATUSES, min_size=1, max_size=6),
    attempts=st.integers(1, 5),
    method=st.sampled_from(["GET", "POST", "PUT"]),
)
@example(statuses=[503, 429, 200], attempts=3, method="GET")
@example(statuses=[503, 503], attempts=5, method="GET")
@example(statuses=[500, 200], attempts=3, method="POST")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_server_sees_exactly_the_attempts_and_the_caller_the_last_answer(
    statuses, attempts, method
):
    otel_resilience.reset()
    otel_resilience.configure(
        ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1, CB_FAIL_THRESHOLD=100, HTTP_TIMEOUT_SEC=5)
    )
    served: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses[min(len(served), len(statuses) - 1)]
        served.append(status)
        return httpx.Response(status, json={"n": len(served)})

    transport = ResilientTransport(httpx.MockTransport(handler), max_retries=attempts)
    with httpx.Client(transport=transport) as client:
        response = client.request(method, "http://svc.test/items/1", content=b"{}")

    allowed = attempts if method != "POST" else 1
    padded = statuses + [statuses[-1]] * 6
    assert len(served) == _expected_calls(padded, allowed)
    assert response.status_code == served[-1]
    assert response.json() == {"n": len(served)}


def test_a_bad_timeout_mode_is_refused_before_any_attempt(otel):
    called: list[int] = []
    with pytest.raises(ValueError, match="mode must be one of interrupt, thread, cooperative"):
        resilient_call("svc", "op", lambda: called.append(1), timeout_mode="sometimes")
    assert called == []
    assert otel.spans() == []  # no call span was started (and left open)


async def test_a_bad_timeout_mode_is_refused_by_the_async_call_too():
    async def func() -> int:
        return 1

    with pytest.raises(ValueError, match="mode must be one of"):
        await resilient_call_async("svc", "op", func, timeout_mode="nope")


def test_the_per_call_timeout_mode_wins_over_the_services():
    otel_resilience.configure(ReliabilityConfig(TIMEOUT_MODE="interrupt"))
    finished: list[bool] = []

    def slow() -> None:
        time.sleep(0.3)
        finished.append(True)

    with pytest.raises(otel_resilience.CallTimeoutError):
        resilient_call("svc", "op", slow, timeout_sec=0.1, max_retries=1)
    assert finished == []  # interrupted at 0.1 s

    with pytest.raises(otel_resilience.CallTimeoutError):
        resilient_call("svc", "op", slow, 0.1, 1, timeout_mode="cooperative")
    assert finished == [True]  # ran to its end, then counted as a timeout


async def test_the_async_per_call_timeout_mode_wins_too():
    import asyncio

    finished: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.2)
        finished.append(True)

    with pytest.raises(otel_resilience.CallTimeoutError):
        await resilient_call_async("svc", "op", slow, 0.05, 1, timeout_mode="cooperative")
    assert finished == [True]
