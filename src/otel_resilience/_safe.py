"""Exporter wrappers that can never raise into the SDK, and report each outage once.

An outage is logged when the first export fails (with the exception's traceback when there is
one, none for an exporter that merely returned FAILURE) and its end when an export succeeds
again; the next outage is logged again. :meth:`abandon` makes a wrapper give up at once, for a
shutdown that must not wait for a collector that is down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._log import log_event

logger = logging.getLogger("otel_resilience")


class _Once:
    def __init__(self, name: str, on_recover: Callable[[], None] | None = None) -> None:
        self.name = name
        self.failed = False
        self.abandoned = False
        self.on_recover = on_recover

    def report(self, what: str, exc: BaseException | None = None) -> None:
        """An export failed (``exc``: the exception it raised, if it raised)."""
        if self.failed or self.abandoned:
            return
        self.failed = True
        log_event(  # never raises: a broken logging setup must not reach the SDK's thread
            logger,
            logging.WARNING,
            "telemetry: the %s exporter failed to export %s%s; telemetry is dropped until it"
            " recovers (logged once per outage)",
            self.name,
            what,
            "" if exc is not None else " (it returned a failure)",
            exc_info=exc is not None,
        )

    def ok(self, what: str) -> None:
        """An export worked: the end of an outage, if there was one."""
        if not self.failed:
            return
        self.failed = False
        log_event(
            logger, logging.INFO, "telemetry: the %s exporter exports %s again", self.name, what
        )
        if self.on_recover is not None:
            self.on_recover()


def _in_background(target: Callable[[], object]) -> None:
    """Run ``target`` on a daemon thread, not waiting for it (it may block on a dead peer)."""

    def run() -> None:
        with contextlib.suppress(Exception):  # it fails to shut down: nothing left to do
            target()

    # at interpreter shutdown no thread starts (Python 3.12); the process ends anyway
    with contextlib.suppress(RuntimeError):
        threading.Thread(target=run, name="otel-resilience-abandon", daemon=True).start()


class SafeSpanExporter(SpanExporter):
    """Delegates to ``inner``; an exception becomes a FAILURE result, logged once."""

    def __init__(
        self, inner: SpanExporter, name: str, on_recover: Callable[[], None] | None = None
    ) -> None:
        self._inner = inner
        self._once = _Once(name, on_recover)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._once.abandoned:
            return SpanExportResult.FAILURE
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            self._once.report("spans", exc)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._once.ok("spans")
        else:
            self._once.report("spans")
        return result

    def shutdown(self) -> None:
        if self._once.abandoned:
            return
        try:
            self._inner.shutdown()
        except Exception as exc:
            self._once.report("spans (shutdown)", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._once.abandoned:
            return False
        try:
            return self._inner.force_flush(timeout_millis)
        except Exception as exc:
            self._once.report("spans (flush)", exc)
            return False

    def abandon(self) -> None:
        """Fail every later export at once and stop the inner exporter in the background."""
        self._once.abandoned = True
        _in_background(self._inner.shutdown)


class SafeMetricExporter(MetricExporter):
    """Delegates to ``inner``; an exception becomes a FAILURE result, logged once."""

    def __init__(
        self, inner: MetricExporter, name: str, on_recover: Callable[[], None] | None = None
    ) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._once = _Once(name, on_recover)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._once.abandoned:
            return MetricExportResult.FAILURE
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            self._once.report("metrics", exc)
            return MetricExportResult.FAILURE
        if result is MetricExportResult.SUCCESS:
            self._once.ok("metrics")
        else:
            self._once.report("metrics")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._once.abandoned:
            return False
        try:
            return self._inner.force_flush(timeout_millis)
        except Exception as exc:
            self._once.report("metrics (flush)", exc)
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._once.abandoned:
            return
        try:
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            self._once.report("metrics (shutdown)", exc)

    def abandon(self) -> None:
        """Fail every later export at once and stop the inner exporter in the background."""
        self._once.abandoned = True
        _in_background(lambda: self._inner.shutdown(timeout_millis=0))
