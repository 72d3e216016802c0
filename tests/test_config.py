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
    env = {"DEADLINE_SEC": "2.5", "HTTP_TIMEOUT_SEC": "2"}
    assert ReliabilityConfig.from_env(env).DEADLINE_SEC == 2.5


def test_booleans_accept_the_usual_spellings() -> None:
    for text, value in [("true", True), ("0", False), ("Yes", True), ("off", False)]:
        assert (
            ReliabilityConfig.from_env({"RETRY_UNKNOWN_ERRORS": text}).RETRY_UNKNOWN_ERRORS is value
        )


# --- odd numerals: ASCII digits only, no underscores, no subnormal floats --------------------


@pytest.mark.parametrize(
    ("var", "text", "expected"),
    [
        ("HTTP_RETRIES", "\u0663", "an integer from 0 to 100"),  # ARABIC-INDIC DIGIT THREE
        ("HTTP_RETRIES", "\uff13", "an integer from 0 to 100"),  # FULLWIDTH DIGIT THREE
        ("HTTP_RETRIES", "1_0", "an integer from 0 to 100"),
        ("HTTP_RETRIES", "0x10", "an integer from 0 to 100"),
        ("HTTP_RETRIES", "\u00b2", "an integer from 0 to 100"),  # SUPERSCRIPT TWO
        ("HTTP_TIMEOUT_SEC", "5e-324", "a number > 0 and <= 86400"),
        ("HTTP_TIMEOUT_SEC", "1_0.5", "a number > 0 and <= 86400"),
        ("HTTP_TIMEOUT_SEC", "\u0663.5", "a number > 0 and <= 86400"),
        ("HTTP_TIMEOUT_SEC", "infinity", "a number > 0 and <= 86400"),
        ("HTTP_TIMEOUT_SEC", "1e999", "a number > 0 and <= 86400"),
        ("CB_FAILURE_RATE_THRESHOLD", "2.2250738585072014e-309", "a number > 0 and <= 1"),
        ("RATE_LIMIT", "\u0661\u0660/second", "a rate such as"),
        ("RATE_LIMIT", "1_0/second", "a rate such as"),
    ],
)
def test_odd_numerals_in_the_environment_are_refused(var: str, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReliabilityConfig.from_env({var: text})
    assert str(info.value).startswith(f"{var}={text!r} is not accepted: expected {expected}")


@pytest.mark.parametrize(
    ("text", "value"),
    [(" 5 ", 5.0), ("+2", 2.0), ("1e2", 100.0), (".5", 0.5), ("3.", 3.0), ("1E-3", 0.001)],
)
def test_ordinary_numerals_in_the_environment_still_work(text: str, value: float) -> None:
    assert value == ReliabilityConfig.from_env({"HTTP_TIMEOUT_SEC": text}).HTTP_TIMEOUT_SEC


@pytest.mark.parametrize("value", [5e-324, -5e-324, 2.2250738585072014e-309])
def test_subnormal_floats_in_code_are_refused(value: float) -> None:
    with pytest.raises(ConfigError, match=r"RETRY_BUDGET_MIN_PER_SEC=.* is not accepted"):
        ReliabilityConfig(RETRY_BUDGET_MIN_PER_SEC=value)


def test_zero_is_not_subnormal() -> None:
    assert ReliabilityConfig(RETRY_BUDGET_MIN_PER_SEC=0.0).RETRY_BUDGET_MIN_PER_SEC == 0.0


def test_number_subclasses_in_code_become_plain_numbers() -> None:
    import enum

    class Retries(enum.IntEnum):
        FEW = 2

    class Seconds(float):
        pass

    cfg = ReliabilityConfig(HTTP_RETRIES=Retries.FEW, HTTP_TIMEOUT_SEC=Seconds(1.5))
    assert type(cfg.HTTP_RETRIES) is int
    assert type(cfg.HTTP_TIMEOUT_SEC) is float
    assert (cfg.HTTP_RETRIES, cfg.HTTP_TIMEOUT_SEC) == (2, 1.5)


# --- RATE_LIMIT: fully parsed at load, by the limiter's own parser ---------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0/second", "the amount must be from 1 to 1,000,000,000, got 0"),
        ("0 per 2 minutes", "the amount must be from 1 to 1,000,000,000, got 0"),
        ("100/0 seconds", "a window of 0 units admits nothing"),
        ("100 per 0 minute", "a window of 0 units admits nothing"),
        (
            "99999999999999999999/second",
            "the amount must be from 1 to 1,000,000,000, got 99,999,999,999,999,999,999",
        ),
        ("1/99999999999999 days", "the window must be at most 366 days"),
        ("1 per 367 days", "the window must be at most 366 days, got 31,708,800 s"),
    ],
)
def test_a_rate_the_limiter_cannot_use_fails_at_load(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReliabilityConfig.from_env({"RATE_LIMIT": text})
    message = str(info.value)
    assert message.startswith(f"RATE_LIMIT={text!r} is not accepted: {problem}")
    assert "expected a rate such as '100/second'" in message
    with pytest.raises(ConfigError, match="RATE_LIMIT="):
        ReliabilityConfig(RATE_LIMIT=text)  # in code too


@pytest.mark.parametrize("text", ["100/second", "10 per second", "600 per 1 minute", "1/366 days"])
def test_usable_rates_load(text: str) -> None:
    assert text == ReliabilityConfig(RATE_LIMIT=text).RATE_LIMIT


def test_a_rate_without_the_limits_package_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_resilience import _rates

    def missing() -> None:
        raise ImportError("RATE_LIMIT needs the 'limits' package: pip install x")

    monkeypatch.setattr(_rates, "_import_limits", missing)
    with pytest.raises(
        ConfigError, match="RATE_LIMIT='5/second' is not accepted: RATE_LIMIT needs"
    ):
        ReliabilityConfig(RATE_LIMIT="5/second")


def test_rate_problem_and_parse_rate_agree() -> None:
    from otel_resilience._rates import parse_rate, rate_problem

    assert rate_problem("5 per 2 minutes") is None
    item = parse_rate("5 per 2 minutes")
    assert (item.amount, item.get_expiry()) == (5, 120)
    assert rate_problem("soon") == "not a rate"


# --- REDACT_PATTERNS -------------------------------------------------------------------------


def test_redact_patterns_default_to_the_built_in_ones() -> None:
    assert ReliabilityConfig().REDACT_PATTERNS == ("default",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"default;card=(\d+)", ("default", r"card=(\d+)")),
        (r"default, acct-\d+ ", ("default", r"acct-\d+")),
        (r"x=\d{1,3};default", (r"x=\d{1,3}", "default")),  # ';' wins: commas stay in patterns
        ("none", ()),
        ("", ()),
        ("default", ("default",)),
    ],
)
def test_redact_patterns_from_the_environment(text: str, expected: tuple[str, ...]) -> None:
    assert expected == ReliabilityConfig.from_env({"REDACT_PATTERNS": text}).REDACT_PATTERNS


def test_per_service_redact_patterns_from_the_environment() -> None:
    env = {"RELIABILITY_PAY_REDACT_PATTERNS": r"default;card=(\d+)"}
    assert ReliabilityConfig.from_env(env, service="pay").REDACT_PATTERNS == (
        "default",
        r"card=(\d+)",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["default", r"k=(\w+)"], ("default", r"k=(\w+)")),
        (r"default;k=(\w+)", ("default", r"k=(\w+)")),
        ((), ()),
    ],
)
def test_redact_patterns_in_code(value: object, expected: tuple[str, ...]) -> None:
    assert expected == ReliabilityConfig(REDACT_PATTERNS=value).REDACT_PATTERNS  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (("default", "(unclosed"), "'(unclosed' is not a valid regular expression (missing )"),
        (("a*",), "'a*' matches the empty string (it would mask everything)"),
        (("x|",), "'x|' matches the empty string"),
    ],
)
def test_a_bad_redact_pattern_is_named(value: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReliabilityConfig(REDACT_PATTERNS=value)
    message = str(info.value)
    assert message.startswith(f"REDACT_PATTERNS={value!r} is not accepted: {problem}")
    assert "expected a tuple of regular expressions" in message


def test_a_bad_redact_pattern_in_the_environment_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"REDACT_PATTERNS='default;\[a' is not accepted: '\[a' is not a valid"
    ):
        ReliabilityConfig.from_env({"REDACT_PATTERNS": "default;[a"})


@pytest.mark.parametrize("value", [("default", 3), 42, None, {"default": 1}])
def test_redact_patterns_of_the_wrong_type_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"REDACT_PATTERNS=.* is not accepted: expected a tuple"):
        ReliabilityConfig(REDACT_PATTERNS=value)  # type: ignore[arg-type]


# --- repr ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://app:hunter2@cache:6379/0",
        "redis://app:hun@ter2@cache:6379/0",
        "rediss://:hunter2@cache:6380/0",
        "redis://cache:6379/0?password=hunter2",
    ],
)
def test_repr_never_shows_the_redis_password(url: str) -> None:
    cfg = ReliabilityConfig(REDIS_URL=url)
    text = repr(cfg)
    assert "hunter2" not in text
    assert "ter2" not in text
    assert "***" in text
    assert "cache:63" in text
    assert url == cfg.REDIS_URL  # the value itself is intact


def test_repr_lists_every_field() -> None:
    text = repr(ReliabilityConfig())
    assert text.startswith("ReliabilityConfig(HTTP_TIMEOUT_SEC=30, HTTP_RETRIES=3,")
    for field in dataclasses.fields(ReliabilityConfig):
        assert f"{field.name}=" in text


# --- cross-validation (settings valid alone that contradict each other) -----------------------


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"HTTP_TIMEOUT_SEC": 30, "DEADLINE_SEC": 10}, ("HTTP_TIMEOUT_SEC=30", "DEADLINE_SEC=10")),
        (
            {"CB_MODE": "time", "CB_WINDOW_SIZE": 10, "HTTP_TIMEOUT_SEC": 30},
            ("CB_WINDOW_SIZE=10", "HTTP_TIMEOUT_SEC=30", "at least 60 s"),
        ),
    ],
    ids=["timeout-longer-than-deadline", "time-window-shorter-than-two-timeouts"],
)
def test_contradicting_settings_are_refused_naming_both(
    settings: dict[str, object], names: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as raised:
        ReliabilityConfig(**settings)  # type: ignore[arg-type]
    for name in names:
        assert name in str(raised.value)


def test_settings_that_agree_are_accepted() -> None:
    assert ReliabilityConfig(HTTP_TIMEOUT_SEC=5, DEADLINE_SEC=5).DEADLINE_SEC == 5
    assert (
        ReliabilityConfig(CB_MODE="time", CB_WINDOW_SIZE=10, HTTP_TIMEOUT_SEC=5).CB_MODE == "time"
    )


def test_jitter_and_idempotency_settings_from_the_environment() -> None:
    cfg = ReliabilityConfig.from_env({"RETRY_JITTER": "full", "RETRY_NON_IDEMPOTENT": "yes"})
    assert (cfg.RETRY_JITTER, cfg.RETRY_NON_IDEMPOTENT) == ("full", True)
    with pytest.raises(ConfigError, match="RETRY_JITTER='gauss' is not accepted: expected one of"):
        ReliabilityConfig.from_env({"RETRY_JITTER": "gauss"})


# --- the table of specs, parsers and checkers -----------------------------------------------------

from types import MappingProxyType  # noqa: E402

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from otel_resilience import _config  # noqa: E402

_NUMERIC = sorted(name for name, spec in _config._SPECS.items() if spec.kind in (int, float))


def test_every_kind_of_setting_has_a_parser_and_a_checker() -> None:
    kinds = {spec.kind for spec in _config._SPECS.values()}
    assert kinds <= set(_config._PARSERS)
    assert kinds <= set(_config._CHECKERS)
    assert set(_config._SPECS) == {f.name for f in dataclasses.fields(ReliabilityConfig)}


@pytest.mark.parametrize("table", ["_SPECS", "_PARSERS", "_CHECKERS"])
def test_the_config_tables_are_read_only(table: str) -> None:
    mapping = getattr(_config, table)
    assert isinstance(mapping, MappingProxyType)
    with pytest.raises(TypeError):
        mapping["HTTP_RETRIES"] = None


def _in_range(name: str) -> st.SearchStrategy[int | float]:
    spec = _config._SPECS[name]
    if spec.kind is int:
        return st.integers(int(spec.low or 0), int(spec.high or 10**6))
    return st.floats(spec.low or 0.0, spec.high, exclude_min=spec.low_open).filter(
        lambda v: v == 0 or abs(v) >= 2.3e-308
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), name=st.sampled_from(_NUMERIC))
def test_a_number_in_range_is_kept_in_code_and_from_the_environment(
    data: st.DataObject, name: str
) -> None:
    value = data.draw(_in_range(name))
    # settings cross-checked with another get a companion that agrees (tested on their own)
    companions = {
        "DEADLINE_SEC": "HTTP_TIMEOUT_SEC",
        "HEDGE_DELAY_SEC": "HTTP_TIMEOUT_SEC",
        "CONCURRENCY_LIMIT_MIN": "CONCURRENCY_LIMIT_MAX",
        "CB_RESET_MAX_SEC": "CB_RESET_SEC",  # the cap is at least the first open time
    }
    others: dict[str, object] = {}
    if name in companions and value > 0:
        others[companions[name]] = value
    in_code = getattr(ReliabilityConfig(**{name: value}, **others), name)  # type: ignore[arg-type]
    assert in_code == value
    assert type(in_code) is type(value)
    variable = _config._SPECS[name].env or name
    env = {variable: repr(value), **{k: repr(v) for k, v in others.items()}}
    from_env = getattr(ReliabilityConfig.from_env(env), name)
    assert from_env == value


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(_NUMERIC), below=st.booleans(), beyond=st.integers(1, 10**9))
@example(name="CB_RESET_SEC", below=True, beyond=0)  # the open low bound itself
@example(name="HTTP_RETRIES", below=False, beyond=1)
def test_a_number_out_of_range_names_the_field_the_value_and_the_range(
    name: str, below: bool, beyond: int
) -> None:
    spec = _config._SPECS[name]
    assert spec.low is not None
    assert spec.high is not None
    value = spec.low - beyond if below else spec.high + beyond
    if value == spec.low and not spec.low_open:
        value -= 1
    with pytest.raises(ConfigError) as caught:
        ReliabilityConfig(**{name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not accepted: ")
    assert message.endswith(f"expected {spec.describe()}")


def test_a_whole_float_for_an_integer_setting_is_shown_as_the_integer_it_became() -> None:
    assert ReliabilityConfig(HTTP_RETRIES=7.0).HTTP_RETRIES == 7
    with pytest.raises(
        ConfigError, match=r"^HTTP_RETRIES=200 is not accepted: expected an integer"
    ):
        ReliabilityConfig(HTTP_RETRIES=200.0)
    with pytest.raises(ConfigError, match=r"^HTTP_RETRIES=2\.5 is not accepted"):
        ReliabilityConfig(HTTP_RETRIES=2.5)


def test_a_validator_problem_comes_before_the_accepted_values() -> None:
    with pytest.raises(ConfigError) as caught:
        ReliabilityConfig(REDACT_PATTERNS=("(",))
    message = str(caught.value)
    assert message.startswith("REDACT_PATTERNS=('(',) is not accepted: ")
    assert "; expected a tuple of regular expressions" in message
