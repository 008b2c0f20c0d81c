"""The one writer of reports: Markdown, a self-contained HTML page and JSON, from a `report.model.Report`.

    write_report(rep, out_dir, "review")  # review.md, review.html, review.json (each written atomically)

Markdown: every string is escaped (`md_escape`), so text from data stays text. Control characters from
data (ESC of a terminal escape sequence, BEL, bidi overrides) are shown as `\x1b`-style text in every format
(`printable`), so `cat report.md` never runs an escape sequence; JSON escapes them itself (`\u001b`). HTML: built from the
model (never by parsing the Markdown) with every string `html.escape`d; a `Figure` is embedded as
base64 only when it resolves to a PNG inside the report's own folder. JSON: `Report.data`, sanitised
by `jsonio.json_safe` (NaN / inf -> null). Exercise: `dhs evaluate SCORES --out DIR`.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from urllib.parse import quote

from darkhaloscope.fileio import atomic_write_text
from darkhaloscope.common.jsonio import dumps
from darkhaloscope.common.report.model import Bold, Bullets, Code, Figure, Finding, Para, Report, Table

# always escaped: \ ` * [ ] ! | ~; '_' unless inside a word (intraword _ never emphasises); '<' before a
# letter, / ! or ? (an HTML tag or autolink); '&' starting an entity; at the start, a block marker ('# ', '> ',
# '- ', '+ ', '1. ', '===')
_MD_SPECIAL = re.compile(r"([\\`*\[\]!|~])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|<(?=[A-Za-z/!?])|&(?=#?\w+;)")
_MD_LINE_START = re.compile(r"^(\s*)(?:(>|[-+*=](?=\s|$)|#+(?=\s|$)|=+\s*$)|(\d+)([.)])(?=\s|$))")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# C0 / C1 control characters and DEL, and the invisible bidi / direction controls (a "Trojan source" id)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text, keep: str = "") -> str:
    """`text` with every control character (except those in `keep`, e.g. "\\n") written as visible text:
    ESC -> `\\x1b`, U+202E -> `\\u202e`. For every place a data string is shown: reports and terminal lines."""
    def shown(m: re.Match) -> str:
        c = m.group(0)
        return c if c in keep else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
    return _CONTROL.sub(shown, str(text))


def one_line(text) -> str:
    """Any line break (\\n, \\r, \\u2028, form feed, ...) becomes a space: a data string is one line; other
    control characters become visible text (`printable`)."""
    return printable(" ".join(str(text).splitlines()))


def md_escape(text) -> str:
    """Plain text -> Markdown that renders as exactly that text (no links, images, emphasis, HTML, lists)."""
    t = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), one_line(text))
    return _MD_LINE_START.sub(lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}"), t)


def md_code(text, table: bool = False) -> str:
    """A Markdown code span holding `text` verbatim (fence longer than any backtick run inside)."""
    t = one_line(text)
    if table:
        t = t.replace("|", "\\|")  # GFM splits table cells on | even inside code spans
    fence = "`" * (max((len(r) for r in re.findall(r"`+", t)), default=0) + 1)
    pad = " " if t.startswith("`") or t.endswith("`") or not t.strip() else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def _md_spans(p: Para, table: bool = False) -> str:
    out = []
    for s in p.spans:
        if isinstance(s, Code):
            out.append(md_code(s.text, table))
        elif isinstance(s, Bold):
            out.append(f"**{md_escape(s.text)}**")
        else:
            out.append(md_escape(s))
    return "".join(out)


def _md_cell(x, root: Path) -> str:
    if isinstance(x, Figure):
        return f"![{md_escape(x.caption)}]({_rel(x.path, root)})"
    if isinstance(x, Para):
        return _md_spans(x, table=True)
    if isinstance(x, Code):
        return md_code(x.text, table=True)
    return md_escape(x)


def _md_table(t: Table, root: Path) -> list[str]:
    out = [f"*{md_escape(t.caption)}*", ""] if t.caption else []
    out += ["| " + " | ".join(_md_cell(h, root) for h in t.header) + " |", "|" + "---|" * len(t.header)]
    return out + ["| " + " | ".join(_md_cell(x, root) for x in r) + " |" for r in t.rows]


def _finding_para(f: Finding) -> Para:
    return Para(f.message, *([" (run ", Code(f.command), ")"] if f.command else []))


def _findings_table(findings: list[Finding], title: str) -> Table:
    return Table(["check", "severity", title], [[f.check, f.severity, _finding_para(f)] for f in findings])


def _rel(path: Path, root: Path) -> str:
    try:
        rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = Path(path).name
    return quote(rel)


def footer(run: dict) -> Para | None:
    if not run:
        return None
    extra = ", ".join(x for x in (f"darkhaloscope {run['version']}" if run.get("version") else "",
                                  f"commit {str(run['git_commit'])[:12]}" if run.get("git_commit") not in (None, "", "unknown") else "")
                      if x)
    return Para(Code(run.get("command", "dhs")), f" ({extra})" if extra else "")


def to_markdown(rep: Report, root: Path) -> str:
    """The report as Markdown; figure links are relative to `root` (the folder the .md is written to)."""
    out = [f"# {md_escape(rep.title)}", ""]
    out += [f"**{md_escape(h)}**  " for h in rep.headline]
    out += [f"**WARNING: {md_escape(w)}**  " for w in rep.warnings]
    for sec in rep.sections:
        out += ["", f"## {md_escape(sec.title)}", ""]
        if sec.seconds is not None:
            out += [f"Time: {sec.seconds:.1f} s", ""]
        if sec.findings:
            out += _md_table(_findings_table(sec.findings, rep.findings_title), root) + [""]
        for b in sec.blocks:
            if isinstance(b, Para):
                out += [_md_spans(b), ""]
            elif isinstance(b, Bullets):
                out += [f"- {_md_spans(i)}" for i in b.items] + [""]
            elif isinstance(b, Table):
                out += _md_table(b, root) + [""]
            elif isinstance(b, Figure):
                out += [f"![{md_escape(b.caption)}]({_rel(b.path, root)})", "", f"*{md_escape(b.caption)}*", ""]
    if (f := footer(rep.run)) is not None:
        out += ["", "---", "", _md_spans(f)]
    return "\n".join(out).rstrip("\n") + "\n"


# ---- HTML -----------------------------------------------------------------------------------------
def _h(text) -> str:
    return html.escape(printable(text, keep="\n\t"), quote=True)


def _html_spans(p: Para) -> str:
    out = []
    for s in p.spans:
        if isinstance(s, Code):
            out.append(f"<code>{_h(s.text)}</code>")
        elif isinstance(s, Bold):
            out.append(f"<b>{_h(s.text)}</b>")
        else:
            out.append(_h(s))
    return "".join(out)


def _html_cell(x, root: Path) -> str:
    if isinstance(x, Figure):
        return _html_img(x, root) or f"({_h(x.caption)}: not embedded)"
    if isinstance(x, Para):
        return _html_spans(x)
    if isinstance(x, Code):
        return f"<code>{_h(x.text)}</code>"
    return _h(x)


def _html_table(t: Table, root: Path) -> str:
    cap = f"<caption>{_h(t.caption)}</caption>" if t.caption else ""
    head = "<tr>" + "".join(f"<th>{_html_cell(h, root)}</th>" for h in t.header) + "</tr>"
    rows = "".join("<tr>" + "".join(f"<td>{_html_cell(x, root)}</td>" for x in r) + "</tr>" for r in t.rows)
    return f"<table>{cap}{head}{rows}</table>"


def embeddable(path: Path, root: Path) -> bytes | None:
    """The PNG bytes of `path` if it resolves (symlinks followed) to a PNG file inside `root`, else None."""
    try:
        real = Path(path).resolve(strict=True)
        real.relative_to(Path(root).resolve(strict=True))
        data = real.read_bytes() if real.is_file() else b""
    except (OSError, ValueError):
        return None
    return data if data.startswith(PNG_MAGIC) else None


def _html_img(f: Figure, root: Path) -> str | None:
    data = embeddable(f.path, root)
    if data is None:
        return None
    return f'<img alt="{_h(f.caption)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _html_figure(f: Figure, root: Path) -> str:
    img = _html_img(f, root)
    cap = f"<figcaption>{_h(f.caption)}</figcaption>"
    if img is None:
        return f"<figure>{cap}<p>(figure not embedded: not a PNG inside the report folder)</p></figure>"
    return f"<figure>{img}{cap}</figure>"


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0;font-size:90%}td,th{border:1px solid #bbb;padding:2px 6px;"
         "vertical-align:top}td:last-child{overflow-wrap:anywhere}th{background:#eee}img{max-width:100%}"
         "td img{max-width:none}figure{margin:1em 0;display:inline-block}"
         "figcaption{color:#555;font-size:90%}code{background:#f4f4f4}.sev-error{color:#b00;font-weight:bold}"
         ".sev-warning{color:#a60}.sev-info,.time{color:#777}caption{text-align:left;font-style:italic}")


def to_html(rep: Report, root: Path) -> str:
    """One self-contained page (figures inlined as base64, only from inside `root`)."""
    body = [f"<h1>{_h(rep.title)}</h1>"]
    body += [f"<p><b>{_h(h)}</b></p>" for h in rep.headline]
    body += [f"<p class='sev-error'>WARNING: {_h(w)}</p>" for w in rep.warnings]
    for sec in rep.sections:
        body.append(f"<h2>{_h(sec.title)}</h2>")
        if sec.seconds is not None:
            body.append(f"<p class='time'>Time: {sec.seconds:.1f} s</p>")
        if sec.findings:
            rows = "".join(f"<tr><td>{_h(f.check)}</td><td class='sev-{_h(f.severity)}'>{_h(f.severity)}</td>"
                           f"<td>{_html_spans(_finding_para(f))}</td></tr>" for f in sec.findings)
            body.append(f"<table><tr><th>check</th><th>severity</th><th>{_h(rep.findings_title)}</th></tr>{rows}</table>")
        for b in sec.blocks:
            if isinstance(b, Para):
                body.append(f"<p>{_html_spans(b)}</p>")
            elif isinstance(b, Bullets):
                body.append("<ul>" + "".join(f"<li>{_html_spans(i)}</li>" for i in b.items) + "</ul>")
            elif isinstance(b, Table):
                body.append(_html_table(b, root))
            elif isinstance(b, Figure):
                body.append(_html_figure(b, root))
    if (f := footer(rep.run)) is not None:
        body.append(f"<hr><p class='time'>{_html_spans(f)}</p>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{_h(rep.title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(rep: Report, out_dir: str | Path, stem: str, formats=("md", "html", "json"),
                 json_name: str | None = None) -> dict[str, Path]:
    """Write OUT_DIR/STEM.md, .html and .json (or `json_name`), each atomically; JSON last-but-one, Markdown
    last, so a reader that sees the .md sees the others too. Returns {format: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {f: out_dir / (json_name if f == "json" and json_name else f"{stem}.{f}") for f in formats}
    if "html" in paths:
        atomic_write_text(paths["html"], to_html(rep, out_dir))
    if "json" in paths:
        atomic_write_text(paths["json"], dumps(rep.data))
    if "md" in paths:
        atomic_write_text(paths["md"], to_markdown(rep, out_dir))
    return paths
