"""`dhs candidates`: the top-N scored stamps as a page of g/r/z composites, from a tier or a cutout folder;
ids and metadata escaped, PNG names from the rank, paths from the scores file kept inside the data."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tierfactory import fake_stamp, make_tier

from darkhaloscope.cli import main
from darkhaloscope.score.scoresfile import METADATA_KEY
from darkhaloscope.score.sources import open_source
from darkhaloscope.stamps.codec import encode_stamp

EVIL = "<img src=x onerror=alert(1)>\n![leak](/etc/hostname)"


def _scores_for(data, path, n=None, evil_id=True):
    """A scores file in `dhs score`'s layout for every stamp of DATA: score rising with the row index."""
    rows = [(f, int(r), i) for b in open_source(str(data)).batches() for i, (f, r) in
            enumerate(zip(b.source_file, b.source_row))]
    n = len(rows)
    logit = np.linspace(-3, 3, n)
    ids = [f"id-{k}" for k in range(n)]
    if evil_id:
        ids[-1] = EVIL  # the top candidate carries a hostile id
    t = pa.table({"score": 1 / (1 + np.exp(-logit)), "logit": logit, "label": np.zeros(n, np.int8),
                  "row_id": ids, "source_file": [r[0] for r in rows], "source_row": [r[1] for r in rows],
                  "psf_fwhm_used_r": np.full(n, 1.234), "img_flux_r": np.ones(n)})
    t = t.replace_schema_metadata({METADATA_KEY: json.dumps({"data": str(data)}).encode()})
    pq.write_table(t, path)
    return path


def test_top_n_from_a_tier(tmp_path, capsys):
    tier = make_tier(tmp_path / "tier", rows_per_split=8, files_per_split=1)
    scores = _scores_for(tier, tmp_path / "s.parquet")
    out = tmp_path / "cands"
    assert main(["candidates", str(scores), "--top", "5", "--out", str(out)]) == 0
    doc = json.loads((out / "candidates.json").read_text())
    got = doc["candidates"]
    assert [c["rank"] for c in got] == [1, 2, 3, 4, 5] and got[0]["row_id"] == EVIL
    assert [c["logit"] for c in got] == sorted([c["logit"] for c in got], reverse=True)
    assert "img_flux_r" not in got[0] and got[0]["psf_fwhm_used_r"] == 1.234
    pngs = sorted(p.name for p in (out / "png").iterdir())
    assert pngs == [f"rank_{k:04d}.png" for k in range(1, 6)]
    html = (out / "candidates.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and html.count("<img") == 5  # ours only
    assert "onerror" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    from markdown_it import MarkdownIt
    rendered = MarkdownIt("commonmark").enable("table").render((out / "candidates.md").read_text())
    assert rendered.count("<img") == 5 and "/etc/hostname\"" not in rendered
    assert "wrote" in capsys.readouterr().out


def test_composite_png_is_the_stamp(tmp_path):
    """The PNG is lupton_rgb of the stamp, upscaled: a bright red (z) blob shows red at the centre."""
    import matplotlib.image as mpimg

    from darkhaloscope.evaluate.candidates import PNG_UPSCALE, write_png

    img = np.random.default_rng(0).normal(0, [[[0.002]], [[0.003]], [[0.008]]], size=(3, 64, 64)).astype(np.float32)
    img[2, 28:36, 28:36] += 1.0
    png = mpimg.imread(write_png(img, tmp_path / "x.png"))
    assert png.shape[:2] == (64 * PNG_UPSCALE, 64 * PNG_UPSCALE)
    c = png[32 * PNG_UPSCALE, 32 * PNG_UPSCALE]
    assert c[0] > 0.5 and c[0] > 2 * c[2]


def test_cutout_folder_with_and_without_scores(tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(4):
        (folder / f"c{k}.npz").write_bytes(encode_stamp(fake_stamp(rng, k % 2 == 1)))
    out = tmp_path / "a"
    assert main(["candidates", str(folder), "--top", "3", "--out", str(out)]) == 0
    assert len(json.loads((out / "candidates.json").read_text())["candidates"]) == 3
    scores = _scores_for(folder, tmp_path / "s.parquet", evil_id=False)
    assert main(["candidates", str(scores), "--top", "2", "--out", str(tmp_path / "b")]) == 0
    got = json.loads((tmp_path / "b" / "candidates.json").read_text())["candidates"]
    assert [c["source_file"] for c in got] == ["c3.npz", "c2.npz"]


def test_source_file_leaving_the_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    (folder / "c0.npz").write_bytes(encode_stamp(fake_stamp(np.random.default_rng(0), True)))
    (tmp_path / "outside.npz").write_bytes(encode_stamp(fake_stamp(np.random.default_rng(1), True)))
    t = pa.table({"score": [0.9], "logit": [2.0], "row_id": ["x"], "source_file": ["../outside.npz"],
                  "source_row": [0]}).replace_schema_metadata({METADATA_KEY: json.dumps({"data": str(folder)}).encode()})
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["candidates", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "o")]) == 1
    assert "leaves the cutout folder" in capsys.readouterr().err
    assert not (tmp_path / "o" / "candidates.html").exists()


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["candidates", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "no such scores file" in capsys.readouterr().err
    (tmp_path / "x.parquet").write_text("not parquet")
    assert main(["candidates", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["candidates", str(tmp_path / "x.parquet"), "--top", "0", "--out", str(tmp_path / "o")]) == 2


def test_candidates_take_the_test_split_and_a_rerun_leaves_no_stale_png(tmp_path):
    """Issue #25 4.8: 14 of the top 20 candidates were training rows; by default the page ranks the test split
    (as dhs evaluate does) and says when --split all brings in train / val rows; a rerun with a shorter list
    leaves no PNG of the longer one."""
    tier = make_tier(tmp_path / "tier", rows_per_split=8, files_per_split=1)
    scores = _scores_for(tier, tmp_path / "s.parquet", evil_id=False)
    t = pq.read_table(scores)
    split = [f.split("/")[0].split("=")[1] for f in t["source_file"].to_pylist()]
    pq.write_table(t.append_column("region_split", pa.array(split)).replace_schema_metadata(t.schema.metadata), scores)
    out = tmp_path / "cands"
    assert main(["candidates", str(scores), "--top", "5", "--out", str(out)]) == 0
    doc = json.loads((out / "candidates.json").read_text())
    assert {c["region_split"] for c in doc["candidates"]} == {"test"} and len(doc["candidates"]) == 5
    assert "8 rows of split 'test' (of 24" in (out / "candidates.md").read_text()
    assert main(["candidates", str(scores), "--top", "3", "--out", str(out), "--split", "all"]) == 0
    assert sorted(p.name for p in (out / "png").iterdir()) == [f"rank_{k:04d}.png" for k in (1, 2, 3)]
    assert "3 of them from the train / val split" in (out / "candidates.md").read_text()  # top logits: val rows


@pytest.mark.slow  # a browser start is seconds on the 2-core box
def test_stamps_keep_their_size_beside_long_metadata_in_a_browser(tmp_path):
    """Issue #25 4.8: the 192-px composites were squeezed to ~50 px by the metadata column. Rendered in headless
    Chromium (Debian `chromium` + `chromium-driver`, Selenium), every stamp is drawn at its own 192 px."""
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless Chromium not installed: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    from selenium.webdriver.chrome.service import Service

    tier = make_tier(tmp_path / "tier", rows_per_split=4, files_per_split=1)
    scores = _scores_for(tier, tmp_path / "s.parquet", evil_id=False)
    t = pq.read_table(scores)
    long = ["ra=150.1234567;" * 30, "x" * 400] + ["a long note about this stamp " * 12] * (t.num_rows - 2)
    pq.write_table(t.append_column("note", pa.array(long)).replace_schema_metadata(t.schema.metadata), scores)
    out = tmp_path / "cands"
    assert main(["candidates", str(scores), "--top", "6", "--out", str(out)]) == 0
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        d.get((out / "candidates.html").as_uri())
        sizes = d.execute_script("return Array.from(document.images).map(i => [i.naturalWidth, i.clientWidth]);")
        d.save_screenshot(str(tmp_path / "candidates.png"))
    finally:
        d.quit()
    assert len(sizes) == 6 and all(n == 192 and w == 192 for n, w in sizes), sizes
