"""``with_timeout`` bound to the library's configuration: no value means ``HTTP_TIMEOUT_SEC``.

The deadline module itself knows nothing of the configuration; this layer passes it the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from . import _timeout
from ._runtime import get_config

T = TypeVar("T")
P = ParamSpec("P")


def _configured_timeout() -> float:
    """``HTTP_TIMEOUT_SEC`` of the runtime in use's config, read at call time."""
    value = get_config().HTTP_TIMEOUT_SEC
    return value if isinstance(value, int | float) else float(value)  # 30 stays "30 seconds"


def with_timeout(timeout_sec: float | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: the call raises ``TimeoutError`` after ``timeout_sec`` seconds (the seed's API).

    The message is the seed's: ``"Function <name> timed out after <timeout_sec> seconds"`` (the
    error is an ``AttemptTimeout``, a ``TimeoutError``). Unlike the seed's ``SIGALRM`` version
    it works in any thread, takes float seconds, and decorates ``async def`` functions too
    (cancelled for real). ``None`` means the configured ``HTTP_TIMEOUT_SEC``, read at each call.
    """
    return _timeout.with_timeout(timeout_sec, default_timeout=_configured_timeout)
