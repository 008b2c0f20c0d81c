"""The review's result: findings grouped in sections, the verdict, and its Markdown / JSON / HTML / terminal forms.

A finding (`darkhaloscope.common.report.Finding`) is one measured statement with a severity: `pass`, `info`,
`warning` (listed apart, never blocking) or `error` (a blocking reason). Every warning/error carries the
exact command that fixes or investigates it. The verdict is NO-GO when any check failed (exit 3), GO
otherwise (exit 0). Written by `dhs review --out review.md` (review.json and review.html beside it) and
by `dhs demo`, through the one report writer (`darkhaloscope.common.report.write_report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darkhaloscope.common.jsonio import dumps, json_safe
from darkhaloscope.common.report import Bold, Bullets, Code, Finding, Para, Report, Section, fmt_duration, write_report
from darkhaloscope.common.report.render import one_line

__all__ = ["Review", "Section", "fmt_duration"]
SEVERITY_STYLE = {"pass": "green", "info": "dim", "warning": "yellow", "error": "bold red"}


@dataclass
class Review:
    data: str
    run: str | None = None
    sections: list[Section] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # command line, version, git commit

    def _with(self, severity: str) -> list[tuple[Section, Finding]]:
        return [(s, c) for s in self.sections for c in s.findings if c.severity == severity]

    @property
    def blocking(self) -> list[tuple[Section, Finding]]:
        return self._with("error")

    @property
    def warnings(self) -> list[tuple[Section, Finding]]:
        return self._with("warning")

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
        def item(s: Section, c: Finding) -> dict:
            return {"section": s.key, "check": c.check, "message": c.message, "command": c.command}
        return json_safe({
            "verdict": self.verdict, "data": self.data, "run": self.run, "info": self.info,
            "blocking": [item(s, c) for s, c in self.blocking], "warnings": [item(s, c) for s, c in self.warnings],
            "sections": [{"key": s.key, "title": s.title, "seconds": round(s.seconds or 0.0, 2), "figures": s.data,
                          "checks": [{"check": c.check, "severity": c.severity, "message": c.message,
                                      "command": c.command, "details": c.details} for c in s.findings]}
                         for s in self.sections]})

    def to_json(self) -> str:
        return dumps(self.to_dict())

    def to_report(self) -> Report:
        title = f"GO/NO-GO review of {self.data}" + (f" and run {self.run}" if self.run else "")
        head = Section("verdict", "Blocking reasons")
        if self.blocking:
            head.blocks.append(Bullets([Para(Bold(f"{s.title}: {c.check}"), f": {c.message}. Fix / investigate: ",
                                             Code(c.command or "")) for s, c in self.blocking]))
        else:
            head.text("None.")
        warn = Section("warnings", "Warnings")
        if self.warnings:
            warn.blocks.append(Bullets([Para(Bold(f"{s.title}: {c.check}"), f": {c.message}",
                                             *([" (", Code(c.command), ")"] if c.command else []))
                                        for s, c in self.warnings]))
        else:
            warn.text("None.")
        return Report(title, verdict=self.verdict, headline=[f"Verdict: {self.headline()}"],
                      sections=[head, warn, *self.sections], data=self.to_dict(), run=self.info,
                      findings_title="measured")

    def write(self, md_path: str | Path) -> dict[str, Path]:
        """review.md, plus review.json and a self-contained review.html beside it (each written atomically)."""
        md_path = Path(md_path)
        return write_report(self.to_report(), md_path.parent, md_path.stem)

    def render(self, console=None) -> None:
        """The compact terminal summary: one row per section, then the blocking reasons and warnings."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = console or Console()
        table = Table(title=Text(f"dhs review {one_line(self.data)}"))
        for col in ("section", "pass", "warning", "error", "time"):
            table.add_column(col, justify="left" if col == "section" else "right")
        for s in self.sections:
            n = {k: sum(c.severity == k for c in s.findings) for k in ("pass", "warning", "error")}
            table.add_row(Text(s.title), str(n["pass"]), Text(str(n["warning"]), style="yellow" if n["warning"] else ""),
                          Text(str(n["error"]), style="bold red" if n["error"] else ""), f"{s.seconds or 0:.1f} s")
        console.print(table)
        for s, c in self.blocking:
            console.print(Text.assemble(("BLOCKING", "bold red"), f" {s.title}: {one_line(c.message)}\n    -> {c.command}"),
                          soft_wrap=True)
        for s, c in self.warnings:
            console.print(Text.assemble(("warning", "yellow"), f" {s.title}: {one_line(c.message)}"), soft_wrap=True)
        console.print(Text(self.headline(), style="bold green" if self.verdict == "GO" else "bold red"))
