"""The public namespace: one flat, sorted ``__all__``; decorators keep signatures and types."""

from __future__ import annotations

import inspect

import pytest

import otel_resilience
from otel_resilience import configure, create_retry_decorator, resilient
from support import FakeClock


def test_all_is_sorted_and_matches_the_public_names() -> None:
    public = {name for name in dir(otel_resilience) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(otel_resilience, name))}
    assert otel_resilience.__all__ == sorted(otel_resilience.__all__)
    assert set(otel_resilience.__all__) - {"__version__"} == public - modules


def test_the_seed_and_design_names_are_exported() -> None:
    for name in [
        "resilient_call", "create_retry_decorator", "with_timeout", "map_external_error",
        "ReliabilityError", "ExternalServiceError", "ReliabilityConfig", "CircuitBreaker",
        "CircuitBreakerState", "get_circuit_breaker_manager", "resilient_call_async",
        "resilient", "configure_telemetry",
    ]:  # fmt: skip
        assert name in otel_resilience.__all__, name


def test_no_tenacity_or_opentelemetry_type_in_public_signatures() -> None:
    for name in otel_resilience.__all__:
        obj = getattr(otel_resilience, name)
        if callable(obj):
            try:
                text = str(inspect.signature(obj))
            except (TypeError, ValueError):
                continue
            assert "tenacity" not in text, name
            assert "opentelemetry" not in text, name


def test_resilient_keeps_name_doc_and_arguments(clock: FakeClock) -> None:
    @resilient("gcs", "download", max_retries=2)
    def download(path: str, *, offset: int = 0) -> bytes:
        """Download a file."""
        return f"{path}@{offset}".encode()

    assert download("a", offset=3) == b"a@3"
    assert download.__name__ == "download"
    assert download.__doc__ == "Download a file."
    assert list(inspect.signature(download).parameters) == ["path", "offset"]


def test_decorated_function_is_retried(clock: FakeClock) -> None:
    calls = 0

    @create_retry_decorator("svc", "op", max_retries=3)
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError()
        return "ok"

    assert flaky() == "ok"
    assert calls == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_sec": 0}, "timeout_sec"),
        ({"max_retries": -2}, "max_retries"),
        ({"deadline_sec": -1}, "deadline_sec"),
        ({"retries": 3}, "unknown option"),
    ],
    ids=["timeout", "retries", "deadline", "unknown"],
)
def test_decorator_options_are_checked_at_decoration_time(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        resilient("svc", "op", **kwargs)


def test_decorating_a_non_callable_is_an_error() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        resilient("svc", "op")(42)  # type: ignore[call-overload]


def test_configure_then_reset_restores_defaults() -> None:
    configure(services={"svc": {"HTTP_RETRIES": 9}})
    assert otel_resilience.get_config("svc").HTTP_RETRIES == 9
    otel_resilience.reset()
    assert otel_resilience.get_config("svc").HTTP_RETRIES == 3
