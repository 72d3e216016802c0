"""Adaptive rate per service (``RATE_LIMIT_MODE=adaptive``): CUBIC, headers, calls end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_resilience
from otel_resilience import (
    ExternalServiceError,
    ReliabilityError,
    ThrottledError,
    configure,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._adaptive_rate import (
    MIN_RATE,
    AdaptiveRate,
    Cubic,
    RateClocker,
    parse_rate_headers,
)
from otel_resilience._load import LoadControl
from support import FakeClock, counter_points

E = ExternalServiceError


class TooManyRequests(Exception):
    """What an HTTP client raises for a 429 (the mapper reads the status and the headers)."""

    status_code = 429

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("429 Too Many Requests")
        self.headers = headers


def _throttle(headers: dict[str, str] | None = None, retry_after: float | None = None) -> Any:
    error = ReliabilityError(E.RATE_LIMIT, "s", "e", retry_after=retry_after)
    error.__cause__ = TooManyRequests(headers or {})
    return error


def _rate(clock: FakeClock, ceiling: float | None = None) -> AdaptiveRate:
    return AdaptiveRate("s", ceiling, clock=clock, wall=lambda: 1_800_000_000.0, sleep=clock.sleep)


# --- the pieces ----------------------------------------------------------------------------------


def test_cubic_cuts_to_70_percent_then_climbs_back_to_the_throttled_rate() -> None:
    cubic = Cubic(0.0, 0.0)
    assert cubic.throttled(50.0, 10.0) == pytest.approx(35.0)
    k = (50 * 0.3 / 0.4) ** (1 / 3)
    assert cubic.success(10.0) == pytest.approx(35.0)
    assert cubic.success(10.0 + k) == pytest.approx(50.0)
    assert cubic.success(10.0 + k + 2) > 50.0  # past w_max: probing above it


def test_rate_clocker_measures_the_sending_rate_in_half_second_buckets() -> None:
    clocker = RateClocker(0.0)
    for index in range(100):
        clocker.record(index * 0.01)  # 100/s for one second
    assert 60 < clocker.record(1.0) <= 100


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"RateLimit-Policy": "100;w=60"}, (100 / 60, None)),
        ({"RateLimit-Policy": '"default";q=10;w=1'}, (10.0, None)),
        ({"RateLimit": "limit=10, remaining=0, reset=2"}, (None, 2.0)),
        ({"RateLimit": "limit=10, remaining=0, reset=2;w=5"}, (2.0, 2.0)),
        ({"RateLimit": '"default";r=0;t=3'}, (None, 3.0)),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "7"}, (None, 7.0)),
        ({"RateLimit-Remaining": "3", "RateLimit-Reset": "7"}, (None, None)),
        (
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms"},
            (None, 0.02),
        ),
        (
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m3.5s"},
            (None, 123.5),
        ),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000030"}, (None, 30.0)),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}, (None, None)),
        ({"x-ratelimit-remaining": "none", "x-ratelimit-reset": "5"}, (None, None)),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999"}, (None, 3600.0)),
        ({"RateLimit-Policy": "garbage"}, (None, None)),
        ({}, (None, None)),
        # numbers with two dots are no numbers (they used to raise ValueError)
        ({"RateLimit-Policy": "100;w=1.2.3"}, (None, None)),
        ({"RateLimit": "limit=1..0, remaining=0, reset=2;w=1"}, (None, 2.0)),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.2.3s"}, (None, None)),
        ({"RateLimit-Policy": "q=.5;w=5."}, (0.1, None)),  # what float() reads still counts
    ],
)
def test_rate_limit_headers(headers: dict[str, str], expected: tuple[Any, Any]) -> None:
    ceiling, pause = parse_rate_headers(headers, now_wall=1_800_000_000.0)
    assert (ceiling, pause) == (
        pytest.approx(expected[0]) if expected[0] is not None else None,
        pytest.approx(expected[1]) if expected[1] is not None else None,
    )


def test_no_headers_object_says_nothing() -> None:
    assert parse_rate_headers(None) == (None, None)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "RateLimit",
                "RateLimit-Policy",
                "RateLimit-Reset",
                "RateLimit-Remaining",
                "x-ratelimit-reset",
                "x-ratelimit-remaining",
            ]
        ),
        st.text(max_size=30),
    )
)
def test_any_header_text_gives_a_finite_ceiling_and_pause_or_none(headers: dict[str, str]) -> None:
    ceiling, pause = parse_rate_headers(headers, now_wall=1_800_000_000.0)
    assert ceiling is None or ceiling >= 0
    assert pause is None or 0 < pause <= 3600


_HEADER_NAMES = st.sampled_from(
    ["RateLimit", "RateLimit-Policy", "RateLimit-Reset", "RateLimit-Remaining", "x-ratelimit-reset"]
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        _HEADER_NAMES,
        st.lists(
            st.sampled_from(["0", "1", "60", ".", "..", "w=", "q=", "limit=", "r=", "t=", ";", ","])
            | st.sampled_from(["remaining=", "reset=", "h", "m", "s", "ms", " "]),
            max_size=8,
        ).map("".join),
    )
)
@example({"RateLimit-Policy": "1;w=1.2"})
@example({"RateLimit-Policy": "1;w=1..2"})
@example({"RateLimit": "limit=1..0;w=1"})
@example({"RateLimit-Remaining": "0", "RateLimit-Reset": "1..s"})
def test_header_shaped_text_never_raises(headers: dict[str, str]) -> None:
    ceiling, pause = parse_rate_headers(headers, now_wall=1_800_000_000.0)
    assert ceiling is None or ceiling >= 0
    assert pause is None or 0 < pause <= 3600


# --- the bucket ----------------------------------------------------------------------------------


def test_nothing_is_limited_until_the_first_throttle() -> None:
    clock = FakeClock()
    rate = _rate(clock)
    assert all(rate.acquire(0.0) for _ in range(1000))
    rate.on_attempt(None)
    assert not rate.enabled
    assert "unlimited" in repr(rate)


def test_a_throttle_turns_the_bucket_on_at_70_percent_of_the_measured_rate() -> None:
    clock = FakeClock(0.0)
    rate = _rate(clock)
    for _ in range(200):  # 100/s for 2 s
        assert rate.acquire(0.0)
        rate.on_attempt(None)
        clock.advance(0.01)
    rate.on_attempt(_throttle())
    assert rate.enabled
    assert rate.throttles == 1
    assert 60 < rate.rate < 71  # 0.7 x ~100/s
    assert rate.acquire(0.0) is False  # the bucket starts empty: fail fast
    clock.advance(1.0)
    taken = sum(rate.acquire(0.0) for _ in range(200))
    assert taken == int(rate.rate)  # a second's worth of tokens, not more


def test_an_acquire_waits_for_a_token_up_to_its_max_wait() -> None:
    clock = FakeClock(0.0)
    rate = _rate(clock)
    rate.on_attempt(_throttle())  # one attempt in the first half second: 2/s measured
    assert rate.rate == pytest.approx(1.4)
    assert rate.acquire(0.5) is False  # the next token is 1/1.4 s away
    assert clock.sleeps == []  # it did not sleep for nothing
    assert rate.acquire(3.0) is True
    assert sum(clock.sleeps) == pytest.approx(1 / 1.4)
    assert rate.rate >= MIN_RATE


def test_retry_after_pauses_every_attempt_until_then() -> None:
    clock = FakeClock(0.0)
    rate = _rate(clock)
    rate.on_attempt(_throttle(retry_after=5.0))
    assert rate.acquire(1.0) is False
    assert rate.acquire(10.0) is True
    assert clock.now >= 5.0


def test_a_policy_header_caps_the_rate_and_remaining_zero_pauses() -> None:
    clock = FakeClock(0.0)
    rate = _rate(clock, ceiling=50.0)
    for _ in range(400):
        rate.on_attempt(None)
        clock.advance(0.005)  # 200/s
    rate.on_attempt(_throttle({"RateLimit-Policy": "20;w=1"}))
    assert rate.rate == 20.0  # under 0.7 x 200 and under the ceiling of 50
    for _ in range(4000):
        clock.advance(0.005)
        rate.on_attempt(None)
    assert rate.rate == 20.0  # CUBIC climbs, the policy holds it
    rate.on_attempt(
        _throttle({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"})
    )
    assert rate.acquire(10.0) is False


def test_the_rate_never_exceeds_twice_the_measured_rate() -> None:
    clock = FakeClock(0.0)
    rate = _rate(clock)
    for _ in range(100):
        rate.on_attempt(None)
        clock.advance(0.01)
    rate.on_attempt(_throttle())
    for _ in range(100):  # a quiet spell: 2 calls/s for 50 s
        clock.advance(0.5)
        rate.on_attempt(None)
    assert rate.rate <= 2 * 2.0 + 1e-9


def test_an_async_acquire_waits_on_the_event_loop() -> None:
    clock = FakeClock(0.0)
    rate = AdaptiveRate("s", clock=clock, sleep=clock.sleep, sleep_async=clock.sleep_async)
    rate.on_attempt(_throttle())

    async def main() -> tuple[bool, bool]:
        return await rate.acquire_async(0.5), await rate.acquire_async(3.0)

    assert asyncio.run(main()) == (False, True)


# --- resilient_call end to end: a quota stand-in on a fake clock ---------------------------------


class QuotaStandIn:
    """A service with a hidden rate (a token bucket of ``rate``/s, burst ``burst``) that answers
    429 + ``Retry-After`` (seconds until its next token) beyond it. Each request takes
    ``latency`` of fake time."""

    def __init__(self, clock: FakeClock, rate: float, burst: float = 5, latency: float = 0.002):
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = clock.now
        self.latency = latency
        self.log: list[tuple[float, bool]] = []  # (time, accepted)

    def __call__(self) -> str:
        self.clock.advance(self.latency)
        now = self.clock.now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.log.append((now, True))
            return "ok"
        self.log.append((now, False))
        wait = (1 - self.tokens) / self.rate
        raise TooManyRequests({"Retry-After": f"{wait:.3f}"})

    def window(self, start: float, end: float) -> tuple[float, float]:
        """(accepted requests per second, share of 429s) between two fake times."""
        inside = [ok for when, ok in self.log if start <= when < end]
        accepted = sum(inside)
        return accepted / (end - start), (len(inside) - accepted) / max(1, len(inside))


@pytest.fixture
def fake_load() -> Iterator[FakeClock]:
    """An isolated runtime whose backoff, breakers and learnt rates run on a fake clock."""
    clock = FakeClock(0.0)
    shared = otel_resilience.default_runtime().telemetry
    runtime = otel_resilience.Runtime(clock=clock, telemetry=shared)
    runtime.load = LoadControl(
        clock=clock,
        wall=lambda: 1_800_000_000.0 + clock.now,
        sleep=clock.sleep,
        sleep_async=clock.sleep_async,
    )
    with otel_resilience.use_runtime(runtime):
        yield clock


def test_the_adaptive_rate_converges_on_a_hidden_quota(
    fake_load: FakeClock, metric_reader: InMemoryMetricReader
) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive", "RATE_LIMIT_MAX_WAIT_SEC": 1.0}})
    server = QuotaStandIn(fake_load, rate=50.0)
    outcomes = {"ok": 0, "rate_limit": 0, "throttled": 0}
    while fake_load.now < 30.0:
        try:
            resilient_call("llm", "chat", server, max_retries=1)
            outcomes["ok"] += 1
        except ReliabilityError as error:
            outcomes[error.error_type.value] += 1
            if error.error_type is E.THROTTLED:
                fake_load.advance(0.05)  # the caller does something else for a while
    accepted, share_429 = server.window(10.0, 30.0)
    assert 50 * 0.85 <= accepted <= 50 * 1.15, (accepted, outcomes)
    assert share_429 < 0.05, (share_429, outcomes)
    limiter = otel_resilience.default_runtime().service("llm").gate
    assert limiter is not None
    assert limiter.rate is not None
    assert 50 * 0.6 <= limiter.rate.rate <= 50 * 1.3


def test_a_caller_that_cannot_wait_fails_fast_as_throttled(
    fake_load: FakeClock, metric_reader: InMemoryMetricReader
) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive"}})
    server = QuotaStandIn(fake_load, rate=5.0, burst=1)
    resilient_call("llm", "chat", server, max_retries=1)  # the burst of 1
    with pytest.raises(ReliabilityError, match="rate_limit"):
        resilient_call("llm", "chat", server, max_retries=1)  # a 429: the rate is learnt
    calls_before = len(server.log)
    with pytest.raises(ThrottledError, match="adaptive rate") as caught:
        resilient_call("llm", "chat", server, max_retries=3)
    assert caught.value.attempts == 0
    assert caught.value.error_type is E.THROTTLED
    assert len(server.log) == calls_before  # nothing was sent
    assert fake_load.sleeps == []
    rejections = counter_points(metric_reader, "resilience.rate_limiter.rejections")
    assert sum(rejections.values()) == 1


def test_a_retry_waits_for_the_learnt_rate_and_retry_after(fake_load: FakeClock) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive", "RATE_LIMIT_MAX_WAIT_SEC": 10}})
    answers = [TooManyRequests({"Retry-After": "3"}), "ok"]

    def func() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    start = fake_load.now
    assert resilient_call("llm", "chat", func, max_retries=2) == "ok"
    assert fake_load.now - start >= 3.0  # the retry went out after the Retry-After pause


def test_the_adaptive_rate_in_asyncio(fake_load: FakeClock) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive", "RATE_LIMIT_MAX_WAIT_SEC": 1.0}})
    server = QuotaStandIn(fake_load, rate=20.0)

    async def call() -> str:
        return server()

    async def main() -> dict[str, int]:
        outcomes: dict[str, int] = {}
        while fake_load.now < 20.0:
            try:
                await resilient_call_async("llm", "chat", call, max_retries=1)
                key = "ok"
            except ReliabilityError as error:
                key = error.error_type.value
                if error.error_type is E.THROTTLED:
                    fake_load.advance(0.05)
            outcomes[key] = outcomes.get(key, 0) + 1
        return outcomes

    outcomes = asyncio.run(main())
    accepted, share_429 = server.window(10.0, 20.0)
    assert 20 * 0.8 <= accepted <= 20 * 1.2, (accepted, outcomes)
    assert share_429 < 0.1


def test_rate_limit_is_the_ceiling_of_the_learnt_rate(fake_load: FakeClock) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive", "RATE_LIMIT": "10/second"}})
    gate = otel_resilience.default_runtime().service("llm").gate
    assert gate is not None
    assert gate.rate is not None
    assert gate.rate.ceiling == 10.0
    assert gate.limiter is None  # no concurrency limit configured


def test_the_learnt_rate_survives_a_change_of_other_settings(fake_load: FakeClock) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive"}})
    first = otel_resilience.default_runtime().service("llm").gate
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive", "CONCURRENCY_LIMIT": 3}})
    second = otel_resilience.default_runtime().service("llm").gate
    assert first is not None
    assert second is not None
    assert second.rate is first.rate
    assert second.limiter is not None


def test_headers_as_bytes_and_errors_without_headers() -> None:
    assert parse_rate_headers({"RateLimit-Policy": b"10;w=2"}) == (5.0, None)
    clock = FakeClock(0.0)
    rate = _rate(clock)
    bare = ReliabilityError(E.RATE_LIMIT, "s", "e")  # no cause: nothing to read
    rate.on_attempt(bare)
    plain = ReliabilityError(E.SERVER_ERROR, "s", "e")
    plain.__cause__ = ValueError("no headers here")
    rate.on_attempt(plain)
    assert rate.throttles == 1


def test_an_asyncio_caller_that_cannot_wait_fails_fast_as_throttled(fake_load: FakeClock) -> None:
    configure(services={"llm": {"RATE_LIMIT_MODE": "adaptive"}})
    server = QuotaStandIn(fake_load, rate=5.0, burst=1)

    async def call() -> str:
        return server()

    async def main() -> None:
        await resilient_call_async("llm", "chat", call, max_retries=1)
        with pytest.raises(ReliabilityError, match="rate_limit"):
            await resilient_call_async("llm", "chat", call, max_retries=1)
        with pytest.raises(ThrottledError):
            await resilient_call_async("llm", "chat", call, max_retries=1)

    asyncio.run(main())
    assert len(server.log) == 2


def test_throttles_of_attempts_sent_before_the_last_cut_do_not_cut_again() -> None:
    clock = FakeClock(0.0)
    rate = _rate(clock)
    for _ in range(200):
        rate.on_attempt(None)
        clock.advance(0.01)
    rate.on_attempt(_throttle(), latency=0.05)
    first = rate.rate
    clock.advance(0.01)
    rate.on_attempt(_throttle(), latency=0.05)  # sent 40 ms before the cut: no second cut
    assert rate.rate == first
    assert rate.throttles == 2
    clock.advance(0.5)
    rate.on_attempt(_throttle(), latency=0.05)  # sent after the cut: the rate is too high
    assert rate.rate < first


class _Hostile:
    """A response whose attributes raise, and headers whose ``get`` misbehaves."""

    @property
    def headers(self) -> object:
        raise RuntimeError("no headers for you")


class _BadHeaders:
    def get(self, name: str) -> str:
        raise KeyError(name)


def test_a_429_with_a_malformed_policy_header_fails_as_the_429_and_holds_nothing() -> None:
    configure(
        services={"llm": {"RATE_LIMIT_MODE": "adaptive", "CONCURRENCY_LIMIT": 2}},
    )
    attempts = []

    def func() -> str:
        attempts.append(1)
        raise TooManyRequests({"RateLimit-Policy": "100;w=1.2.3"})

    with pytest.raises(ReliabilityError) as caught:
        resilient_call("llm", "chat", func, max_retries=0)
    assert caught.value.error_type is E.RATE_LIMIT  # not a ValueError from the header parser
    assert attempts == [1]
    gate = otel_resilience.default_runtime().load.gate("llm", otel_resilience.get_config("llm"))
    assert gate is not None
    assert gate.limiter is not None
    assert gate.rate is not None
    assert gate.limiter.in_flight == 0  # the attempt's place went back
    assert gate.rate.throttles == 1


def test_hostile_responses_and_headers_are_read_as_nothing() -> None:
    assert parse_rate_headers(_BadHeaders()) == (None, None)
    assert parse_rate_headers(object()) == (None, None)  # no get at all
    clock = FakeClock(0.0)
    rate = _rate(clock)
    error = ReliabilityError(E.RATE_LIMIT, "s", "e")
    cause = TooManyRequests({})
    cause.response = _Hostile()  # type: ignore[attr-defined]
    error.__cause__ = cause
    rate.on_attempt(error)  # the hostile response is skipped, the exception's own headers read
    assert rate.throttles == 1
