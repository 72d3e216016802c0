"""otel_resilience.testing and its pytest plugin (issue 16): test mode, fake clock, calls."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ReliabilityError,
    ThrottledError,
    resilient_call,
    resilient_call_async,
)
from otel_resilience import testing as rt_testing
from otel_resilience.pytest_plugin import faults, resilience  # noqa: F401 - the fixtures
from otel_resilience.testing import FakeClock, TestMode, set_testing

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "testing.md"


def failing(times: int, exc: BaseException | None = None) -> tuple[list[int], object]:
    """A function that fails ``times`` times with a connection error, then returns "ok"."""
    seen: list[int] = []

    def func() -> str:
        seen.append(1)
        if len(seen) <= times:
            raise exc if exc is not None else ConnectionError("reset by peer")
        return "ok"

    return seen, func


# --- set_testing -----------------------------------------------------------------------------


def test_backoff_is_computed_and_recorded_but_not_slept() -> None:
    seen, func = failing(4)
    with set_testing(environ={}) as mode:
        mode.configure(inventory={"HTTP_RETRIES": 5, "HTTP_BACKOFF_BASE_MS": 1000})
        started = time.perf_counter()
        assert resilient_call("inventory", "lookup", func) == "ok"
        elapsed = time.perf_counter() - started
        call = mode.call("inventory", "lookup")
    assert elapsed < 0.05
    assert len(seen) == 5
    assert call.attempts == 5
    assert call.retries == 4
    assert call.outcome == "ok"
    assert call.error_types == ("connection_error",) * 4 + (None,)
    assert call.error_type is None
    assert call.chaos == ()
    assert not call.fallback
    # 1 s base, doubling, seed jitter of up to 10 %
    for wait, base in zip(call.waits, (1, 2, 4, 8), strict=True):
        assert base <= wait <= base * 1.1
    assert mode.clock.sleeps == list(call.waits)
    assert mode.clock.now == pytest.approx(1000 + sum(call.waits))


def test_attempts_are_capped_for_defaults_and_explicit_max_retries() -> None:
    with set_testing(attempts=2, environ={}) as mode:
        seen, func = failing(10)
        with pytest.raises(ReliabilityError) as caught:
            resilient_call("gcs", "upload", func, max_retries=5)
        assert len(seen) == 2
        assert caught.value.attempts == 2
        seen, func = failing(10)
        with pytest.raises(ReliabilityError):
            resilient_call("gcs", "upload", func)  # HTTP_RETRIES=3 by default
        assert len(seen) == 2
        seen, func = failing(10)
        with pytest.raises(ReliabilityError):
            resilient_call("gcs", "upload", func, max_retries=1)  # below the cap: its own
        assert len(seen) == 1
        assert [c.attempts for c in mode.calls("gcs")] == [2, 2, 1]
        assert [c.outcome for c in mode.calls()] == ["error"] * 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cap=st.integers(1, 8), max_retries=st.integers(0, 8))
@example(cap=6, max_retries=6)  # found: the breaker (5 failures) cut the sixth attempt
def test_attempts_are_the_smaller_of_the_call_s_and_the_cap(cap: int, max_retries: int) -> None:
    seen, func = failing(100)
    with set_testing(attempts=cap, environ={"CB_FAIL_THRESHOLD": "1000"}) as mode:
        with pytest.raises(ReliabilityError):
            resilient_call("svc", "op", func, max_retries=max_retries)
        call = mode.call("svc", "op")
    expected = min(max(1, max_retries), cap)
    assert len(seen) == call.attempts == expected
    assert call.retries == expected - 1 == len(mode.clock.sleeps)
    assert list(call.waits) == mode.clock.sleeps


def test_the_previous_runtime_is_restored_and_close_is_idempotent() -> None:
    before = otel_resilience.default_runtime()
    mode = set_testing()
    assert otel_resilience.default_runtime() is mode.runtime is not before
    assert mode.runtime.clock is mode.clock
    mode.close()
    mode.close()
    assert otel_resilience.default_runtime() is before
    assert mode.telemetry is None
    with pytest.raises(RuntimeError, match="captures no telemetry"):
        mode.calls()


def test_breakers_start_closed_whatever_the_default_runtime_holds() -> None:
    otel_resilience.configure(services={"ocr": {"CB_FAIL_THRESHOLD": 1, "HTTP_RETRIES": 1}})
    with pytest.raises(ReliabilityError):
        resilient_call("ocr", "read", failing(1)[1])
    assert (
        otel_resilience.get_circuit_breaker_manager().breaker_for("ocr", "read").state.value
        == "open"
    )
    with set_testing(environ={}) as mode:
        assert resilient_call("ocr", "read", lambda: "ok") == "ok"
        assert mode.breaker("ocr", "read").state.value == "closed"


def test_the_fake_clock_drives_the_breaker_reset_window() -> None:
    with set_testing(environ={}) as mode:
        mode.configure(ocr={"CB_FAIL_THRESHOLD": 2, "CB_RESET_SEC": 30, "HTTP_RETRIES": 1})
        for _ in range(2):
            with pytest.raises(ReliabilityError):
                resilient_call("ocr", "read", failing(1)[1])
        seen, func = failing(0)
        with pytest.raises(CircuitOpenError):
            resilient_call("ocr", "read", func)
        mode.advance(29.9)
        with pytest.raises(CircuitOpenError):
            resilient_call("ocr", "read", func)
        mode.advance(0.1)
        assert resilient_call("ocr", "read", func) == "ok"  # the probe
        assert len(seen) == 1
        assert mode.breaker("ocr", "read").state.value == "closed"
        assert [c.attempts for c in mode.calls("ocr")] == [1, 1, 0, 0, 1]
        assert mode.calls("ocr")[2].error_type == "circuit_open"


def test_rate_limits_throttle_in_test_mode() -> None:
    with set_testing(environ={}) as mode:
        mode.configure(maps={"RATE_LIMIT": "2/minute"})
        assert [resilient_call("maps", "geo", lambda i=i: i) for i in range(2)] == [0, 1]
        with pytest.raises(ThrottledError):
            resilient_call("maps", "geo", lambda: 2)
        assert mode.counter("resilience.rate_limiter.rejections") == 1
        assert mode.calls("maps")[-1].error_type == "throttled"


def test_the_fake_clock_drives_rate_limit_windows() -> None:
    with set_testing(environ={}) as mode:
        mode.configure(maps={"RATE_LIMIT": "2/minute"})
        for i in range(2):
            resilient_call("maps", "geo", lambda: i)  # noqa: B023
        mode.advance(60.0)
        assert resilient_call("maps", "geo", lambda: 3) == 3


def test_the_fake_clock_drives_retry_budgets() -> None:
    with set_testing(environ={}) as mode:
        mode.configure(
            llm={
                "RETRY_BUDGET_RATIO": 0.0,
                "RETRY_BUDGET_MIN_PER_SEC": 1,
                "RETRY_BUDGET_WINDOW_SEC": 1,
                "HTTP_RETRIES": 2,
                "HTTP_BACKOFF_BASE_MS": 0,
            }
        )
        seen, func = failing(1)
        assert resilient_call("llm", "chat", func) == "ok"  # the one retry of this second
        seen, func = failing(1)
        with pytest.raises(ReliabilityError):
            resilient_call("llm", "chat", func)  # budget spent: no retry
        assert len(seen) == 1
        mode.advance(10.0)
        seen, func = failing(1)
        assert resilient_call("llm", "chat", func) == "ok"
        assert len(seen) == 2


def test_sleep_true_really_sleeps_the_backoff() -> None:
    with set_testing(sleep=True, environ={}) as mode:
        mode.configure(svc={"HTTP_RETRIES": 3, "HTTP_BACKOFF_BASE_MS": 20})
        started = time.perf_counter()
        assert resilient_call("svc", "op", failing(2)[1]) == "ok"
        elapsed = time.perf_counter() - started
        assert elapsed >= sum(mode.clock.sleeps) >= 0.06


async def test_async_calls_use_the_fake_clock() -> None:
    seen: list[int] = []

    async def func() -> str:
        seen.append(1)
        if len(seen) < 3:
            raise ConnectionError("reset")
        return "ok"

    with set_testing(environ={}) as mode:
        mode.configure(svc={"HTTP_BACKOFF_BASE_MS": 5000})
        started = time.perf_counter()
        assert await resilient_call_async("svc", "op", func) == "ok"
        assert time.perf_counter() - started < 0.5
        assert mode.call("svc", "op").retries == 2 == len(mode.clock.sleeps)


async def test_the_fake_clock_sleeps_really_on_request() -> None:
    clock = FakeClock(start=0, real_sleep=True)
    started = time.perf_counter()
    await clock.sleep_async(0.02)
    assert time.perf_counter() - started >= 0.02
    assert clock.sleeps == [0.02]
    assert clock.now == 0.02


def test_call_records_of_failures_fallbacks_and_aborts() -> None:
    with set_testing(environ={"RETRY_UNKNOWN_ERRORS": "false"}) as mode:
        with pytest.raises(ReliabilityError):  # unknown_error, not retried here
            resilient_call("auth", "login", failing(1, ValueError("no"))[1])
        assert resilient_call("auth", "login", failing(9)[1], fallback="cached") == "cached"
        with pytest.raises(KeyboardInterrupt):
            resilient_call("auth", "login", failing(1, KeyboardInterrupt())[1])
        denied, fell_back, aborted = mode.calls("auth", "login")
    assert (denied.outcome, denied.attempts, denied.retries) == ("error", 1, 0)
    assert denied.error_type == denied.error_types[0] == "unknown_error"
    assert fell_back.outcome == "error"
    assert fell_back.attempts == 3
    assert aborted.outcome == "aborted"
    assert aborted.error_type is None


def test_a_call_served_by_a_fallback_is_marked_on_its_span() -> None:
    with set_testing(environ={}) as mode:
        assert resilient_call("auth", "login", failing(9)[1], fallback="cached") == "cached"
        assert mode.call("auth", "login").fallback
        assert mode.counter("resilience.fallbacks") == 1


def test_calls_filter_by_service_and_endpoint_and_skip_application_spans() -> None:
    with set_testing(environ={}) as mode:
        tracer = mode.telemetry.tracer_provider.get_tracer("app")  # type: ignore[union-attr]
        with tracer.start_as_current_span("handle /ask"):
            resilient_call("a", "x", lambda: 1)
            resilient_call("a", "y", lambda: 2)
            resilient_call("b", "x", lambda: 3)
        assert [(c.service, c.endpoint) for c in mode.calls()] == [
            ("a", "x"),
            ("a", "y"),
            ("b", "x"),
        ]
        assert [c.endpoint for c in mode.calls("a")] == ["x", "y"]
        assert [c.service for c in mode.calls(endpoint="x")] == ["a", "b"]
        with pytest.raises(AssertionError, match="expected one call of a xx, got 0"):
            mode.call("a", "xx")
        assert len(mode.telemetry.spans()) == 7  # type: ignore[union-attr]
        mode.telemetry.clear()  # type: ignore[union-attr]
        assert mode.calls() == []


def test_metric_helpers_sum_counters_and_count_histograms() -> None:
    with set_testing(environ={}) as mode:
        resilient_call("svc", "a", failing(2)[1])
        resilient_call("svc", "b", failing(1)[1])
        assert mode.counter("resilience.retries") == 3
        assert mode.counter("resilience.retries", {"resilience.endpoint": "a"}) == 2
        assert mode.counter("resilience.retries", {"resilience.endpoint": "c"}) == 0
        captured = mode.telemetry
        assert captured is not None
        counts = {
            a["resilience.endpoint"]: v for a, v in captured.points("resilience.call.duration")
        }
        assert counts == {"a": 1, "b": 1}
        assert captured.points("resilience.nothing") == []


def test_the_environment_of_the_test_runtime() -> None:
    with set_testing(environ={"HTTP_RETRIES": "7"}) as mode:
        assert mode.runtime.get_config("svc").HTTP_RETRIES == 7
    with set_testing(environ={}) as mode:
        assert mode.runtime.get_config("svc").HTTP_RETRIES == 3
        assert "TestMode attempts=None" in repr(mode)
        assert "FakeClock(now=1000" in repr(mode)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attempts": 0}, ValueError, r"attempts must be an integer from 1 to 100 .* got 0"),
        ({"attempts": True}, ValueError, "got True"),
        ({"attempts": 101}, ValueError, "got 101"),
        ({"sleep": "no"}, TypeError, "sleep must be True or False, got 'no'"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], error: type, message: str) -> None:
    before = otel_resilience.default_runtime()
    with pytest.raises(error, match=message):
        set_testing(**kwargs)  # type: ignore[arg-type]
    assert otel_resilience.default_runtime() is before


@pytest.mark.parametrize("seconds", [-1, True, "1"])
def test_the_fake_clock_moves_forward_only(seconds: object) -> None:
    with pytest.raises(ValueError, match="advance needs a number of seconds >= 0"):
        FakeClock().advance(seconds)  # type: ignore[arg-type]


def test_the_public_objects_name_their_public_module() -> None:
    for name in rt_testing.__all__:
        assert getattr(rt_testing, name).__module__ == "otel_resilience.testing", name
    assert TestMode.__test__ is False


# --- the pytest plugin ------------------------------------------------------------------------


def test_fixtures_give_a_test_mode_and_its_faults(
    resilience: TestMode,  # noqa: F811
    faults: rt_testing.Faults,  # noqa: F811
) -> None:
    assert otel_resilience.default_runtime() is resilience.runtime
    assert faults is resilience.faults
    faults.inject("clamav", "scan", times=1)
    assert resilient_call("clamav", "scan", lambda: "clean") == "clean"
    assert resilience.call("clamav", "scan").chaos == ("fault",)


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    plugins = project["entry-points"]["pytest11"]
    assert plugins == {"otel_resilience.pytest_plugin": "otel_resilience.pytest_plugin"}
    assert "testing" in project["optional-dependencies"]


def _example_files() -> dict[str, str]:
    """The user-style test files of docs/testing.md: python blocks opening ``# file: NAME``."""
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = {}
    for block in blocks:
        first = block.splitlines()[0]
        if first.startswith("# file: "):
            found[first.removeprefix("# file: ").strip()] = block
    return found


def test_the_docs_example_test_file_passes_as_a_user_runs_it(tmp_path: Path) -> None:
    files = _example_files()
    assert "test_payments.py" in files
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "otel_resilience.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "--strict-markers",
            "--durations=0",
            "--durations-min=0",
            f"--junitxml={report}",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cases = {case.get("name"): case for case in ET.parse(report).getroot().iter("testcase")}
    assert len(cases) >= 4, done.stdout
    assert all(case.find("failure") is None for case in cases.values())
    # the figure: 5 attempts, 1 s base backoff, 4 failures -- under 50 ms of wall time
    # (the test's call phase; its setup also imports the SDK the first time)
    phase = re.search(
        r"([\d.]+)s call .*::test_charge_retries_four_times_without_sleeping", done.stdout
    )
    assert phase is not None, done.stdout
    assert float(phase.group(1)) < 0.05


def test_the_plugin_is_inert_unless_a_fixture_is_used(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        "import otel_resilience\n\n"
        "def test_default_runtime():\n"
        "    assert otel_resilience.default_runtime().faults is None\n"
        "    assert otel_resilience.default_runtime().max_attempts is None\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "otel_resilience.pytest_plugin", "-q",
         "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_test_mode_survives_an_event_loop_of_its_own() -> None:
    with set_testing(environ={}) as mode:

        async def main() -> str:
            return await resilient_call_async("svc", "op", failing_async())

        assert asyncio.run(main()) == "ok"
        assert mode.call("svc", "op").attempts == 2


def failing_async() -> object:
    state = {"n": 0}

    async def func() -> str:
        state["n"] += 1
        if state["n"] == 1:
            raise ConnectionError("reset")
        return "ok"

    return func
