"""Growing break durations: the settings, and the growth formula's bounds (Hypothesis).

The behaviour over both backends is in ``test_contract.py``; here: what the settings accept,
and that :meth:`Settings.grown` (the formula the Redis script repeats) stays in its bounds.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_resilience import CircuitBreaker, ConfigError, ReliabilityConfig
from otel_resilience._breakers._machine import JITTER, Machine, Settings


def test_defaults_keep_the_fixed_reset_time() -> None:
    config = ReliabilityConfig()
    assert config.CB_RESET_MULTIPLIER == 1
    assert config.CB_RESET_MAX_SEC is None
    assert Settings.from_config(config).max_ms == 86_400_000  # one day


def test_settings_come_from_the_environment() -> None:
    env = {
        "CB_RESET_MULTIPLIER": "2.5",
        "RELIABILITY_OPENAI_CB_RESET_MAX_SEC": "600",
    }
    config = ReliabilityConfig.from_env(env, service="openai")
    assert (config.CB_RESET_MULTIPLIER, config.CB_RESET_MAX_SEC) == (2.5, 600)
    assert Settings.from_config(config).max_ms == 600_000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"CB_RESET_MULTIPLIER": 0.5},
            r"CB_RESET_MULTIPLIER=0.5 is not accepted: expected a number from 1 to 100",
        ),
        ({"CB_RESET_MULTIPLIER": 1000}, r"CB_RESET_MULTIPLIER=1000 is not accepted"),
        ({"CB_RESET_MAX_SEC": 0}, r"CB_RESET_MAX_SEC=0 is not accepted: expected a number > 0"),
        (
            {"CB_RESET_SEC": 60, "CB_RESET_MAX_SEC": 30},
            r"CB_RESET_MAX_SEC=30 is shorter than CB_RESET_SEC=60",
        ),
    ],
)
def test_bad_growth_settings_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReliabilityConfig(**fields)  # type: ignore[arg-type]


def test_bad_growth_settings_from_the_environment_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"RELIABILITY_OPENAI_CB_RESET_MULTIPLIER='fast'"):
        ReliabilityConfig.from_env(
            {"RELIABILITY_OPENAI_CB_RESET_MULTIPLIER": "fast"}, service="openai"
        )


def test_a_breaker_reset_timeout_above_the_cap_is_refused() -> None:
    config = ReliabilityConfig(CB_RESET_MAX_SEC=60)
    with pytest.raises(ConfigError, match="CB_RESET_MAX_SEC=60 is shorter than CB_RESET_SEC=120"):
        CircuitBreaker("scan", 5, 120, config=config)


def test_a_cap_equal_to_the_reset_time_never_grows() -> None:
    machine = Machine(
        Settings.from_config(ReliabilityConfig(CB_RESET_MULTIPLIER=2, CB_RESET_MAX_SEC=60))
    )
    events: list[object] = []
    machine.open(0.0, events)  # type: ignore[arg-type]
    for _ in range(3):
        machine.tick(machine.opened_at + machine.open_sec)
        machine.open(machine.opened_at + machine.open_sec, events)  # type: ignore[arg-type]
        assert machine.open_sec == 60
    assert machine.level == 0  # the cap was there from the start


@settings(max_examples=200)
@given(
    reset_sec=st.floats(0.001, 86_400),
    multiplier=st.floats(1, 100),
    cap=st.none() | st.floats(0.001, 86_400),
    rands=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=40),
)
@example(reset_sec=1.0, multiplier=1.0001, cap=None, rands=[0.999] * 40)
@example(reset_sec=0.001, multiplier=100.0, cap=None, rands=[0.0] * 40)
def test_grown_open_times_rise_within_their_bounds_and_stop_at_the_cap(
    reset_sec: float, multiplier: float, cap: float | None, rands: list[float]
) -> None:
    if cap is not None and cap < reset_sec:
        cap = reset_sec
    machine = Machine(Settings(reset_sec=reset_sec, multiplier=multiplier, max_sec=cap))
    draws = iter(rands)
    machine.rand = lambda: next(draws)
    grown = machine.settings
    machine.open(0.0, [])
    assert machine.open_sec == reset_sec  # the first opening: CB_RESET_SEC, no jitter
    previous_level = 0
    for rand in rands:
        assert machine.tick(machine.opened_at + machine.open_sec + 1)  # half-open
        machine.open(0.0, [])  # the probe failed
        if multiplier == 1:  # the seed's fixed reset time: no growth, no jitter
            assert (machine.level, machine.open_sec) == (0, reset_sec)
            continue
        nominal = grown.reset_ms * multiplier**machine.level
        low = min(grown.max_ms, math.floor(nominal))
        high = min(grown.max_ms, math.floor(nominal * (1 + JITTER * rand)))
        assert low <= machine.open_ms() <= high <= grown.max_ms
        assert machine.open_ms() == high  # the formula the Redis script repeats
        assert previous_level <= machine.level <= previous_level + 1
        if grown.reset_ms * multiplier**previous_level < grown.max_ms:
            assert machine.level == previous_level + 1  # below the cap it always rises
        previous_level = machine.level
        assert machine.seconds_until_probe(0.0) == machine.open_sec
        assert machine.rejects_after(machine.open_sec - 1e-3, 0.0)
        assert not machine.rejects_after(machine.open_sec, 0.0)
    machine.close([])
    assert (machine.level, machine.open_sec) == (0, reset_sec)
