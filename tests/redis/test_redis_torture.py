"""Randomised: resilient calls from threads and event loops while redis-server stops, starts,
restarts and is flushed under them.

After every step: only ``ReliabilityError`` escaped a call. After a recovery: once Redis is
back, a healthy service gets through within ``CB_RESET_SEC`` plus one probe (and a lost probe's
reset period), the store is available again, and the server sees no leaked connections.
Bounded to about 30 s (a few examples of a few steps: each recovery waits out real time).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from redis_support import RedisServer

import otel_resilience
from otel_resilience import (
    CircuitOpenError,
    ReliabilityConfig,
    ReliabilityError,
    _redis,
    get_circuit_breaker_manager,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._redis import get_store

pytestmark = pytest.mark.integration

THREADS = 3
ENDPOINTS = ("charge", "refund")
RESET_SEC = 0.2
COOLDOWN_SEC = 0.2  # the store's cool-down, shortened so that recoveries fit the time budget
TIMEOUT_MS = 100
#: on top of the model's bound, for a loaded 2-core CI host
SLACK_SEC = 1.5

Outcome = str  # "ok" | "fail" | "value_error" | "slow"
OUTCOMES = st.sampled_from(["ok", "ok", "fail", "value_error", "slow"])


def _func(outcome: Outcome) -> Callable[[], str]:
    def call() -> str:
        if outcome == "fail":
            raise ConnectionError("dependency down")
        if outcome == "value_error":
            raise ValueError("bad payload")
        if outcome == "slow":
            time.sleep(0.005)
        return "ok"

    return call


class RedisTorture(RuleBasedStateMachine):
    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        self.server = server
        if not server.running:
            server.start()
        self.admin = server.client()
        self.admin.flushall()
        otel_resilience.reset()
        _redis.close_stores()
        self.config = ReliabilityConfig(
            STATE_BACKEND="redis",
            REDIS_URL=server.url,
            REDIS_TIMEOUT_MS=TIMEOUT_MS,
            HTTP_RETRIES=2,
            HTTP_BACKOFF_BASE_MS=1,
            HTTP_TIMEOUT_SEC=5,
            CB_FAIL_THRESHOLD=3,
            CB_RESET_SEC=RESET_SEC,
            RATE_LIMIT="10000/second",
        )
        otel_resilience.configure(self.config)
        self.store = get_store(server.url, TIMEOUT_MS)
        self.store.cooldown_sec = COOLDOWN_SEC
        self.escaped: list[BaseException] = []

    def teardown(self) -> None:
        if not self.server.running:
            self.server.start()
        self.admin.close()
        _redis.close_stores()
        otel_resilience.reset()

    # --- what the application does --------------------------------------------------------------

    def _call(self, outcome: Outcome, endpoint: str) -> None:
        try:
            resilient_call("payments", endpoint, _func(outcome))
        except ReliabilityError:
            pass
        except BaseException as exc:
            self.escaped.append(exc)

    @rule(
        outcomes=st.lists(st.lists(OUTCOMES, min_size=1, max_size=8), min_size=1, max_size=THREADS),
        endpoint=st.sampled_from(ENDPOINTS),
    )
    def calls_from_threads(self, outcomes: list[list[Outcome]], endpoint: str) -> None:
        threads = [
            threading.Thread(target=lambda seq=seq: [self._call(o, endpoint) for o in seq])
            for seq in outcomes
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @rule(outcomes=st.lists(OUTCOMES, min_size=1, max_size=12))
    def calls_in_a_short_lived_event_loop(self, outcomes: list[Outcome]) -> None:
        async def one(outcome: Outcome) -> None:
            async def call() -> str:
                await asyncio.sleep(0)
                return _func(outcome)()

            try:
                await resilient_call_async("payments", "charge", call)
            except ReliabilityError:
                pass
            except BaseException as exc:
                self.escaped.append(exc)

        async def main() -> None:
            await asyncio.gather(*(one(o) for o in outcomes))

        asyncio.run(main())
        assert self.store.loop_clients == 0  # closed when the loop shut down

    # --- what happens to Redis -------------------------------------------------------------------

    @rule()
    def stop_redis(self) -> None:
        if self.server.running:
            self.admin.close()
            self.server.stop()

    @rule()
    def start_redis(self) -> None:
        if not self.server.running:
            self.server.start()
            self.admin = self.server.client()

    @rule()
    def restart_redis(self) -> None:
        was_open = self._open_mirrors()
        self.stop_redis()
        self.start_redis()
        self._written_back(was_open)

    @rule()
    def flush_redis(self) -> None:
        if self.server.running:
            was_open = self._open_mirrors()
            self.admin.flushall()
            self._written_back(was_open)

    def _open_mirrors(self) -> list[Any]:
        """Breakers of this process that know the circuit is open for a while yet."""
        manager = get_circuit_breaker_manager()
        found = []
        for endpoint in ENDPOINTS:
            breaker = manager.get_breaker("payments", endpoint)
            status = breaker.status()
            if status.state == "open" and (status.seconds_until_probe or 0) > 0.1:
                found.append(breaker)
        return [] if self.store.in_outage else found

    def _written_back(self, breakers: list[Any]) -> None:
        """Redis lost the open circuits: the next round trip of their process restores them."""
        for breaker in breakers:
            breaker.sync()
            if not self.store.in_outage:  # (a restart may have failed the round trip)
                assert self.admin.hget(breaker.backend.key, "s") in (b"1", b"2")

    @rule(endpoint=st.sampled_from(ENDPOINTS))
    def recover(self, endpoint: str) -> None:
        """Redis back, the dependency healthy: calls get through in bounded time."""
        self.start_redis()
        # the model: a cool-down before Redis is tried again, a reset period before the
        # probe, and one more if a probe's permit was lost with the server
        deadline = time.monotonic() + COOLDOWN_SEC + 2 * RESET_SEC + SLACK_SEC
        reached = 0

        def healthy() -> str:
            nonlocal reached
            reached += 1
            return "ok"

        while True:
            try:
                assert resilient_call("payments", endpoint, healthy) == "ok"
                break
            except CircuitOpenError:
                assert time.monotonic() < deadline, "a healthy service stayed rejected"
                time.sleep(0.01)
        assert reached == 1  # the first call admitted was the one that got through
        assert resilient_call("payments", endpoint, healthy) == "ok"  # closed now
        assert self._store_recovers()
        self._no_leaked_connections()

    def _store_recovers(self) -> bool:
        deadline = time.monotonic() + COOLDOWN_SEC + SLACK_SEC
        while self.store.in_outage:
            if time.monotonic() > deadline:
                return False
            self.store.run("return 1", ("torture",), ())  # what the next call would do
            time.sleep(0.01)
        return self.store.available()

    def _no_leaked_connections(self) -> None:
        info = self.admin.info("clients")
        # the sync pool holds at most one connection per thread that used Redis at once, and
        # every event loop's client was closed with its loop; +1: this admin connection
        assert int(info["connected_clients"]) <= THREADS + 1 + 1

    @invariant()
    def only_reliability_errors_escape(self) -> None:
        assert self.escaped == [], self.escaped


def test_calls_survive_redis_stopping_restarting_and_flushing(redis_server: RedisServer) -> None:
    run_state_machine_as_test(
        lambda: RedisTorture(redis_server),
        settings=settings(
            max_examples=35,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
