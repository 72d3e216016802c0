"""ReliabilityConfig: seed defaults, environment, per-service overrides, validation messages."""

from __future__ import annotations

import dataclasses

import pytest

from otel_resilience import ConfigError, ReliabilityConfig, configure, get_config


def test_seed_defaults() -> None:
    cfg = ReliabilityConfig()
    assert (
        cfg.HTTP_TIMEOUT_SEC, cfg.HTTP_RETRIES, cfg.HTTP_BACKOFF_BASE_MS, cfg.CB_FAIL_THRESHOLD,
        cfg.CB_RESET_SEC,
    ) == (30, 3, 1000, 5, 60)  # fmt: skip


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ReliabilityConfig().HTTP_RETRIES = 9  # type: ignore[misc]


def test_reads_the_seed_environment_variables() -> None:
    env = {
        "HTTP_TIMEOUT_SEC": "12.5",
        "HTTP_RETRIES": "4",
        "HTTP_BACKOFF_BASE_MS": "250",
        "CB_FAIL_THRESHOLD": "8",
        "CB_RESET_SEC": "90",
    }
    cfg = ReliabilityConfig.from_env(env)
    assert (cfg.HTTP_TIMEOUT_SEC, cfg.HTTP_RETRIES, cfg.HTTP_BACKOFF_BASE_MS) == (12.5, 4, 250)
    assert (cfg.CB_FAIL_THRESHOLD, cfg.CB_RESET_SEC) == (8, 90)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HTTP_RETRIES": "abc"},
            "HTTP_RETRIES='abc' is not accepted: expected an integer from 0 to 100",
        ),
        (
            {"CB_RESET_SEC": "-1"},
            "CB_RESET_SEC='-1' is not accepted: expected a number > 0 and <= 86400",
        ),
        ({"HTTP_TIMEOUT_SEC": "0"}, "HTTP_TIMEOUT_SEC='0' is not accepted: expected a number > 0"),
        ({"HTTP_TIMEOUT_SEC": "nan"}, "HTTP_TIMEOUT_SEC='nan' is not accepted"),
        (
            {"CB_FAIL_THRESHOLD": "0"},
            "CB_FAIL_THRESHOLD='0' is not accepted: expected an integer from 1",
        ),
        (
            {"RETRY_UNKNOWN_ERRORS": "maybe"},
            "RETRY_UNKNOWN_ERRORS='maybe' is not accepted: expected a boolean",
        ),
        (
            {"CB_MODE": "sliding"},
            "CB_MODE='sliding' is not accepted: expected one of consecutive, count, time",
        ),
        ({"RELIABILITY_REDIS_URL": "http://x"}, "RELIABILITY_REDIS_URL='http://x' is not accepted"),
        ({"RATE_LIMIT": "fast"}, "RATE_LIMIT='fast' is not accepted: expected a rate such as"),
        ({"RELIABILITY_STATE_BACKEND": "redis"}, "STATE_BACKEND='redis' needs REDIS_URL"),
    ],
    ids=[
        "retries-abc",
        "reset-negative",
        "timeout-zero",
        "timeout-nan",
        "threshold-zero",
        "bool",
        "mode",
        "redis-url",
        "rate",
        "redis-without-url",
    ],
)
def test_invalid_environment_fails_at_load_naming_variable_value_and_range(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ReliabilityConfig.from_env(env)
    assert message in str(info.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_invalid_values_in_code_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"HTTP_RETRIES=-1 is not accepted"):
        ReliabilityConfig(HTTP_RETRIES=-1)
    with pytest.raises(ConfigError, match=r"HTTP_RETRIES=True is not accepted"):
        ReliabilityConfig(HTTP_RETRIES=True)
    with pytest.raises(ConfigError, match="CB_MIN_CALLS=20 is not accepted with CB_MODE='count'"):
        ReliabilityConfig(CB_MODE="count", CB_WINDOW_SIZE=10, CB_MIN_CALLS=20)


def test_per_service_environment_overrides_one_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_RETRIES", "4")
    monkeypatch.setenv("RELIABILITY_OPENAI_HTTP_RETRIES", "5")
    monkeypatch.setenv("RELIABILITY_CHAT_API_CB_RESET_SEC", "15")
    assert get_config("openai").HTTP_RETRIES == 5
    assert get_config("gcs").HTTP_RETRIES == 4
    assert get_config("chat-api").CB_RESET_SEC == 15
    assert get_config("chat-api").HTTP_RETRIES == 4


def test_bad_per_service_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIABILITY_OPENAI_HTTP_RETRIES", "lots")
    with pytest.raises(ConfigError, match="RELIABILITY_OPENAI_HTTP_RETRIES='lots'"):
        get_config("openai")


def test_configure_in_code_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIABILITY_OPENAI_HTTP_RETRIES", "5")
    configure(services={"openai": {"HTTP_RETRIES": 2}})
    assert get_config("openai").HTTP_RETRIES == 2
    configure(default=ReliabilityConfig(CB_FAIL_THRESHOLD=9))
    assert get_config("gcs").CB_FAIL_THRESHOLD == 9


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"services": {"openai": {"HTTP_RETRY": 5}}}, ConfigError, "unknown setting"),
        ({"services": {"openai": {"HTTP_RETRIES": -5}}}, ConfigError, "HTTP_RETRIES=-5"),
        ({"services": {"openai": 5}}, TypeError, r"services\['openai'\] must be"),
        ({"services": {"": {}}}, TypeError, "service names must be non-empty"),
        ({"default": {"HTTP_RETRIES": 1}}, TypeError, "default must be a ReliabilityConfig"),
    ],
    ids=["unknown-field", "bad-value", "bad-type", "empty-name", "default-dict"],
)
def test_configure_rejects_bad_input_and_keeps_the_old_config(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    configure(services={"openai": {"HTTP_RETRIES": 7}})
    with pytest.raises(error, match=message):
        configure(**kwargs)  # type: ignore[arg-type]
    assert get_config("openai").HTTP_RETRIES == 7


def test_with_overrides_derives_a_variant() -> None:
    base = ReliabilityConfig()
    variant = base.with_overrides({"HTTP_RETRIES": 1})
    assert variant.HTTP_RETRIES == 1
    assert base.HTTP_RETRIES == 3
    assert variant.max_attempts == 1
    assert ReliabilityConfig(HTTP_RETRIES=0).max_attempts == 1


def test_optional_settings_can_be_turned_off_from_the_environment() -> None:
    cfg = ReliabilityConfig.from_env({"DEADLINE_SEC": "none", "CB_SLOW_CALL_SEC": ""})
    assert cfg.DEADLINE_SEC is None
    assert cfg.CB_SLOW_CALL_SEC is None
    assert ReliabilityConfig.from_env({"DEADLINE_SEC": "2.5"}).DEADLINE_SEC == 2.5


def test_booleans_accept_the_usual_spellings() -> None:
    for text, value in [("true", True), ("0", False), ("Yes", True), ("off", False)]:
        assert (
            ReliabilityConfig.from_env({"RETRY_UNKNOWN_ERRORS": text}).RETRY_UNKNOWN_ERRORS is value
        )
