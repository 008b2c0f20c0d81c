"""The audit's result: its findings, the GO/NO-GO verdict, and its JSON, Markdown and terminal forms.

`dhs audit DATA --json audit.json --markdown audit.md` writes the first two (through the one report
writer, `darkhaloscope.common.report`); the table goes to the terminal. `dhs review` / `dhs demo` use
`AuditReport.findings` / `.verdict` / `.headline()` directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from darkhaloscope.audit.config import SEVERITIES
from darkhaloscope.common.jsonio import dumps, json_safe
from darkhaloscope.common.report import Finding, Report, Section, fmt_num, to_markdown
from darkhaloscope.common.report.render import one_line

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@dataclass
class AuditReport:
    uri: str
    findings: list[Finding] = field(default_factory=list)
    fail_on: str = "error"  # the verdict is NO-GO when a finding is at least this severe
    summary: dict[str, Any] = field(default_factory=dict)  # rows, files, splits, sample sizes, seconds
    run: dict[str, Any] = field(default_factory=dict)  # command line, version, git commit

    @property
    def verdict(self) -> str:
        floor = SEVERITIES.index(self.fail_on)
        return "NO-GO" if any(SEVERITIES.index(f.severity) >= floor for f in self.findings) else "GO"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "GO" else 3

    def by_severity(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    def find(self, check: str, severity: str | None = None) -> list[Finding]:
        return [f for f in self.findings if f.check == check and (severity is None or f.severity == severity)]

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: -SEVERITIES.index(f.severity))

    def counts(self) -> dict[str, int]:
        return {s: len(self.by_severity(s)) for s in reversed(SEVERITIES)}

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"uri": self.uri, "verdict": self.verdict, "fail_on": self.fail_on,
                          "counts": self.counts(), "summary": self.summary, "run": self.run,
                          "findings": [asdict(f) for f in self.sorted_findings()]})

    def to_json(self) -> str:
        return dumps(self.to_dict(), indent=2)

    def counts_line(self) -> str:
        """'2 error(s), 1 warning(s), 5 info (NO-GO on error)': the headline without the verdict."""
        c = self.counts()
        return f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} info (NO-GO on {self.fail_on})"

    def headline(self) -> str:
        return f"{self.verdict}: {self.counts_line()}"

    def to_report(self) -> Report:
        sec = Section("findings", "Findings", findings=self.sorted_findings())
        if self.summary:
            sec.table(["summary", "value"], [[k.replace("_", " "), _fmt(v)] for k, v in self.summary.items()])
        return Report(f"Audit of {self.uri}", verdict=self.verdict, headline=[self.headline()], sections=[sec],
                      data=self.to_dict(), run=self.run)

    def to_markdown(self, root: str | Path = ".") -> str:
        return to_markdown(self.to_report(), Path(root))

    def render(self, console=None) -> None:
        """Print the compact findings table and the verdict (rich; every data string as plain text)."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = console or Console()
        table = Table(title=Text(f"dhs audit {one_line(self.uri)}"), show_lines=False, expand=False)
        table.add_column("check", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("finding", overflow="fold")
        for f in self.sorted_findings():
            table.add_row(Text(f.check), Text(f.severity, style=SEVERITY_STYLE[f.severity]), Text(f.message))
        console.print(table)
        s = self.summary
        if s:
            console.print(Text(", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in s.items()), style="dim"))
        console.print(Text(self.headline(), style="bold green" if self.verdict == "GO" else "bold red"))


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return fmt_num(v, 3)
    return str(v)
