"""The library's log records: namespaced ``extra`` keys, and logging that never raises.

Every record the library emits about a call carries its fields under ``resilience_*`` names
(``resilience_service``, ``resilience_endpoint``, ...), so they cannot collide with attributes an
application's ``LogRecord`` factory or ``LoggerAdapter`` adds (``service_name`` is a common one:
``logging`` refuses to overwrite an existing attribute with ``KeyError``). A logging setup that
raises anyway (a factory, a filter or a handler without error handling) is never allowed to
break the call: the record is retried without the extra fields, then dropped.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

#: the ``extra`` keys the library sets on its records (documented in docs/telemetry.md)
EXTRA_KEYS: Final = (
    "resilience_service",
    "resilience_endpoint",
    "resilience_error_type",
    "resilience_retry_delay_s",
    "resilience_stop_reason",
)


def log_event(
    logger: logging.Logger,
    level: int,
    msg: str,
    *args: object,
    extra: dict[str, object] | None = None,
    exc_info: bool = False,
) -> None:
    """``logger.log(level, msg, *args, extra=extra)`` that never raises into the caller."""
    if not logger.isEnabledFor(level):
        return
    try:
        logger.log(level, msg, *args, extra=extra, exc_info=exc_info, stacklevel=2)
        return
    except Exception:  # a colliding key, or a factory/filter/handler that raises
        pass
    with contextlib.suppress(Exception):  # the app's logging is broken: the call goes on
        logger.log(level, msg, *args, exc_info=exc_info, stacklevel=2)
