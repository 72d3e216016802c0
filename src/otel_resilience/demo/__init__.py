"""``otel-resilience demo``: a workload against flaky stand-ins of an LLM, storage and antivirus.

Needs the ``demo`` extra (httpx, rich): ``pip install 'otel-resilience[demo]'``. The core library
never imports this package.

* :mod:`._scenarios` -- presets (``steady``, ``outage``, ``rate-limited``, ``degraded``) and knobs;
* :mod:`._servers` -- the stand-in HTTP services on 127.0.0.1;
* :mod:`._runner` -- worker threads calling them through ``resilient_call``;
* :mod:`._view`, :mod:`._summary` -- the live terminal view, plain output and the summary.
"""

from __future__ import annotations

from ._runner import DemoRunner, RunOptions, RunResult, Snapshot
from ._scenarios import SCENARIOS, Knobs, Operation, Scenario, get_scenario
from ._servers import StandInServices

__all__ = [
    "SCENARIOS",
    "DemoRunner",
    "Knobs",
    "Operation",
    "RunOptions",
    "RunResult",
    "Scenario",
    "Snapshot",
    "StandInServices",
    "get_scenario",
]
