"""Secrets out of exception text before it reaches a span or a ``ReliabilityError`` message.

``REDACT_PATTERNS`` is a tuple of regular expressions; the word ``default`` in it stands for
:data:`DEFAULT_PATTERNS`. In a pattern with capturing groups the groups are the secret and only
they are masked (``api_key=***``); a pattern without groups masks its whole match. Standard
library only: the config module uses it to validate the setting.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from ._redact import MASK

#: characters of an exception message kept in errors and spans (the rest is cut, and counted)
MESSAGE_LIMIT: Final = 8_192
#: characters of a formatted traceback kept in a span's exception event
STACKTRACE_LIMIT: Final = 32_768
#: redaction looks this far past a limit, so a secret across the cut is still found
_MARGIN: Final = 1_024

#: the word that stands for the default patterns inside ``REDACT_PATTERNS``
DEFAULT: Final = "default"

_KEYS: Final = (
    r"api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token"
    r"|token|password|passwd|pwd|secret|client[_-]?secret|private[_-]?key|credentials?"
)

#: the defaults: URL passwords, ``key=value`` secrets, bearer tokens and Authorization headers
DEFAULT_PATTERNS: Final = (
    # scheme://user:secret@host -- up to the last @ of the URL, a password may contain @
    # (bounded repeats: no quadratic scan of a hostile message such as "a://b:" * 10000)
    r"(?i)[a-z][a-z0-9+.\-]{0,31}://[^\s/?#@:'\"<>]{0,256}:([^\s'\"<>]{1,256})@",
    # api_key=..., token: ..., "password": "...", ?apikey=...&, aws_secret_access_key=...
    rf"(?i)(?<![\w-])[\w-]{{0,64}}?(?:{_KEYS})[\w-]{{0,32}}[\"']?\s*[=:]\s*[\"']?"
    r"([^\s&;,\"'<>]+)",
    # Authorization: Bearer ..., Authorization: Basic ..., authorization=...
    r"(?i)\bauthorization[\"']?\s*[=:]\s*[\"']?(?:(?:bearer|basic|token|digest)\s+)?"
    r"([^\s,;\"'<>]+)",
    # Bearer <token> anywhere
    r"(?i)\bbearer\s+([a-z0-9\-._~+/=]+)",
)


def expand(patterns: Iterable[str]) -> tuple[str, ...]:
    """The patterns with ``default`` replaced by :data:`DEFAULT_PATTERNS`."""
    found: list[str] = []
    for pattern in patterns:
        if pattern == DEFAULT:
            found.extend(DEFAULT_PATTERNS)
        else:
            found.append(pattern)
    return tuple(found)


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a redaction pattern, or None when it can."""
    if pattern == DEFAULT:
        return None
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"{pattern!r} is not a valid regular expression ({exc})"
    if compiled.search("") is not None:
        return f"{pattern!r} matches the empty string (it would mask everything)"
    return None


@functools.lru_cache(maxsize=64)
def compile_patterns(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """The compiled patterns of a (validated) ``REDACT_PATTERNS`` value, cached."""
    return tuple(re.compile(pattern) for pattern in expand(patterns))


def _mask(match: re.Match[str]) -> str:
    groups = match.re.groups
    if groups == 0:
        return MASK
    text, base = match.group(0), match.start(0)
    parts: list[str] = []
    position = 0
    for index in range(1, groups + 1):
        start, end = match.span(index)
        if start < 0 or start - base < position:  # did not take part, or nested in the last
            continue
        parts.append(text[position : start - base])
        parts.append(MASK)
        position = end - base
    parts.append(text[position:])
    return "".join(parts)


def redact(text: str, patterns: tuple[str, ...], limit: int | None = None) -> str:
    """``text`` with every secret the patterns find replaced by ``***``, cut at ``limit``.

    A cut text ends with ``… (N more characters)``; redaction then reads only a little past the
    limit, so a 10 MB message costs no more than a short one.

    >>> redact("GET /v1?api_key=sk-123&q=1 failed", ("default",))
    'GET /v1?api_key=***&q=1 failed'
    >>> redact("redis://app:p@ss@cache:6379/0 refused", ("default",))
    'redis://app:***@cache:6379/0 refused'
    >>> redact("Authorization: Bearer eyJhbGciOi.x.y", ("default",))
    'Authorization: Bearer ***'
    """
    if not text:
        return text
    hidden = 0
    if limit is not None and len(text) > limit:
        hidden = len(text) - limit
        text = text[: limit + _MARGIN]
    if patterns:
        for compiled in compile_patterns(patterns):
            text = compiled.sub(_mask, text)
    if hidden:
        text = f"{text[:limit]}… ({hidden} more characters)"
    return text
