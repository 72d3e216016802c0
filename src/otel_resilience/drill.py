"""Alert drills: what ``otel-resilience drill <AlertName>`` runs (issue 16, docs/chaos.md).

A drill runs a short workload of real resilient calls with chaos injected (``CHAOS_*`` settings,
so the production refusal applies), shaped to make one shipped alert fire; it exports the metrics
the way an application does (a Prometheus endpoint, or OTLP), and watches Prometheus's
``/api/v1/alerts`` and Alertmanager's ``/api/v2/alerts`` until the alert is firing and routed --
or, at the timeout, says what was missing: the rule not loaded, the series absent, the alert
inactive or pending, or not routed.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any, Final

__all__ = [
    "DRILLS",
    "DRILL_SERVICE",
    "Drill",
    "Watch",
    "Workload",
    "find_drill",
    "list_drills",
    "run_drill",
]

#: the service name of every drill's calls (its endpoint is the drill's name)
DRILL_SERVICE: Final = "otel-resilience-drill"

_FAST: Final = MappingProxyType({"HTTP_BACKOFF_BASE_MS": 5, "HTTP_BACKOFF_MAX_MS": 50})
_NO_BREAKER: Final = MappingProxyType({"CB_FAIL_THRESHOLD": 1_000_000})


@dataclass(frozen=True)
class Drill:
    """One drill: the alert it fires, the chaos and settings of its calls, their pace."""

    alert: str
    endpoint: str
    what: str
    settings: Mapping[str, Any]
    threads: int = 4
    pause_sec: float = 0.01

    def config(self) -> dict[str, Any]:
        return {"CHAOS_ENABLED": True, **_FAST, **self.settings}


def _drill(alert: str, endpoint: str, what: str, *parts: Mapping[str, Any], **kw: Any) -> Drill:
    settings: dict[str, Any] = {}
    for part in parts:
        settings.update(part)
    return Drill(alert, endpoint, what, MappingProxyType(settings), **kw)


DRILLS: Final = (
    _drill(
        "ResilienceErrorBudgetBurn",
        "outage",
        "an outage: every attempt fails with server_error",
        _NO_BREAKER,
        {"CHAOS_FAULT_RATE": 1.0, "CHAOS_FAULT_ERROR": "server_error", "HTTP_RETRIES": 1},
    ),
    _drill(
        "ResilienceHighRetryRate",
        "retry-storm",
        "a retry storm: 45% of attempts fail, up to 6 attempts (most calls still succeed)",
        _NO_BREAKER,
        {"CHAOS_FAULT_RATE": 0.45, "CHAOS_FAULT_ERROR": "server_error", "HTTP_RETRIES": 6},
    ),
    _drill(
        "ResilienceRetriesExhausted",
        "exhausted",
        "every attempt fails with connection_error until the retries run out",
        _NO_BREAKER,
        {"CHAOS_FAULT_RATE": 1.0, "CHAOS_FAULT_ERROR": "connection_error", "HTTP_RETRIES": 2},
    ),
    _drill(
        "ResilienceExcessiveTimeouts",
        "timeouts",
        "10% of attempts get 0.2 s of latency past a 0.05 s attempt timeout",
        _NO_BREAKER,
        {
            "CHAOS_LATENCY_SEC": 0.2,
            "CHAOS_LATENCY_RATE": 0.1,
            "HTTP_TIMEOUT_SEC": 0.05,
            "HTTP_RETRIES": 3,
        },
    ),
    _drill(
        "ResilienceHighLatency",
        "latency",
        "every call takes 6 s (injected latency under a 30 s timeout)",
        _NO_BREAKER,
        {"CHAOS_LATENCY_SEC": 6.0, "HTTP_TIMEOUT_SEC": 30, "HTTP_RETRIES": 1},
        threads=8,
    ),
    _drill(
        "ResilienceCircuitBreakerOpensFrequently",
        "flapping",
        "half the attempts fail: the breaker (2 failures, 0.5 s reset) opens and closes",
        {
            "CHAOS_FAULT_RATE": 0.5,
            "CHAOS_FAULT_ERROR": "connection_error",
            "CB_FAIL_THRESHOLD": 2,
            "CB_RESET_SEC": 0.5,
            "HTTP_RETRIES": 1,
        },
        pause_sec=0.05,
    ),
    _drill(
        "ResilienceCircuitBreakerStuckOpen",
        "stuck-open",
        "every attempt fails: the breaker opens and stays open (1 h reset)",
        {
            "CHAOS_FAULT_RATE": 1.0,
            "CHAOS_FAULT_ERROR": "connection_error",
            "CB_FAIL_THRESHOLD": 3,
            "CB_RESET_SEC": 3600,
            "HTTP_RETRIES": 1,
        },
    ),
)


def find_drill(alert: str) -> Drill:
    for drill in DRILLS:
        if drill.alert == alert:
            return drill
    raise KeyError(f"no drill for alert {alert!r}; drills: {_drill_names()}")


def _drill_names() -> str:
    return ", ".join(d.alert for d in DRILLS)


def list_drills() -> list[str]:
    width = max(len(d.alert) for d in DRILLS)
    return [f"{d.alert:<{width}}  {d.what}" for d in DRILLS]


# --- the workload -------------------------------------------------------------------------------


class Workload:
    """Threads making the drill's calls until stopped."""

    def __init__(self, drill: Drill) -> None:
        self.drill = drill
        self.stop = threading.Event()
        self.calls = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"drill-{i}", daemon=True)
            for i in range(drill.threads)
        ]

    def start(self) -> None:
        from . import configure

        configure(services={DRILL_SERVICE: self.drill.config()})
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        from . import ReliabilityError, resilient_call

        endpoint, pause = self.drill.endpoint, self.drill.pause_sec
        while not self.stop.is_set():
            failed = False
            try:
                resilient_call(DRILL_SERVICE, endpoint, _answer)
            except ReliabilityError:
                failed = True
            with self._lock:
                self.calls += 1
                self.failures += failed
            self.stop.wait(pause)

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def _answer() -> str:
    time.sleep(0.001)
    return "ok"


# --- watching Prometheus and Alertmanager -------------------------------------------------------


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Watch:
    """What Prometheus and Alertmanager say about the drill's alert."""

    prometheus: str
    alertmanager: str | None
    drill: Drill
    get: Callable[[str], Any] = field(default=_get)

    def _matches(self, labels: Mapping[str, str]) -> bool:
        return (
            labels.get("alertname") == self.drill.alert
            and labels.get("resilience_service") == DRILL_SERVICE
            and labels.get("resilience_endpoint", self.drill.endpoint) == self.drill.endpoint
        )

    def prometheus_state(self) -> str | None:
        """``firing``, ``pending`` or None (inactive) in Prometheus."""
        data = self.get(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"]
        return _state_of({a["state"] for a in self._ours(data)})

    def _ours(self, alerts: Any) -> list[Any]:
        """The drill's alerts among ``alerts`` (Prometheus' or Alertmanager's)."""
        return [a for a in alerts if self._matches(a.get("labels", {}))]

    def routed(self) -> str | None:
        """Where Alertmanager sent the alert (None: it has not got it)."""
        if self.alertmanager is None:
            return "(no Alertmanager to check)"
        query = urllib.parse.urlencode(
            [
                ("filter", f'alertname="{self.drill.alert}"'),
                ("filter", f'resilience_service="{DRILL_SERVICE}"'),
            ]
        )
        found = self._ours(self.get(f"{self.alertmanager}/api/v2/alerts?{query}"))
        return _where(found) if found else None

    def missing(self) -> str:
        """Why the alert is not firing and routed yet (for the timeout's message)."""
        return self._no_rule() or self._no_series() or self._not_routed()

    def _no_rule(self) -> str | None:
        rules = self.get(f"{self.prometheus}/api/v1/rules?type=alert")["data"]["groups"]
        if self.drill.alert in _alert_names(rules):
            return None
        return f"rule not loaded: Prometheus at {self.prometheus} has no alert {self.drill.alert}"

    def _no_series(self) -> str | None:
        selector = (
            f'{{resilience_service="{DRILL_SERVICE}",resilience_endpoint="{self.drill.endpoint}"}}'
        )
        query = urllib.parse.urlencode(
            {"query": f"resilience_attempt_duration_seconds_count{selector}"}
        )
        if self.get(f"{self.prometheus}/api/v1/query?{query}")["data"]["result"]:
            return None
        return (
            "series absent: Prometheus has no"
            f" resilience_attempt_duration_seconds_count{selector} (is it scraping the"
            " drill's metrics endpoint, or receiving its OTLP?)"
        )

    def _not_routed(self) -> str:
        state = self.prometheus_state()
        return _UNFIRED.get(state) or (
            f"not routed: firing in Prometheus but absent from Alertmanager at {self.alertmanager}"
        )


#: why the alert is not firing yet, by its state in Prometheus (None: inactive)
_UNFIRED: Final = MappingProxyType(
    {
        None: "alert inactive: the series are there but the rule's expression is not true yet",
        "pending": "alert pending: the expression is true, its for: has not elapsed yet",
    }
)


def _state_of(states: set[str]) -> str | None:
    """``firing`` if any alert fires, else ``pending`` if any is, else None."""
    if "firing" in states:
        return "firing"
    return "pending" if states else None


def _where(found: list[Any]) -> str:
    """Where Alertmanager routed the drill's alerts ``found`` (held back when suppressed)."""
    where = f"routed to {_receivers(found)}"
    return where + _held_back(found[0].get("status", {}))


def _receivers(found: list[Any]) -> str:
    """The receivers the alerts ``found`` went to, sorted and comma-joined."""
    receivers = sorted({r["name"] for a in found for r in a.get("receivers", [])})
    return ", ".join(receivers) or "no receiver"


def _alert_names(groups: Any) -> set[str]:
    """The names of the alert rules in Prometheus' rule ``groups``."""
    return {rule["name"] for group in groups for rule in group["rules"]}


def _held_back(status: Mapping[str, Any]) -> str:
    if status.get("state") != "suppressed":
        return ""
    by = ", ".join(status.get("inhibitedBy", []) + status.get("silencedBy", []))
    return f" (held back: inhibited or silenced by {by})"


def run_drill(
    drill: Drill,
    watch: Watch,
    timeout: float,
    out: IO[str],
    poll_sec: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run the workload until the alert fires and is routed; 0 on success, 1 at the timeout."""
    workload = Workload(drill)
    started = clock()
    workload.start()
    try:
        while True:
            routed, unreachable = _poll(watch)
            if routed is not None:
                seconds = clock() - started
                out.write(
                    f"{drill.alert} fired after {seconds:.1f} s and was {routed}"
                    f" ({workload.calls} calls, {workload.failures} failed)\n"
                )
                return 0
            if clock() - started >= timeout:
                why = _unfired_why(watch, unreachable)
                out.write(f"{drill.alert} did not fire within {timeout:g} s: {why}\n")
                return 1
            time.sleep(poll_sec)
    finally:
        workload.close()


def _poll(watch: Watch) -> tuple[str | None, Exception | None]:
    """(where the alert was routed or None, the error when Prometheus/Alertmanager failed)."""
    try:
        routed = watch.routed() if watch.prometheus_state() == "firing" else None
    except (OSError, ValueError, KeyError) as exc:
        return None, exc
    return routed, None


def _unfired_why(watch: Watch, unreachable: Exception | None) -> str:
    """Why the alert did not fire: the last poll's error, else what the watch says is missing."""
    return _why(watch) if unreachable is None else f"unreachable: {unreachable}"


def _why(watch: Watch) -> str:
    try:
        return watch.missing()
    except (OSError, ValueError, KeyError) as exc:
        return f"unreachable: {exc}"
