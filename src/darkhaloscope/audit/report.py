"""Audit findings and the report: verdict, JSON, Markdown and the terminal table.

`dhs audit DATA --json audit.json --markdown audit.md` writes the last two; the table goes to the terminal.
`dhs review` / `dhs demo` use `AuditReport.to_json()` / `to_markdown()` / `render()` directly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from darkhaloscope.audit.config import SEVERITIES

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@dataclass
class Finding:
    check: str  # name of the check that produced it (schema, balance, usability, split, leakage, ...)
    severity: str  # 'error' (NO-GO), 'warning' or 'info'
    message: str  # one line: what is wrong, with counts and file/row ids, and what to do
    details: dict[str, Any] = field(default_factory=dict)  # numbers behind the message (JSON-safe)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


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
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def headline(self) -> str:
        c = self.counts()
        return (f"{self.verdict}: {c['error']} error(s), {c['warning']} warning(s), {c['info']} info "
                f"(NO-GO on {self.fail_on})")

    def to_markdown(self) -> str:
        s = self.summary
        lines = [f"# Audit of `{self.uri}`", "", f"**{self.headline()}**", ""]
        if s:
            lines += [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in s.items()]
            lines.append("")
        lines += ["| check | severity | finding |", "|---|---|---|"]
        for f in self.sorted_findings():
            lines.append(f"| {f.check} | {f.severity} | {f.message.replace('|', '/')} |")
        if self.run:
            lines += ["", f"_{self.run.get('command', '')}; darkhaloscope {self.run.get('version', '')}, "
                      f"commit {str(self.run.get('git_commit', ''))[:10]}_"]
        return "\n".join(lines) + "\n"

    def render(self, console=None) -> None:
        """Print the compact findings table and the verdict (rich)."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = console or Console()
        table = Table(title=f"dhs audit {escape(self.uri)}", show_lines=False, expand=False)
        table.add_column("check", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("finding", overflow="fold")
        for f in self.sorted_findings():
            style = SEVERITY_STYLE[f.severity]
            table.add_row(escape(f.check), f"[{style}]{f.severity}[/]", escape(f.message))  # data is data
        console.print(table)
        s = self.summary
        if s:
            console.print(escape(", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in s.items())), style="dim")
        console.print(escape(self.headline()), style="bold green" if self.verdict == "GO" else "bold red")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def json_safe(x: Any) -> Any:
    """numpy scalars -> Python, NaN/Inf -> None, tuples -> lists (JSON has no NaN). Public: reports use it."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


