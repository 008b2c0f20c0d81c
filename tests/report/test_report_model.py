"""The one report model and writer: Markdown / HTML escaping of data strings, figure embedding only from the
report's own folder, the one JSON sanitiser and jsonl reader, and the one number format."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from darkhaloscope.common.jsonio import dumps, json_safe, read_jsonl
from darkhaloscope.common.report import (Code, Figure, Para, Report, Section, fmt_duration, fmt_num, md_escape, to_html,
                                  to_markdown, write_report)

LEAK = "x\n![leak](/etc/hostname)\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def _report(text: str, root, figures=()) -> Report:
    sec = Section("s", f"split {text}")
    sec.add(text, "warning", f"split '{text}' is odd", command=f"dhs audit {text}", value=float("nan"))
    sec.text("value ", Code(text), " and ", text)
    sec.table([text, "n"], [[text, 3]], caption=text)
    for p in figures:
        sec.figure(p, f"figure {text}")
    return Report(f"Report of {text}", verdict="GO", headline=[text], warnings=[text], sections=[sec],
                  data={"split": text, "x": float("inf")}, run={"command": f"dhs x {text}"})


@pytest.mark.parametrize("text", [LEAK, "<script>alert(1)</script>", "[a](http://e/x.png)", "*b* _c_ `d` | e",
                                  "# heading", "- item", "&lt;", "<img src=/etc/hostname>", "1. x", "a\r\nb\u2028c"])
def test_data_strings_never_become_markup(text, tmp_path):
    """Rendered by a CommonMark parser (markdown-it, with GFM tables), the Markdown holds no image, link, raw
    HTML, list, heading or emphasis made from data; the HTML page holds no tag made from data."""
    from markdown_it import MarkdownIt

    rep = _report(text, tmp_path)
    rendered = MarkdownIt("commonmark").enable("table").render(to_markdown(rep, tmp_path))
    for tag in ("<img", "<a ", "<script", "<ol", "<h3", "<blockquote", "<del"):
        assert tag not in rendered, (tag, rendered)
    assert rendered.count("<em>") == 1  # the table caption, nothing made of data
    assert rendered.count("<h1>") == 1 and rendered.count("<h2>") == 1 and rendered.count("<ul>") == 0
    assert rendered.count("<strong>") == 2  # the headline and warning lines, and nothing else
    page = to_html(rep, tmp_path)
    for tag in ("<img", "<a ", "<script", "<h3", "<ol"):
        assert tag not in page


def test_markdown_escape_renders_the_same_text():
    """Each escaped character is a CommonMark backslash escape: removing the backslashes gives the text back."""
    import re
    for text in ["x ![leak](/etc/hostname)", "a_b _c_ *d* [e] <f> & g | h ~ i `j`", "12. x", "#x"]:
        assert re.sub(r"\\(.)", r"\1", md_escape(text)) == text


def test_html_embeds_only_pngs_inside_the_report_folder(tmp_path):
    root = tmp_path / "rep"
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "ok.png").write_bytes(PNG)
    outside = tmp_path / "secret.png"
    outside.write_bytes(PNG + b"SECRET")
    (root / "figures" / "link.png").symlink_to(outside)
    (root / "figures" / "text.png").write_text("not a png")
    rep = _report("t", root, [root / "figures" / "ok.png", outside, root / "figures" / "link.png",
                              root / "figures" / "text.png", root / ".." / "secret.png"])
    html = to_html(rep, root)
    assert html.count("data:image/png;base64,") == 1
    assert html.count("figure not embedded") == 4
    md = to_markdown(rep, root)
    assert "(figures/ok.png)" in md


def test_write_report_is_atomic_and_json_is_sanitised(tmp_path):
    paths = write_report(_report(LEAK, tmp_path), tmp_path / "out", "r")
    assert sorted(p.name for p in paths.values()) == ["r.html", "r.json", "r.md"]
    doc = json.loads(paths["json"].read_text())
    assert doc == {"split": LEAK, "x": None}
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".tmp")]
    md = paths["md"].read_text()
    assert md.rstrip().endswith("`dhs x x ![leak](/etc/hostname)`")  # the footer: command in a code span
    assert "?" not in md.splitlines()[-1]  # never 'darkhaloscope ?, commit ?'


def test_footer_names_version_and_commit_only_when_known(tmp_path):
    rep = Report("t", run={"command": "dhs demo", "version": "0.1.0", "git_commit": "abcdef1234567890"})
    assert to_markdown(rep, tmp_path).splitlines()[-1] == "`dhs demo` (darkhaloscope 0.1.0, commit abcdef123456)"
    rep.run = {"command": "dhs demo"}
    assert to_markdown(rep, tmp_path).splitlines()[-1] == "`dhs demo`"


def test_section_time_is_plain_text_not_markdown_italics(tmp_path):
    """#13: review.html showed '_5.4 s_' literally."""
    rep = Report("t", sections=[Section("a", "A", seconds=5.43)])
    assert "Time: 5.4 s" in to_markdown(rep, tmp_path) and "_5.4 s_" not in to_markdown(rep, tmp_path)
    assert "<p class='time'>Time: 5.4 s</p>" in to_html(rep, tmp_path)


def test_json_safe_one_rule_for_nan_and_inf():
    x = {"a": float("nan"), "b": float("inf"), "c": -math.inf, "d": np.float32(0.5), "e": np.arange(2),
         "f": (1, np.int64(2)), "g": np.array([np.nan, 1.0])}
    assert json_safe(x) == {"a": None, "b": None, "c": None, "d": 0.5, "e": [0, 1], "f": [1, 2], "g": [None, 1.0]}
    assert "NaN" not in dumps(x) and "Infinity" not in dumps(x)


def test_read_jsonl_stops_at_a_cut_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3, "b"')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_one_number_format():
    assert fmt_num(99990.0) == fmt_num(99990) == "99,990"  # never 9.999e+04
    assert fmt_num(0.001) == "0.001" and fmt_num(0.12345) == "0.1235" and fmt_num(5e-6) == "5.000e-06"
    assert fmt_num(None) == fmt_num(float("nan")) == "undefined" and fmt_num(None, none="-") == "-"
    assert fmt_num(float("inf")) == "inf" and fmt_num(0) == "0" and fmt_num(655.7) == "655.7"


def test_fmt_duration_never_says_zero_seconds_for_work():
    """#13: T4/A100/H100 epoch times printed as '0 s'."""
    assert [fmt_duration(s) for s in (42, 1020, 3.2 * 3600, 4.1 * 86400, None)] == ["42 s", "17 min", "3.2 h",
                                                                                     "4.1 d", "n/a"]
    assert fmt_duration(0.0123) == "0.012 s" and fmt_duration(0.4) == "0.4 s"


def test_para_plain_text():
    assert Para("a ", Code("b"), " c").plain() == "a b c"
    assert isinstance(Figure("x.png", "c").path, os.PathLike)


def test_bin_labels_tell_close_edges_apart():
    """#13: a depth bin printed as '[23.4, 23.4)'."""
    import numpy as np

    from darkhaloscope.evaluate.selection import bin_label, binned_rate

    assert bin_label(23.41, 23.44) == "[23.41, 23.44)" and bin_label(0.5, 1.0) == "[0.5, 1)"
    assert bin_label(23.4001, 23.4002, closed=True) == "[23.4001, 23.4002]"
    v = np.random.default_rng(0).normal(23.42, 0.01, 400)
    rows = binned_rate(v, v > 23.42, "depth", 6).rows()
    labels = [r["bin"] for r in rows]
    for lab in labels:
        lo, hi = lab[1:-1].split(", ")
        assert lo != hi, labels
    assert labels[-1].endswith("]") and all(x.endswith(")") for x in labels[:-1])


def test_one_shortcut_verdict_for_audit_and_evaluate():
    """#13: audit said 'no pixel shortcut' while evaluate said 'SHORTCUT?' for the same tier. One rule now."""
    from darkhaloscope.audit.config import AuditConfig
    from darkhaloscope.audit.stats import SHORTCUT_AUROC, shortcut_verdict

    assert SHORTCUT_AUROC == AuditConfig().shortcut_combo_auroc_warn
    v, why = shortcut_verdict(0.9, cnn_auroc=0.95, cnn_close=True)
    assert v == "shortcut" and ">= 0.85" in why and "0.950" in why
    v, why = shortcut_verdict(0.815, cnn_auroc=0.8735, cnn_close=False)
    assert v == "no shortcut" and "(< 0.85)" in why and "CNN reaches 0.874" in why
    v, why = shortcut_verdict(0.8, cnn_auroc=0.82, cnn_close=True)
    assert v == "no shortcut" and "adds little" in why
    assert shortcut_verdict(None)[0] == "no shortcut"
