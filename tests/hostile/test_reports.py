"""Report rendering under hostile data (owned by the report writer, #14 items 1 and 22; tested here as
attacks): a split value holding a Markdown image of a local file never embeds that file in report.html;
a one-class test split never prints 'None'."""

from __future__ import annotations

import base64

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hostilehelpers import dhs, flat_tier, rewrite_column
from darkhaloscope.evaluate.synthetic import synthetic_scores_table


def _secret(tmp_path):
    path = tmp_path / "secret.png"
    data = b"\x89PNG\r\n\x1a\n" + b"SECRETMARK-" * 40
    path.write_bytes(data)
    return path, base64.b64encode(data).decode()[:40]


@pytest.mark.slow
def test_markdown_image_in_split_value_is_not_embedded_by_evaluate(tmp_path, capsys):
    secret, b64 = _secret(tmp_path)
    leak = f"x\n![leak]({secret})\n"
    t = synthetic_scores_table(300, seed=3)
    splits = ["test"] * 200 + [leak] * 100
    t = t.set_column(t.column_names.index("region_split"), "region_split", pa.array(splits))
    pq.write_table(t, tmp_path / "s.parquet")
    for split_args in ([], ["--set", f"split={leak}"]):
        rc, out, err = dhs(capsys, "evaluate", tmp_path / "s.parquet", "--out", tmp_path / "r", "--no-data",
                           "--set", "n_boot=50", *split_args)
        html = (tmp_path / "r" / "report.html").read_text() if rc == 0 else ""
        assert b64 not in html and "SECRETMARK" not in html and "Traceback" not in err


@pytest.mark.slow  # the fast tier: tests/evaluate/test_evaluate_cli.py::test_one_class_test_split_prints_no_none
def test_one_class_split_never_says_none(tmp_path, capsys):
    pq.write_table(synthetic_scores_table(200, lens_frac=1.0, seed=4), tmp_path / "s.parquet")
    rc, out, err = dhs(capsys, "evaluate", tmp_path / "s.parquet", "--out", tmp_path / "r", "--no-data",
                       "--set", "n_boot=50")
    text = out + err + (tmp_path / "r" / "report.md").read_text() if (tmp_path / "r" / "report.md").exists() \
        else out + err
    assert "None true positives" not in text and "None " not in text


@pytest.mark.slow
def test_markdown_image_in_split_value_is_not_embedded_by_review(tmp_path, capsys):
    secret, b64 = _secret(tmp_path)
    src = flat_tier(tmp_path / "tier", rows=16)
    rewrite_column(src, "region_split", lambda v, rel: [f"x\n![leak]({secret})\n" if s == "test" else s
                                                        for s in v])
    rc, out, err = dhs(capsys, "review", "--data", src, "--out", tmp_path / "rv" / "review.md", "--quick")
    html = (tmp_path / "rv" / "review.html").read_text()
    assert b64 not in html and "SECRETMARK" not in html
