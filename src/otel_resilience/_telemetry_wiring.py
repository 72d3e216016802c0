"""Binds the default :class:`~._telemetry.Telemetry` to the default breaker manager.

Kept out of ``_telemetry`` so that telemetry does not import the breakers (which import the
Redis store, which reports its errors to telemetry). Imported by the call path; the runtime that
owns both objects will make this one call itself.
"""

from __future__ import annotations

from ._breaker import get_circuit_breaker_manager
from ._telemetry import get_telemetry

get_telemetry().watch_breakers(get_circuit_breaker_manager())
