"""Grafana dashboards of otel-resilience, written with grafanalib.

``overview.py`` and ``dependency.py`` build the dashboards from the telemetry names of
``otel_resilience.telemetry_contract`` and the alert knobs of ``alerts.config`` (so panel
thresholds are the alert thresholds); ``python -m dashboards.generate`` writes them as JSON
beside this file, where Grafana's provisioning picks them up. grafanalib is imported only under
this package.
"""
