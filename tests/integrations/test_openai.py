"""The real openai SDK through otel_resilience.openai, against a local OpenAI-compatible
stand-in."""

from __future__ import annotations

import threading
import time

import openai
import pytest

import otel_resilience
from otel_resilience import CallTimeoutError, CircuitOpenError, ExternalServiceError
from otel_resilience import openai as resilient_openai

E = ExternalServiceError
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]


_OPEN: list = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _OPEN:
        _OPEN.pop().close()


def _client(llm, **options):
    client = resilient_openai.client(api_key="sk-test", base_url=f"{llm.url}/v1", **options)
    _OPEN.append(client)
    return client


def _chat(client, **options):
    return client.chat.completions.create(model="stand-in", messages=MESSAGES, **options)


def _breaker(endpoint: str = "chat.completions"):
    return otel_resilience.get_circuit_breaker_manager().breaker_for("openai", endpoint)


def test_the_sdks_own_retries_are_off():
    client = resilient_openai.client(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert client.max_retries == 0
    client.close()


@pytest.mark.parametrize("option", ["http_client", "max_retries"])
def test_options_that_would_add_a_retry_layer_are_refused(option):
    with pytest.raises(TypeError, match=option):
        resilient_openai.client(api_key="sk-test", **{option: None})


def test_success_names_the_endpoints_as_the_seed_does(llm, otel):
    client = _client(llm)
    assert _chat(client).choices[0].message.content == "hello from the stand-in"
    assert client.embeddings.create(model="stand-in", input="hi").data[0].embedding == [0.1, 0.2]
    assert client.responses.create(model="stand-in", input="hi").id == "resp_1"

    for endpoint in ("chat.completions", "embeddings", "responses"):
        [call] = otel.call_spans("openai", endpoint)
        assert call.attributes["resilience.attempts"] == 1
    assert llm.count(CHAT) + llm.count("/v1/embeddings") + llm.count("/v1/responses") == 3
    assert otel.attempts_reported("openai") == 3


def test_a_429_waits_as_long_as_retry_after_says_then_succeeds(llm, otel):
    llm.script(CHAT, (429, {"Retry-After": "1"}))
    start = time.monotonic()
    _chat(_client(llm))
    elapsed = time.monotonic() - start

    assert 1.0 <= elapsed < 1.6
    assert llm.count(CHAT) == 2 == otel.attempts_reported("openai")
    retry = otel.attempt_spans("openai", "chat.completions")
    assert sorted(s.attributes.get("http.request.resend_count", 0) for s in retry) == [0, 1]


def test_x_ratelimit_reset_of_the_exhausted_limit_sets_the_wait(llm, otel):
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "800ms",
        "x-ratelimit-remaining-tokens": "5000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    llm.script(CHAT, (429, headers))
    start = time.monotonic()
    _chat(_client(llm))
    elapsed = time.monotonic() - start

    # the exhausted limit's reset (800 ms, plus the seed's 0-10% jitter), not the tokens' 6 min
    [call] = otel.call_spans("openai", "chat.completions")
    [retry] = [e for e in call.events if e.name == "retry"]
    assert 0.8 <= (retry.attributes or {})["resilience.retry.delay_s"] <= 0.88
    assert 0.8 <= elapsed < 60  # slept for real (a loaded machine adds to it, never less)
    assert llm.count(CHAT) == 2


def test_the_last_429_reaches_the_caller_as_the_sdks_rate_limit_error(llm, otel):
    llm.script(CHAT, *[(429, {"retry-after-ms": "10"})] * 3)
    with pytest.raises(openai.RateLimitError):
        _chat(_client(llm))

    assert llm.count(CHAT) == 3 == otel.attempts_reported("openai")
    [call] = otel.call_spans("openai", "chat.completions")
    assert call.attributes["error.type"] == "rate_limit"


def test_insufficient_quota_is_not_retried_and_not_a_breaker_failure(llm, otel):
    llm.script(CHAT, (429, {"Retry-After": "20"}, "insufficient_quota"))
    start = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(_client(llm))

    assert time.monotonic() - start < 1.0  # the Retry-After is not slept
    assert caught.value.code == "insufficient_quota"
    assert llm.count(CHAT) == 1 == otel.attempts_reported("openai")
    [call] = otel.call_spans("openai", "chat.completions")
    assert call.attributes["error.type"] == "permission_denied"
    assert _breaker().failure_count == 0


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(llm, otel, status):
    llm.script(CHAT, (status, {}), (status, {}))
    assert _chat(_client(llm)).id == "chatcmpl-1"
    assert llm.count(CHAT) == 3 == otel.attempts_reported("openai")


def test_a_401_fails_once_with_the_sdks_error_and_no_breaker_count(llm, otel):
    llm.script(CHAT, (401, {}))
    with pytest.raises(openai.AuthenticationError):
        _chat(_client(llm))
    assert llm.count(CHAT) == 1 == otel.attempts_reported("openai")
    assert _breaker().failure_count == 0


def test_a_reset_mid_body_is_retried(llm, otel):
    llm.script(CHAT, "reset")
    assert _chat(_client(llm)).id == "chatcmpl-1"
    assert llm.count(CHAT) == 2 == otel.attempts_reported("openai")


def test_a_slow_body_times_out_inside_the_attempt_and_is_retried(llm, otel):
    llm.script(CHAT, ("slow-body", 3))
    start = time.monotonic()
    assert _chat(_client(llm, timeout_sec=0.4)).id == "chatcmpl-1"
    assert time.monotonic() - start < 1.5
    assert llm.count(CHAT) == 2 == otel.attempts_reported("openai")


def test_a_slow_reply_times_out_as_a_reliability_error(llm, otel):
    llm.script(CHAT, ("slow", 3), ("slow", 3))
    start = time.monotonic()
    with pytest.raises(CallTimeoutError) as caught:
        _chat(_client(llm, timeout_sec=0.3, attempts=2))
    assert 0.55 <= time.monotonic() - start < 1.2
    assert caught.value.attempts == 2
    assert otel.attempts_reported("openai") == 2


def test_only_the_opening_of_a_stream_is_retried(llm, otel):
    llm.script(CHAT, (503, {}), ("stream-break", 2))
    stream = _chat(_client(llm), stream=True)
    parts: list[str] = []

    def consume() -> None:
        parts.extend(chunk.choices[0].delta.content for chunk in stream)

    with pytest.raises(openai.APIError):  # the broken stream is the caller's, not retried
        consume()

    assert parts == ["part 0 ", "part 1 "]
    assert llm.count(CHAT) == 2 == otel.attempts_reported("openai")


def test_a_whole_stream_arrives(llm, otel):
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in _chat(_client(llm), stream=True)
    )
    assert text == "hello from the stand-in"
    assert llm.count(CHAT) == 1


def test_an_outage_opens_the_breaker_and_recovery_closes_it(llm, otel, breaker_clock):
    llm.script(CHAT, *[(503, {})] * 5)
    client = _client(llm, attempts=1)
    for _ in range(5):
        with pytest.raises(openai.InternalServerError):
            _chat(client)
    with pytest.raises(CircuitOpenError):
        _chat(client)
    assert llm.count(CHAT) == 5
    assert _breaker().state.value == "open"

    breaker_clock.advance(61)
    assert _chat(client).id == "chatcmpl-1"
    assert _breaker().state.value == "closed"
    assert llm.count(CHAT) == 6 == otel.attempts_reported("openai")


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
def test_a_frozen_stand_in_times_out_on_time(frozen_llm, otel, where):
    client = resilient_openai.client(
        api_key="sk-test", base_url=f"{frozen_llm.url}/v1", timeout_sec=0.5, attempts=2
    )
    _OPEN.append(client)
    _chat(client)
    frozen_llm.freeze()
    found: list[tuple[BaseException | None, float]] = []

    def call() -> None:
        start = time.monotonic()
        try:
            _chat(client)
        except BaseException as exc:
            found.append((exc, time.monotonic() - start))

    if where == "main-thread":
        call()
    else:
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(10)
    [(error, elapsed)] = found
    assert isinstance(error, CallTimeoutError)
    assert 0.95 <= elapsed < 1.6
    assert otel.attempts_reported("openai") == 3


async def test_the_async_client_retries_a_429_with_its_wait(llm, otel):
    llm.script(CHAT, (429, {"retry-after-ms": "300"}))
    client = resilient_openai.async_client(api_key="sk-test", base_url=f"{llm.url}/v1")
    start = time.monotonic()
    completion = await client.chat.completions.create(model="stand-in", messages=MESSAGES)
    elapsed = time.monotonic() - start
    await client.close()

    assert completion.id == "chatcmpl-1"
    assert 0.3 <= elapsed < 0.9
    assert llm.count(CHAT) == 2 == otel.attempts_reported("openai")


async def test_the_async_client_sends_a_post_once_when_not_idempotent(llm, otel):
    llm.script(CHAT, (503, {}))
    client = resilient_openai.async_client(
        api_key="sk-test", base_url=f"{llm.url}/v1", idempotent=False
    )
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="stand-in", messages=MESSAGES)
    await client.close()
    assert llm.count(CHAT) == 1 == otel.attempts_reported("openai")
