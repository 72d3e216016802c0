"""Hedging: the first success wins, losers are cancelled (asyncio) or abandoned (threads), the
budget caps hedges, only idempotent calls are hedged; spans and the hedges counter show it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from opentelemetry.trace import StatusCode

from otel_resilience import (
    ConfigError,
    ReliabilityConfig,
    ReliabilityError,
    configure,
    resilient_call,
    resilient_call_async,
)
from support import counter_points

from .helpers import Otel

SLOW = 2.0
HEDGE = {"HEDGE_MAX_EXTRA": 1, "HEDGE_DELAY_SEC": 0.05, "HTTP_TIMEOUT_SEC": 5}


class FirstSlow:
    """The first attempt hangs for SLOW seconds (unless cancelled); later ones answer at once."""

    def __init__(self) -> None:
        self.started = 0
        self.lock = threading.Lock()
        self.first_ended = threading.Event()
        self.first_cancelled = False

    def __call__(self) -> str:
        with self.lock:
            self.started += 1
            number = self.started
        if number == 1:
            time.sleep(SLOW)
            self.first_ended.set()
            return "slow"
        return f"fast {number}"

    async def run_async(self) -> str:
        self.started += 1
        if self.started == 1:
            try:
                await asyncio.sleep(SLOW)
            except asyncio.CancelledError:
                self.first_cancelled = True
                raise
            return "slow"
        return f"fast {self.started}"


def _attempt_spans(otel: Otel) -> list[object]:
    return [s for s in otel.spans() if s.name.endswith(" attempt")]


def test_a_slow_sync_attempt_is_hedged_and_the_hedge_wins(otel: Otel) -> None:
    configure(services={"llm": HEDGE})
    func = FirstSlow()
    start = time.perf_counter()
    assert resilient_call("llm", "chat", func) == "fast 2"
    assert time.perf_counter() - start < SLOW / 2  # did not wait for the slow one
    assert func.started == 2
    assert counter_points(otel.reader, "resilience.hedges") == {
        (("resilience.endpoint", "chat"), ("resilience.service", "llm")): 1
    }
    # the abandoned loser ends on its worker: its span then says "cancelled", not a failure
    assert func.first_ended.wait(SLOW + 2)
    deadline = time.monotonic() + 2
    while len(_attempt_spans(otel)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    by_kind = {s.attributes["resilience.attempt.kind"]: s for s in _attempt_spans(otel)}  # type: ignore[attr-defined]
    assert set(by_kind) == {"primary", "hedge"}
    assert by_kind["hedge"].attributes["resilience.hedge.winner"] is True  # type: ignore[attr-defined]
    loser = by_kind["primary"]
    assert [e.name for e in loser.events] == ["cancelled"]  # type: ignore[attr-defined]
    assert loser.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]


async def test_a_slow_async_attempt_is_hedged_and_the_loser_really_cancelled(otel: Otel) -> None:
    configure(services={"llm": HEDGE})
    func = FirstSlow()
    start = time.perf_counter()
    assert await resilient_call_async("llm", "chat", func.run_async) == "fast 2"
    assert time.perf_counter() - start < SLOW / 2
    await asyncio.sleep(0)  # let the cancellation land
    assert func.first_cancelled
    by_kind = {s.attributes["resilience.attempt.kind"]: s for s in _attempt_spans(otel)}  # type: ignore[attr-defined]
    assert by_kind["hedge"].attributes["resilience.hedge.winner"] is True  # type: ignore[attr-defined]
    assert [e.name for e in by_kind["primary"].events] == ["cancelled"]  # type: ignore[attr-defined]
    assert by_kind["primary"].status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]
    call = otel.span("llm chat")
    assert call.status.status_code is StatusCode.UNSET


async def test_a_fast_call_is_not_hedged(otel: Otel) -> None:
    configure(services={"llm": HEDGE})

    async def quick() -> int:
        return 1

    for _ in range(5):
        assert await resilient_call_async("llm", "chat", quick) == 1
    assert counter_points(otel.reader, "resilience.hedges") == {
        (("resilience.endpoint", "chat"), ("resilience.service", "llm")): 0
    }
    kinds = [s.attributes["resilience.attempt.kind"] for s in _attempt_spans(otel)]  # type: ignore[attr-defined]
    assert kinds == ["primary"] * 5


async def test_a_failing_hedge_is_not_the_calls_failure_while_another_is_in_flight() -> None:
    configure(services={"llm": {**HEDGE, "HEDGE_MAX_EXTRA": 2, "HEDGE_BUDGET_RATIO": 1}})
    started = []

    async def func() -> str:
        started.append(1)
        number = len(started)
        if number == 1:
            await asyncio.sleep(0.3)
            return "primary"
        if number == 2:
            raise ConnectionError("the hedge failed")
        await asyncio.sleep(1)
        return "never"

    assert await resilient_call_async("llm", "chat", func, max_retries=1) == "primary"
    assert len(started) == 3


async def test_non_idempotent_calls_are_never_hedged() -> None:
    configure(services={"llm": HEDGE})
    func = FirstSlow()
    start = time.perf_counter()
    assert await resilient_call_async("llm", "chat", func.run_async, idempotent=False) == "slow"
    assert time.perf_counter() - start >= SLOW * 0.9
    assert func.started == 1


async def test_the_budget_caps_hedges_at_its_share_of_calls(otel: Otel) -> None:
    configure(services={"llm": {**HEDGE, "HEDGE_DELAY_SEC": 0.001, "HEDGE_BUDGET_RATIO": 0.1}})

    async def slowish() -> int:
        await asyncio.sleep(0.01)
        return 1

    for _ in range(100):
        await resilient_call_async("llm", "chat", slowish)
    hedges = counter_points(otel.reader, "resilience.hedges")
    assert 1 <= sum(hedges.values()) <= 11  # 10% of 100 calls (+ the first)


async def test_when_every_attempt_of_a_round_fails_the_call_retries(otel: Otel) -> None:
    configure(services={"llm": {**HEDGE, "HTTP_BACKOFF_BASE_MS": 1}})
    started = []

    async def func() -> str:
        started.append(1)
        if len(started) <= 2:  # the primary and its hedge of round 1
            await asyncio.sleep(0.1 if len(started) == 1 else 0)
            raise ConnectionError("down")
        return "ok"

    assert await resilient_call_async("llm", "chat", func, max_retries=2) == "ok"
    assert len(started) == 3
    numbers = sorted(s.attributes["resilience.attempt"] for s in _attempt_spans(otel))  # type: ignore[attr-defined]
    assert numbers == [1, 1, 2]  # a hedge belongs to its round


async def test_the_percentile_delay_waits_for_enough_successes() -> None:
    configure(
        services={
            "llm": {"HEDGE_MAX_EXTRA": 1, "HEDGE_DELAY_PERCENTILE": 90, "HTTP_TIMEOUT_SEC": 5}
        }
    )
    latency = [0.005]
    started = []

    async def func() -> float:
        started.append(1)
        await asyncio.sleep(latency[0])
        return latency[0]

    for _ in range(25):  # teach it: p90 ~ 5 ms
        await resilient_call_async("llm", "chat", func)
    assert len(started) == 25  # no hedge while learning, none for calls at the usual latency
    latency[0] = 0.5
    start = time.perf_counter()
    await resilient_call_async("llm", "chat", func)
    assert len(started) == 27  # the slow call was hedged after ~p90
    assert time.perf_counter() - start < 0.6


def test_sync_hedging_with_every_branch_refused_reports_circuit_open() -> None:
    configure(services={"llm": {**HEDGE, "CB_FAIL_THRESHOLD": 1}})

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ReliabilityError):
        resilient_call("llm", "chat", down, max_retries=1)
    with pytest.raises(ReliabilityError) as raised:
        resilient_call("llm", "chat", down)
    assert raised.value.error_type.value == "circuit_open"


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (
            {"HEDGE_DELAY_SEC": 1, "HEDGE_DELAY_PERCENTILE": 95},
            ("HEDGE_DELAY_SEC=1", "PERCENTILE=95"),
        ),
        (
            {"HEDGE_DELAY_SEC": 10, "HTTP_TIMEOUT_SEC": 5},
            ("HEDGE_DELAY_SEC=10", "HTTP_TIMEOUT_SEC=5"),
        ),
        ({"HEDGE_MAX_EXTRA": 5}, ("HEDGE_MAX_EXTRA=5", "from 0 to 4")),
    ],
)
def test_hedge_settings_are_checked(settings: dict[str, object], names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as raised:
        ReliabilityConfig(**settings)  # type: ignore[arg-type]
    for name in names:
        assert name in str(raised.value)
