"""What the demo shows while it runs: a rich live view on a terminal, plain lines otherwise.

Both views get :meth:`tick` about once a second from the runner's thread and :meth:`finish` with
the result. Neither starts a thread of its own (the live view refreshes on :meth:`tick`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import IO, Any, Final, Protocol

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._runner import RunResult, Snapshot
from ._stats import BreakerEvent, Row
from ._summary import endpoint_line, format_ms, summary_data, summary_lines

STATE_STYLES: Final[Mapping[str, str]] = MappingProxyType(
    {"closed": "bold green", "open": "bold red", "half_open": "bold yellow"}
)


class View(Protocol):
    """What the runner drives."""

    def start(self, header: list[str]) -> None: ...

    def tick(self, snapshot: Snapshot) -> None: ...

    def finish(self, result: RunResult) -> None: ...

    def abort(self) -> None: ...


def _event_text(ev: BreakerEvent) -> str:
    return (
        f"[{ev.at_sec:7.2f}s] breaker {ev.service}/{ev.endpoint}: {ev.old} -> {ev.new}"
        f" (failures={ev.failure_count})"
    )


def _progress_line(snapshot: Snapshot) -> str:
    if snapshot.duration_sec:
        return f"{snapshot.elapsed_sec:5.1f}s / {snapshot.duration_sec:g}s"
    return f"{snapshot.elapsed_sec:5.1f}s (until Ctrl-C)"


class PlainView:
    """Plain lines for logs and pipes: transitions as they happen, a table every ``interval``."""

    def __init__(self, out: IO[str], *, interval_sec: float = 10.0) -> None:
        self.out = out
        self.interval_sec = interval_sec
        self._printed_events = 0
        self._next_table = interval_sec

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def start(self, header: list[str]) -> None:
        for line in header:
            self._print(line)

    def tick(self, snapshot: Snapshot) -> None:
        new = snapshot.events_total - self._printed_events
        for ev in snapshot.events[len(snapshot.events) - min(new, len(snapshot.events)) :]:
            self._print(_event_text(ev))
        self._printed_events = snapshot.events_total
        if snapshot.elapsed_sec + 1e-6 >= self._next_table:
            self._next_table += self.interval_sec
            down = " antivirus DOWN" if snapshot.antivirus_down else ""
            self._print(f"--- {_progress_line(snapshot)}{down}")
            for row in snapshot.rows:
                self._print("  " + endpoint_line(row))

    def abort(self) -> None:
        """Nothing to undo for plain output."""

    def finish(self, result: RunResult) -> None:
        for ev in result.events[self._printed_events :]:
            self._print(_event_text(ev))
        self._printed_events = len(result.events)
        for line in summary_lines(result):
            self._print(line)


def _pct_text(row: Row) -> Text:
    pct = row.success_pct
    if pct is None:
        return Text("-")
    style = "green" if pct >= 99 else "yellow" if pct >= 90 else "red"
    return Text(f"{pct:5.1f}%", style=style)


def endpoint_table(
    rows: list[Row], *, title: str | None = None, live: bool = True, width: int = 120
) -> Table:
    """The per-endpoint table (live: breaker details too; summary: whole-run numbers).

    The failure-count column appears when the terminal is at least 100 columns wide; below 92
    columns the headers are abbreviated (``t/o`` timeouts, ``rej`` rejected by the breaker).
    """
    wide = live and width >= 100
    headers = ("calls", "ok", "retries", "timeouts", "rejected", "p95")
    if width < 92:
        headers = ("calls", "ok", "retry", "t/o", "rej", "p95")
    table = Table(
        title=title,
        box=box.SIMPLE_HEAVY,
        title_justify="left",
        expand=False,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("service / endpoint", no_wrap=True, min_width=23)
    for name in headers:
        table.add_column(name, justify="right")
    table.add_column("breaker", min_width=11)
    if wide:
        table.add_column("fails", justify="right")
    for row in rows:
        state = Text(row.breaker_state.upper(), style=STATE_STYLES.get(row.breaker_state, ""))
        probe = row.seconds_until_probe
        if live and probe is not None:
            state.append(f" {probe:.1f}s", style="dim")
        cells: list[RenderableType] = [
            Text.assemble((row.service, "bold"), " ", row.endpoint),
            str(row.calls),
            _pct_text(row),
            str(row.retries),
            str(row.timeouts),
            str(row.rejected),
            format_ms(row.p95_sec),
            state,
        ]
        if wide:
            cells.append(str(row.failure_count))
        table.add_row(*cells)
    return table


def _progress(snapshot: Snapshot) -> Table:
    """The progress bar, the counts, and the antivirus outage (now, or when it comes)."""
    total = snapshot.duration_sec or None
    bar = ProgressBar(
        total=total,
        completed=min(snapshot.elapsed_sec, total) if total else 0,
        width=40,
        pulse=total is None,
    )
    status = Text(f"  {_progress_line(snapshot)}")
    if snapshot.outage_window is not None:
        status.append(*_outage_text(snapshot, snapshot.outage_window))
    progress = Table.grid()
    progress.add_row(bar, status)
    return progress


def _outage_text(snapshot: Snapshot, window: tuple[float, float]) -> tuple[str, str]:
    if snapshot.antivirus_down:
        return ("   antivirus DOWN", "bold red")
    start, end = window
    repeats = not snapshot.duration_sec or snapshot.duration_sec > snapshot.period_sec
    every = f" of every {snapshot.period_sec:g}s" if repeats else ""
    return (f"   antivirus outage {start:.1f}-{end:.1f}s{every}", "dim")


def _recent_events(recent: list[BreakerEvent]) -> list[Text]:
    if not recent:
        return []
    lines = [Text("breaker events", style="bold")]
    for ev in recent:
        line = Text(f"  {ev.at_sec:6.1f}s  {ev.service}/{ev.endpoint}  {ev.old} -> ")
        line.append(ev.new, style=STATE_STYLES.get(ev.new, ""))
        line.append(f"  (failures={ev.failure_count})", style="dim")
        lines.append(line)
    return lines


class LiveView:
    """A rich live view, redrawn on every tick: progress, the table, recent breaker events."""

    def __init__(self, console: Console, *, footer: list[str] | None = None) -> None:
        self.console = console
        self.footer = footer or []
        self._header: list[str] = []
        self._live: Live | None = None

    def start(self, header: list[str]) -> None:
        self._header = header
        self._live = Live(
            Text("starting..."),
            console=self.console,
            auto_refresh=False,  # redrawn by tick(): no refresh thread
            redirect_stdout=False,
            redirect_stderr=True,  # --verbose log lines appear above the view, not through it
        )
        self._live.start()

    def render(self, snapshot: Snapshot) -> RenderableType:
        parts: list[RenderableType] = [Text(line, style="bold") for line in self._header[:1]]
        parts.extend(Text(line, style="dim") for line in self._header[1:])
        parts.append(_progress(snapshot))
        parts.append(endpoint_table(snapshot.rows, width=self.console.width))
        parts.extend(_recent_events(snapshot.events[-6:]))
        parts.append(Text("breaker: state, and when open the time to the next probe", style="dim"))
        parts.extend(Text(line, style="dim") for line in self.footer)
        return Group(*parts)

    def tick(self, snapshot: Snapshot) -> None:
        if self._live is not None:
            self._live.update(self.render(snapshot), refresh=True)

    def abort(self) -> None:
        """Leave live mode (the run failed)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def finish(self, result: RunResult) -> None:
        self.abort()
        console = self.console
        console.print()
        console.print(endpoint_table(result.rows, title="Summary (whole run)", live=False))
        for line in summary_lines(result)[1 + len(result.rows) :]:
            style = "red" if "still not closed" in line else ""
            console.print(Text(line.strip(), style=style))


def write_summary_json(result: RunResult, path: str) -> None:
    """Write :func:`summary_data` to ``path`` (``--summary-json``)."""
    data: dict[str, Any] = summary_data(result)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
