"""Just enough PromQL reading for the tests: which metrics and labels a query uses.

Not a parser: it removes what is not a metric name (strings, label matchers, groupings, ranges,
function calls, keywords) and keeps the identifiers that remain.
"""

from __future__ import annotations

import re

from otel_resilience.telemetry_contract import METRICS

KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset",
     "group_left", "group_right", "inf", "nan"}
)  # fmt: skip
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"")
RANGE = re.compile(r"\[([^\]]*)\]")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

#: the library's Prometheus labels: the only ones a query may select or group on
LIBRARY_LABELS = frozenset(label for m in METRICS if m.emitted for label in m.labels)
#: every series name the library emits (histograms with their three suffixes)
LIBRARY_SERIES = frozenset(series for m in METRICS if m.emitted for series in m.series)


def metrics(expr: str) -> set[str]:
    """The series names a query selects."""
    stripped = MATCHERS.sub(" ", expr)
    stripped = STRING.sub(" ", stripped)
    stripped = GROUPING.sub(" ", stripped)
    stripped = RANGE.sub(" ", stripped)
    names = set()
    for match in IDENT.finditer(stripped):
        token = match.group(0)
        following = stripped[match.end() :].lstrip()[:1]
        if following == "(" or token in KEYWORDS:
            continue  # a function or an operator
        names.add(token)
    return names


def matchers(expr: str) -> list[tuple[str, str, str]]:
    """(label, operator, value) of every label matcher."""
    return [m.groups() for block in MATCHERS.findall(expr) for m in MATCHER.finditer(block)]


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for _, labels in GROUPING.findall(STRING.sub(" ", expr))
        for label in labels.split(",")
        if label.strip()
    }


def ranges(expr: str) -> set[str]:
    return set(RANGE.findall(STRING.sub(" ", expr)))


def selectors(expr: str) -> list[str]:
    """The label-matcher blocks of every selector, e.g. ``{a="b", c=~"d"}``."""
    return MATCHERS.findall(expr)
