"""The evaluation report: `report.md` (links the PNGs in figures/), a self-contained `report.html` (PNGs
embedded) and `metrics.json`, written by the one report writer (`darkhaloscope.common.report`). The first lines
state the headline numbers and every warning; then one section per analysis.

A section is a `darkhaloscope.common.report.Section`: text (`sec.text`), tables (`sec.table`) and figures
(`sec.figure`, PNGs written under the report folder); every string in it is escaped by the writer, so a
split name or id from the data is shown as text. Another analysis adds its section with
`ev.add_section(key, title)` in its own module. Exercise: `dhs evaluate SCORES --out DIR`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from darkhaloscope.common.report import Report, Section, write_report as write

__all__ = ["Evaluation", "Section", "write_report"]


@dataclass
class Evaluation:
    metrics: dict = field(default_factory=dict)  # becomes metrics.json (sanitised: NaN / inf -> null)
    headline: list[str] = field(default_factory=list)  # the report's first lines
    warnings: list[str] = field(default_factory=list)  # stated right after the headline
    sections: list[Section] = field(default_factory=list)

    def add_section(self, key: str, title: str) -> Section:
        sec = Section(key, title)
        self.sections.append(sec)
        return sec


def write_report(ev: Evaluation, out_dir: Path, run: dict, title: str = "Lens-finder evaluation") -> dict[str, Path]:
    """Write report.md, report.html and metrics.json into `out_dir` (each atomically)."""
    ev.metrics["warnings"] = list(ev.warnings)
    ev.metrics["run"] = run
    rep = Report(title, headline=ev.headline, warnings=ev.warnings or [], sections=ev.sections, data=ev.metrics,
                 run=run)
    if not ev.warnings:
        rep.headline = [*ev.headline, "No warnings."]
    return write(rep, out_dir, "report", json_name="metrics.json")
