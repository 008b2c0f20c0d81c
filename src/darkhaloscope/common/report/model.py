"""The report data model shared by audit, review, evaluate and candidates (written by `report.render`).

A `Report` is a title, an optional verdict, headline lines, warnings, and `Section`s. A section holds
`Finding`s (one measured statement with a severity and, when it needs action, the command to run) and
blocks: `Para` (a paragraph of plain-text / `Code` / `Bold` spans), `Bullets`, `Table` and `Figure`.
Every string is plain text: the writer escapes it; no field is ever parsed as Markdown or HTML.
Exercise: `dhs audit TIER --markdown audit.md`, `dhs review`, `dhs evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

LEVELS = ("pass", "info", "warning", "error")  # severities, mildest first; 'error' is a blocking reason


@dataclass(frozen=True)
class Code:
    """A span shown as code (a command, a path, a column name)."""

    text: str


@dataclass(frozen=True)
class Bold:
    text: str


Span = Union[str, Code, Bold]


@dataclass
class Para:
    """One paragraph: plain-text strings, `Code` and `Bold` spans, joined as given."""

    spans: list[Span]

    def __init__(self, *spans: Span):
        self.spans = [s if isinstance(s, (Code, Bold)) else str(s) for s in spans]

    def plain(self) -> str:
        return "".join(s if isinstance(s, str) else s.text for s in self.spans)


@dataclass
class Bullets:
    items: list[Para]

    def __init__(self, items):
        self.items = [i if isinstance(i, Para) else Para(i) for i in items]


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]  # cells: str / number / Code; numbers are shown with str() (format them first)
    caption: str = ""


@dataclass
class Figure:
    """A PNG the command itself wrote inside its output folder (embedded in the HTML, linked from Markdown)."""

    path: Path
    caption: str

    def __post_init__(self) -> None:
        self.path = Path(self.path)


Block = Union[Para, Bullets, Table, Figure]


@dataclass
class Finding:
    check: str  # short name of what was measured: 'balance', 'initial loss', 'shortcut', ...
    severity: str  # one of LEVELS
    message: str  # one line: what was measured, against what bound, and (warning/error) what is wrong
    details: dict[str, Any] = field(default_factory=dict)  # the numbers behind the message (JSON-safe)
    command: str | None = None  # the exact command that fixes or investigates it

    def __post_init__(self) -> None:
        if self.severity not in LEVELS:
            raise ValueError(f"severity must be one of {LEVELS}, got {self.severity!r}")

    def at_least(self, severity: str) -> bool:
        return LEVELS.index(self.severity) >= LEVELS.index(severity)


@dataclass
class Section:
    key: str  # stable id used in the JSON ('data', 'sanity', 'ranking', ...)
    title: str
    findings: list[Finding] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # measured numbers, for the JSON
    seconds: float | None = None  # time the section took (shown when given)

    def add(self, check: str, severity: str, message: str, command: str | None = None, **details) -> Finding:
        f = Finding(check, severity, message, details, command)
        self.findings.append(f)
        return f

    def text(self, *spans: Span) -> None:
        self.blocks.append(Para(*spans))

    def table(self, header: list[str], rows: list[list[Any]], caption: str = "") -> None:
        self.blocks.append(Table(list(header), [list(r) for r in rows], caption))

    def figure(self, path: str | Path, caption: str) -> None:
        self.blocks.append(Figure(Path(path), caption))


@dataclass
class Report:
    title: str
    verdict: str | None = None  # 'GO' / 'NO-GO' (shown with the headline), or None
    headline: list[str] = field(default_factory=list)  # the first lines, in bold
    warnings: list[str] = field(default_factory=list)  # stated right after the headline
    sections: list[Section] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # the JSON document
    run: dict[str, Any] = field(default_factory=dict)  # command, version, git_commit: the footer
    findings_title: str = "finding"  # header of the findings column

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)
