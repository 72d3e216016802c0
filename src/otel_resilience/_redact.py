"""Secrets out of URLs before they reach a log line, an error message or a ``repr``.

No third-party import: the config module uses it to word its errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

MASK: Final = "***"

#: a URL inside some text (an error message that quotes one)
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
#: query parameters whose value is a secret (``rediss://host/0?password=...``)
_SECRET_PARAMS: Final = re.compile(
    r"(?i)(?<=[?&;])(password|passwd|pass|pwd|secret|token|auth|api_key|apikey)=[^&;#]*"
)


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and secret query parameters masked.

    The user info ends at the *last* ``@`` (a password may contain ``@``, as redis-py and
    ``urllib.parse`` read it); when in doubt more is masked, never less. Text without
    ``@`` or secret parameters comes back unchanged.

    >>> redact_url("redis://user:p@ss@cache:6379/0")
    'redis://user:***@cache:6379/0'
    >>> redact_url("rediss://cache:6380/0?password=pw&ssl_cert_reqs=none")
    'rediss://cache:6380/0?password=***&ssl_cert_reqs=none'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # query secrets first: an "@" in ?password=... must not pass for the end of a user info
    rest = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}={MASK}", rest)
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        # "user:password@": keep the user name; "secret@" alone may be a password: mask it
        userinfo = f"{user}:{MASK}" if colon and "/" not in user else MASK
        rest = f"{userinfo}@{rest[at + 1 :]}"
    return scheme + sep + rest


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords written in ``url`` (user info, as typed and decoded, and ``?password=``),
    longest first: what to mask in text that may quote them without the URL around them."""
    parts = urlsplit(url)
    found = {parts.password or "", unquote(parts.password or "")}
    found.update(parse_qs(parts.query).get("password", ()))
    return tuple(sorted((x for x in found if x), key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted and each of ``secrets`` masked.

    >>> redact_text("cannot reach redis://:pw@cache:6379 (AUTH pw)", ["pw"])
    'cannot reach redis://:***@cache:6379 (AUTH ***)'
    """
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
