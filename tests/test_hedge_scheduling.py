"""How hedges are scheduled: the asyncio rounds' shared timer (every hedge launched once, on
time, in fixed and percentile mode, with the loop firing timers early by its resolution), the
budget's count of calls, hedged sync rounds that never wait for a worker held by an abandoned
loser, and hedging across many event loops without keeping any of them alive."""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import otel_resilience
from otel_resilience import configure, resilient_call, resilient_call_async
from otel_resilience._budget import RetryBudget
from otel_resilience._hedging import HedgeTimer
from otel_resilience.testing import FakeClock

RESOLUTION = 0.001


class FakeLoop:
    """``time()`` and ``call_at()`` of an event loop on a fake clock; runs a timer up to its
    clock's resolution early, as asyncio's loop does."""

    def __init__(self) -> None:
        self.now = 0.0
        self._handles: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._handles, (when, next(self._order), callback, args))

    def run_next(self, early: float) -> bool:
        if not self._handles:
            return False
        when, _, callback, args = heapq.heappop(self._handles)
        self.now = max(self.now, when - early)
        callback(*args)
        return True


class Round:
    def __init__(self, loop: FakeLoop, timer: HedgeTimer, delay: float, extra: int) -> None:
        self.loop, self.timer, self.delay, self.extra = loop, timer, delay, extra
        self.due = [loop.now + delay]
        self.launched: list[float] = []
        self.ended = False

    def launch(self) -> None:
        if self.ended:  # as _Hedges: a round that ended starts no hedge
            return
        self.launched.append(self.loop.now)
        if len(self.launched) <= self.extra:  # a further hedge of this round
            self.due.append(self.loop.now + self.delay)
            self.timer.after(self.loop, self.delay, self)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    fixed=st.booleans(),
    starts=st.lists(
        st.tuples(
            st.floats(0, 0.2),  # time since the previous round started
            st.floats(0.0001, 0.5),  # its delay (ignored in fixed mode)
            st.integers(0, 3),  # further hedges it asks for
            st.booleans(),  # it ends (answered) before the next round starts
        ),
        min_size=1,
        max_size=40,
    ),
    early=st.floats(0, RESOLUTION),
)
@example(fixed=False, starts=[(0.0, 0.5, 0, False), (0.0, 0.1, 0, False)], early=0.0)
@example(fixed=True, starts=[(0.0, 0.1, 0, False), (0.0, 0.1, 0, False)], early=RESOLUTION)
@example(fixed=True, starts=[(0.0, 0.1, 0, False), (0.0, 0.1, 0, True)], early=0.0)
def test_every_hedge_is_launched_once_and_on_time(
    fixed: bool, starts: list[tuple[float, float, int, bool]], early: float
) -> None:
    """Every round that did not end is launched once per hedge it asks for, never before its
    due time less the loop's resolution and never after it; a round that ended is forgotten
    without dropping another's entry."""
    loop, timer = FakeLoop(), HedgeTimer(fixed)
    rounds: list[Round] = []
    for gap, delay, extra, ends in starts:
        # rounds start between the loop's timers, as calls do
        while loop._handles and loop._handles[0][0] - early <= loop.now + gap:
            loop.run_next(early)
        loop.now += gap
        round_ = Round(loop, timer, 0.1 if fixed else delay, extra)
        timer.after(loop, round_.delay, round_)  # type: ignore[arg-type]
        if ends:
            round_.ended = True
            timer.forget(round_)  # type: ignore[arg-type]
        rounds.append(round_)
    while loop.run_next(early):
        pass
    for round_ in rounds:
        if round_.ended:
            assert round_.launched == []
            continue
        assert len(round_.launched) == len(round_.due) == round_.extra + 1
        for due, launched in zip(round_.due, round_.launched, strict=True):
            assert due - early - 1e-9 <= launched <= due + 1e-9
    assert len(timer) == 0


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.floats(0, 4)),
            st.tuples(st.just("call"), st.integers(1, 20)),
            st.tuples(st.just("retry"), st.integers(1, 5)),
        ),
        max_size=40,
    )
)
@example(steps=[("call", 10), ("advance", 10.5), ("retry", 5)])
def test_the_budget_grants_what_a_per_second_model_grants(
    steps: list[tuple[str, float]],
) -> None:
    """The lock-free count of calls on the success path loses nothing single-threaded: the
    budget grants exactly what a model of per-second buckets over the window grants."""
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.5, min_per_sec=0.1, window_sec=10, clock=clock.monotonic)
    calls: list[float] = []
    retries: list[float] = []
    for kind, amount in steps:
        if kind == "advance":
            clock.advance(amount)
            continue
        for _ in range(int(amount)):
            now = clock.monotonic()
            if kind == "call":
                budget.record_call()
                calls.append(now)
                continue

            def recent(times: list[float], now: float = now) -> int:
                return sum(1 for t in times if int(t) + 1 > now - 10)

            allowed = 0.5 * recent(calls) + 0.1 * 10
            expected = recent(retries) + 1 <= allowed
            assert budget.try_retry() is expected
            if expected:
                retries.append(now)


def test_hedged_sync_calls_never_wait_for_workers_held_by_abandoned_losers() -> None:
    """100 concurrent hedged calls whose first attempts hang: every hedge starts on time (a
    bounded pool of 64 workers made the later ones wait out a loser first)."""
    configure(
        services={
            "slow": {
                "HEDGE_MAX_EXTRA": 1,
                "HEDGE_DELAY_SEC": 0.05,
                "HEDGE_BUDGET_RATIO": 1,
                "HTTP_TIMEOUT_SEC": 5,
            }
        }
    )
    release = threading.Event()
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def work(n: int) -> str:
        with lock:
            seen[n] = seen.get(n, 0) + 1
            first = seen[n] == 1
        if first:
            release.wait(10)  # the first attempt hangs until the end of the test
            return "slow"
        return "fast"

    results: list[tuple[str, float]] = []

    def caller(n: int) -> None:
        start = time.perf_counter()
        value = resilient_call("slow", "op", lambda: work(n))
        with lock:
            results.append((value, time.perf_counter() - start))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(100)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    finally:
        release.set()
    assert len(results) == 100
    assert {value for value, _ in results} == {"fast"}
    assert max(seconds for _, seconds in results) < 2.0
    assert seen == dict.fromkeys(range(100), 2)  # one primary, one hedge per call


def test_hedging_on_many_event_loops_keeps_none_of_them_alive() -> None:
    configure(
        services={
            "llm": {
                "HEDGE_MAX_EXTRA": 1,
                "HEDGE_DELAY_SEC": 0.01,
                "HEDGE_BUDGET_RATIO": 1,
                "HTTP_TIMEOUT_SEC": 5,
            }
        }
    )

    async def one_call() -> str:
        started = 0

        async def work() -> str:
            nonlocal started
            started += 1
            if started == 1:
                await asyncio.sleep(5)  # the first attempt is slow: the hedge wins
                return "slow"
            return "fast"

        return await resilient_call_async("llm", "chat", work)

    answers = [asyncio.run(one_call()) for _ in range(60)]
    assert answers == ["fast"] * 60
    gc.collect()
    policy = otel_resilience.default_runtime().service("llm").hedging
    assert policy is not None
    assert len(policy._timers) == 0  # every loop is gone, and its timer with it
