"""Scenario presets: how flaky each stand-in service is, and when.

Every duration is written for a nominal 60-second run and multiplied by ``time_scale``, so
``--duration 6`` plays the same story ten times faster (the outage still opens the antivirus
breaker and the breaker still recovers before the end). ``Retry-After`` stays a whole number of
seconds, as HTTP requires, and never drops below one second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final

#: the story of every scenario is told over this many seconds at time scale 1
NOMINAL_PERIOD_SEC: Final = 60.0

#: the smallest time scale the demo accepts (a 3-second run)
MIN_TIME_SCALE: Final = 0.05


@dataclass(frozen=True, slots=True)
class Knobs:
    """Failure and latency knobs of the stand-in services (probabilities are per request)."""

    # openai / chat.completions
    llm_latency_ms: tuple[float, float] = (50.0, 800.0)
    llm_rate_limit: float = 0.04
    llm_retry_after_sec: float = 2.0
    llm_server_error: float = 0.02
    # gcs / upload, download
    storage_latency_ms: tuple[float, float] = (20.0, 150.0)
    storage_reset: float = 0.02
    storage_slow_read: float = 0.03
    storage_slow_read_ms: float = 2500.0
    # clamav / scan
    av_latency_ms: tuple[float, float] = (30.0, 200.0)
    av_timeout: float = 0.02
    av_hang_ms: float = 3000.0
    #: (start, end) of the antivirus outage as fractions of the period; None for no outage
    av_outage: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in (
            "llm_rate_limit",
            "llm_server_error",
            "storage_reset",
            "storage_slow_read",
            "av_timeout",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r}: a probability must be between 0 and 1")
        if self.av_outage is not None:
            start, end = self.av_outage
            if not 0.0 <= start < end <= 1.0:
                raise ValueError(
                    f"av_outage={self.av_outage!r}: need 0 <= start < end <= 1"
                    " (fractions of the run)"
                )


@dataclass(frozen=True, slots=True)
class Operation:
    """One kind of call the workload makes."""

    service: str
    endpoint: str
    weight: float
    #: per-attempt timeout at time scale 1, seconds
    timeout_sec: float
    #: attempts in all (the library's ``max_retries``)
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named preset: the knobs, the workload mix and the breaker settings, at time scale 1."""

    name: str
    description: str
    knobs: Knobs
    operations: tuple[Operation, ...] = field(
        default_factory=lambda: (
            Operation("openai", "chat.completions", weight=0.35, timeout_sec=2.0),
            Operation("gcs", "upload", weight=0.20, timeout_sec=2.0),
            Operation("gcs", "download", weight=0.25, timeout_sec=2.0),
            Operation("clamav", "scan", weight=0.20, timeout_sec=1.0),
        )
    )
    #: breaker threshold (consecutive failures) per service
    breaker_threshold: int = 5
    #: seconds an open breaker waits before a probe, at time scale 1
    breaker_reset_sec: float = 5.0
    #: base of the exponential backoff at time scale 1, milliseconds
    backoff_base_ms: float = 200.0
    #: pause between two calls of one worker at time scale 1, milliseconds
    think_ms: float = 40.0

    def outage_window(self, time_scale: float) -> tuple[float, float] | None:
        """The antivirus outage in seconds since the start of a period, or None."""
        if self.knobs.av_outage is None:
            return None
        start, end = self.knobs.av_outage
        period = NOMINAL_PERIOD_SEC * time_scale
        return (start * period, end * period)


_STEADY = Knobs()

SCENARIOS: Final[Mapping[str, Scenario]] = MappingProxyType(
    {
        "steady": Scenario(
            "steady",
            "a normal day: rare rate limits, resets and timeouts; breakers stay closed",
            _STEADY,
        ),
        "outage": Scenario(
            "outage",
            "the antivirus goes down from 25% to 55% of the run: its breaker opens, "
            "fails fast, probes, and closes again when it recovers",
            replace(_STEADY, llm_rate_limit=0.08, av_outage=(0.25, 0.55)),
        ),
        "rate-limited": Scenario(
            "rate-limited",
            "the LLM answers 40% of requests with 429 and Retry-After; retries wait as told",
            replace(_STEADY, llm_rate_limit=0.40, llm_retry_after_sec=1.0),
        ),
        "degraded": Scenario(
            "degraded",
            "everything is slow and flaky: 5xx from the LLM, storage resets and slow reads, "
            "antivirus timeouts; retries absorb most of it, latency pays for it",
            replace(
                _STEADY,
                llm_latency_ms=(200.0, 1500.0),
                llm_server_error=0.12,
                llm_rate_limit=0.08,
                storage_reset=0.15,
                storage_slow_read=0.20,
                av_timeout=0.25,
            ),
        ),
    }
)


def get_scenario(name: str) -> Scenario:
    """The preset called ``name``; ``KeyError`` names the choices."""
    try:
        return SCENARIOS[name]
    except KeyError:
        choices = ", ".join(SCENARIOS)
        raise KeyError(f"unknown scenario {name!r} (choose from {choices})") from None


def time_scale_for(duration_sec: float) -> float:
    """The time scale of a run: a run shorter than the nominal period plays the story faster."""
    if duration_sec <= 0:  # run until interrupted: the story repeats every nominal period
        return 1.0
    return max(MIN_TIME_SCALE, min(1.0, duration_sec / NOMINAL_PERIOD_SEC))
