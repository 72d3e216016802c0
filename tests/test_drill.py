"""The drill's decisions without servers: what it reports missing, usage errors (issue 16).

The drills themselves run against real Prometheus and Alertmanager in
tests/bundle/test_drill.py.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from otel_resilience import cli
from otel_resilience.drill import DRILL_SERVICE, DRILLS, Watch, find_drill, run_drill

DRILL = find_drill("ResilienceErrorBudgetBurn")
LABELS = {
    "alertname": DRILL.alert,
    "resilience_service": DRILL_SERVICE,
    "resilience_endpoint": DRILL.endpoint,
}


class FakeServers:
    """Answers of Prometheus and Alertmanager, by path."""

    def __init__(
        self,
        rules: list[str] = (),  # type: ignore[assignment]
        series: bool = False,
        state: str | None = None,
        routed: list[dict[str, Any]] | None = None,
    ) -> None:
        self.rules, self.series, self.state, self.routed_alerts = rules, series, state, routed
        self.asked: list[str] = []

    def __call__(self, url: str) -> Any:
        self.asked.append(url)
        if "/api/v1/rules" in url:
            rules = [{"name": name} for name in self.rules]
            return {"data": {"groups": [{"rules": rules}]}}
        if "/api/v1/query" in url:
            return {"data": {"result": [{"value": [0, "1"]}] if self.series else []}}
        if "/api/v1/alerts" in url:
            other = {"labels": {**LABELS, "resilience_endpoint": "elsewhere"}, "state": "firing"}
            mine = [{"labels": LABELS, "state": self.state}] if self.state else []
            return {"data": {"alerts": [other, *mine]}}
        if "/api/v2/alerts" in url:
            if self.routed_alerts is None:
                raise OSError("connection refused")
            return self.routed_alerts
        raise AssertionError(url)  # pragma: no cover


def watch(servers: FakeServers, alertmanager: str | None = "http://am") -> Watch:
    return Watch("http://prom", alertmanager, DRILL, get=servers)


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        (FakeServers(), "rule not loaded: Prometheus at http://prom has no alert"),
        (FakeServers(rules=[DRILL.alert]), "series absent: Prometheus has no"),
        (FakeServers(rules=[DRILL.alert], series=True), "alert inactive"),
        (FakeServers(rules=[DRILL.alert], series=True, state="pending"), "alert pending"),
        (
            FakeServers(rules=[DRILL.alert], series=True, state="firing", routed=[]),
            "not routed: firing in Prometheus but absent from Alertmanager at http://am",
        ),
    ],
)
def test_what_is_missing_is_named(servers: FakeServers, message: str) -> None:
    assert message in watch(servers).missing()


def test_routing_is_read_from_alertmanager() -> None:
    active = {"labels": LABELS, "receivers": [{"name": "page"}], "status": {"state": "active"}}
    assert watch(FakeServers(routed=[active])).routed() == "routed to page"
    held = {
        "labels": LABELS,
        "receivers": [{"name": "ticket"}],
        "status": {"state": "suppressed", "inhibitedBy": ["abc"], "silencedBy": []},
    }
    assert "held back: inhibited or silenced by abc" in str(
        watch(FakeServers(routed=[held])).routed()
    )
    assert watch(FakeServers(routed=[])).routed() is None
    assert watch(FakeServers(), alertmanager=None).routed() == "(no Alertmanager to check)"


def test_a_drill_that_never_fires_times_out_with_the_reason() -> None:
    out = io.StringIO()
    servers = FakeServers(rules=[DRILL.alert], series=True, state="pending")
    ticks = iter([0.0, 0.0, 0.5, 2.0])
    status = run_drill(DRILL, watch(servers), 1.0, out, poll_sec=0, clock=lambda: next(ticks))
    assert status == 1
    assert "did not fire within 1 s: alert pending" in out.getvalue()


def test_an_unreachable_prometheus_is_reported() -> None:
    def down(url: str) -> Any:
        raise OSError("connection refused")

    out = io.StringIO()
    ticks = iter([0.0, 5.0])
    status = run_drill(
        DRILL, Watch("http://prom", None, DRILL, get=down), 1.0, out, 0, lambda: next(ticks)
    )
    assert status == 1
    assert "unreachable: connection refused" in out.getvalue()


def test_firing_but_alertmanager_down_keeps_waiting_then_says_why() -> None:
    servers = FakeServers(rules=[DRILL.alert], series=True, state="firing", routed=None)
    out = io.StringIO()
    ticks = iter([0.0, 5.0])
    assert run_drill(DRILL, watch(servers), 1.0, out, 0, lambda: next(ticks)) == 1
    assert "unreachable: connection refused" in out.getvalue()


def test_every_drill_names_a_shipped_alert() -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "alerts" / "resilience.alerts.yml").read_text())
    shipped = {rule["alert"] for group in doc["groups"] for rule in group["rules"]}
    assert {d.alert for d in DRILLS} <= shipped
    assert len({d.endpoint for d in DRILLS}) == len(DRILLS)
    assert all(d.config()["CHAOS_ENABLED"] is True for d in DRILLS)


def test_an_unknown_alert_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["drill", "ResilienceNope"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "no drill for alert 'ResilienceNope'; drills: ResilienceErrorBudgetBurn" in err
    assert cli.main(["drill"]) == cli.EXIT_USAGE
    assert "name the alert to drill (see --list)" in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["drill", "--list"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [d.alert for d in DRILLS]


def test_a_drill_runs_its_workload_until_routed() -> None:
    """In process: real resilient calls with the drill's chaos, until the (fake) servers say
    the alert is firing and routed."""
    from otel_resilience import get_config

    active = {"labels": LABELS, "receivers": [{"name": "page"}], "status": {"state": "active"}}
    servers = FakeServers(rules=[DRILL.alert], series=True, state=None, routed=[active])
    polls = iter(range(1000))

    def firing_after_two_polls(url: str) -> Any:
        if "/api/v1/alerts" in url:
            servers.state = "firing" if next(polls) >= 2 else None
        return servers(url)

    out = io.StringIO()
    status = run_drill(
        DRILL,
        Watch("http://prom", "http://am", DRILL, get=firing_after_two_polls),
        30,
        out,
        poll_sec=0.05,
    )
    assert status == 0, out.getvalue()
    assert "ResilienceErrorBudgetBurn fired after" in out.getvalue()
    assert "was routed to page" in out.getvalue()
    found = re.search(r"\((\d+) calls, (\d+) failed\)", out.getvalue())
    assert found is not None
    calls, failed = int(found[1]), int(found[2])
    assert calls > 0
    assert calls == failed  # the outage drill fails every call
    assert get_config(DRILL_SERVICE).CHAOS_FAULT_RATE == 1.0


def test_a_failing_diagnosis_is_reported() -> None:
    servers = FakeServers(rules=[DRILL.alert], series=True, state=None)
    answers = iter([None])

    def flaky(url: str) -> Any:
        if "/api/v1/rules" in url:
            raise ValueError(next(answers, "bad json"))
        return servers(url)

    out = io.StringIO()
    ticks = iter([0.0, 5.0])
    assert (
        run_drill(
            DRILL, Watch("http://prom", None, DRILL, get=flaky), 1.0, out, 0, lambda: next(ticks)
        )
        == 1
    )
    assert "unreachable: None" in out.getvalue()


@pytest.mark.parametrize("export", ["prometheus", "otlp"])
def test_the_cli_sets_up_export_and_runs_the_drill(
    export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import otel_resilience
    from otel_resilience import drill as _drill

    seen: dict[str, Any] = {}

    class Handle:
        def shutdown(self) -> None:
            seen["shutdown"] = True

    def fake_setup(**kwargs: Any) -> Handle:
        seen["setup"] = kwargs
        return Handle()

    def fake_run(drill: Any, watch: Watch, timeout: float, out: Any) -> int:
        seen["run"] = (drill.alert, watch.prometheus, watch.alertmanager, timeout)
        return 0

    monkeypatch.setattr(otel_resilience, "configure_telemetry", fake_setup)
    monkeypatch.setattr(_drill, "run_drill", fake_run)
    args = ["drill", "ResilienceCircuitBreakerStuckOpen", "--export", export, "--timeout", "60"]
    args += ["--prometheus", "http://127.0.0.1:9090/", "--alertmanager", "http://127.0.0.1:9093/"]
    assert cli.main(args) == 0
    assert seen["run"] == (
        "ResilienceCircuitBreakerStuckOpen",
        "http://127.0.0.1:9090",
        "http://127.0.0.1:9093",
        60.0,
    )
    assert seen["setup"]["metrics_exporter"] == export
    assert seen["shutdown"]


def test_the_helpers_of_the_workload_and_the_watch(tmp_path: Path) -> None:
    from otel_resilience.drill import _answer, _get

    assert _answer() == "ok"
    answer = tmp_path / "alerts.json"
    answer.write_text(json.dumps({"data": {"alerts": []}}))
    assert _get(answer.as_uri()) == {"data": {"alerts": []}}
