"""A Hypothesis invariant against the real gRPC server: whatever the server answers, it sees
exactly the attempts the library reports, and the caller gets the answer of the last one."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import otel_resilience
from otel_resilience.grpc import resilient_channel
from telemetry.helpers import Otel

from .grpc_support import SAY, GrpcBackend, backend, grpc_backend_process
from .otel_support import otel

__all__ = ["backend", "grpc_backend_process", "otel"]  # fixtures used by name

#: statuses the server plans, and whether the library retries them
ANSWERS = {
    "ok": None,
    "UNAVAILABLE": True,
    "INTERNAL": True,
    "RESOURCE_EXHAUSTED;pushback=1": True,
    "INVALID_ARGUMENT": False,
    "NOT_FOUND": False,
}


def _expected(plan: list[str], attempts: int) -> tuple[int, str]:
    """(attempts made, last answer) of a call that may make ``attempts`` attempts."""
    for number, answer in enumerate(plan[:attempts], start=1):
        if answer == "ok" or not ANSWERS[answer] or number == attempts:
            return number, answer
    raise AssertionError("the plan is at least `attempts` long")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(st.sampled_from(sorted(ANSWERS)), min_size=4, max_size=4),
    attempts=st.integers(1, 4),
)
@example(plan=["UNAVAILABLE", "NOT_FOUND", "ok", "ok"], attempts=3)
@example(plan=["INTERNAL", "INTERNAL", "INTERNAL", "INTERNAL"], attempts=4)
def test_the_server_sees_exactly_the_reported_attempts(
    backend: GrpcBackend,
    otel: Otel,
    monkeypatch: pytest.MonkeyPatch,
    plan: list[str],
    attempts: int,
):
    from support import FakeClock

    otel_resilience.reset()  # backoff sleeps on a fake clock: Hypothesis runs many examples
    monkeypatch.setattr(otel_resilience.default_runtime(), "clock", FakeClock())
    otel_resilience.set_telemetry_providers(otel.tracer_provider, otel.meter_provider)
    otel.exporter.clear()
    backend.plan(*plan)
    outcome: Any
    with resilient_channel(backend.target, max_retries=attempts) as channel:
        try:
            outcome = channel.unary_unary(SAY)(b"p")
        except grpc.RpcError as exc:
            outcome = exc

    made, last = _expected(plan, attempts)
    assert backend.count() == made
    (call,) = [s for s in otel.spans() if s.name == "demo.Echo Say"]
    assert (call.attributes or {})["resilience.attempts"] == made
    if last == "ok":
        assert outcome == b"echo:p"
    else:
        assert isinstance(outcome, grpc.RpcError)
        assert outcome.code().name == last.split(";")[0]
