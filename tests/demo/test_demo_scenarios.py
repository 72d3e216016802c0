"""Scenario presets and their time scaling."""

from __future__ import annotations

from dataclasses import replace

import pytest

from otel_resilience.demo._scenarios import (
    NOMINAL_PERIOD_SEC,
    SCENARIOS,
    Knobs,
    get_scenario,
    time_scale_for,
)


def test_the_cli_contract_scenarios_all_exist():
    assert set(SCENARIOS) == {"steady", "outage", "rate-limited", "degraded"}


def test_unknown_scenario_names_the_choices():
    with pytest.raises(KeyError, match=r"unknown scenario 'chaos' \(choose from steady, outage"):
        get_scenario("chaos")


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        pytest.param(60.0, 1.0, id="nominal-run-plays-at-real-speed"),
        pytest.param(6.0, 0.1, id="short-run-is-compressed"),
        pytest.param(600.0, 1.0, id="long-run-repeats-the-story"),
        pytest.param(0.0, 1.0, id="until-interrupted-plays-at-real-speed"),
        pytest.param(0.5, 0.05, id="floor-of-the-scale"),
    ],
)
def test_time_scale_follows_the_duration(duration, expected):
    assert time_scale_for(duration) == pytest.approx(expected)


def test_outage_window_is_compressed_with_the_run():
    outage = get_scenario("outage")
    assert outage.outage_window(1.0) == pytest.approx((15.0, 33.0))
    start, end = outage.outage_window(0.1)
    assert (start, end) == pytest.approx((1.5, 3.3))
    # the breaker must be able to open, probe and close inside the compressed window and run
    assert outage.breaker_reset_sec * 0.1 < (end - start)
    assert end < NOMINAL_PERIOD_SEC * 0.1


def test_steady_has_no_outage():
    assert get_scenario("steady").outage_window(1.0) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"llm_rate_limit": 1.5}, "llm_rate_limit=1.5", id="probability-above-one"),
        pytest.param({"av_timeout": -0.1}, "av_timeout=-0.1", id="negative-probability"),
        pytest.param({"av_outage": (0.6, 0.4)}, "av_outage=", id="outage-ends-before-it-starts"),
    ],
)
def test_bad_knobs_are_refused_with_their_name(change, message):
    with pytest.raises(ValueError, match=message):
        replace(Knobs(), **change)


def test_operation_weights_cover_all_three_services():
    ops = get_scenario("steady").operations
    assert {(op.service, op.endpoint) for op in ops} == {
        ("openai", "chat.completions"),
        ("gcs", "upload"),
        ("gcs", "download"),
        ("clamav", "scan"),
    }
    assert sum(op.weight for op in ops) == pytest.approx(1.0)
