"""`otel-resilience drill` against the real Prometheus and Alertmanager of the end-to-end test
(issue 16): the committed rules with every ``for:`` shortened to 1 s (the copy that test makes),
Alertmanager with the committed routing posting to a webhook. Each drill of ``--list`` must make
its alert fire and reach Alertmanager; the seconds each took are printed (``-s``) and asserted
bounded.

Locally this skips when a binary is missing; with CI=true it fails instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_resilience.drill import DRILLS

from .servers import (
    ROOT,
    Webhook,
    free_port,
    require,
    run,
    start_alertmanager,
    start_prometheus,
)
from .test_bundle_e2e import _alertmanager_config, _prometheus_config, _test_rules

pytestmark = pytest.mark.e2e

CLI = "import sys; from otel_resilience.cli import main; sys.exit(main(sys.argv[1:]))"


def _drill(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", CLI, "drill", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


def test_list_shows_every_drill() -> None:
    done = _drill("--list")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == [d.alert for d in DRILLS]


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.alert)
def test_each_drill_fires_its_alert_and_reaches_alertmanager(drill: object, tmp_path: Path) -> None:
    from otel_resilience.drill import Drill

    assert isinstance(drill, Drill)
    promtool = require("promtool")
    require("prometheus")
    require("alertmanager")
    rules_dir = _test_rules(tmp_path)
    checked = run(promtool, "check", "rules", *map(str, sorted(rules_dir.iterdir())))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    with Webhook() as webhook:
        alertmanager = start_alertmanager(_alertmanager_config(tmp_path, webhook.url), tmp_path)
        try:
            prometheus = start_prometheus(
                _prometheus_config(tmp_path, [port], alertmanager.port), tmp_path
            )
            try:
                started = time.monotonic()
                done = _drill(
                    drill.alert,
                    "--prometheus", prometheus.url,
                    "--alertmanager", alertmanager.url,
                    "--metrics-port", str(port),
                    "--timeout", "150",
                )  # fmt: skip
                seconds = time.monotonic() - started
            finally:
                prometheus.stop()
        finally:
            alertmanager.stop()
    print(f"\n{drill.alert}: {seconds:.1f} s -- {done.stdout.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{drill.alert} fired after" in done.stdout
    assert "routed to" in done.stdout
