"""A rich progress bar for long builds: rows done / total, stamps per second, ETA.

Used by `dhs simulate` (`RowProgress(total, enabled=True)`); disabled it costs nothing (tests, API calls).
"""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class RowProgress:
    """Context manager: `bar.advance(n_rows)` after each finished chunk."""

    def __init__(self, total: int, enabled: bool = True, label: str = "simulate"):
        self.total = total
        self._progress = None
        if enabled:
            self._progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]} stamps/s"), TimeElapsedColumn(),
                                      TextColumn("ETA"), TimeRemainingColumn(), transient=False)
            self._task = self._progress.add_task(label, total=total, rate="-")

    def __enter__(self) -> "RowProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self, n: int) -> None:
        if self._progress is None:
            return
        self._progress.advance(self._task, n)
        task = self._progress.tasks[0]
        speed = task.completed / task.elapsed if task.elapsed else 0.0
        self._progress.update(self._task, rate=f"{speed:,.0f}")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
