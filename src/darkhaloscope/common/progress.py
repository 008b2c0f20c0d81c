"""The one progress display of every long command (simulate, pack, audit, train, score).

On a terminal it is a rich bar (label, bar, done/total, rate, free text, elapsed, ETA). When stderr is
not a terminal (a log file, a batch job, CI) it prints a plain line at most every `every_s` seconds,
e.g. `train: 1,200/6,000 steps (20%), 3.1 steps/s, ETA 0:25:48, epoch 2 loss 0.4113`, and one last
line at the end if it printed any. Disabled (`enabled=False`: tests, API calls) it costs nothing.

    with Progress(total_rows, "simulate", unit="rows") as bar:
        bar.advance(n_rows)
Exercised by `dhs simulate`, `dhs pack`, `dhs audit`, `dhs train` and `dhs score`.
"""

from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 10.0  # seconds between plain progress lines when stderr is not a terminal


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """`advance(n)` or `update(completed=...)`; `info` is free text shown after the rate (e.g. a loss)."""

    def __init__(self, total: int, label: str, *, unit: str = "rows", enabled: bool = True, done: int = 0,
                 transient: bool = False, every_s: float | None = None, stream=None):
        self.total, self.label, self.unit, self.enabled = int(total), label, unit, enabled
        self.completed, self._start_done, self.info = int(done), int(done), ""
        self.every_s, self._stream = PLAIN_EVERY_S if every_s is None else every_s, stream
        self._t0 = self._last = time.monotonic()
        self._printed = False
        self._bar = None
        if enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]} {task.fields[unit]}/s {task.fields[info]}"),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=Console(file=self.stream), transient=transient)
            self._task = self._bar.add_task(label, total=self.total, completed=self.completed, rate="-",
                                            unit=unit, info="")
            self._bar.start()

    @property
    def stream(self):
        return self._stream or sys.stderr

    def rate(self) -> float:
        """Units per second since this display started (work done before a resume excluded)."""
        dt = time.monotonic() - self._t0
        return (self.completed - self._start_done) / dt if dt > 0 else 0.0

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.update(self.completed + n, info=info)

    def update(self, completed: int | None = None, *, label: str | None = None, info: str | None = None) -> None:
        if not self.enabled:
            return
        if completed is not None:
            self.completed = int(completed)
        if label is not None:
            self.label = label
        if info is not None:
            self.info = info
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, description=self.label,
                             rate=f"{self.rate():,.1f}" if self.rate() < 10 else f"{self.rate():,.0f}", info=self.info)
        elif time.monotonic() - self._last >= self.every_s:
            self._plain_line()

    def line(self) -> str:
        """The plain progress line (what a non-terminal stderr gets)."""
        rate = self.rate()
        pct = f" ({self.completed / self.total:.0%})" if self.total else ""
        eta = f", ETA {_clock((self.total - self.completed) / rate)}" if rate > 0 and self.total else ""
        info = f", {self.info}" if self.info else ""
        return f"{self.label}: {self.completed:,}/{self.total:,} {self.unit}{pct}, {rate:,.1f} {self.unit}/s{eta}{info}"

    def _plain_line(self) -> None:
        self._last = time.monotonic()
        self._printed = True
        print(self.line(), file=self.stream, flush=True)

    def print(self, msg: str) -> None:
        """A message that does not break the bar (plain text, never markup)."""
        if self._bar is not None:
            self._bar.console.print(msg, highlight=False, markup=False)
        else:
            print(msg, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._printed:
            self._plain_line()
        self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
