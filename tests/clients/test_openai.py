"""openai (sync and async) against the fault server: every fault maps to its error type."""

from __future__ import annotations

import openai
import pytest

from faultserver import FaultServer

from ._cases import HTTP_FAULTS, E, Fault, assert_classified, expect_hits, timeout_for

OPENAI_FAULTS = [
    *HTTP_FAULTS,
    pytest.param(
        Fault("429?retry_after_ms=1500", E.RATE_LIMIT, (1.5, 1.5)), id="429-retry-after-ms"
    ),
    pytest.param(Fault("422", E.BAD_REQUEST), id="422-unprocessable"),
    pytest.param(Fault("409", E.BAD_REQUEST), id="409-conflict"),
    pytest.param(Fault("502", E.SERVER_ERROR), id="502"),
]

MESSAGES = [{"role": "user", "content": "hello"}]


def _base_url(server: FaultServer, fault: Fault) -> str:
    if fault.path == "refuse":
        return server.refused_url
    return f"{server.url}/{fault.as_segments()}"  # the SDK appends /chat/completions


def _client_kwargs(server: FaultServer, fault: Fault) -> dict:
    return {
        "base_url": _base_url(server, fault),
        "api_key": "sk-fault",
        "max_retries": 0,
        "timeout": timeout_for(fault.path),
    }


@pytest.mark.parametrize("fault", OPENAI_FAULTS)
def test_openai_fault_is_classified(fault_server: FaultServer, fault: Fault):
    with (
        openai.OpenAI(**_client_kwargs(fault_server, fault)) as client,
        pytest.raises(openai.OpenAIError) as caught,
    ):
        client.chat.completions.create(model="gpt-fault", messages=MESSAGES)

    assert_classified(caught.value, "openai", fault)
    expect_hits(fault_server, fault)


@pytest.mark.parametrize("fault", OPENAI_FAULTS)
async def test_openai_async_fault_is_classified(fault_server: FaultServer, fault: Fault):
    async with openai.AsyncOpenAI(**_client_kwargs(fault_server, fault)) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            await client.chat.completions.create(model="gpt-fault", messages=MESSAGES)

    assert_classified(caught.value, "openai", fault)
    expect_hits(fault_server, fault)
