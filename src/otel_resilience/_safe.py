"""Exporter wrappers that can never raise into the SDK, and report a failure once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger("otel_resilience")


class _Once:
    def __init__(self, name: str) -> None:
        self.name = name
        self.failed = False

    def report(self, what: str) -> None:
        if not self.failed:
            self.failed = True
            logger.warning(
                "telemetry: the %s exporter failed to export %s; telemetry is dropped until it"
                " recovers (logged once)",
                self.name,
                what,
                exc_info=True,
            )


class SafeSpanExporter(SpanExporter):
    """Delegates to ``inner``; an exception becomes a FAILURE result, logged once."""

    def __init__(self, inner: SpanExporter, name: str) -> None:
        self._inner = inner
        self._once = _Once(name)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._once.report("spans")
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._once.report("spans")
        return result

    def shutdown(self) -> None:
        try:
            self._inner.shutdown()
        except Exception:
            self._once.report("spans (shutdown)")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self._inner.force_flush(timeout_millis)
        except Exception:
            self._once.report("spans (flush)")
            return False


class SafeMetricExporter(MetricExporter):
    """Delegates to ``inner``; an exception becomes a FAILURE result, logged once."""

    def __init__(self, inner: MetricExporter, name: str) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._once = _Once(name)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            self._once.report("metrics")
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._once.report("metrics")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        try:
            return self._inner.force_flush(timeout_millis)
        except Exception:
            self._once.report("metrics (flush)")
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        try:
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
        except Exception:
            self._once.report("metrics (shutdown)")
