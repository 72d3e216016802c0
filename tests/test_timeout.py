"""Deadlines in the main thread (SIGALRM), in other threads (worker pool) and in asyncio.

Timeouts need the real clock here: every limit is 0.05-0.2 s, and "returned on time" means within
``SLACK`` of the limit (the brief allows ~50 ms; loaded CI machines get a little more).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_resilience
import otel_resilience._timeout as timeout_module
from otel_resilience._timeout import (
    WORKER_NAME_PREFIX,
    AttemptTimeout,
    current_deadline,
    deadline_scope,
    remaining_time,
    run_with_timeout,
    run_with_timeout_async,
    shutdown_workers,
    validate_timeout,
    with_timeout,
)
from support import FakeClock

LIMIT = 0.1
SLACK = 0.15
LONG = 0.35  # how long a "blocking" function blocks when it is not interrupted

needs_itimer = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="no signal.setitimer on this platform"
)


# --------------------------------------------------------------------------------------------
# helpers


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh non-main thread; return its value or re-raise its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="test-caller")
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the caller thread did not return"
    if "error" in box:
        raise box["error"]
    return box["value"]


def in_main(fn: Callable[[], Any]) -> Any:
    return fn()


RUNNERS = [pytest.param(in_main, id="main-thread"), pytest.param(in_thread, id="other-thread")]


def timed(fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """The exception ``fn`` raised (or None) and how long it took."""
    start = time.monotonic()
    try:
        fn()
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


#: Worker threads alive when the current test started (other modules' abandoned work, maybe).
_workers_before: set[threading.Thread] = set()


def worker_threads() -> list[threading.Thread]:
    """The worker threads started during the current test and still alive."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(WORKER_NAME_PREFIX) and t not in _workers_before
    ]


def sleeper(seconds: float = LONG) -> Callable[[], str]:
    def sleep() -> str:
        time.sleep(seconds)
        return "slept"

    return sleep


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair; the reader blocks in recv() until the writer sends or closes."""
    reader, writer = socket.socketpair()
    yield reader, writer
    writer.close()  # ends an abandoned recv() in a worker at once
    reader.close()


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Every test leaves SIGALRM, the deadline stack and the worker pool as found.

    Starts with an empty pool: idle workers left by earlier tests exit, busy ones (abandoned by
    other modules' tests) never come back to it and are not counted by ``worker_threads()``.
    """
    shutdown_workers(timeout=0)
    _workers_before.clear()
    _workers_before.update(worker_threads())
    handler = signal.getsignal(signal.SIGALRM) if hasattr(signal, "SIGALRM") else None
    yield
    assert timeout_module._interrupter.stack == [], "a main-thread deadline was left armed"
    assert current_deadline() is None
    if hasattr(signal, "SIGALRM"):
        assert signal.getsignal(signal.SIGALRM) is handler, "SIGALRM handler not restored"
    shutdown_workers(timeout=2 * LONG)
    assert worker_threads() == [], "a worker thread started by this test did not exit"


@pytest.fixture
def app_alarm() -> Iterator[list[float]]:
    """The application's own SIGALRM handler; yields the monotonic times it was called at.

    Saves and restores whatever was there before (pytest-timeout's handler and timer).
    """
    saved_handler = signal.getsignal(signal.SIGALRM)
    saved_timer = signal.getitimer(signal.ITIMER_REAL)
    calls: list[float] = []

    def app_handler(signum: int, frame: object) -> None:
        calls.append(time.monotonic())

    signal.signal(signal.SIGALRM, app_handler)
    yield calls
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, saved_handler)
    if saved_timer[0]:
        signal.setitimer(signal.ITIMER_REAL, *saved_timer)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


# --------------------------------------------------------------------------------------------
# returns on time, wherever the function blocks


@pytest.mark.parametrize("run", RUNNERS)
def test_sleep_is_interrupted_on_time(run: Callable[[Callable[[], Any]], Any]) -> None:
    error, elapsed = timed(lambda: run(lambda: run_with_timeout(sleeper(), LIMIT)))

    assert isinstance(error, AttemptTimeout)
    assert isinstance(error, TimeoutError)
    assert error.timeout_sec == LIMIT
    assert str(error) == f"Function sleep timed out after {LIMIT} seconds"
    assert LIMIT - 0.01 <= elapsed < LIMIT + SLACK


@pytest.mark.parametrize("run", RUNNERS)
def test_timeout_runs_on_real_time_when_the_deadline_clock_is_frozen(
    run: Callable[[Callable[[], Any]], Any], clock: FakeClock
) -> None:
    def probe() -> float | None:
        time.sleep(LONG)
        return remaining_time()

    error, elapsed = timed(lambda: run(lambda: run_with_timeout(probe, LIMIT)))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < LIMIT + SLACK
    assert run(lambda: run_with_timeout(remaining_time, 5.0)) == 5.0  # read from the fake clock


@pytest.mark.parametrize("run", RUNNERS)
def test_blocking_socket_read_is_interrupted_on_time(
    run: Callable[[Callable[[], Any]], Any], sockets: tuple[socket.socket, socket.socket]
) -> None:
    reader, _writer = sockets

    error, elapsed = timed(lambda: run(lambda: run_with_timeout(lambda: reader.recv(16), LIMIT)))

    assert isinstance(error, AttemptTimeout)
    assert LIMIT - 0.01 <= elapsed < LIMIT + SLACK


@pytest.mark.parametrize("run", RUNNERS)
def test_pure_python_loop_is_interrupted_on_time(run: Callable[[Callable[[], Any]], Any]) -> None:
    def spin() -> None:
        end = time.monotonic() + LONG
        while time.monotonic() < end:
            pass

    error, elapsed = timed(lambda: run(lambda: run_with_timeout(spin, LIMIT)))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < LIMIT + SLACK


@pytest.mark.parametrize("run", RUNNERS)
def test_result_is_returned_when_the_function_finishes_in_time(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    assert run(lambda: run_with_timeout(sleeper(0.01), 1.0)) == "slept"


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("limit", [1e12, 1e300], ids=["30-thousand-years", "1e300-seconds"])
def test_limits_beyond_what_the_os_timer_takes_work(
    run: Callable[[Callable[[], Any]], Any], limit: float
) -> None:
    assert run(lambda: run_with_timeout(lambda: "done", limit)) == "done"


@needs_itimer
def test_a_capped_timer_is_rearmed_until_the_real_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeout_module, "_MAX_ARM", LIMIT / 4)  # the kernel timer runs out often

    assert run_with_timeout(sleeper(LIMIT), 10.0) == "slept"
    error, elapsed = timed(lambda: run_with_timeout(sleeper(), LIMIT))
    assert isinstance(error, AttemptTimeout)
    assert LIMIT - 0.005 <= elapsed < LIMIT + SLACK  # not early at a step, not late


@pytest.mark.parametrize("run", RUNNERS)
def test_deadline_already_passed_fails_without_calling(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    calls: list[int] = []

    def body() -> None:
        with deadline_scope(0.01):
            time.sleep(0.02)
            run_with_timeout(lambda: calls.append(1), 1.0)

    error, _ = timed(lambda: run(body))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == 0.0
    assert "deadline had already passed" in str(error)
    assert calls == []


@pytest.mark.parametrize("run", RUNNERS)
def test_no_limit_and_no_deadline_calls_func_directly(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    def probe() -> tuple[threading.Thread, float | None]:
        return threading.current_thread(), current_deadline()

    def body() -> tuple[bool, float | None]:
        thread, deadline = run_with_timeout(probe, None)
        return thread is threading.current_thread(), deadline

    assert run(body) == (True, None)


# --------------------------------------------------------------------------------------------
# remaining_time() and the deadline context variable


@pytest.mark.parametrize("run", RUNNERS)
def test_remaining_time_inside_func_counts_down_from_the_limit(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    def probe() -> tuple[float | None, float | None]:
        first = remaining_time()
        time.sleep(0.05)
        return first, remaining_time()

    first, later = run(lambda: run_with_timeout(probe, 1.0))

    assert first is not None
    assert later is not None
    assert 0.95 < first <= 1.0
    assert 0.0 < later <= first - 0.05
    assert remaining_time() is None


async def test_remaining_time_inside_a_coroutine_counts_down_from_the_limit() -> None:
    async def probe() -> float | None:
        return remaining_time()

    left = await run_with_timeout_async(probe, 1.0)

    assert left is not None
    assert 0.95 < left <= 1.0
    assert remaining_time() is None


def test_remaining_time_is_none_without_a_deadline_and_never_negative() -> None:
    assert remaining_time() is None
    assert current_deadline() is None
    with deadline_scope(0.001):
        time.sleep(0.005)
        assert remaining_time() == 0.0


def test_deadline_scope_only_tightens_and_none_inherits() -> None:
    with deadline_scope(10.0) as outer:
        assert outer == current_deadline()
        with deadline_scope(100.0) as looser:
            assert looser == outer
        with deadline_scope(None) as inherited:
            assert inherited == outer
        with deadline_scope(1.0) as tighter:
            assert tighter is not None
            assert outer is not None
            assert tighter < outer
            assert current_deadline() == tighter
        assert current_deadline() == outer
    assert current_deadline() is None


@pytest.mark.parametrize("run", RUNNERS)
def test_run_without_its_own_limit_enforces_the_enclosing_deadline(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    def body() -> None:
        with deadline_scope(LIMIT):
            run_with_timeout(sleeper(), None)

    error, elapsed = timed(lambda: run(body))

    assert isinstance(error, AttemptTimeout)
    assert 0.0 < error.timeout_sec <= LIMIT
    assert elapsed < LIMIT + SLACK


@pytest.mark.parametrize("run", RUNNERS)
def test_enclosing_deadline_tighter_than_the_limit_wins(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    def body() -> None:
        with deadline_scope(LIMIT):
            run_with_timeout(sleeper(), 5.0)

    error, elapsed = timed(lambda: run(body))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec <= LIMIT
    assert elapsed < LIMIT + SLACK


var: contextvars.ContextVar[str] = contextvars.ContextVar("test_timeout_var", default="unset")


@pytest.mark.parametrize("run", RUNNERS)
def test_context_variables_reach_the_function(run: Callable[[Callable[[], Any]], Any]) -> None:
    def body() -> str:
        token = var.set("from the caller")
        try:
            return run_with_timeout(var.get, 1.0)
        finally:
            var.reset(token)

    assert run(body) == "from the caller"


@pytest.mark.parametrize("run", RUNNERS)
def test_spans_created_in_func_nest_under_the_callers_span(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    def work() -> None:
        with tracer.start_as_current_span("inside"):
            pass

    def body() -> None:
        with tracer.start_as_current_span("attempt"):
            run_with_timeout(work, 1.0)

    run(body)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    provider.shutdown()

    assert spans["inside"].parent is not None
    assert spans["inside"].parent.span_id == spans["attempt"].context.span_id


def test_func_in_a_worker_runs_in_another_thread_with_the_deadline_set() -> None:
    def probe() -> tuple[str, float | None]:
        return threading.current_thread().name, current_deadline()

    def body() -> tuple[str, float | None, float]:
        name, deadline = run_with_timeout(probe, 1.0)
        return name, deadline, time.monotonic()

    name, deadline, after = in_thread(body)

    assert name.startswith(WORKER_NAME_PREFIX)
    assert deadline is not None
    assert after < deadline <= after + 1.0


# --------------------------------------------------------------------------------------------
# exceptions


class Boom(Exception):
    pass


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize(
    "error",
    [
        pytest.param(Boom("no"), id="own-exception"),
        pytest.param(TimeoutError("the client's own timeout"), id="own-TimeoutError"),
        pytest.param(KeyboardInterrupt(), id="KeyboardInterrupt"),
        pytest.param(SystemExit(3), id="SystemExit"),
    ],
)
def test_exception_from_func_propagates_unchanged(
    run: Callable[[Callable[[], Any]], Any], error: BaseException
) -> None:
    def fail() -> None:
        raise error

    raised, _ = timed(lambda: run(lambda: run_with_timeout(fail, 1.0)))

    assert raised is error
    assert not isinstance(raised, AttemptTimeout)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(Boom("no"), id="own-exception"),
        pytest.param(TimeoutError("the client's own timeout"), id="own-TimeoutError"),
    ],
)
async def test_exception_from_a_coroutine_propagates_unchanged(error: Exception) -> None:
    async def fail() -> None:
        raise error

    with pytest.raises(type(error)) as caught:
        await run_with_timeout_async(fail, 1.0)

    assert caught.value is error
    assert not isinstance(caught.value, AttemptTimeout)


def test_attempt_timeout_survives_pickling() -> None:
    error = AttemptTimeout("Function f timed out after 0.5 seconds", 0.5)

    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, AttemptTimeout)
    assert (str(copy), copy.timeout_sec) == (str(error), 0.5)


# --------------------------------------------------------------------------------------------
# nesting


@pytest.mark.parametrize("run", RUNNERS)
def test_inner_shorter_deadline_fires_first_and_outer_still_fires_later(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    seen: list[str] = []

    def outer_body() -> None:
        try:
            run_with_timeout(sleeper(), LIMIT)
        except AttemptTimeout:
            seen.append("inner timed out")
        time.sleep(LONG)  # the outer limit (2 * LIMIT) must still cut this short

    error, elapsed = timed(lambda: run(lambda: run_with_timeout(outer_body, 2 * LIMIT)))

    assert seen == ["inner timed out"]
    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == 2 * LIMIT
    assert 2 * LIMIT - 0.01 <= elapsed < 2 * LIMIT + SLACK


@pytest.mark.parametrize("run", RUNNERS)
def test_outer_shorter_deadline_fires_through_a_longer_inner_call(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    inner_saw: list[float | None] = []

    def inner() -> str:
        inner_saw.append(remaining_time())
        time.sleep(LONG)
        return "inner finished"

    def outer_body() -> str:
        return run_with_timeout(inner, 5.0)

    error, elapsed = timed(lambda: run(lambda: run_with_timeout(outer_body, LIMIT)))

    assert isinstance(error, TimeoutError)
    assert elapsed < LIMIT + SLACK
    assert inner_saw[0] is not None
    assert inner_saw[0] <= LIMIT  # the inner call saw the outer's tighter deadline


@needs_itimer
def test_outer_deadline_passes_to_the_outer_frame_in_the_main_thread() -> None:
    inner_caught: list[BaseException] = []

    def outer_body() -> None:
        try:
            run_with_timeout(sleeper(), 5.0)
        except AttemptTimeout as exc:  # must not happen: the deadline is the outer's
            inner_caught.append(exc)

    def outer() -> None:
        run_with_timeout(outer_body, LIMIT)

    error, elapsed = timed(outer)

    assert isinstance(error, AttemptTimeout)
    assert str(error) == f"Function outer_body timed out after {LIMIT} seconds"
    assert inner_caught == []
    assert elapsed < LIMIT + SLACK


@needs_itimer
def test_main_thread_call_runs_func_in_the_main_thread_with_our_timer_armed() -> None:
    def probe() -> tuple[bool, float]:
        return (
            threading.current_thread() is threading.main_thread(),
            signal.getitimer(signal.ITIMER_REAL)[0],
        )

    in_main_thread, armed = run_with_timeout(probe, 1.0)

    assert in_main_thread
    assert 0.9 < armed <= 1.0


@needs_itimer
def test_outer_deadline_passed_during_an_inner_cleanup_fires_when_the_inner_call_returns() -> None:
    def inner() -> None:
        try:
            time.sleep(LONG)
        finally:
            time.sleep(LIMIT)  # slow cleanup: the outer deadline passes meanwhile

    def outer_body() -> str:
        with contextlib.suppress(AttemptTimeout):
            run_with_timeout(inner, LIMIT / 2)
        time.sleep(LONG)
        return "outer finished"

    error, elapsed = timed(lambda: run_with_timeout(outer_body, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT
    assert elapsed < LIMIT / 2 + LIMIT + SLACK


@needs_itimer
def test_after_an_inner_call_the_outer_timer_is_rearmed_for_its_remaining_time() -> None:
    def outer_body() -> float:
        run_with_timeout(lambda: None, 0.05)  # inner, shorter, succeeds
        return signal.getitimer(signal.ITIMER_REAL)[0]

    rearmed = run_with_timeout(outer_body, 1.0)

    assert 0.9 < rearmed <= 1.0


# --------------------------------------------------------------------------------------------
# the application's SIGALRM handler and timer (main thread)


@needs_itimer
@pytest.mark.parametrize(
    "func",
    [
        pytest.param(lambda: "done", id="success"),
        pytest.param(sleeper(), id="timeout"),
    ],
)
def test_application_handler_and_timer_are_restored_and_still_fire(
    app_alarm: list[float], func: Callable[[], Any]
) -> None:
    app_timer = 4 * LIMIT
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, app_timer)

    timed(lambda: run_with_timeout(func, LIMIT))

    assert signal.getsignal(signal.SIGALRM).__name__ == "app_handler"
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert app_timer - (time.monotonic() - start) - 0.01 <= left <= app_timer
    assert app_alarm == []
    assert wait_for(lambda: bool(app_alarm), app_timer + SLACK)
    assert app_alarm[0] - start == pytest.approx(app_timer, abs=0.08)


@needs_itimer
def test_application_timer_firing_first_keeps_sigalrm_and_a_worker_runs_the_call(
    app_alarm: list[float],
) -> None:
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, LIMIT)

    def work() -> str:
        time.sleep(2 * LIMIT)
        return threading.current_thread().name

    name = run_with_timeout(work, 1.0)

    assert name.startswith(WORKER_NAME_PREFIX)
    assert len(app_alarm) == 1
    assert app_alarm[0] - start == pytest.approx(LIMIT, abs=0.08)


@needs_itimer
def test_foreign_sigalrm_during_a_call_reaches_the_application_handler(
    app_alarm: list[float],
) -> None:
    def work() -> str:
        signal.raise_signal(signal.SIGALRM)  # e.g. `kill -ALRM <pid>` from outside
        time.sleep(0.01)
        return "finished"

    result = run_with_timeout(work, 1.0)

    assert result == "finished"
    assert len(app_alarm) == 1


@needs_itimer
def test_foreign_sigalrm_with_the_default_disposition_still_terminates_the_process() -> None:
    code = (
        "import signal, time\n"
        "from otel_resilience._timeout import run_with_timeout\n"
        "def work():\n"
        "    signal.raise_signal(signal.SIGALRM)\n"
        "    time.sleep(1)\n"
        "run_with_timeout(work, 5.0)\n"
        "print('survived')\n"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)

    assert done.returncode == -signal.SIGALRM
    assert b"survived" not in done.stdout


@needs_itimer
def test_keyboard_interrupt_from_sigint_leaves_no_timer_behind() -> None:
    def work() -> None:
        signal.raise_signal(signal.SIGINT)
        time.sleep(LONG)

    with pytest.raises(KeyboardInterrupt):
        run_with_timeout(work, 1.0)

    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert left == 0.0 or left > 1.0  # pytest-timeout's timer or none, never our 1 s one


@needs_itimer
def test_application_interval_timer_keeps_its_interval(app_alarm: list[float]) -> None:
    signal.setitimer(signal.ITIMER_REAL, 2.0, 3.0)

    run_with_timeout(lambda: None, LIMIT)

    delay, interval = signal.getitimer(signal.ITIMER_REAL)
    assert interval == pytest.approx(3.0)
    assert 1.9 < delay <= 2.0


@needs_itimer
@pytest.mark.parametrize(
    "func",
    [
        pytest.param(lambda: "done", id="success"),
        pytest.param(sleeper(), id="timeout"),
        pytest.param(functools.partial(int, "x"), id="exception"),
    ],
)
def test_main_thread_call_leaves_no_timer_armed_and_default_handler_back(
    func: Callable[[], Any],
) -> None:
    saved_handler = signal.signal(signal.SIGALRM, signal.SIG_DFL)
    saved_timer = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        timed(lambda: run_with_timeout(func, LIMIT))
        state = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.signal(signal.SIGALRM, saved_handler)
        if saved_timer[0]:
            signal.setitimer(signal.ITIMER_REAL, *saved_timer)

    assert state == (signal.SIG_DFL, (0.0, 0.0))


@needs_itimer
def test_deadline_passing_while_signals_are_blocked_still_ends_as_attempt_timeout() -> None:
    """The signal arrives only after the function returned (the race with a late signal)."""

    def blocked() -> str:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(2 * LIMIT)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        return "returned late"

    error, elapsed = timed(lambda: run_with_timeout(blocked, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < 2 * LIMIT + SLACK


@needs_itimer
def test_when_both_deadlines_passed_the_outer_frame_gets_the_timeout() -> None:
    """Signals held back until both the inner and the outer deadline passed: the outer wins."""

    def blocked() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(2 * LIMIT)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})

    def outer_body() -> None:
        run_with_timeout(blocked, LIMIT / 2)

    error, _ = timed(lambda: run_with_timeout(outer_body, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT
    assert str(error) == f"Function outer_body timed out after {LIMIT} seconds"


@needs_itimer
def test_function_that_swallows_the_interruption_still_ends_as_attempt_timeout() -> None:
    def stubborn() -> str:
        with contextlib.suppress(BaseException):  # a badly behaved function
            time.sleep(LONG)
        return "pretends it finished"

    error, elapsed = timed(lambda: run_with_timeout(stubborn, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < LIMIT + SLACK


@needs_itimer
def test_sigalrm_handler_unknown_to_python_makes_the_main_thread_use_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timeout_module, "_getsignal", lambda signum: None)

    name = run_with_timeout(lambda: threading.current_thread().name, 1.0)

    assert name.startswith(WORKER_NAME_PREFIX)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_forked_child_starts_with_a_fresh_worker_pool_and_no_armed_deadlines() -> None:
    in_thread(lambda: run_with_timeout(lambda: None, 1.0))  # leaves an idle worker here
    assert timeout_module._interrupter.pool.idle == 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: the parent's idle worker does not exist here
        code = 1
        try:
            ok = in_thread(lambda: run_with_timeout(lambda: "ran", 1.0)) == "ran"
            error, _ = timed(lambda: run_with_timeout(sleeper(), 0.05))
            code = 0 if ok and isinstance(error, AttemptTimeout) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0


@needs_itimer
def test_swallowed_inner_interruption_is_delivered_again_before_the_outer_deadline() -> None:
    swallowed: list[BaseException] = []

    def stubborn() -> None:
        try:
            time.sleep(LONG)
        except BaseException as exc:  # swallows the inner deadline
            swallowed.append(exc)
        time.sleep(LONG)  # the inner deadline is delivered again here

    def outer_body() -> None:
        run_with_timeout(stubborn, LIMIT / 2)

    error, elapsed = timed(lambda: run_with_timeout(outer_body, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT / 2
    assert len(swallowed) == 1
    assert isinstance(swallowed[0], TimeoutError)
    assert elapsed < LIMIT / 2 + SLACK


@needs_itimer
def test_outer_deadline_still_fires_on_time_when_the_inner_call_keeps_swallowing() -> None:
    def stubborn() -> None:
        end = time.monotonic() + LONG
        while time.monotonic() < end:
            with contextlib.suppress(BaseException):  # swallows every interruption
                time.sleep(0.001)

    def outer_body() -> None:
        with contextlib.suppress(AttemptTimeout):  # the inner timeout, once stubborn returned
            run_with_timeout(stubborn, LIMIT / 2)
        time.sleep(LONG)  # the outer deadline interrupts this at once

    error, elapsed = timed(lambda: run_with_timeout(outer_body, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT
    assert elapsed < LONG + SLACK


# --------------------------------------------------------------------------------------------
# asyncio


async def test_coroutine_is_cancelled_for_real_on_time() -> None:
    saw: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise
        finally:
            saw.append("finally")

    start = time.monotonic()
    with pytest.raises(AttemptTimeout) as caught:
        await run_with_timeout_async(slow, LIMIT)
    elapsed = time.monotonic() - start

    assert saw == ["cancelled", "finally"]
    assert caught.value.timeout_sec == LIMIT
    assert str(caught.value) == f"Function slow timed out after {LIMIT} seconds"
    assert LIMIT - 0.01 <= elapsed < LIMIT + SLACK
    assert current_deadline() is None


async def test_coroutine_outer_deadline_cancels_through_a_longer_inner_call() -> None:
    async def inner() -> None:
        await asyncio.sleep(LONG)

    async def outer() -> None:
        await run_with_timeout_async(inner, 5.0)

    start = time.monotonic()
    with pytest.raises(AttemptTimeout) as caught:
        await run_with_timeout_async(outer, LIMIT)

    assert caught.value.timeout_sec == LIMIT
    assert time.monotonic() - start < LIMIT + SLACK


async def test_coroutine_without_its_own_limit_is_cancelled_at_the_enclosing_deadline() -> None:
    async def slow() -> None:
        await asyncio.sleep(LONG)

    start = time.monotonic()
    with deadline_scope(LIMIT), pytest.raises(AttemptTimeout):
        await run_with_timeout_async(slow, None)

    assert time.monotonic() - start < LIMIT + SLACK


async def test_coroutine_is_not_started_when_the_deadline_already_passed() -> None:
    started: list[bool] = []

    async def work() -> None:
        started.append(True)

    with deadline_scope(0.001):
        await asyncio.sleep(0.005)
        with pytest.raises(AttemptTimeout, match="deadline had already passed"):
            await run_with_timeout_async(work, 1.0)

    assert started == []


async def test_coroutine_result_is_returned_in_time() -> None:
    async def quick() -> int:
        await asyncio.sleep(0)
        return 7

    assert await run_with_timeout_async(quick, 1.0) == 7
    assert await run_with_timeout_async(quick, None) == 7


# --------------------------------------------------------------------------------------------
# the worker pool


def test_second_call_in_a_thread_reuses_the_idle_worker() -> None:
    def body() -> list[str]:
        names = [run_with_timeout(lambda: threading.current_thread().name, 1.0) for _ in range(3)]
        return names

    names = in_thread(body)

    assert len(set(names)) == 1
    assert len(worker_threads()) == 1


def test_abandoned_worker_returns_to_the_pool_when_its_function_ends() -> None:
    release = threading.Event()

    def body() -> str:
        with pytest.raises(AttemptTimeout):
            run_with_timeout(lambda: release.wait(5), 0.05)
        busy = len(worker_threads())
        release.set()
        assert wait_for(lambda: timeout_module._interrupter.pool.idle == 1, 1.0)
        name = run_with_timeout(lambda: threading.current_thread().name, 1.0)
        return f"{busy} {len(worker_threads())} {name}"

    busy, after, name = in_thread(body).split()

    assert (busy, after) == ("1", "1")
    assert name.startswith(WORKER_NAME_PREFIX)


def test_concurrent_callers_get_their_own_workers() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def body() -> str:
        return run_with_timeout(lambda: (barrier.wait(), threading.current_thread().name)[1], 2.0)

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(body())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    assert len(set(results)) == 3


def test_shutdown_workers_leaves_no_worker_threads() -> None:
    in_thread(lambda: [run_with_timeout(lambda: None, 1.0) for _ in range(2)])
    assert worker_threads()

    shutdown_workers(timeout=1.0)

    assert worker_threads() == []
    assert in_thread(lambda: run_with_timeout(lambda: "works again", 1.0)) == "works again"


def test_shutdown_workers_counts_a_worker_still_busy_and_it_exits_when_done() -> None:
    release = threading.Event()
    in_thread(lambda: timed(lambda: run_with_timeout(lambda: release.wait(5), 0.05)))

    still_running = shutdown_workers(timeout=0.05)
    busy = worker_threads()
    release.set()

    assert still_running >= 1  # (plus any worker other test modules left busy)
    assert len(busy) == 1
    assert wait_for(lambda: not busy[0].is_alive(), 1.0)  # exits instead of going idle
    assert timeout_module._interrupter.pool.idle == 0


def test_idle_worker_exits_after_its_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeout_module, "WORKER_IDLE_SEC", 0.05)

    in_thread(lambda: run_with_timeout(lambda: None, 1.0))

    assert wait_for(lambda: worker_threads() == [], 1.0)
    assert timeout_module._interrupter.pool.idle == 0


# --------------------------------------------------------------------------------------------
# with_timeout: the seed's decorator


def test_with_timeout_raises_the_seeds_message() -> None:
    @with_timeout(LIMIT)
    def slow_scan() -> None:
        time.sleep(LONG)

    with pytest.raises(TimeoutError) as caught:
        slow_scan()

    assert str(caught.value) == f"Function slow_scan timed out after {LIMIT} seconds"


def test_timeout_message_shows_an_integer_limit_as_written() -> None:
    def scan() -> None:
        pass

    # The seed formats the limit as given: "after 1 seconds", not "after 1.0 seconds".
    error = timeout_module._timeout_error(scan, 1, 1)

    assert str(error) == "Function scan timed out after 1 seconds"
    assert error.timeout_sec == 1.0


@pytest.mark.parametrize("run", RUNNERS)
def test_with_timeout_accepts_float_seconds_in_any_thread(
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    """The seed's version: ValueError outside the main thread, TypeError on signal.alarm(0.5)."""

    @with_timeout(0.5)
    def add(a: int, b: int = 0) -> int:
        return a + b

    @with_timeout(0.05)
    def slow() -> None:
        time.sleep(LONG)

    assert run(lambda: add(1, b=2)) == 3
    error, elapsed = timed(lambda: run(slow))
    assert isinstance(error, TimeoutError)
    assert str(error) == "Function slow timed out after 0.05 seconds"
    assert elapsed < 0.05 + SLACK


async def test_with_timeout_on_a_coroutine_function_cancels_it() -> None:
    saw: list[str] = []

    @with_timeout(LIMIT)
    async def fetch(delay: float) -> str:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise
        return "fetched"

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(0) == "fetched"
    with pytest.raises(TimeoutError) as caught:
        await fetch(LONG)
    assert str(caught.value) == f"Function fetch timed out after {LIMIT} seconds"
    assert saw == ["cancelled"]


def test_with_timeout_preserves_the_functions_metadata() -> None:
    def documented(x: int) -> int:
        """Doubles x."""
        return 2 * x

    wrapped = with_timeout(1.0)(documented)

    assert wrapped.__name__ == "documented"
    assert wrapped.__doc__ == "Doubles x."
    assert wrapped.__wrapped__ is documented  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(documented)
    assert wrapped(4) == 8


def test_with_timeout_none_reads_the_configured_default_at_call_time() -> None:
    from otel_resilience import ReliabilityConfig, configure
    from otel_resilience import reset as reset_config

    @otel_resilience.with_timeout()
    def slow() -> None:
        time.sleep(LONG)

    configure(ReliabilityConfig(HTTP_TIMEOUT_SEC=LIMIT))
    try:
        error, elapsed = timed(slow)
    finally:
        reset_config()

    assert isinstance(error, TimeoutError)
    assert str(error) == f"Function slow timed out after {LIMIT} seconds"
    assert elapsed < LIMIT + SLACK


def test_with_timeout_none_falls_back_to_30_seconds_without_a_default_source() -> None:
    from otel_resilience import ReliabilityConfig, configure
    from otel_resilience import reset as reset_config

    @with_timeout()
    def probe() -> float | None:
        return remaining_time()

    configure(ReliabilityConfig(HTTP_TIMEOUT_SEC=LIMIT))  # the deadline module never reads it
    try:
        left = probe()
    finally:
        reset_config()

    assert left is not None
    assert 29.9 < left <= 30.0


def test_with_timeout_none_asks_the_default_source_at_each_call() -> None:
    defaults = [5.0, LIMIT]

    @with_timeout(default_timeout=lambda: defaults.pop(0))
    def slow() -> float | None:
        left = remaining_time()
        time.sleep(LONG)
        return left

    left = slow()
    error, elapsed = timed(slow)

    assert left is not None
    assert 4.9 < left <= 5.0
    assert isinstance(error, AttemptTimeout)
    assert str(error) == f"Function slow timed out after {LIMIT} seconds"
    assert elapsed < LIMIT + SLACK
    assert defaults == []


def test_with_timeout_given_seconds_never_asks_the_default_source() -> None:
    def no_default() -> float:
        raise AssertionError("the default was read although seconds were given")

    @with_timeout(5, default_timeout=no_default)
    def probe() -> float | None:
        return remaining_time()

    left = probe()
    assert left is not None
    assert 4.9 < left <= 5.0


BAD_TIMEOUTS = [
    pytest.param(-1, ValueError, "timeout_sec must be a number of seconds > 0, got -1", id="-1"),
    pytest.param(0, ValueError, "timeout_sec must be a number of seconds > 0, got 0", id="zero"),
    pytest.param(
        -0.5, ValueError, "timeout_sec must be a number of seconds > 0, got -0.5", id="-0.5"
    ),
    pytest.param(
        math.nan, ValueError, "timeout_sec must be a number of seconds > 0, got nan", id="nan"
    ),
    pytest.param(
        math.inf,
        ValueError,
        "timeout_sec must be a finite number of seconds > 0, got inf",
        id="inf",
    ),
    pytest.param(
        "30", TypeError, "timeout_sec must be a number of seconds > 0, got str: '30'", id="str"
    ),
    pytest.param(
        True, TypeError, "timeout_sec must be a number of seconds > 0, got bool: True", id="bool"
    ),
]


@pytest.mark.parametrize(("value", "kind", "message"), BAD_TIMEOUTS)
def test_invalid_timeout_is_rejected_with_a_message_naming_it(
    value: object, kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind) as by_validator:
        validate_timeout("timeout_sec", value)
    with pytest.raises(kind) as by_decorator:
        with_timeout(value)  # type: ignore[arg-type]

    assert str(by_validator.value) == message
    assert str(by_decorator.value) == message


def test_with_timeout_used_without_parentheses_says_how_to_use_it() -> None:
    def scan() -> None:
        pass

    with pytest.raises(TypeError, match=r"write @with_timeout\(30\) or @with_timeout\(\)"):
        with_timeout(scan)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="None"),
        pytest.param(2, 2.0, id="int"),
        pytest.param(0.25, 0.25, id="float"),
    ],
)
def test_valid_timeout_is_returned_as_float_seconds(value: object, expected: float | None) -> None:
    result = validate_timeout("timeout_sec", value)

    assert result == expected
    assert result is None or type(result) is float


# --------------------------------------------------------------------------------------------
# Item 2 of issue 10: the timer can never turn itself off (property test)

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_tiny = st.floats(min_value=1e-6, max_value=1e-3)


def _body(kind: str, seconds: float) -> Callable[[], Any]:
    def body() -> Any:
        if kind == "sleep":
            time.sleep(seconds)
        elif kind == "spin":
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        elif kind == "raise":
            raise KeyError("own")
        elif kind == "swallow":
            with contextlib.suppress(BaseException):
                time.sleep(seconds)
        return kind

    return body


@needs_itimer
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    outer=st.one_of(st.none(), _tiny),
    inner=_tiny,
    deadline=st.one_of(st.none(), _tiny),
    kind=st.sampled_from(["sleep", "spin", "raise", "swallow", "return"]),
    seconds=st.floats(min_value=0.0, max_value=2e-3),
)
@example(outer=None, inner=1e-6, deadline=None, kind="return", seconds=0.0)
@example(outer=None, inner=1e-5, deadline=None, kind="sleep", seconds=1e-3)
@example(outer=1e-6, inner=1e-6, deadline=1e-6, kind="swallow", seconds=1e-3)
def test_no_internal_exception_escapes_and_nothing_is_left_armed(
    outer: float | None, inner: float, deadline: float | None, kind: str, seconds: float
) -> None:
    handler = signal.getsignal(signal.SIGALRM)
    func = _body(kind, seconds)

    def nested() -> Any:
        return run_with_timeout(func, inner)

    def call() -> Any:
        with deadline_scope(deadline):
            if outer is None:
                return nested()
            return run_with_timeout(nested, outer)

    # our timeout, or the function's own exception: nothing else may escape
    with contextlib.suppress(AttemptTimeout, KeyError):
        call()

    assert timeout_module._leftovers() == []
    assert timeout_module._interrupter.stack == []
    assert signal.getsignal(signal.SIGALRM) is handler
    delay, interval = signal.getitimer(signal.ITIMER_REAL)
    assert interval == 0.0
    assert delay == 0.0 or delay > 1.0  # none, or pytest-timeout's own timer


@needs_itimer
def test_after_a_storm_of_tiny_timeouts_a_50_ms_timeout_still_fires_on_time() -> None:
    for index in range(2000):
        with contextlib.suppress(AttemptTimeout):
            run_with_timeout(lambda: None, 1e-6 * (1 + index % 20))
    assert timeout_module._leftovers() == []

    error, elapsed = timed(lambda: run_with_timeout(sleeper(), 0.05))

    assert isinstance(error, AttemptTimeout)
    assert 0.045 < elapsed < 0.05 + SLACK


@needs_itimer
def test_interruption_is_a_timeout_error_so_client_cleanup_runs() -> None:
    cleaned: list[str] = []

    def client() -> None:
        try:
            time.sleep(LONG)
        except TimeoutError:  # the clients' usual "disconnect on timeout" path
            cleaned.append("disconnected")
            raise RuntimeError("client error") from None

    error, elapsed = timed(lambda: run_with_timeout(client, LIMIT))

    assert cleaned == ["disconnected"]
    assert isinstance(error, AttemptTimeout)
    assert isinstance(error.__cause__, RuntimeError)  # the client's own error is the cause
    assert elapsed < LIMIT + SLACK


@needs_itimer
def test_cleanup_of_the_interruption_is_not_cut_by_its_redelivery() -> None:
    steps: list[str] = []

    def client() -> None:
        try:
            time.sleep(LONG)
        except TimeoutError:
            end = time.perf_counter() + 0.004  # cleanup: 20 redelivery ticks long, < grace
            while time.perf_counter() < end:
                pass
            steps.append("cleanup finished")
            raise

    error, _ = timed(lambda: run_with_timeout(client, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert steps == ["cleanup finished"]


@needs_itimer
def test_a_blocking_cleanup_is_cut_after_the_grace_period() -> None:
    def client() -> None:
        try:
            time.sleep(LONG)
        except TimeoutError:
            time.sleep(LONG)  # e.g. a client's retry backoff inside its except block
            raise

    error, elapsed = timed(lambda: run_with_timeout(client, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < LIMIT + SLACK


@needs_itimer
def test_a_swallowed_interruption_in_a_loop_is_redelivered_until_the_function_gives_up() -> None:
    caught: list[BaseException] = []

    def stubborn() -> str:
        for _ in range(3):
            try:
                time.sleep(LONG)
            except TimeoutError as exc:
                caught.append(exc)
        return "late"

    error, elapsed = timed(lambda: run_with_timeout(stubborn, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert len(caught) == 3
    assert elapsed < LIMIT + SLACK


@needs_itimer
def test_interruption_is_held_back_inside_a_registered_unsafe_function() -> None:
    held = LIMIT + timeout_module._HOLD_MAX / 2  # past the deadline, inside the hold cap

    def bookkeeping() -> None:
        end = time.perf_counter() + held
        while time.perf_counter() < end:
            pass

    def client() -> str:
        bookkeeping()  # may not be cut: the deadline is delivered after it
        time.sleep(LONG)
        return "never"

    tree = timeout_module._interrupter.regions.tree
    tree.add(bookkeeping.__code__)  # added, not replaced: entries resolved meanwhile stay
    try:
        error, elapsed = timed(lambda: run_with_timeout(client, LIMIT))
    finally:
        tree.discard(bookkeeping.__code__)

    assert isinstance(error, AttemptTimeout)
    assert held <= elapsed < held + SLACK


@needs_itimer
def test_func_that_is_a_c_function_is_still_interrupted() -> None:
    error, elapsed = timed(lambda: run_with_timeout(functools.partial(time.sleep, LONG), LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < LIMIT + SLACK


@needs_itimer
def test_a_c_function_in_a_longer_inner_call_is_cut_by_the_outer_deadline() -> None:
    def outer_body() -> None:
        run_with_timeout(functools.partial(time.sleep, LONG), 10.0)

    error, elapsed = timed(lambda: run_with_timeout(outer_body, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT
    assert elapsed < LIMIT + SLACK  # it ran the whole sleep before (LONG)


@needs_itimer
def test_keyboard_interrupt_mid_cleanup_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_leave = timeout_module._Interrupter.leave
    calls: list[int] = []

    def leave_cut_once(self: Any, entry: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_leave(self, entry)

    monkeypatch.setattr(timeout_module._Interrupter, "leave", leave_cut_once)

    with pytest.raises(KeyboardInterrupt):
        run_with_timeout(lambda: "done", LIMIT)

    assert timeout_module._leftovers() == []


@needs_itimer
def test_an_entry_left_by_a_call_cut_while_arming_goes_when_the_enclosing_one_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_setitimer = timeout_module._setitimer
    cut: list[object] = []

    def setitimer_cut_once(*args: Any) -> Any:
        if not cut:  # the inner call's entry is pushed, its timer not armed yet
            cut.append(args)
            raise KeyboardInterrupt
        return real_setitimer(*args)

    def outer() -> int:
        monkeypatch.setattr(timeout_module, "_setitimer", setitimer_cut_once)
        try:
            with pytest.raises(KeyboardInterrupt):
                run_with_timeout(lambda: "inner", LIMIT / 2)
        finally:
            monkeypatch.undo()
        return len(timeout_module._interrupter.stack)

    assert run_with_timeout(outer, LIMIT) == 2  # the inner entry stayed above the outer one
    assert cut
    assert timeout_module._interrupter.stack == []
    assert timeout_module._leftovers() == []


# --------------------------------------------------------------------------------------------
# TIMEOUT_MODE


def test_thread_mode_runs_on_a_worker_even_in_the_main_thread() -> None:
    name = run_with_timeout(lambda: threading.current_thread().name, 1.0, "thread")

    assert name.startswith(WORKER_NAME_PREFIX)


def test_cooperative_mode_never_preempts_but_a_late_return_is_a_timeout() -> None:
    seen: list[float | None] = []

    def late() -> str:
        seen.append(remaining_time())
        time.sleep(2 * LIMIT)
        return "late"

    error, elapsed = timed(lambda: run_with_timeout(late, LIMIT, "cooperative"))

    assert isinstance(error, AttemptTimeout)
    assert elapsed >= 2 * LIMIT  # it ran to the end: nothing interrupted it
    assert seen[0] is not None
    assert 0 < seen[0] <= LIMIT
    assert threading.current_thread() is threading.main_thread()


def test_cooperative_mode_turns_a_late_client_error_into_a_timeout_and_keeps_early_ones() -> None:
    def late_error() -> None:
        time.sleep(2 * LIMIT)
        raise ConnectionError("read timed out")

    error, _ = timed(lambda: run_with_timeout(late_error, LIMIT, "cooperative"))
    assert isinstance(error, AttemptTimeout)
    assert isinstance(error.__cause__, ConnectionError)

    with pytest.raises(KeyError):
        run_with_timeout(functools.partial({}.__getitem__, "x"), LIMIT, "cooperative")
    assert run_with_timeout(lambda: "fast", LIMIT, "cooperative") == "fast"


def test_cooperative_mode_lets_a_late_keyboard_interrupt_through_and_restores_the_deadline(
    clock: FakeClock,
) -> None:
    def interrupted_late() -> None:
        clock.advance(2 * LIMIT)  # the deadline passed while the function ran
        raise KeyboardInterrupt

    async def cancelled_late() -> None:
        clock.advance(2 * LIMIT)
        raise asyncio.CancelledError

    with deadline_scope(10.0) as outer:
        with pytest.raises(KeyboardInterrupt):
            run_with_timeout(interrupted_late, LIMIT, "cooperative")
        assert current_deadline() == outer
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(run_with_timeout_async(cancelled_late, LIMIT, "cooperative"))
        assert current_deadline() == outer


def test_unknown_mode_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="interrupt, thread, cooperative, got 'kill'"):
        run_with_timeout(lambda: None, 1.0, "kill")


async def test_async_cooperative_mode_does_not_cancel_but_reports_a_late_result() -> None:
    saw: list[str] = []

    async def late() -> str:
        try:
            await asyncio.sleep(2 * LIMIT)
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise
        return "late"

    with pytest.raises(AttemptTimeout):
        await run_with_timeout_async(late, LIMIT, "cooperative")
    assert saw == []

    async def late_error() -> None:
        await asyncio.sleep(2 * LIMIT)
        raise ConnectionError("late")

    with pytest.raises(AttemptTimeout):
        await run_with_timeout_async(late_error, LIMIT, "cooperative")

    async def early_error() -> None:
        raise KeyError("own")

    with pytest.raises(KeyError):
        await run_with_timeout_async(early_error, LIMIT, "cooperative")

    async def fast() -> str:
        return "fast"

    assert await run_with_timeout_async(fast, LIMIT, "cooperative") == "fast"
    assert await run_with_timeout_async(fast, LIMIT, "thread") == "fast"
    with pytest.raises(ValueError, match="mode must be one of"):
        await run_with_timeout_async(fast, LIMIT, "kill")


def test_timeout_mode_setting_is_validated_and_reaches_the_attempt() -> None:
    import otel_resilience
    from otel_resilience import ConfigError, ReliabilityConfig, resilient_call

    with pytest.raises(ConfigError, match=r"TIMEOUT_MODE='kill'.*interrupt, thread, cooperative"):
        ReliabilityConfig(TIMEOUT_MODE="kill")  # type: ignore[arg-type]
    assert ReliabilityConfig().TIMEOUT_MODE == "interrupt"

    otel_resilience.configure(services={"worker": {"TIMEOUT_MODE": "thread"}})
    name = resilient_call("worker", "op", lambda: threading.current_thread().name, timeout_sec=1)
    assert name.startswith(WORKER_NAME_PREFIX)
    same = resilient_call("other", "op", lambda: threading.current_thread().name, timeout_sec=1)
    assert same == threading.current_thread().name


@needs_itimer
def test_inner_call_cut_by_the_outer_deadline_is_not_the_inner_services_failure() -> None:
    import otel_resilience
    from otel_resilience import ReliabilityError, resilient_call

    def inner() -> None:
        resilient_call("inner", "op", sleeper(), timeout_sec=5, max_retries=1)

    with pytest.raises(ReliabilityError) as caught:
        resilient_call("outer", "op", inner, timeout_sec=LIMIT, max_retries=1)

    assert caught.value.service_name == "outer"
    assert caught.value.error_type.value == "timeout"
    breaker = otel_resilience.get_circuit_breaker_manager().breaker_for("inner", "op")
    assert breaker.failure_count == 0


def test_sqlite_connection_used_on_a_worker_is_a_clear_bad_request_never_retried() -> None:
    import sqlite3

    import otel_resilience
    from otel_resilience import ReliabilityError, resilient_call

    connection = sqlite3.connect(":memory:")
    attempts: list[int] = []

    def query() -> Any:
        attempts.append(1)
        return connection.execute("SELECT 1").fetchone()

    otel_resilience.configure(services={"db": {"TIMEOUT_MODE": "thread"}})
    with pytest.raises(ReliabilityError) as caught:
        resilient_call("db", "select", query, timeout_sec=1, max_retries=3)

    assert caught.value.error_type.value == "bad_request"
    assert "TIMEOUT_MODE=cooperative" in str(caught.value)
    assert attempts == [1]  # not retried
    breaker = otel_resilience.get_circuit_breaker_manager().breaker_for("db", "select")
    assert breaker.failure_count == 0  # not counted

    otel_resilience.configure(services={"db": {"TIMEOUT_MODE": "cooperative"}})
    assert resilient_call("db", "select", query, timeout_sec=1) == (1,)
    connection.close()


def test_other_programming_errors_from_a_worker_pass_unchanged() -> None:
    class ProgrammingError(Exception):
        pass

    def fail() -> None:
        raise ProgrammingError("syntax error")

    with pytest.raises(ProgrammingError):
        run_with_timeout(fail, 1.0, "thread")


@needs_itimer
def test_leftovers_describes_a_stale_entry_our_handler_and_our_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interrupter = timeout_module._interrupter
    assert timeout_module._leftovers() == []
    saved = signal.signal(signal.SIGALRM, interrupter.handler)
    stale = timeout_module._Call(1.0, 1.0, None, "f", None)
    monkeypatch.setattr(interrupter, "stack", [stale])
    signal.setitimer(signal.ITIMER_REAL, 100.0, timeout_module._REDELIVER)
    try:
        found = timeout_module._leftovers()
        monkeypatch.setattr(interrupter, "redelivering", True)
        marked = timeout_module._leftovers()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, saved)
    monkeypatch.setattr(interrupter, "stack", [])

    assert [text.split(" (")[0] for text in found] == [
        "deadline stack entry",
        "our SIGALRM handler is still installed",
        "our redelivery timer is still armed",
    ]
    assert marked[-1].startswith("redelivery timer still marked on")


def test_unsafe_registry_skips_names_a_module_does_not_have(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def outer() -> Callable[[], None]:
        def inner() -> None:
            pass

        return inner

    module = type(sys)("fake_client_module")
    module.outer = outer  # type: ignore[attr-defined]
    regions = timeout_module._Regions(
        {
            "fake_client_module": (
                ("missing", "tree"),
                ("outer.<locals>.absent", "tree"),
                ("outer.<locals>.inner", "guard"),
                ("outer", "safe"),
            ),
            "not_imported_module": (("*", "tree"),),
        }
    )
    regions.resolve()
    assert regions.resolved == set()  # not imported yet: looked up again later
    monkeypatch.setitem(sys.modules, "fake_client_module", module)

    regions.resolve()
    regions.resolve()  # already resolved: nothing changes

    assert regions.resolved == {"fake_client_module"}
    assert regions.tree == set()
    assert regions.files == set()
    assert [c.co_name for c in regions.guard] == ["inner"]
    assert regions.safe == {outer.__code__}


def test_a_client_module_still_being_imported_is_resolved_once_its_import_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client imported lazily inside the call: a held tick while its import runs finds the
    # module in sys.modules before its classes exist. Resolved then, its regions would be
    # missing for good (and its code cut anywhere).
    import importlib.machinery

    module = type(sys)("fake_importing_client")
    module.__spec__ = importlib.machinery.ModuleSpec("fake_importing_client", None)
    module.__spec__._initializing = True  # type: ignore[attr-defined]
    regions = timeout_module._Regions({"fake_importing_client": (("Client.send", "tree"),)})
    monkeypatch.setitem(sys.modules, "fake_importing_client", module)

    regions.resolve()
    assert regions.resolved == set()
    assert regions.looked_at == -1  # looked at again on the next tick, though nothing new
    regions.resolve()
    assert regions.resolved == set()

    class Client:  # the import reaches the class, then ends
        def send(self) -> None:
            pass

    module.Client = Client  # type: ignore[attr-defined]
    module.__spec__._initializing = False  # type: ignore[attr-defined]
    regions.resolve()

    assert regions.resolved == {"fake_importing_client"}
    assert regions.tree == {Client.send.__code__}
    assert regions.looked_at == len(sys.modules)


def test_resolving_again_without_a_new_import_looks_at_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # resolve() runs on every held tick (every 0.2 ms): without a new import it returns at once
    def f() -> None:
        pass

    module = type(sys)("fake_resolved_client")
    module.f = f  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_resolved_client", module)
    regions = timeout_module._Regions({"fake_resolved_client": (("f", "tree"),)})
    regions.resolve()
    assert regions.tree == {f.__code__}

    regions.tree.clear()
    regions.resolved.clear()  # forgotten, but nothing was imported since: not looked up
    regions.resolve()
    assert regions.tree == set()

    monkeypatch.setitem(sys.modules, "fake_unrelated_module", type(sys)("fake_unrelated_module"))
    regions.resolve()  # an import happened: the table is looked at again
    assert regions.tree == {f.__code__}


@needs_itimer
def test_worker_threads_never_take_the_timers_signal() -> None:
    # SIGALRM from the interval timer goes to any thread that does not block it. A worker that
    # took one ran its C handler late, after the main thread's call had left and put the
    # application's handler back: pytest-timeout's handler then fired minutes early in the
    # HTTP soaks ("Timeout (>300.0s)" after 36 s).
    masks: list[set[signal.Signals]] = []

    def blocked_here() -> set[signal.Signals]:
        return signal.pthread_sigmask(signal.SIG_BLOCK, [])

    thread = threading.Thread(target=lambda: masks.append(run_with_timeout(blocked_here, 5.0)))
    thread.start()
    thread.join()

    assert signal.SIGALRM in masks[0]  # ran on a worker of the pool
    assert signal.SIGALRM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # main: not


def _lazy_client_module(name: str, lookup: Callable[[], None]) -> tuple[Any, Callable[[], None]]:
    """A client module whose first table entry is looked up through its ``__getattr__``
    (``lookup`` runs there, inside the handler) and whose second entry is a real function."""

    def real() -> None:
        pass

    module = type(sys)(name)

    def lazy_getattr(attr: str) -> Any:
        lookup()
        raise AttributeError(attr)

    module.__getattr__ = lazy_getattr  # type: ignore[attr-defined]
    module.real = real  # type: ignore[attr-defined]
    return module, real


def _spin() -> str:
    while True:  # a cuttable busy loop: the deadline is delivered here
        pass


@needs_itimer
def test_a_tick_during_the_handler_does_not_run_inside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler took longer than the redelivery interval (a loaded machine, coverage's
    # tracer): the next tick arrived while it was resolving a client's regions. Run inside
    # the handler, that tick raised into the lookup, and the module stayed resolved with its
    # later entries missing: redis-py's connect and logging's locks could then be cut (an
    # unconnected socket lost, a lock held forever), at random, in whole-suite runs.
    module, real = _lazy_client_module(
        "fake_lazy_client", lambda: signal.raise_signal(signal.SIGALRM)
    )
    monkeypatch.setitem(sys.modules, "fake_lazy_client", module)
    table = {"fake_lazy_client": (("lazy", "tree"), ("real", "tree"))}
    monkeypatch.setattr(timeout_module._interrupter, "regions", timeout_module._Regions(table))

    error, elapsed = timed(lambda: run_with_timeout(_spin, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert elapsed < LIMIT + SLACK
    regions = timeout_module._interrupter.regions
    assert regions.resolved == {"fake_lazy_client"}
    assert regions.tree == {real.__code__}  # every entry, though the lookup was ticked
    assert timeout_module._interrupter.active is False
    assert timeout_module._leftovers() == []


@needs_itimer
def test_our_timer_running_out_during_an_applications_handler_is_not_lost() -> None:
    # The handler forwards a signal that is not ours to the application's handler, which runs
    # past our deadline: our timer's one expiry arrives inside it. Nothing repeats that one
    # (redelivery starts when it is handled), so it is raised again once the handler is done.
    ran: list[float] = []

    def app_handler(signum: int, frame: Any) -> None:
        end = time.monotonic() + LIMIT
        while time.monotonic() < end:  # our deadline passes in here
            pass
        ran.append(time.monotonic())

    def client() -> str:
        os.kill(os.getpid(), signal.SIGALRM)  # the application's own signal, not our timer
        time.sleep(LONG)
        return "never"

    previous = signal.signal(signal.SIGALRM, app_handler)
    try:
        error, elapsed = timed(lambda: run_with_timeout(client, LIMIT / 2))
    finally:
        signal.signal(signal.SIGALRM, previous)

    assert isinstance(error, AttemptTimeout)
    assert len(ran) == 1
    assert elapsed < LIMIT + SLACK  # at the end of the application's handler, not after LONG
    assert timeout_module._interrupter.missed is False
    assert timeout_module._leftovers() == []


@needs_itimer
def test_a_lookup_that_raises_in_the_handler_does_not_escape_into_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> None:
        raise RuntimeError("a lazy module's import failed")

    module, real = _lazy_client_module("fake_broken_client", broken)
    monkeypatch.setitem(sys.modules, "fake_broken_client", module)
    table = {"fake_broken_client": (("lazy", "tree"), ("real", "tree"))}
    monkeypatch.setattr(timeout_module._interrupter, "regions", timeout_module._Regions(table))

    error, _ = timed(lambda: run_with_timeout(_spin, LIMIT))

    assert isinstance(error, AttemptTimeout)  # not the RuntimeError, raised into ``_spin``
    assert timeout_module._interrupter.regions.tree == {real.__code__}


def test_unsafe_table_is_read_only_and_covers_the_vendored_httpx_copies() -> None:
    table = timeout_module._UNSAFE

    with pytest.raises(TypeError):
        table["somewhere"] = ()  # type: ignore[index]
    for name, names in table.items():
        if name.startswith(("httpx.", "httpcore.")):
            copy = name.replace("httpx.", "httpx2.", 1).replace("httpcore.", "httpcore2.", 1)
            assert table[copy] == names


@needs_itimer
def test_a_longer_inner_deadline_under_a_passed_outer_one_is_cut_by_the_outer() -> None:
    order: list[str] = []

    def spin_then_inner() -> None:
        end = time.perf_counter() + 2 * LIMIT
        with contextlib.suppress(TimeoutError):  # swallow the outer's first delivery
            while time.perf_counter() < end:
                pass
        order.append("inner call starts after the outer deadline")
        run_with_timeout(lambda: order.append("never runs"), 5.0)

    error, _ = timed(lambda: run_with_timeout(spin_then_inner, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT
    assert order == ["inner call starts after the outer deadline"]


@needs_itimer
def test_a_client_error_in_a_longer_inner_call_becomes_the_outer_timeout() -> None:
    def client() -> None:
        try:
            time.sleep(LONG)
        except TimeoutError:
            raise ConnectionError("client's own error") from None

    error, _ = timed(lambda: run_with_timeout(lambda: run_with_timeout(client, 5.0), LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT
    assert isinstance(error.__cause__, ConnectionError)


@needs_itimer
def test_a_client_error_in_a_shorter_inner_call_after_the_outer_passed_goes_to_the_outer() -> None:
    def client() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(2 * LIMIT)  # both deadlines pass while the signal is held back
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        raise ConnectionError("late client error")

    def outer_body() -> None:
        run_with_timeout(client, LIMIT / 2)

    error, _ = timed(lambda: run_with_timeout(outer_body, LIMIT))

    assert isinstance(error, AttemptTimeout)
    assert error.timeout_sec == LIMIT


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
def test_an_interruption_held_back_by_a_region_that_blocks_is_delivered_after_the_hold_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # warnings' own code is a region never cut (it runs in the middle of anything); a
    # showwarning hook that blocks there must still not make the attempt unbounded
    import warnings

    def blocking_showwarning(*args: object, **kwargs: object) -> None:
        time.sleep(5.0)

    def func() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            monkeypatch.setattr(warnings, "showwarning", blocking_showwarning)
            warnings.warn("slow hook", UserWarning, stacklevel=1)
        return "late"

    started = time.monotonic()
    with pytest.raises(AttemptTimeout):
        run_with_timeout(func, 0.02)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5  # the hold cap (1 s) past a 0.02 s timeout, not the 5 s hook
    assert timeout_module._leftovers() == []


@needs_itimer
def test_the_first_tick_after_a_pause_past_the_hold_cap_still_spares_a_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The process did not run for longer than the hold cap (a loaded machine, a long garbage
    # collection) and resumes in a region that does not block (redis-py between creating a
    # socket and storing it, which lost the socket): held like any tick, delivered right after.
    offset = [0.0]
    monkeypatch.setattr(timeout_module, "_monotonic", lambda: time.monotonic() + offset[0])
    order: list[str] = []

    def region() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # the tick lands here
        order.append("region ran to its end")

    def client() -> str:
        while signal.SIGALRM not in signal.sigpending():  # the timer ran out, not handled yet
            pass
        offset[0] = timeout_module._HOLD_MAX + 0.5  # ... and the process was away this long
        try:
            region()
            time.sleep(LONG)
        finally:
            offset[0] = 0.0
        return "never"

    tree = timeout_module._interrupter.regions.tree
    tree.add(region.__code__)  # added, not replaced: entries resolved meanwhile stay
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # before the timer is armed
    try:
        error, elapsed = timed(lambda: run_with_timeout(client, LIMIT))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        tree.discard(region.__code__)

    assert isinstance(error, AttemptTimeout)
    assert order == ["region ran to its end"]
    assert elapsed < LIMIT + SLACK


# --------------------------------------------------------------------------------------------
# Issue 11: the decisions before a call are written once for sync and async (property test)


def _sync_probe() -> float | None:
    return remaining_time()


async def _async_probe() -> float | None:
    return remaining_time()


_sync_probe.__name__ = _async_probe.__name__ = "probe"  # the error messages name it alike


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    timeout=st.one_of(st.none(), st.integers(1, 1000), st.floats(1.0, 1e6)),
    outer=st.one_of(st.none(), st.floats(-5.0, 0.0), st.floats(1.0, 1e6)),
    mode=st.sampled_from([*timeout_module.MODES, "kill"]),
)
@example(timeout=None, outer=None, mode="interrupt")  # no limit at all: called directly
@example(timeout=5, outer=0.0, mode="thread")  # the enclosing deadline just passed
@example(timeout=5, outer=-1.0, mode="cooperative")
@example(timeout=30, outer=2.5, mode="interrupt")  # the enclosing one is tighter
@example(timeout=None, outer=None, mode="kill")  # a bad mode is refused even without a limit
def test_sync_and_async_take_the_same_decisions(
    clock: FakeClock, timeout: float | None, outer: float | None, mode: str
) -> None:
    def outcome(run: Callable[[], Any]) -> tuple[str, object]:
        try:
            with deadline_scope(outer):
                return "value", run()
        except AttemptTimeout as exc:
            return "timeout", (str(exc), exc.timeout_sec)
        except ValueError as exc:
            return "refused", str(exc)

    sync = outcome(lambda: run_with_timeout(_sync_probe, timeout, mode))
    in_async = outcome(lambda: asyncio.run(run_with_timeout_async(_async_probe, timeout, mode)))

    assert sync == in_async
    limits = [s for s in (timeout, outer) if s is not None]
    if mode == "kill":
        assert sync == ("refused", "mode must be one of interrupt, thread, cooperative, got 'kill'")
    elif limits and min(limits) <= 0.0:
        passed = "Function probe timed out: the deadline had already passed"
        assert sync == ("timeout", (passed, 0.0))
    else:  # the frozen clock: what is left is the tighter limit
        assert sync[0] == "value"
        assert sync[1] == (None if not limits else pytest.approx(min(limits), rel=1e-9))


# --------------------------------------------------------------------------------------------
# The unsafe-region walk against its rule (property test)

_LABELS = ("plain", "tree", "guard", "safe", "star")


def _region_rule(labels: list[str]) -> bool:
    """The rule of ``_UNSAFE``, frames innermost first: held anywhere below a ``"tree"`` call or
    in a module listed with ``"*"``; held inside a ``"guard"`` call unless a ``"safe"`` call is
    nearer the interrupted frame (a call listed as both is safe)."""
    if any(label in ("tree", "star") for label in labels):
        return True
    for label in labels:
        if label in ("safe", "guard"):
            return label == "guard"
    return False


def _regions_chain(labels: list[str]) -> tuple[Any, list[Callable[..., Any]], dict[str, Any]]:
    """Functions ``f0``..``fn`` that call each other in that order, ``fi`` listed in a fake
    client module as ``labels[i]`` (``"star"``: a function of a module listed with ``"*"``), and
    the ``_Regions`` of that table."""
    functions = []
    for index, label in enumerate(labels):
        filename = "/fake/star_client.py" if label == "star" else "/fake/client.py"
        source = (
            f"def f{index}(rest, probe):\n"
            "    if rest:\n"
            "        return rest[0](rest[1:], probe)\n"
            "    return probe()\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, filename, "exec"), namespace)
        functions.append(namespace[f"f{index}"])
    client = type(sys)("fake_walk_client")
    star = type(sys)("fake_walk_star")
    star.__file__ = "/fake/star_client.py"
    entries = []
    for index, (label, function) in enumerate(zip(labels, functions, strict=True)):
        setattr(client, f"f{index}", function)
        if label in ("tree", "guard", "safe"):
            entries.append((f"f{index}", label))
    table = {"fake_walk_client": tuple(entries), "fake_walk_star": (("*", "tree"),)}
    modules = {"fake_walk_client": client, "fake_walk_star": star}
    return timeout_module._Regions(table), functions, modules


@settings(max_examples=200, deadline=None)
@given(labels=st.lists(st.sampled_from(_LABELS), max_size=8))
@example(labels=[])
@example(labels=["guard"])
@example(labels=["guard", "safe"])  # (outermost first) a safe call inside a guarded one: cut
@example(labels=["safe", "guard"])  # a guarded call inside a safe one: held
@example(labels=["tree", "guard", "safe"])  # below a tree call, even a safe island is held
@example(labels=["plain", "star", "safe"])
def test_the_region_walk_holds_exactly_where_the_table_says(labels: list[str]) -> None:
    regions, functions, modules = _regions_chain(labels)
    innermost_first = labels[::-1]  # f0 is the outermost caller

    def probe() -> bool:
        return bool(regions.holds(sys._getframe(1)))

    with mock.patch.dict(sys.modules, modules):
        held = functions[0](functions[1:], probe) if functions else regions.holds(None)

    assert held == _region_rule(innermost_first)
