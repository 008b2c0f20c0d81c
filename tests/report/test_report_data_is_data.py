"""#14 item 1: a `region_split` value `'x\\n![leak](/path/of/a/local/file)\\n'` made `dhs evaluate` and
`dhs review` embed that local file, base64, in report.html. Data text is now never rendered as Markdown,
and only PNGs the command wrote in its own output folder are embedded."""

from __future__ import annotations

import base64

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markdown_it import MarkdownIt
from tierfactory import make_tier

from darkhaloscope.cli import main
from darkhaloscope.evaluate.synthetic import synthetic_scores_table

SECRET = b"TOP-SECRET-CONTENT-0123456789"


def _leak(tmp_path) -> tuple[str, bytes]:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return f"x\n![leak]({secret})\n", base64.b64encode(SECRET)


def _assert_no_leak(md_path, b64: bytes, own_pngs: int) -> None:
    html = md_path.with_suffix(".html").read_text()
    assert b64.decode() not in html and "TOP-SECRET" not in html
    assert html.count("<img") == html.count("data:image/png;base64,") == own_pngs
    rendered = MarkdownIt("commonmark").enable("table").render(md_path.read_text())
    assert "secret.txt\"" not in rendered and 'src="/' not in rendered  # no image or link to the file
    assert rendered.count("<img") == own_pngs


@pytest.mark.slow
def test_evaluate_split_name_cannot_inline_a_local_file(tmp_path):
    leak, b64 = _leak(tmp_path)
    t = synthetic_scores_table(600, seed=1)
    t = t.set_column(t.column_names.index("region_split"), "region_split", pa.array([leak] * t.num_rows))
    pq.write_table(t, tmp_path / "s.parquet")
    out = tmp_path / "rep"
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(out), "--no-data", "--set", "n_boot=20",
                 "--set", "baselines=false"]) == 0
    pngs = len(list((out / "figures").glob("*.png")))
    assert pngs >= 4
    _assert_no_leak(out / "report.md", b64, pngs)
    assert "leak" in (out / "report.md").read_text()  # the split name is shown, as text


def test_review_split_name_cannot_inline_a_local_file(tmp_path):
    leak, b64 = _leak(tmp_path)
    tier = make_tier(tmp_path / "tier", rows_per_split=16, files_per_split=1, hive=False)
    for f in tier.glob("part-test-*.parquet"):  # the test split renamed to the hostile value
        t = pq.read_table(f)
        pq.write_table(t.set_column(t.column_names.index("region_split"), "region_split",
                                    pa.array([leak] * t.num_rows)), f)
    out = tmp_path / "r.md"
    main(["review", "--data", str(tier), "--out", str(out), "--quick", "--set", "sections=data"])
    assert "leak" in out.read_text()
    _assert_no_leak(out, b64, 0)
