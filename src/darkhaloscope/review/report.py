"""The review's result: checks grouped in sections, the verdict, and its Markdown / JSON / HTML / terminal forms.

A `Check` is one measured statement with a status: `pass`, `info`, `warn` (listed apart, never blocking)
or `fail` (a blocking reason). Every warn/fail carries the exact command that fixes or investigates it.
The verdict is NO-GO when any check failed (exit 3), GO otherwise (exit 0).
Written by `dhs review --out review.md` (review.json and review.html beside it) and by `dhs demo`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from darkhaloscope.audit.report import json_safe  # numpy -> Python, NaN -> None
from darkhaloscope.fileio import atomic_write_text

STATUSES = ("pass", "info", "warn", "fail")
STATUS_STYLE = {"pass": "green", "info": "dim", "warn": "yellow", "fail": "bold red"}


@dataclass
class Check:
    name: str  # short name: 'initial loss', 'single-batch overfit', 'balance', ...
    status: str  # pass | info | warn | fail
    message: str  # one line: what was measured, against what bound
    command: str | None = None  # the exact command that fixes or investigates it (warn / fail)
    details: dict[str, Any] = field(default_factory=dict)  # the numbers behind the message (JSON-safe)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, got {self.status!r}")


@dataclass
class Section:
    key: str  # data | sanity | throughput | memory | checkpoint | run
    title: str
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # markdown shown under the checks (tables of figures)
    figures: dict[str, Any] = field(default_factory=dict)  # measured numbers, for the JSON
    seconds: float = 0.0  # time the section took

    def add(self, name: str, status: str, message: str, command: str | None = None, **details) -> Check:
        c = Check(name, status, message, command, details)
        self.checks.append(c)
        return c


@dataclass
class Review:
    data: str
    run: str | None = None
    sections: list[Section] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # command line, version, git commit

    def _with(self, status: str) -> list[tuple[Section, Check]]:
        return [(s, c) for s in self.sections for c in s.checks if c.status == status]

    @property
    def blocking(self) -> list[tuple[Section, Check]]:
        return self._with("fail")

    @property
    def warnings(self) -> list[tuple[Section, Check]]:
        return self._with("warn")

    @property
    def verdict(self) -> str:
        return "NO-GO" if self.blocking else "GO"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "GO" else 3

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def headline(self) -> str:
        return f"{self.verdict}: {len(self.blocking)} blocking reason(s), {len(self.warnings)} warning(s)"

    # ---- outputs -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def item(s: Section, c: Check) -> dict:
            return {"section": s.key, "check": c.name, "message": c.message, "command": c.command}
        return json_safe({
            "verdict": self.verdict, "data": self.data, "run": self.run, "info": self.info,
            "blocking": [item(s, c) for s, c in self.blocking], "warnings": [item(s, c) for s, c in self.warnings],
            "sections": [{"key": s.key, "title": s.title, "seconds": round(s.seconds, 2), "figures": s.figures,
                          "checks": [{"check": c.name, **{k: v for k, v in asdict(c).items() if k != "name"}}
                                     for c in s.checks]} for s in self.sections]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def to_markdown(self) -> str:
        out = [f"# GO/NO-GO review of `{self.data}`" + (f" and run `{self.run}`" if self.run else ""), "",
               f"**Verdict: {self.headline()}**", ""]
        if self.blocking:
            out += ["## Blocking reasons", ""]
            out += [f"{i}. **{s.title}: {c.name}**: {c.message}  \n   fix / investigate: `{c.command}`"
                    for i, (s, c) in enumerate(self.blocking, 1)] + [""]
        out += ["## Warnings", ""]
        out += [f"- **{s.title}: {c.name}**: {c.message}" + (f" (`{c.command}`)" if c.command else "")
                for s, c in self.warnings] or ["None."]
        for s in self.sections:
            out += ["", f"## {s.title}", "", f"_{s.seconds:.1f} s_", "", "| check | status | measured |", "|---|---|---|"]
            out += [f"| {c.name} | {c.status.upper() if c.status == 'fail' else c.status} | "
                    f"{c.message.replace('|', '/')} |" for c in s.checks]
            if s.lines:
                out += [""] + s.lines
        if self.info:
            out += ["", "---", f"`{self.info.get('command', '')}` (darkhaloscope {self.info.get('version', '?')}, "
                    f"commit {str(self.info.get('git_commit', '?'))[:12]})"]
        return "\n".join(out) + "\n"

    def write(self, md_path: str | Path) -> dict[str, Path]:
        """review.md, plus review.json and a self-contained review.html beside it (each written atomically)."""
        from darkhaloscope.evaluate.report import to_html

        md_path = Path(md_path)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        paths = {"md": md_path, "json": md_path.with_suffix(".json"), "html": md_path.with_suffix(".html")}
        md = self.to_markdown()
        atomic_write_text(paths["json"], self.to_json())
        atomic_write_text(paths["html"], to_html(md, md_path.parent, f"dhs review: {self.verdict}"))
        atomic_write_text(paths["md"], md)
        return paths

    def render(self, console=None) -> None:
        """The compact terminal summary: one row per section, then the blocking reasons and warnings."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = console or Console()
        table = Table(title=f"dhs review {escape(str(self.data))}")
        for col in ("section", "pass", "warn", "fail", "time"):
            table.add_column(col, justify="left" if col == "section" else "right")
        for s in self.sections:
            n = {k: sum(c.status == k for c in s.checks) for k in ("pass", "warn", "fail")}
            table.add_row(escape(s.title), str(n["pass"]), f"[yellow]{n['warn']}[/]" if n["warn"] else "0",
                          f"[bold red]{n['fail']}[/]" if n["fail"] else "0", f"{s.seconds:.1f} s")
        console.print(table)
        for s, c in self.blocking:
            console.print(f"[bold red]BLOCKING[/] {escape(f'{s.title}: {c.message}')}\n    -> {escape(str(c.command))}",
                          soft_wrap=True)
        for s, c in self.warnings:
            console.print(f"[yellow]warning[/] {escape(f'{s.title}: {c.message}')}", soft_wrap=True)
        console.print(escape(self.headline()), style="bold green" if self.verdict == "GO" else "bold red")


def fmt_duration(seconds: float | None) -> str:
    """'42 s', '17 min', '3.2 h', '4.1 d'."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
