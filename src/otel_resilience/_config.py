"""Configuration: :class:`ReliabilityConfig`, environment loading, per-service overrides.

The seed's five settings keep their names, environment variables and defaults; the rest are new
knobs with defaults that keep the seed's behaviour. Every value is validated when the config is
built, so ``HTTP_RETRIES=abc`` or ``CB_RESET_SEC=-1`` fails at load with the variable's name, the
value and the accepted range, never in the middle of a call.

Per-service settings come from code (:func:`configure`) or from the environment:
``RELIABILITY_<SERVICE>_<FIELD>`` (e.g. ``RELIABILITY_OPENAI_HTTP_RETRIES=5``) overrides one field
for one service, where ``<SERVICE>`` is the service name upper-cased with every character that is
not a letter or digit turned into ``_``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Final, Literal

from ._errors import ExternalServiceError
from ._rates import rate_problem
from ._redact import redact_url
from ._redis_url import ACCEPTED as _REDIS_URL_ACCEPTED
from ._redis_url import redis_url_problem
from ._scrub import check_pattern

BreakerMode = Literal["consecutive", "count", "time"]
_BREAKER_MODES: Final = ("consecutive", "count", "time")


class ConfigError(ValueError):
    """A setting has a value outside what it accepts. The message names the setting."""


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the low bound itself is not accepted
    optional: bool = False  # None is accepted (the feature is off)
    choices: tuple[str, ...] = ()
    env: str | None = None  # environment variable, when it is not the field's own name
    pattern: str | None = None  # strings: a regular expression the value must match
    hint: str | None = None  # strings: what the pattern accepts, in words
    #: a last check of a valid-looking value: None, or why the value cannot be used
    validate: Callable[[Any], str | None] | None = None

    def describe(self) -> str:
        return self._accepted() + (", or unset/none to turn it off" if self.optional else "")

    def _accepted(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.hint:
            return self.hint
        if self.kind is bool:
            return "a boolean (true/false, 1/0, yes/no, on/off)"
        return self._range()

    def _range(self) -> str:
        words = _RANGE_WORDS[self.high is None, self.low_open]
        noun = _NOUNS.get(self.kind, "a number")
        return words.format(noun=noun, low=_fmt(self.low), high=_fmt(self.high))


#: the words of a numeric range, by (no high bound, low bound excluded)
_RANGE_WORDS: Final = MappingProxyType(
    {
        (True, True): "{noun} > {low}",
        (True, False): "{noun} >= {low}",
        (False, True): "{noun} > {low} and <= {high}",
        (False, False): "{noun} from {low} to {high}",
    }
)
_NOUNS: Final[Mapping[type, str]] = MappingProxyType({int: "an integer"})


def _fmt(value: float | None) -> str:
    if value is None:  # pragma: no cover - every bounded spec has both bounds
        return "?"
    return str(int(value)) if float(value).is_integer() else str(value)


_DAY: Final = 86_400.0
_BACKENDS: Final = ("memory", "redis")
_MANUAL_STATES: Final = ("forced_open", "disabled", "metrics_only")
_LOAD_MODES: Final = ("fixed", "adaptive")
#: the error types an injected chaos fault may have (the library's own decisions excluded)
_CHAOS_ERRORS: Final = tuple(
    e.value for e in ExternalServiceError if e.value not in ("circuit_open", "throttled")
)
#: the rate notation of the ``limits`` library: "100/second", "10 per second", "5 per 2 minutes"
_RATE_PATTERN: Final = r"\s*[0-9]+\s*(/|per)\s*([0-9]+\s*)?(second|minute|hour|day)s?\s*"


def _redact_problem(value: tuple[str, ...]) -> str | None:
    return next(filter(None, map(check_pattern, value)), None)


#: accepted values of every field, in declaration order
_SPECS: Final[Mapping[str, _Spec]] = MappingProxyType(
    {
        "HTTP_TIMEOUT_SEC": _Spec(float, 0, _DAY, low_open=True),
        "HTTP_RETRIES": _Spec(int, 0, 100),
        "HTTP_BACKOFF_BASE_MS": _Spec(int, 0, 3_600_000),
        "CB_FAIL_THRESHOLD": _Spec(int, 1, 1_000_000),
        "CB_RESET_SEC": _Spec(float, 0, _DAY, low_open=True),
        "HTTP_BACKOFF_MAX_MS": _Spec(int, 0, 3_600_000),
        "RETRY_AFTER_MAX_SEC": _Spec(float, 0, _DAY),
        "RETRY_UNKNOWN_ERRORS": _Spec(bool),
        "CB_HALF_OPEN_MAX_CALLS": _Spec(int, 1, 10_000),
        "CB_MODE": _Spec(str, choices=_BREAKER_MODES),
        "CB_WINDOW_SIZE": _Spec(int, 1, 100_000),
        "CB_FAILURE_RATE_THRESHOLD": _Spec(float, 0, 1, low_open=True),
        "CB_MIN_CALLS": _Spec(int, 1, 100_000),
        "CB_SLOW_CALL_SEC": _Spec(float, 0, _DAY, low_open=True, optional=True),
        "CB_SLOW_CALL_RATE_THRESHOLD": _Spec(float, 0, 1, low_open=True),
        "CB_MANUAL_STATE": _Spec(str, optional=True, choices=_MANUAL_STATES),
        "DEADLINE_SEC": _Spec(float, 0, _DAY, low_open=True, optional=True),
        "RETRY_BUDGET_RATIO": _Spec(float, 0, 10, optional=True),
        "RETRY_BUDGET_MIN_PER_SEC": _Spec(float, 0, 1_000_000),
        "RETRY_BUDGET_WINDOW_SEC": _Spec(float, 0, 3_600, low_open=True),
        "STATE_BACKEND": _Spec(str, choices=_BACKENDS, env="RELIABILITY_STATE_BACKEND"),
        "REDIS_URL": _Spec(
            str,
            optional=True,
            env="RELIABILITY_REDIS_URL",
            pattern=r"(redis|rediss|unix)://\S+",
            hint="a redis://host:port/db, rediss:// or unix:// URL",
        ),
        "REDIS_KEY_PREFIX": _Spec(
            str,
            env="RELIABILITY_REDIS_KEY_PREFIX",
            pattern=r"[A-Za-z0-9_.:-]{1,64}",
            hint="1 to 64 letters, digits or _ . : -",
        ),
        "REDIS_TIMEOUT_MS": _Spec(int, 1, 10_000, env="RELIABILITY_REDIS_TIMEOUT_MS"),
        "REDIS_KEY_TTL_SEC": _Spec(int, 1, 30 * 86_400, env="RELIABILITY_REDIS_KEY_TTL_SEC"),
        "RATE_LIMIT": _Spec(
            str,
            optional=True,
            pattern=_RATE_PATTERN,
            hint="a rate such as '100/second', '10 per second' or '600 per 1 minute'",
            validate=rate_problem,  # the limiters' own parser
        ),
        "RATE_LIMIT_MAX_WAIT_SEC": _Spec(float, 0, 3_600),
        "REDACT_PATTERNS": _Spec(
            tuple,
            hint=(
                "a tuple of regular expressions ('default' stands for the built-in ones), or in the"
                " environment a list separated by ';' (or ',' when no ';' is used); empty or none:"
                " no redaction"
            ),
            validate=_redact_problem,
        ),
        "TIMEOUT_MODE": _Spec(str, choices=("interrupt", "thread", "cooperative")),
        # retry safety and hedging (issue 14)
        "RETRY_JITTER": _Spec(str, choices=("seed", "full", "decorrelated")),
        "RETRY_NON_IDEMPOTENT": _Spec(bool),
        "HEDGE_MAX_EXTRA": _Spec(int, 0, 4),
        "HEDGE_DELAY_SEC": _Spec(float, 0, _DAY, low_open=True, optional=True),
        "HEDGE_DELAY_PERCENTILE": _Spec(float, 0, 99.9, low_open=True, optional=True),
        "HEDGE_BUDGET_RATIO": _Spec(float, 0, 1),
        # load control (issue 13): concurrency limit and adaptive rate, docs/load-control.md
        "CONCURRENCY_LIMIT": _Spec(int, 1, 100_000, optional=True),
        "CONCURRENCY_LIMIT_MODE": _Spec(str, choices=_LOAD_MODES),
        "CONCURRENCY_LIMIT_MIN": _Spec(int, 1, 100_000),
        "CONCURRENCY_LIMIT_MAX": _Spec(int, 1, 100_000),
        "CONCURRENCY_LIMIT_MAX_WAIT_SEC": _Spec(float, 0, 3_600),
        "RATE_LIMIT_MODE": _Spec(str, choices=_LOAD_MODES),
        # chaos injection for staging (issue 16)
        "CHAOS_ENABLED": _Spec(bool),
        "CHAOS_FORCE": _Spec(bool),
        "CHAOS_FAULT_RATE": _Spec(float, 0, 1),
        "CHAOS_FAULT_ERROR": _Spec(str, choices=_CHAOS_ERRORS),
        "CHAOS_LATENCY_SEC": _Spec(float, 0, _DAY),
        "CHAOS_LATENCY_RATE": _Spec(float, 0, 1),
        # issue 14 item 3: growing break durations
        "CB_RESET_MULTIPLIER": _Spec(float, 1, 100),
        "CB_RESET_MAX_SEC": _Spec(float, 0, _DAY, low_open=True, optional=True),
    }
)


@dataclass(frozen=True, slots=True)
class ReliabilityConfig:
    """Reliability engineering configuration for external calls.

    The first five fields are the seed's, with its environment variables and defaults.

    >>> from otel_resilience import ReliabilityConfig
    >>> cfg = ReliabilityConfig(HTTP_RETRIES=5)
    >>> cfg.HTTP_RETRIES, cfg.CB_FAIL_THRESHOLD
    (5, 5)
    >>> ReliabilityConfig(CB_RESET_SEC=-1)
    Traceback (most recent call last):
    ...
    otel_resilience.ConfigError: CB_RESET_SEC=-1 is not accepted: expected a number > 0 ...
    """

    #: default timeout of each attempt, in seconds (the seed's ``int``; fractions are accepted)
    HTTP_TIMEOUT_SEC: float = 30
    #: attempts in all, the first included: 3 means "try up to 3 times" (0 and 1: a single attempt)
    HTTP_RETRIES: int = 3
    #: backoff before retry n is ``base * 2**(n-1)`` ms plus up to 10% jitter
    HTTP_BACKOFF_BASE_MS: int = 1000
    #: consecutive failures that open a circuit (``CB_MODE=consecutive``)
    CB_FAIL_THRESHOLD: int = 5
    #: seconds an open circuit waits before letting a probe through (HALF_OPEN)
    CB_RESET_SEC: float = 60
    #: cap of the computed backoff (jitter comes on top, so retries stay spread at the cap)
    HTTP_BACKOFF_MAX_MS: int = 30_000
    #: cap of a server's ``Retry-After`` (it replaces the computed backoff up to this)
    RETRY_AFTER_MAX_SEC: float = 60
    #: retry errors that could not be classified (``unknown_error``)
    RETRY_UNKNOWN_ERRORS: bool = True
    #: probe calls a half-open circuit admits at once; the others are rejected
    CB_HALF_OPEN_MAX_CALLS: int = 1
    #: ``consecutive`` (the seed's), ``count`` (last CB_WINDOW_SIZE calls) or ``time`` (last
    #: CB_WINDOW_SIZE seconds): the window modes open on a failure or slow-call *rate*
    CB_MODE: BreakerMode = "consecutive"
    #: window size: calls (``count``) or seconds (``time``)
    CB_WINDOW_SIZE: int = 100
    #: failure rate (0-1] over the window that opens the circuit
    CB_FAILURE_RATE_THRESHOLD: float = 0.5
    #: calls the window must hold before a rate can open the circuit
    CB_MIN_CALLS: int = 10
    #: a call slower than this counts as slow (window modes); unset: no slow-call tracking
    CB_SLOW_CALL_SEC: float | None = None
    #: slow-call rate (0-1] over the window that opens the circuit
    CB_SLOW_CALL_RATE_THRESHOLD: float = 1.0
    #: an operator's manual state for the service's breakers: ``forced_open`` (reject every
    #: call), ``disabled`` (always closed, nothing recorded) or ``metrics_only`` (transitions
    #: happen and are reported, nothing is rejected); unset: normal operation
    CB_MANUAL_STATE: Literal["forced_open", "disabled", "metrics_only"] | None = None
    #: total time budget of one call across attempts and backoff; unset: attempts x timeout
    DEADLINE_SEC: float | None = None
    #: retries allowed as a fraction of recent calls (0.2 = 20%); unset: no retry budget
    RETRY_BUDGET_RATIO: float | None = None
    #: retries always allowed per second on top of the ratio, so quiet services can still retry
    RETRY_BUDGET_MIN_PER_SEC: float = 1.0
    #: how far back the retry budget looks, in seconds
    RETRY_BUDGET_WINDOW_SEC: float = 10.0
    #: where breaker state lives: ``memory`` (this process) or ``redis`` (shared by processes)
    STATE_BACKEND: Literal["memory", "redis"] = "memory"
    #: the Redis server of the ``redis`` backend and of shared rate limits
    REDIS_URL: str | None = None
    #: prefix of every Redis key the library writes
    REDIS_KEY_PREFIX: str = "otel_resilience"
    #: longest a Redis round trip may take before the breaker falls back to local state
    REDIS_TIMEOUT_MS: int = 50
    #: abandoned breakers' keys disappear after this long without use
    REDIS_KEY_TTL_SEC: int = 86_400
    #: the service's own rate limit (``limits`` notation, e.g. ``"100/second"``); unset: none
    RATE_LIMIT: str | None = None
    #: how long a call over the limit waits for a slot before failing ``throttled`` (0: at once)
    RATE_LIMIT_MAX_WAIT_SEC: float = 0.0
    #: regular expressions whose matches (their groups, when they have some) are masked in
    #: exception text copied into spans and errors; ``"default"`` stands for the built-in ones
    #: (URL passwords, ``api_key=``/``token=``/``password=``, bearer tokens); empty: none
    REDACT_PATTERNS: tuple[str, ...] = ("default",)
    #: how a sync attempt is held to its timeout (docs/timeouts.md): ``interrupt`` (SIGALRM in
    #: the main thread, a worker elsewhere), ``thread`` (always a worker) or ``cooperative``
    #: (no preemption: ``remaining_time()`` and the client's own timeouts)
    TIMEOUT_MODE: Literal["interrupt", "thread", "cooperative"] = "interrupt"
    # --- retry safety (issue 14) ---
    #: the backoff's jitter: ``seed`` (the spec's: delay plus 0-10%), ``full`` (AWS's
    #: ``rand(0, 1) * delay``) or ``decorrelated`` (Polly's V2 decorrelated jitter)
    RETRY_JITTER: Literal["seed", "full", "decorrelated"] = "seed"
    #: retry a call made with ``idempotent=False`` after any transient failure; false (the
    #: default): only when the failure proves the request was not processed (docs/retries.md)
    RETRY_NON_IDEMPOTENT: bool = False
    #: extra attempts a slow idempotent call may send beside its first (0: no hedging; at most 4)
    HEDGE_MAX_EXTRA: int = 0
    #: fixed wait before each hedge, seconds (unset: ``HEDGE_DELAY_PERCENTILE``)
    HEDGE_DELAY_SEC: float | None = None
    #: the wait is this percentile of the endpoint's recent successful latencies (default 95)
    HEDGE_DELAY_PERCENTILE: float | None = None
    #: hedges at most this share of calls (10 s window), so hedging never doubles the load
    HEDGE_BUDGET_RATIO: float = 0.1
    # --- load control (issue 13; docs/load-control.md) ----------------------------------------
    #: calls in flight to the service at once (each attempt holds a slot); unset: no limit
    #: (``fixed``), or the adaptive limit's starting point (default 20, within MIN..MAX)
    CONCURRENCY_LIMIT: int | None = None
    #: ``fixed`` (``CONCURRENCY_LIMIT`` as set) or ``adaptive`` (the limit follows the
    #: service's latency and overload errors, between ``CONCURRENCY_LIMIT_MIN`` and ``_MAX``)
    CONCURRENCY_LIMIT_MODE: Literal["fixed", "adaptive"] = "fixed"
    #: lowest limit the adaptive mode may reach
    CONCURRENCY_LIMIT_MIN: int = 1
    #: highest limit the adaptive mode may reach
    CONCURRENCY_LIMIT_MAX: int = 200
    #: how long an attempt waits for a free slot before failing ``concurrency_limited`` (0: at
    #: once); never longer than the call's deadline
    CONCURRENCY_LIMIT_MAX_WAIT_SEC: float = 0.0
    #: ``fixed`` (``RATE_LIMIT`` only) or ``adaptive`` (a local rate learnt from the service's
    #: 429s, ``Retry-After`` and rate-limit headers, under ``RATE_LIMIT`` when that is set)
    RATE_LIMIT_MODE: Literal["fixed", "adaptive"] = "fixed"
    # --- chaos injection for staging (issue 16, docs/chaos.md) ---
    #: inject faults and latency into this service's attempts (off by default; refused when
    #: ``OTEL_RESOURCE_ATTRIBUTES`` says ``deployment.environment=production`` unless forced)
    CHAOS_ENABLED: bool = False
    #: allow ``CHAOS_ENABLED`` in a ``deployment.environment=production`` process
    CHAOS_FORCE: bool = False
    #: share of attempts (0-1) that fail with ``CHAOS_FAULT_ERROR`` instead of being made
    CHAOS_FAULT_RATE: float = 0.0
    #: the error type an injected fault has (an ``ExternalServiceError`` value)
    CHAOS_FAULT_ERROR: str = "connection_error"
    #: seconds of latency added inside the attempt (so it counts against the attempt timeout)
    CHAOS_LATENCY_SEC: float = 0.0
    #: share of attempts (0-1) that get ``CHAOS_LATENCY_SEC`` of latency
    CHAOS_LATENCY_RATE: float = 1.0
    # --- issue 14 item 3: growing break durations ---
    #: each re-opening without a recovery (a failed half-open probe) multiplies the open time
    #: by this, plus 0-10% jitter, up to ``CB_RESET_MAX_SEC``; a close resets it to
    #: ``CB_RESET_SEC`` (1, the default: the seed's fixed ``CB_RESET_SEC``)
    CB_RESET_MULTIPLIER: float = 1.0
    #: the longest an open circuit waits once its open time grew (unset: one day)
    CB_RESET_MAX_SEC: float | None = None

    def __post_init__(self) -> None:
        for name, spec in _SPECS.items():
            object.__setattr__(self, name, _check(name, getattr(self, name), spec, source=name))
        _check_redis_url(self.REDIS_URL)
        _cross_check(self)

    def __repr__(self) -> str:
        # field by field as the dataclass would, with the passwords of URLs masked
        shown = (f"{f.name}={_safe_repr(getattr(self, f.name))}" for f in fields(self) if f.repr)
        return f"ReliabilityConfig({', '.join(shown)})"

    # --- loading -----------------------------------------------------------------------------

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, service: str | None = None
    ) -> ReliabilityConfig:
        """Build a config from the environment (``os.environ`` by default).

        Reads the seed's variables (``HTTP_TIMEOUT_SEC``, ``HTTP_RETRIES``, ...) and, when
        ``service`` is given, ``RELIABILITY_<SERVICE>_<FIELD>`` overrides on top.

        >>> env = {"HTTP_RETRIES": "5", "RELIABILITY_OPENAI_HTTP_RETRIES": "2"}
        >>> ReliabilityConfig.from_env(env).HTTP_RETRIES
        5
        >>> ReliabilityConfig.from_env(env, service="openai").HTTP_RETRIES
        2
        >>> ReliabilityConfig.from_env({"HTTP_RETRIES": "abc"})
        Traceback (most recent call last):
        ...
        otel_resilience.ConfigError: HTTP_RETRIES='abc' is not accepted: ...
        """
        env = os.environ if environ is None else environ
        values = _from_env(env, _VARIABLES)
        if service is not None:
            prefix = service_env_prefix(service)
            values |= _from_env(env, {name: prefix + name for name in _SPECS})
        return cls(**values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ReliabilityConfig:
        """A copy with some fields replaced; unknown names are an error naming them."""
        unknown = sorted(set(overrides) - set(_SPECS))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; accepted: {', '.join(_SPECS)}"
            )
        return dataclasses.replace(self, **overrides)

    @property
    def max_attempts(self) -> int:
        """Attempts in all for one call (``HTTP_RETRIES``, at least 1)."""
        return max(1, self.HTTP_RETRIES)


def _check_redis_url(url: str | None) -> None:
    if url is None:
        return
    problem = redis_url_problem(url)
    if problem:
        raise ConfigError(
            f"REDIS_URL={redact_url(url)!r} (environment: RELIABILITY_REDIS_URL)"
            f" is not accepted: {problem}; expected {_REDIS_URL_ACCEPTED}"
        )


def _cross_check(config: ReliabilityConfig) -> None:
    """Settings that are valid alone but contradict each other (the .NET standard pipeline's
    checks): refused with both names."""
    for check in _CROSS_CHECKS:
        check(config)


def _backend_has_url(config: ReliabilityConfig) -> None:
    if config.STATE_BACKEND == "redis" and config.REDIS_URL is None:
        raise ConfigError(
            "STATE_BACKEND='redis' needs REDIS_URL (environment: RELIABILITY_REDIS_URL),"
            " e.g. redis://127.0.0.1:6379/0"
        )


def _timeout_within_deadline(config: ReliabilityConfig) -> None:
    timeout, deadline = config.HTTP_TIMEOUT_SEC, config.DEADLINE_SEC
    if deadline is not None and timeout > deadline:
        raise ConfigError(
            f"HTTP_TIMEOUT_SEC={timeout:g} is longer than DEADLINE_SEC={deadline:g}: an attempt"
            " could never use its whole timeout; lower HTTP_TIMEOUT_SEC or raise DEADLINE_SEC"
        )


def _one_hedge_delay(config: ReliabilityConfig) -> None:
    hedge_delay, percentile = config.HEDGE_DELAY_SEC, config.HEDGE_DELAY_PERCENTILE
    if hedge_delay is not None and percentile is not None:
        raise ConfigError(
            f"HEDGE_DELAY_SEC={hedge_delay:g} and HEDGE_DELAY_PERCENTILE="
            f"{percentile:g} are both set: choose a fixed delay or a percentile"
        )


def _hedge_within_timeout(config: ReliabilityConfig) -> None:
    hedge_delay, timeout = config.HEDGE_DELAY_SEC, config.HTTP_TIMEOUT_SEC
    if hedge_delay is not None and hedge_delay > timeout:
        raise ConfigError(
            f"HEDGE_DELAY_SEC={hedge_delay:g} is longer than the attempt timeout"
            f" (HTTP_TIMEOUT_SEC={timeout:g}): no hedge could ever start"
        )


def _window_holds_two_timeouts(config: ReliabilityConfig) -> None:
    timeout = config.HTTP_TIMEOUT_SEC
    if config.CB_MODE == "time" and 2 * timeout > config.CB_WINDOW_SIZE:
        raise ConfigError(
            f"CB_WINDOW_SIZE={config.CB_WINDOW_SIZE} s (CB_MODE='time') is shorter than two"
            f" attempt timeouts (2 x HTTP_TIMEOUT_SEC={timeout:g}): the window would judge"
            " calls before they can end; use a window of at least"
            f" {math.ceil(2 * timeout)} s or a shorter HTTP_TIMEOUT_SEC"
        )


def _check_load_control(config: ReliabilityConfig) -> None:
    """The concurrency limit's bounds: MIN at most MAX, an adaptive start between them."""
    low, high = config.CONCURRENCY_LIMIT_MIN, config.CONCURRENCY_LIMIT_MAX
    if low > high:
        raise ConfigError(
            f"CONCURRENCY_LIMIT_MIN={low} is not accepted: expected at most"
            f" CONCURRENCY_LIMIT_MAX ({high})"
        )
    start = config.CONCURRENCY_LIMIT
    adaptive = config.CONCURRENCY_LIMIT_MODE == "adaptive"
    if adaptive and start is not None and not low <= start <= high:
        raise ConfigError(
            f"CONCURRENCY_LIMIT={start} is not accepted with CONCURRENCY_LIMIT_MODE='adaptive':"
            f" expected a starting limit from CONCURRENCY_LIMIT_MIN ({low}) to"
            f" CONCURRENCY_LIMIT_MAX ({high})"
        )


def _check_waits(config: ReliabilityConfig) -> None:
    """A max wait longer than the deadline is refused (when its feature is on)."""
    deadline = config.DEADLINE_SEC
    if deadline is None:
        return
    for name, limit, mode in (
        ("CONCURRENCY_LIMIT_MAX_WAIT_SEC", config.CONCURRENCY_LIMIT, config.CONCURRENCY_LIMIT_MODE),
        ("RATE_LIMIT_MAX_WAIT_SEC", config.RATE_LIMIT, config.RATE_LIMIT_MODE),
    ):
        wait = getattr(config, name)
        if _limit_on(limit, mode) and wait > deadline:
            raise ConfigError(
                f"{name}={_fmt(wait)} is not accepted with DEADLINE_SEC={_fmt(deadline)}:"
                " expected a wait no longer than the deadline (a call could never wait that long)"
            )


def _limit_on(limit: object, mode: str) -> bool:
    """A load-control feature is on: its limit is set, or its adaptive mode learns one."""
    return limit is not None or mode == "adaptive"


def _window_holds_min_calls(config: ReliabilityConfig) -> None:
    if config.CB_MODE == "count" and config.CB_MIN_CALLS > config.CB_WINDOW_SIZE:
        raise ConfigError(
            f"CB_MIN_CALLS={config.CB_MIN_CALLS} is not accepted with CB_MODE='count':"
            f" expected at most CB_WINDOW_SIZE ({config.CB_WINDOW_SIZE}), or the window"
            " could never hold enough calls to open"
        )


def _check_reset_cap(config: ReliabilityConfig) -> None:
    """Issue 14 item 3: the cap of the growing open time is not below the first one."""
    reset_max = config.CB_RESET_MAX_SEC
    if reset_max is not None and reset_max < config.CB_RESET_SEC:
        raise ConfigError(
            f"CB_RESET_MAX_SEC={reset_max:g} is shorter than CB_RESET_SEC="
            f"{config.CB_RESET_SEC:g}: the cap of the growing open time must be at least the"
            " first one; raise CB_RESET_MAX_SEC or lower CB_RESET_SEC"
        )


#: the checks of settings against each other, in the order their errors take precedence
_CROSS_CHECKS: Final[tuple[Callable[[ReliabilityConfig], None], ...]] = (
    _backend_has_url,
    _timeout_within_deadline,
    _one_hedge_delay,
    _hedge_within_timeout,
    _window_holds_two_timeouts,
    _check_load_control,
    _check_waits,
    _window_holds_min_calls,
    _check_reset_cap,
)


def _safe_repr(value: object) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def service_env_prefix(service: str) -> str:
    """The variable prefix of a service: ``"chat-api"`` -> ``RELIABILITY_CHAT_API_``."""
    return "RELIABILITY_" + re.sub(r"[^A-Za-z0-9]", "_", service).upper() + "_"


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_NONE: Final = frozenset({"", "none", "off", "null"})


#: the only numerals accepted in the environment: ASCII digits, no ``_``, no hex or words
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_TEXT: Final = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _split_patterns(text: str) -> tuple[str, ...]:
    raw = text.strip()
    if raw.lower() in _NONE:
        return ()
    return tuple(filter(None, (item.strip() for item in raw.split(_separator(raw)))))


def _separator(raw: str) -> str:
    return ";" if ";" in raw else ","


#: the boolean of each accepted word
_BOOLEANS: Final = MappingProxyType(dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False))


def _parse_bool(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.lower()]
    except KeyError:
        raise ValueError(raw) from None


def _parse_int(raw: str) -> int:
    if _INT_TEXT.fullmatch(raw) is None:  # int() takes "1_0", non-ASCII digits
        raise ValueError(raw)
    return int(raw)


def _parse_float(raw: str) -> float:
    if _FLOAT_TEXT.fullmatch(raw) is None:  # float() takes "1_0", "infinity"
        raise ValueError(raw)
    return float(raw)


def _parse_str(raw: str) -> str:
    return raw


#: the text of an environment variable -> a value of the spec's kind (``ValueError`` if not)
_PARSERS: Final[Mapping[type, Callable[[str], Any]]] = MappingProxyType(
    {
        bool: _parse_bool,
        int: _parse_int,
        float: _parse_float,
        tuple: _split_patterns,
        str: _parse_str,
    }
)


def _parse(source: str, text: str, spec: _Spec) -> Any:
    raw = text.strip()
    if spec.optional and raw.lower() in _NONE:
        return None
    try:
        return _PARSERS[spec.kind](raw)
    except ValueError:
        raise ConfigError(
            f"{source}={text!r} is not accepted: expected {spec.describe()}"
        ) from None


def _from_text(source: str, text: str, spec: _Spec) -> Any:
    """Parse and check one environment value; errors name the variable and its text."""
    return _check(source, _parse(source, text, spec), spec, source=source, shown=text)


def _from_env(env: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, Any]:
    """The fields whose variable (``variables``: field name -> variable) is set in ``env``."""
    return {
        name: _from_text(var, env[var], _SPECS[name])
        for name, var in variables.items()
        if var in env
    }


#: the environment variable of each field
_VARIABLES: Final = MappingProxyType({name: spec.env or name for name, spec in _SPECS.items()})


class _Rejected(Exception):
    """A value its spec does not accept (as far as the check got), and why when the range
    alone does not say it."""

    def __init__(self, value: object, problem: str | None = None) -> None:
        super().__init__(problem)
        self.value = value
        self.problem = problem


def _check(name: str, value: Any, spec: _Spec, *, source: str, shown: str | None = None) -> Any:
    """``value`` as the field holds it; a :class:`ConfigError` naming ``source`` otherwise."""
    try:
        return _checked_value(value, spec)
    except _Rejected as rejected:
        raise ConfigError(_rejection(source, rejected, spec, shown)) from None


def _checked_value(value: Any, spec: _Spec) -> Any:
    if value is None:
        return _unset(spec)
    checker = _check_choice if spec.choices else _CHECKERS[spec.kind]
    return checker(value, spec)


def _unset(spec: _Spec) -> None:
    if not spec.optional:
        raise _Rejected(None)


def _rejection(source: str, rejected: _Rejected, spec: _Spec, shown: str | None) -> str:
    text = _safe_repr(rejected.value if shown is None else shown)
    why = "" if rejected.problem is None else f"{rejected.problem}; "
    return f"{source}={text} is not accepted: {why}expected {spec.describe()}"


def _validated(value: Any, spec: _Spec) -> Any:
    """The spec's last check of a well-formed value (e.g. a rate the limiters can parse)."""
    problem = spec.validate(value) if spec.validate is not None else None
    if problem is not None:
        raise _Rejected(value, problem)
    return value


def _check_choice(value: Any, spec: _Spec) -> Any:
    if value not in spec.choices:
        raise _Rejected(value)
    return value


def _check_tuple(value: Any, spec: _Spec) -> tuple[str, ...]:
    if isinstance(value, str):
        value = _split_patterns(value)
    if not _strings(value):
        raise _Rejected(value)
    return _validated(tuple(value), spec)  # type: ignore[no-any-return]


def _strings(value: object) -> bool:
    return isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)


def _check_str(value: Any, spec: _Spec) -> str:
    if not isinstance(value, str) or not _matches(value, spec.pattern):
        raise _Rejected(value)
    return _validated(value, spec)  # type: ignore[no-any-return]


def _matches(value: str, pattern: str | None) -> bool:
    return pattern is None or re.fullmatch(pattern, value, re.ASCII) is not None


def _check_bool(value: Any, spec: _Spec) -> bool:
    if not isinstance(value, bool):
        raise _Rejected(value)
    return value


def _check_number(value: Any, spec: _Spec) -> int | float:
    number = _KIND_CHECKS[spec.kind](_plain_number(value))
    if not _in_range(number, spec):
        raise _Rejected(number)
    return number


def _plain_number(value: Any) -> int | float:
    """An IntEnum, a float subclass...: the plain number, so nothing odd travels further."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Rejected(value)
    return int(value) if isinstance(value, int) else float(value)


def _in_range(number: int | float, spec: _Spec) -> bool:
    return _above_low(number, spec) and (spec.high is None or number <= spec.high)


def _above_low(number: int | float, spec: _Spec) -> bool:
    return spec.low is None or number > spec.low or (number == spec.low and not spec.low_open)


def _whole(number: int | float) -> int:
    if isinstance(number, float):
        if not number.is_integer():
            raise _Rejected(number)
        return int(number)
    return number


def _finite(number: int | float) -> int | float:
    if not math.isfinite(number) or (number != 0 and abs(number) < sys.float_info.min):
        raise _Rejected(number)  # subnormal numbers (5e-324) are not a setting anyone means
    return number


#: the check of each kind of setting (a spec with ``choices`` is checked against them instead)
_CHECKERS: Final[Mapping[type, Callable[[Any, _Spec], Any]]] = MappingProxyType(
    {
        tuple: _check_tuple,
        str: _check_str,
        bool: _check_bool,
        int: _check_number,
        float: _check_number,
    }
)
#: a plain number -> the number a setting of that kind holds (``_Rejected`` if none)
_KIND_CHECKS: Final[Mapping[type, Callable[[int | float], int | float]]] = MappingProxyType(
    {int: _whole, float: _finite}
)


# --- the registry (owned by a Runtime) -------------------------------------------------------


class ConfigRegistry:
    """The default config and the per-service configs of one runtime, resolved and cached.

    The environment is read once, at first use. ``on_change`` is called after every change
    (the runtime remakes its service contexts and drops breakers whose settings changed).
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._environ = environ
        self._on_change = on_change
        self._lock = threading.Lock()
        self._default: ReliabilityConfig | None = None
        self._services: dict[str, ReliabilityConfig | Mapping[str, Any]] = {}
        self._cache: dict[str, ReliabilityConfig] = {}

    def get(self, service_name: str | None = None) -> ReliabilityConfig:
        """The config in force for ``service_name`` (the default config when None)."""
        service = service_name or ""
        found = self._cache.get(service)
        if found is not None:
            return found
        return self.resolve(service)

    def resolve(self, service: str) -> ReliabilityConfig:
        with self._lock:
            found = self._cache.get(service)
            if found is None:
                found = self._cache[service] = self._build(service)
            return found

    def _build(self, service: str) -> ReliabilityConfig:
        env = os.environ if self._environ is None else self._environ
        if self._default is None:
            self._default = ReliabilityConfig.from_env(env)
        in_code = self._services.get(service)
        if isinstance(in_code, ReliabilityConfig):
            return in_code
        cfg = self._default
        env_fields = _service_env_fields(env, service)
        if env_fields is not None:
            cfg = cfg.with_overrides(env_fields)
        if in_code is not None:
            cfg = cfg.with_overrides(in_code)
        return cfg

    def configure(
        self,
        default: ReliabilityConfig | None = None,
        *,
        services: Mapping[str, ReliabilityConfig | Mapping[str, Any]] | None = None,
    ) -> None:
        """Set the default config and/or per-service configs (see ``otel_resilience.configure``)."""
        checked = _checked_services(default, services)
        with self._lock:
            if default is not None:
                self._default = default
            self._services.update(checked)
            self._cache.clear()
        self._changed()

    def reset(self) -> None:
        """Forget every configured value; the environment is read again at next use."""
        with self._lock:
            self._default = None
            self._services.clear()
            self._cache.clear()
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


def _service_env_fields(env: Mapping[str, str], service: str) -> dict[str, Any] | None:
    """The fields the service's ``RELIABILITY_<SERVICE>_<FIELD>`` variables set, checked with
    the rest of the environment as :meth:`ReliabilityConfig.from_env` checks them; None when no
    variable has the service's prefix."""
    prefix = service_env_prefix(service)
    if not any(key.startswith(prefix) for key in env):
        return None
    overrides = ReliabilityConfig.from_env(env, service=service)
    return {name: getattr(overrides, name) for name in _SPECS if prefix + name in env}


def _checked_services(
    default: ReliabilityConfig | None,
    services: Mapping[str, ReliabilityConfig | Mapping[str, Any]] | None,
) -> dict[str, ReliabilityConfig | Mapping[str, Any]]:
    """``configure``'s arguments checked (every mapping validated now, not at the first call)."""
    base = _checked_default(default)
    return {name: _checked_service(base, name, value) for name, value in (services or {}).items()}


def _checked_default(default: ReliabilityConfig | None) -> ReliabilityConfig:
    if default is None:
        return ReliabilityConfig()
    if not isinstance(default, ReliabilityConfig):
        raise TypeError(f"default must be a ReliabilityConfig, got {type(default).__name__}")
    return default


def _checked_service(
    base: ReliabilityConfig, name: object, value: object
) -> ReliabilityConfig | Mapping[str, Any]:
    if not isinstance(name, str) or not name:
        raise TypeError(f"service names must be non-empty strings, got {name!r}")
    if isinstance(value, ReliabilityConfig):
        return value
    if isinstance(value, Mapping):
        base.with_overrides(value)
        return dict(value)
    raise TypeError(
        f"services[{name!r}] must be a ReliabilityConfig or a mapping of fields,"
        f" got {type(value).__name__}"
    )
