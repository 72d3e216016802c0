"""The demo calls its LLM stand-in through the real openai SDK and otel_resilience.openai."""

from __future__ import annotations

import openai

import otel_resilience
from otel_resilience.demo._runner import DemoRunner, RunOptions
from otel_resilience.demo._scenarios import get_scenario


def test_the_demo_llm_calls_go_through_the_openai_sdk_with_one_retry_layer(otel):
    runner = DemoRunner(
        RunOptions(get_scenario("rate-limited"), duration_sec=1.5, concurrency=2, seed=3)
    )
    result = runner.run()
    otel_resilience.shutdown_workers(timeout=5.0)

    [llm] = runner._llms.values()
    assert isinstance(llm, openai.OpenAI)
    assert llm.max_retries == 0
    [chat] = [r for r in result.rows if r.endpoint == "chat.completions"]
    assert chat.calls > 0
    # the server saw exactly the attempts the library reported for the LLM
    seen = sum(n for (service, _), n in result.server_counters.items() if service == "openai")
    assert seen == otel.attempts_reported("openai")
    assert seen >= chat.calls


def _run(**knobs):
    from dataclasses import replace

    scenario = get_scenario("steady")
    runner = DemoRunner(
        RunOptions(
            scenario,
            duration_sec=1.0,
            concurrency=2,
            seed=5,
            knobs=replace(scenario.knobs, **knobs),
        )
    )
    result = runner.run()
    otel_resilience.shutdown_workers(timeout=5.0)
    [chat] = [r for r in result.rows if r.endpoint == "chat.completions"]
    return chat


def test_the_demo_counts_the_sdks_final_status_errors():
    chat = _run(llm_server_error=1.0, llm_rate_limit=0.0)
    assert chat.calls > 0
    assert chat.succeeded == 0
    assert chat.errors.get("server_error", 0) + chat.errors.get("circuit_open", 0) == chat.calls
    assert chat.errors.get("server_error", 0) > 0


def test_the_demo_counts_llm_timeouts():
    chat = _run(llm_latency_ms=(5000.0, 5000.0), llm_rate_limit=0.0, llm_server_error=0.0)
    assert chat.calls > 0
    assert chat.timeouts > 0
    assert chat.errors.get("timeout", 0) + chat.errors.get("circuit_open", 0) == chat.calls
