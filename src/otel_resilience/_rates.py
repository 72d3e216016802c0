"""The one parser of ``RATE_LIMIT`` values, shared by the config (at load) and the limiters.

A leaf module: the config imports it to validate, :mod:`._ratelimit` to build its items, and
``limits`` (an optional extra) is imported only when a rate is parsed.
"""

from __future__ import annotations

import re
from typing import Any, Final


def _import_limits() -> Any:
    try:
        import limits
        import limits.storage
        import limits.strategies
    except ImportError as exc:
        raise ImportError(
            "RATE_LIMIT needs the 'limits' package: pip install 'otel-resilience[redis]'"
        ) from exc
    return limits


#: the most calls a window may admit, and the longest window (Redis keeps ms timestamps)
MAX_RATE_AMOUNT: Final = 1_000_000_000
MAX_RATE_WINDOW_SEC: Final = 366 * 86_400

_RATE_TEXT: Final = re.compile(
    r"\s*([0-9]+)\s*(?:/|per)\s*(?:([0-9]+)\s*)?(second|minute|hour|day)s?\s*",
    re.ASCII | re.IGNORECASE,
)


def parse_rate(rate: str) -> Any:
    """The ``limits`` item of a ``RATE_LIMIT`` value; ValueError saying what is wrong.

    The one parser of the setting: the config checks values with it at load, the limiters
    build their item with it. ``limits.parse`` alone reads ``100/0 seconds`` as 100 per second
    and takes any amount; both are refused here.
    """
    match = _RATE_TEXT.fullmatch(rate)
    if match is None:
        raise ValueError("not a rate")
    if match.group(2) is not None and int(match.group(2)) == 0:
        raise ValueError("a window of 0 units admits nothing")
    try:
        limits = _import_limits()
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    item = limits.parse(rate)
    if not 1 <= item.amount <= MAX_RATE_AMOUNT:
        raise ValueError(f"the amount must be from 1 to {MAX_RATE_AMOUNT:,}, got {item.amount:,}")
    if item.get_expiry() > MAX_RATE_WINDOW_SEC:
        raise ValueError(
            f"the window must be at most {MAX_RATE_WINDOW_SEC // 86_400} days,"
            f" got {item.get_expiry():,} s"
        )
    return item


def rate_problem(rate: str) -> str | None:
    """Why :func:`parse_rate` refuses ``rate``, or None when a limiter can use it."""
    try:
        parse_rate(rate)
    except ValueError as exc:
        return str(exc)
    return None
