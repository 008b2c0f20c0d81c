"""The evaluation report: `report.md` (links the PNGs in figures/), a self-contained `report.html` (PNGs
embedded as base64) and `metrics.json`. The first lines state the headline numbers and every warning.

Sections are plain markdown lines (paragraphs, `- ` lists, `**bold**`, pipe tables) that `to_html`
converts; nothing else is needed. Exercise: `dhs evaluate SCORES --out DIR`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from darkhaloscope.fileio import atomic_write_text


@dataclass
class Section:
    title: str
    lines: list[str]  # markdown
    figures: list[tuple[str, Path]]  # (caption, PNG path)


@dataclass
class Evaluation:
    metrics: dict = field(default_factory=dict)  # JSON-able: becomes metrics.json
    headline: list[str] = field(default_factory=list)  # the report's first lines
    warnings: list[str] = field(default_factory=list)  # stated right after the headline
    sections: list[Section] = field(default_factory=list)


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(x) -> str:
        return str(x).replace("|", "/").replace("\n", " ")
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    return x


def to_markdown(ev: Evaluation, out_dir: Path, title: str) -> str:
    out = [f"# {title}", ""]
    out += [f"**{h}**  " for h in ev.headline]
    out += [f"**WARNING: {w}**  " for w in ev.warnings] or ["No warnings."]
    for sec in ev.sections:
        out += ["", f"## {sec.title}", ""] + sec.lines
        for caption, path in sec.figures:
            rel = Path(path).relative_to(out_dir).as_posix()
            out += ["", f"![{caption}]({rel})", f"*{caption}*"]
    return "\n".join(out) + "\n"


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\*)(.+?)\*(?!\*)")
_CODE = re.compile(r"`([^`]+)`")
_IMG = re.compile(r"^!\[(.*)\]\((.+)\)$")


def _inline(text: str) -> str:
    t = html.escape(text.rstrip())
    t = _CODE.sub(r"<code>\1</code>", t)
    t = _BOLD.sub(r"<b>\1</b>", t)
    return _ITALIC.sub(r"<i>\1</i>", t)


def to_html(markdown: str, out_dir: Path, title: str) -> str:
    """Convert the report's markdown subset to one self-contained HTML page (images inlined)."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, rows = block[0], [r for r in block[1:] if not all(set(c) <= {"-"} for c in r)]
            body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                        + "</table>")
            continue
        if m := _IMG.match(line):
            data = base64.b64encode((out_dir / m.group(2)).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">')
            if i + 1 < len(lines) and lines[i + 1].startswith("*"):
                body.append(f"<figcaption>{html.escape(lines[i + 1].strip('*'))}</figcaption>")
                i += 1
            body.append("</figure>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:90%}td,th{border:1px solid #bbb;padding:2px 6px}"
             "th{background:#eee}img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:90%}"
             "code{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(ev: Evaluation, out_dir: Path, run: dict, title: str = "Lens-finder evaluation") -> dict[str, Path]:
    """Write report.md, report.html and metrics.json into `out_dir` (each atomically)."""
    out_dir = Path(out_dir)
    ev.metrics["warnings"] = list(ev.warnings)
    ev.metrics["run"] = run
    md = to_markdown(ev, out_dir, title)
    md += f"\n---\n`{run.get('command', '')}` (darkhaloscope {run.get('version', '?')}, commit {run.get('git_commit', '?')[:12]})\n"
    paths = {"md": out_dir / "report.md", "html": out_dir / "report.html", "json": out_dir / "metrics.json"}
    atomic_write_text(paths["json"], json.dumps(_jsonable(ev.metrics), indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths["html"], to_html(md, out_dir, title))
    atomic_write_text(paths["md"], md)
    return paths
