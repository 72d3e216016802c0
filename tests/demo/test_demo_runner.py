"""The workload runner in-process: retries wait for Retry-After, every thread is joined."""

from __future__ import annotations

from dataclasses import replace

import pytest

from otel_resilience import _timeout
from otel_resilience.demo._runner import DemoRunner, RunOptions
from otel_resilience.demo._scenarios import get_scenario

from .conftest import all_threads

pytestmark = pytest.mark.usefixtures("clean_library")


@pytest.fixture(scope="module")
def rate_limited_run():
    """A 3-second run of the rate-limited scenario, with the threads alive before and after.

    The library runs attempts made outside the main thread in a pool of reusable *daemon* worker
    threads (``otel-resilience-timeout-*``) that outlive a call by design; they are stopped with
    ``_timeout.shutdown_workers()`` before the "after" snapshot, so any thread left is the demo's.
    """
    import otel_resilience

    otel_resilience.reset()
    before = all_threads()
    ticks = []
    scenario = get_scenario("rate-limited")
    runner = DemoRunner(RunOptions(scenario, duration_sec=3.0, concurrency=4, seed=7))
    result = runner.run(lambda r: ticks.append(r.snapshot()), tick_sec=0.5)
    still_running = _timeout.shutdown_workers(timeout=5.0)
    after = all_threads()
    otel_resilience.reset()
    return runner, result, ticks, before, after, still_running


def test_run_leaves_no_thread_behind(rate_limited_run):
    _, _, _, before, after, still_running = rate_limited_run
    assert still_running == 0
    assert {t.name for t in after - before} == set()


def test_rate_limited_calls_are_retried_after_the_servers_retry_after(rate_limited_run):
    _, result, _, _, _, _ = rate_limited_run
    waits = result.retry_after_waits[("openai", "chat.completions")]
    assert len(waits) >= 5
    assert {told for told, _ in waits} == {1.0}  # what the stand-in sent, in whole seconds
    # the library waited as told (not its own 10 ms scaled backoff), and not much longer
    assert all(1.0 * 0.95 <= waited < 1.0 + 0.5 for _, waited in waits), waits
    (chat,) = [r for r in result.rows if r.endpoint == "chat.completions"]
    assert chat.retries >= len(waits)


def test_ticks_arrive_about_every_tick_and_carry_breaker_state(rate_limited_run):
    _, result, ticks, _, _, _ = rate_limited_run
    assert 4 <= len(ticks) <= 7
    assert [round(t.elapsed_sec * 2) / 2 for t in ticks[:4]] == [0.5, 1.0, 1.5, 2.0]
    last = ticks[-1]
    assert {(r.service, r.endpoint) for r in last.rows} == {
        ("openai", "chat.completions"),
        ("gcs", "upload"),
        ("gcs", "download"),
        ("clamav", "scan"),
    }
    assert {r.breaker_state for r in last.rows} <= {"closed", "open", "half_open"}
    assert result.elapsed_sec >= 3.0


def test_stop_ends_an_unlimited_run_from_a_tick():
    runner = DemoRunner(
        RunOptions(get_scenario("steady"), duration_sec=0, concurrency=2, time_scale=0.05)
    )
    result = runner.run(lambda r: r.stop(), tick_sec=0.2)
    assert 0.2 <= result.elapsed_sec < 2.0
    assert not result.interrupted


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"duration_sec": -1}, "duration_sec=-1", id="negative-duration"),
        pytest.param({"concurrency": 0}, "concurrency=0", id="no-workers"),
        pytest.param({"time_scale": 0}, "time_scale=0", id="zero-scale"),
    ],
)
def test_bad_run_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        RunOptions(get_scenario("steady"), **options)


def test_service_configs_scale_breaker_reset_and_backoff_with_the_run():
    runner = DemoRunner(RunOptions(get_scenario("outage"), duration_sec=6.0))
    configs = runner.service_configs()
    assert set(configs) == {"openai", "gcs", "clamav"}
    clamav = configs["clamav"]
    scaled = (clamav.CB_RESET_SEC, clamav.HTTP_TIMEOUT_SEC, clamav.HTTP_BACKOFF_BASE_MS)
    assert scaled == pytest.approx((0.5, 0.1, 20))
    assert clamav.CB_FAIL_THRESHOLD == 5
    knobs = replace(get_scenario("outage").knobs, av_timeout=0.5)
    assert DemoRunner(RunOptions(get_scenario("outage"), knobs=knobs)).knobs.av_timeout == 0.5


def test_a_service_s_attempt_timeout_is_the_longest_of_its_operations():
    from otel_resilience.demo._scenarios import Operation

    operations = (
        Operation("gcs", "upload", weight=0.5, timeout_sec=3.0),
        Operation("clamav", "scan", weight=0.25, timeout_sec=1.0),
        Operation("gcs", "download", weight=0.25, timeout_sec=0.5),
    )
    scenario = replace(get_scenario("steady"), operations=operations)
    configs = DemoRunner(RunOptions(scenario, duration_sec=60.0, time_scale=0.5)).service_configs()
    assert list(configs) == ["gcs", "clamav"]  # in the order the operations name them
    timeouts = (configs["gcs"].HTTP_TIMEOUT_SEC, configs["clamav"].HTTP_TIMEOUT_SEC)
    assert timeouts == pytest.approx((1.5, 0.5))
