"""Prometheus alerting and recording rules of otel-resilience, generated from Python.

``config.py`` holds the thresholds (named, commented knobs), ``rules.py`` builds the rule groups
from those knobs and the telemetry names of ``otel_resilience.telemetry_contract``; ``python -m
dashboards.generate`` writes them to the ``*.yml`` files beside this module, which are committed.
"""
