"""The end-of-run summary: what opened, when it recovered, what the retries did.

Built as data first (:func:`summary_data`, JSON-able), then as plain lines (:func:`summary_lines`);
the rich view renders the same data as tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._runner import RunResult
from ._stats import BreakerEvent, Row

#: episodes listed per breaker in the summary (a run of hours has one per outage)
MAX_EPISODES_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Episode:
    """One stretch during which a breaker was not closed: it opened, probed, maybe recovered."""

    service: str
    endpoint: str
    opened_at: float
    failures_at_open: int
    #: probes that failed and opened the breaker again
    failed_probes: int = 0
    closed_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.service}/{self.endpoint}"

    @property
    def open_for(self) -> float | None:
        return None if self.closed_at is None else self.closed_at - self.opened_at


def episodes(events: list[BreakerEvent]) -> list[Episode]:
    """Group breaker transitions into open-to-closed episodes, in order of opening."""
    current: dict[tuple[str, str], Episode] = {}
    done: list[Episode] = []
    for ev in sorted(events, key=lambda e: e.at_sec):
        key = (ev.service, ev.endpoint)
        found = current.get(key)
        if ev.new == "open" and found is None:
            current[key] = Episode(ev.service, ev.endpoint, ev.at_sec, ev.failure_count)
        elif ev.new == "open" and found is not None and ev.old == "half_open":
            current[key] = Episode(
                found.service,
                found.endpoint,
                found.opened_at,
                found.failures_at_open,
                found.failed_probes + 1,
            )
        elif ev.new == "closed" and found is not None:
            done.append(
                Episode(
                    found.service,
                    found.endpoint,
                    found.opened_at,
                    found.failures_at_open,
                    found.failed_probes,
                    ev.at_sec,
                )
            )
            del current[key]
    done.extend(current.values())
    return sorted(done, key=lambda e: e.opened_at)


def format_ms(seconds: float | None) -> str:
    """``712ms`` / ``1.25s`` / ``-``."""
    if seconds is None:
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s"


def _row_data(row: Row) -> dict[str, Any]:
    return {
        "service": row.service,
        "endpoint": row.endpoint,
        "calls": row.calls,
        "succeeded": row.succeeded,
        "success_pct": None if row.success_pct is None else round(row.success_pct, 2),
        "retries": row.retries,
        "timeouts": row.timeouts,
        "rejected_by_breaker": row.rejected,
        "p95_sec": None if row.p95_sec is None else round(row.p95_sec, 4),
        "errors": dict(sorted(row.errors.items())),
    }


def summary_data(result: RunResult) -> dict[str, Any]:
    """Everything the summary says, as JSON-able data."""
    window = result.outage_window
    return {
        "scenario": result.scenario.name,
        "elapsed_sec": round(result.elapsed_sec, 3),
        "time_scale": result.time_scale,
        "interrupted": result.interrupted,
        "calls": sum(r.calls for r in result.rows),
        "succeeded": sum(r.succeeded for r in result.rows),
        "outage_window_sec": [round(t, 3) for t in window] if window else None,
        "endpoints": [_row_data(r) for r in result.rows],
        "breakers": [_episode_data(e) for e in episodes(result.events)],
        "transitions": [_transition_data(ev) for ev in result.events],
        "retry_after": _retry_after_data(result),
    }


def _episode_data(e: Episode) -> dict[str, Any]:
    return {
        "service": e.service,
        "endpoint": e.endpoint,
        "opened_at_sec": round(e.opened_at, 3),
        "failures_at_open": e.failures_at_open,
        "failed_probes": e.failed_probes,
        "closed_at_sec": None if e.closed_at is None else round(e.closed_at, 3),
    }


def _transition_data(ev: BreakerEvent) -> dict[str, Any]:
    return {
        "at_sec": round(ev.at_sec, 3),
        "service": ev.service,
        "endpoint": ev.endpoint,
        "old": ev.old,
        "new": ev.new,
        "failure_count": ev.failure_count,
    }


def _retry_after_data(result: RunResult) -> dict[str, Any]:
    """Per endpoint: the server's ``Retry-After`` values and how long the retries waited."""
    found = {}
    for (service, endpoint), waits in result.retry_after_waits.items():
        if waits:
            waited = [w[1] for w in waits]
            found[f"{service}/{endpoint}"] = {
                "retries": len(waits),
                "retry_after_sec": sorted({w[0] for w in waits}),
                "waited_min_sec": round(min(waited), 3),
                "waited_max_sec": round(max(waited), 3),
                "honoured": sum(1 for told_s, waited_s in waits if waited_s >= told_s * 0.95),
            }
    return found


def endpoint_line(row: Row) -> str:
    """One endpoint's numbers on one line (plain output)."""
    pct = "-" if row.success_pct is None else f"{row.success_pct:.1f}%"
    return (
        f"{row.service + '/' + row.endpoint:<24} calls={row.calls:<5} ok={pct:<6}"
        f" retries={row.retries:<4} timeouts={row.timeouts:<4} rejected={row.rejected:<4}"
        f" p95={format_ms(row.p95_sec):<7} breaker={row.breaker_state}"
    )


def summary_lines(result: RunResult) -> list[str]:
    """The summary as plain text lines."""
    data = summary_data(result)
    calls, ok = data["calls"], data["succeeded"]
    pct = f"{100.0 * ok / calls:.1f}%" if calls else "-"
    how = "interrupted after" if result.interrupted else "ran for"
    lines = [
        f"Summary: scenario {result.scenario.name!r} {how} {result.elapsed_sec:.1f}s"
        f" (time scale {result.time_scale:.3g}): {calls} calls, {ok} succeeded ({pct})",
    ]
    lines.extend("  " + endpoint_line(row) for row in result.rows)
    if result.outage_window:
        start, end = result.outage_window
        lines.append(f"  antivirus outage window: {start:.1f}s to {end:.1f}s of each period")
    lines.extend(_breaker_lines(result))
    lines.extend(_retry_after_lines(data["retry_after"]))
    return lines


def _breaker_lines(result: RunResult) -> list[str]:
    """The episodes of every breaker (the latest few of each), in order of opening."""
    found = episodes(result.events)
    if not found:
        return ["  breakers: all stayed closed"]
    last_of = {(ep.service, ep.endpoint): ep for ep in found}
    lines, shown = _latest_episodes(found)
    for ep in sorted(shown, key=lambda e: e.opened_at):
        lines.append(_episode_line(ep))
        if last_of[(ep.service, ep.endpoint)] is ep:
            lines.extend(_failed_fast_line(ep, result.rows))
    return lines


def _latest_episodes(found: list[Episode]) -> tuple[list[str], list[Episode]]:
    """The last :data:`MAX_EPISODES_SHOWN` episodes of each breaker, and a line per breaker
    that had more saying how many are not listed."""
    per_breaker: dict[tuple[str, str], list[Episode]] = {}
    for ep in found:
        per_breaker.setdefault((ep.service, ep.endpoint), []).append(ep)
    lines, shown = [], []
    for (service, endpoint), eps in per_breaker.items():
        if len(eps) > MAX_EPISODES_SHOWN:  # a long run: the count, then the latest few
            earlier = len(eps) - MAX_EPISODES_SHOWN
            lines.append(
                f"  breaker {service}/{endpoint} opened {len(eps)} times;"
                f" {earlier} earlier episode(s) not listed"
            )
        shown.extend(eps[-MAX_EPISODES_SHOWN:])
    return lines, shown


def _episode_line(ep: Episode) -> str:
    text = f"  breaker {ep.name} opened at {ep.opened_at:.2f}s after {ep.failures_at_open} failures"
    if ep.failed_probes:
        text += f"; {ep.failed_probes} probe(s) found it still failing"
    if ep.closed_at is None:
        return text + "; still not closed at the end"
    return text + f"; closed at {ep.closed_at:.2f}s (recovered after {ep.open_for:.2f}s)"


def _failed_fast_line(ep: Episode, rows: list[Row]) -> list[str]:
    key = (ep.service, ep.endpoint)
    rejected = sum(r.rejected for r in rows if (r.service, r.endpoint) == key)
    if not rejected:
        return []
    return [
        f"    {rejected} calls to {ep.name} failed fast while it was open"
        " instead of waiting on a failing service"
    ]


def _retry_after_lines(retry_after: dict[str, Any]) -> list[str]:
    lines = []
    for name, info in retry_after.items():
        told = "/".join(f"{t:g}" for t in info["retry_after_sec"])
        lines.append(
            f"  {name}: {info['retries']} rate-limited attempts retried after the server's"
            f" Retry-After of {told}s (waited {info['waited_min_sec']:.2f}s"
            f" to {info['waited_max_sec']:.2f}s)"
        )
    return lines
