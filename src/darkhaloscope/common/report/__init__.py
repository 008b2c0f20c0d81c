"""One report model and one writer for `dhs audit`, `dhs review` and `dhs evaluate` (and `dhs candidates`).

    from darkhaloscope.common.report import Report, Section, Finding, Para, Code, Table, Figure, write_report
    rep = Report("Audit of TIER", verdict="GO", sections=[Section("data", "Data", findings=[...])], data={...})
    write_report(rep, out_dir, "audit")   # audit.md, audit.html (self-contained), audit.json, each atomic

Data is data: every string in the model is plain text, escaped for Markdown and HTML by the writer;
nothing a tier holds is ever interpreted as Markdown or HTML. The HTML is built from the model, not
from the Markdown, and embeds only `Figure`s: PNGs the command wrote inside its own output folder.
This package sits below every layer that writes a report (it imports only fileio and jsonio).
"""

from darkhaloscope.common.report.format import fmt_duration, fmt_num, fmt_rate
from darkhaloscope.common.report.model import (LEVELS, Bold, Bullets, Code, Figure, Finding, Para, Report, Section,
                                        Table)
from darkhaloscope.common.report.render import md_escape, printable, to_html, to_markdown, write_report

__all__ = ["LEVELS", "Bold", "Bullets", "Code", "Figure", "Finding", "Para", "Report", "Section", "Table",
           "fmt_duration", "fmt_num", "fmt_rate", "md_escape", "printable", "to_html", "to_markdown", "write_report"]
