"""With the OpenTelemetry SDK absent (the API only, as the core's dependencies promise), calls work
and ``configure_telemetry`` says which extra to install.

Runs in a subprocess whose import system refuses ``opentelemetry.sdk`` and every exporter, as in a
virtualenv that installed ``otel-resilience`` without the ``otel`` extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys

    BLOCKED = ("opentelemetry.sdk", "opentelemetry.exporter", "prometheus_client")

    class NoSdk(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.startswith(BLOCKED):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoSdk())

    import otel_resilience
    class NoSleep:
        def monotonic(self):
            import time

            return time.monotonic()

        def sleep(self, seconds):
            pass

        async def sleep_async(self, seconds):
            pass

    otel_resilience.use_runtime(otel_resilience.Runtime(clock=NoSleep())).__enter__()
    otel_resilience.configure(
        default=otel_resilience.ReliabilityConfig(HTTP_BACKOFF_BASE_MS=1, CB_FAIL_THRESHOLD=2)
    )
    report = {}
    report["success"] = otel_resilience.resilient_call("gcs", "upload", lambda: "stored")

    errors = [ConnectionError("reset")]
    def flaky():
        if errors:
            raise errors.pop()
        return "after a retry"
    report["retried"] = otel_resilience.resilient_call("gcs", "upload", flaky, max_retries=2)

    def down():
        raise ConnectionError("refused")
    try:
        otel_resilience.resilient_call("clamav", "scan", down, max_retries=2)
    except otel_resilience.ReliabilityError as error:
        report["failed"] = [error.error_type.value, error.attempts]
    try:
        otel_resilience.resilient_call("clamav", "scan", down)
    except otel_resilience.CircuitOpenError as error:
        report["rejected"] = error.error_type.value

    async def fetch():
        return "async value"
    report["async"] = asyncio.run(otel_resilience.resilient_call_async("gcs", "get", fetch))

    try:
        otel_resilience.configure_telemetry(traces_exporter="console", metrics_exporter="none")
    except ImportError as error:
        report["configure_telemetry"] = str(error)

    report["sdk_loaded"] = sorted(m for m in sys.modules if m.startswith(BLOCKED))
    print(json.dumps(report))
    """
)


def run_without_sdk() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_calls_work_and_configure_telemetry_names_the_extra_without_the_sdk() -> None:
    report = run_without_sdk()

    assert report["sdk_loaded"] == []  # the import blocker held: the SDK really was absent
    assert report["success"] == "stored"
    assert report["retried"] == "after a retry"
    assert report["failed"] == ["connection_error", 2]
    assert report["rejected"] == "circuit_open"
    assert report["async"] == "async value"
    message = str(report["configure_telemetry"])
    assert "otel-resilience[otel]" in message
    assert "pip install" in message
