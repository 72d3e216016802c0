"""``otel-resilience demo``: a workload against flaky stand-ins of an LLM, storage and antivirus.

Needs the ``demo`` extra (httpx, rich): ``pip install 'otel-resilience[demo]'``. The core library
never imports this package.

* :mod:`._scenarios` -- presets (``steady``, ``outage``, ``rate-limited``, ``degraded``) and knobs;
* :mod:`._servers` -- the stand-in HTTP services on 127.0.0.1;
* :mod:`._runner` -- worker threads calling them through ``resilient_call``;
* :mod:`._view`, :mod:`._summary` -- the live terminal view, plain output and the summary.

Everything the ``otel-resilience demo`` command uses is importable from here.
"""

from __future__ import annotations

from ._runner import DemoRunner, RunOptions, RunResult, Snapshot
from ._scenarios import SCENARIOS, Knobs, Operation, Scenario, get_scenario
from ._servers import StandInServices
from ._view import LiveView, PlainView, View, write_summary_json

__all__ = [
    "SCENARIOS",
    "DemoRunner",
    "Knobs",
    "LiveView",
    "Operation",
    "PlainView",
    "RunOptions",
    "RunResult",
    "Scenario",
    "Snapshot",
    "StandInServices",
    "View",
    "get_scenario",
    "write_summary_json",
]
