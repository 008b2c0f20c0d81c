"""`dhs evaluate` from scores files alone: report files, headline, one-class and bad-input handling."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.evaluate.synthetic import synthetic_scores_table, write_synthetic_scores

FAST = ["--no-data", "--set", "n_boot=100"]


@pytest.mark.slow
def test_report_files_metrics_and_figures(tmp_path, capsys):
    scores = write_synthetic_scores(tmp_path / "s.parquet", 6000, seed=1, splits=("train", "test"))
    out = tmp_path / "rep"
    assert main(["evaluate", str(scores), "--out", str(out), *FAST, "--set", "threshold=0.3", "--set", "threshold_fpr=null"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"auroc", "average_precision", "tpr_at_fpr", "fpr_at_tpr", "tpr0", "tpr10", "calibration",
            "prevalence", "selection_function", "stratified_fpr", "baselines", "threshold"} <= set(m)
    t = pq.read_table(scores)
    test = t.filter(pa.compute.equal(t["region_split"], "test"))  # auto split: test rows only
    from sklearn.metrics import roc_auc_score
    assert m["n_rows"] == test.num_rows
    assert abs(m["auroc"]["value"] - roc_auc_score(test["label"].to_numpy(), test["logit"].to_numpy())) < 1e-9
    assert m["auroc"]["ci95"]["low"] < m["auroc"]["value"] < m["auroc"]["ci95"]["high"]
    assert m["tpr_at_fpr"]["0.0001"]["value"] is None and not m["tpr_at_fpr"]["0.0001"]["resolvable"]
    assert not any("training split" in w for w in m["warnings"])
    md = (out / "report.md").read_text().splitlines()
    assert md[2].startswith("**AUROC 0.9") and "95% CI" in md[2]
    assert any("not resolvable" in line for line in md[:8])  # warnings stated at the top
    for png in ("roc", "pr", "score_histograms", "reliability", "selection", "completeness_map", "stratified_fpr"):
        assert (out / "figures" / f"{png}.png").stat().st_size > 10_000, png
        assert f"figures/{png}.png" in "\n".join(md)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and 'src="figures' not in html
    assert "<table>" in html
    # the selection function recovers the synthetic truth: completeness rises with arc S/N
    rates = [r["rate"] for r in m["selection_function"]["arc_snr"]]
    assert rates[-1] > rates[0] + 0.1
    fpr_psf = [r["rate"] for r in m["stratified_fpr"]["psf_fwhm_used_r"]]
    assert fpr_psf[-1] > fpr_psf[0]
    assert "Galleries" in (out / "report.md").read_text() and "Not made" in (out / "report.md").read_text()
    assert "wrote" in capsys.readouterr().out


@pytest.fixture(scope="module")
def one_class_report(tmp_path_factory):
    """`dhs evaluate` of 500 lenses and no control (one report shared by the one-class tests): (folder, stdout +
    stderr)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("oneclass")
    pq.write_table(synthetic_scores_table(500, lens_frac=1.0, seed=2), tmp / "s.parquet")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        assert main(["evaluate", str(tmp / "s.parquet"), "--out", str(tmp / "rep"), *FAST]) == 0
    return tmp / "rep", printed.getvalue()


def test_one_class_scores_are_undefined_with_reason(one_class_report):
    out = one_class_report[0]
    text = (out / "metrics.json").read_text()
    m = json.loads(text)
    assert m["auroc"]["value"] is None and "only one class" in m["auroc"]["reason"]
    assert m["tpr_at_fpr"]["0.01"]["value"] is None and "controls (label 0)" in m["tpr_at_fpr"]["0.01"]["reason"]
    assert "NaN" not in text and "nan" not in text.replace("nanomag", "")
    md = (out / "report.md").read_text()
    assert "AUROC undefined (only one class: 0 controls (label 0) among 500 rows)" in md.splitlines()[2]
    assert "WARNING: AUROC and TPR are undefined" in md


@pytest.mark.parametrize("drop,match", [("label", "missing column\\(s\\) label"), ("score", "missing column\\(s\\) score")])
def test_missing_columns_are_a_clear_error(tmp_path, capsys, drop, match):
    t = synthetic_scores_table(50, seed=0).drop_columns([drop])
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "rep"), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    import re
    assert re.search(match, err) and "dhs score" in err
    assert not (tmp_path / "rep" / "report.md").exists()


def test_bad_scores_and_missing_file(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "r"), *FAST]) == 2  # missing input: exit 2
    assert "scores file not found" in capsys.readouterr().err
    t = synthetic_scores_table(50, seed=0)
    score = t["score"].to_numpy().copy()
    score[7] = 1.5
    t = t.set_column(0, "score", pa.array(score))
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r"), *FAST]) == 1
    assert "row 7 has score 1.5" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r"), "--set", "nboot=3"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r"), "--set", "split=nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no rows with region_split='nosuch'; valid splits: " in err and "pick one with --split=NAME" in err


@pytest.mark.slow
def test_the_split_the_error_suggests_is_accepted(tmp_path, capsys):
    scores = write_synthetic_scores(tmp_path / "s.parquet", 400, seed=2, splits=("train", "test"))
    assert main(["evaluate", str(scores), "--out", str(tmp_path / "r"), *FAST, "--split=nosuch"]) == 2
    assert "valid splits: test, train, all, auto" in capsys.readouterr().err
    assert main(["evaluate", str(scores), "--out", str(tmp_path / "r"), *FAST, "--split=train"]) == 0
    assert "split 'train'" in capsys.readouterr().err


@pytest.mark.slow
def test_baseline_close_to_cnn_is_stated_first(tmp_path):
    # a "CNN" whose score is a function of the PSF FWHM only: the metadata baseline matches it
    t = synthetic_scores_table(3000, seed=5)
    y = t["label"].to_numpy()
    psf = np.where(y == 1, 1.1, 1.4) + np.random.default_rng(0).normal(0, 0.1, len(y))
    logit = -(psf - 1.25) * 10
    t = t.set_column(t.column_names.index("psf_fwhm_used_r"), "psf_fwhm_used_r", pa.array(psf))
    t = t.set_column(1, "logit", pa.array(logit)).set_column(0, "score", pa.array(1 / (1 + np.exp(-logit))))
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "rep"), *FAST]) == 0
    md = (tmp_path / "rep" / "report.md").read_text().splitlines()
    assert md[4].startswith("**WARNING: LEAK? a logistic regression on allowed metadata")
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    meta = next(b for b in m["baselines"] if b["name"] == "allowed metadata")
    assert meta["close_to_cnn"] and "theta_e_arcsec" not in meta["features"]  # label-leaking columns never used


@pytest.mark.slow
def test_operating_point_at_fixed_fpr_and_fallback(tmp_path):
    scores = write_synthetic_scores(tmp_path / "s.parquet", 4000, seed=3)
    fast = [*FAST, "--set", "baselines=false"]
    assert main(["evaluate", str(scores), "--out", str(tmp_path / "a"), *fast, "--set", "threshold_fpr=0.01"]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["threshold"]["fpr"] <= 0.01 and m["threshold"]["recall"] == m["tpr_at_fpr"]["0.01"]["value"]
    # 1e-4 cannot be resolved with ~2,000 controls: the point above every control (FPR 0), and it says so
    assert main(["evaluate", str(scores), "--out", str(tmp_path / "b"), *fast, "--set", "threshold_fpr=1e-4"]) == 0
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["threshold"]["fp"] == 0 and m["threshold"]["recall"] == m["tpr0"]["value"]
    assert m["operating_point"]["rule"].startswith("the point above every control: FPR 0.0001 is not resolvable")
    # no false positive seen: the false positives per million are an upper bound (rule of three), and say so
    head = (tmp_path / "b" / "report.md").read_text().split("## ")[0].replace("\\", "")
    assert re.search(r"at most [\d,]+ false positives per million galaxies \(no false positive among [\d,]+ "
                     r"controls: FPR <= [\d.e-]+ \(95% upper bound\) used\)", head), head
    # threshold_fpr=null: the probability threshold
    assert main(["evaluate", str(scores), "--out", str(tmp_path / "c"), *fast, "--set", "threshold_fpr=null"]) == 0
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert m["threshold"]["score"] == 0.5 and m["operating_point"]["rule"] == "score >= 0.5"


@pytest.mark.slow
def test_headline_operating_point_is_fpr_1e3_with_p05_table_below(tmp_path):
    """#13: the headline was p >= 0.5 (FPR 0.1: '99,990 false positives per million'), printed elsewhere as
    9.999e+04. Now: FPR 1e-3 on the test controls; p >= 0.5 kept in the table below; one number format."""
    scores = write_synthetic_scores(tmp_path / "s.parquet", 6000, seed=3)
    assert main(["evaluate", str(scores), "--out", str(tmp_path / "r"), *FAST, "--set", "baselines=false"]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["threshold"]["fpr"] <= 1e-3 and m["operating_point"]["rule"].startswith("FPR <= 0.001 on the ")
    md = (tmp_path / "r" / "report.md").read_text()
    head = md.split("## ")[0]
    assert "At the operating point (FPR <= 0.001 on the " in head.replace("\\", "")
    assert "| 0.5 |" in md  # the fixed-probability table, below
    assert not re.search(r"\d\.\d+e\+0\d", md), re.findall(r".{30}\d\.\d+e\+0\d", md)  # no 9.999e+04


def test_one_class_test_split_prints_no_none(one_class_report):
    """#14 item 22: a one-class split printed 'None true positives' (also tests/hostile/test_reports.py, slow)."""
    out, printed = one_class_report
    assert "wrote" in printed and "None " not in printed and "None true positives" not in printed
    for name in ("report.md", "report.html"):
        text = re.sub(r"base64,[^\"]+", "", (out / name).read_text())
        assert "None" not in text and "nan" not in text.lower().replace("nanomag", ""), name
    md = (out / "report.md").read_text()
    assert "TPR0 (lenses above every control) undefined (only one class" in md


@pytest.mark.slow
def test_scores_without_logits_rank_by_probability(tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = synthetic_scores_table(3000, seed=7).drop_columns(["logit"])
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r"), *FAST,
                 "--set", "baselines=false"]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    y, s = t["label"].to_numpy(), t["score"].to_numpy()
    assert m["ranked_by"] == "score"
    assert abs(m["auroc"]["value"] - roc_auc_score(y, s)) < 1e-9
    assert abs(m["average_precision"]["value"] - average_precision_score(y, s)) < 1e-9


@pytest.mark.slow
def test_bench_evaluate_smoke(capsys):
    assert main(["bench", "evaluate", "--rows", "3000", "--set", "n_boot=20", "--set", "baselines=false"]) == 0
    assert "dhs evaluate on 3,000 scores:" in capsys.readouterr().out


@pytest.mark.slow  # fits the image-statistics baseline: ~4 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_image_statistics_shortcut_is_one_verdict_with_its_numbers(tmp_path):
    """#13: audit and evaluate disagreed on 'shortcut' for the same tier; now one rule (audit.stats.shortcut_verdict)
    and the reason quotes both AUROCs."""
    t = synthetic_scores_table(3000, seed=4)
    rng = np.random.default_rng(0)
    flux = t["logit"].to_numpy() + rng.normal(0, 0.3, t.num_rows)  # image statistics as good as the CNN
    t = t.append_column("img_total_flux_r", pa.array(flux)).append_column("img_core_flux_r", pa.array(rng.normal(size=t.num_rows)))
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r"), *FAST]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    img = next(b for b in m["baselines"] if b["name"] == "image statistics")
    assert m["shortcut"]["verdict"] == "shortcut" and ">= 0.85" in m["shortcut"]["reason"]
    assert f"the CNN reaches {img['cnn_auroc']['value']:.3f}" in m["shortcut"]["reason"]
    assert any(w.startswith("SHORTCUT: image statistics alone") for w in m["warnings"])


@pytest.mark.slow  # two whole dhs evaluate runs: 6.4 s at load 1.3 (fast tier < 2 min; runs in CI's full run)
def test_a_rerun_into_the_same_out_leaves_no_stale_figure(tmp_path):
    """Issue #25 4.8: a known_lenses.png of an earlier run stayed beside a report that has no real lenses."""
    import os

    scores = write_synthetic_scores(tmp_path / "s.parquet", 2000, seed=1)
    out = tmp_path / "rep"
    assert main(["evaluate", str(scores), "--out", str(out), *FAST, "--set", "baselines=false"]) == 0
    made = sorted(p.name for p in (out / "figures").glob("*.png"))
    stale = out / "figures" / "known_lenses.png"
    stale.write_bytes(b"an earlier run's figure")
    os.utime(stale, (1e9, 1e9))
    assert main(["evaluate", str(scores), "--out", str(out), *FAST, "--set", "baselines=false"]) == 0
    assert not stale.exists() and sorted(p.name for p in (out / "figures").glob("*.png")) == made and made


@pytest.mark.parametrize("rows,expect", [(300, "shown at the threshold passing 0.01 of the controls"),
                                         pytest.param(60, "too few controls (", marks=pytest.mark.slow)])
def test_selection_names_its_operating_point_and_stratified_fpr_is_never_empty(tmp_path, rows, expect):
    """Issue #25 4.6: at the point above every control the selection function's 'detected' did not say which
    threshold it was, and the stratified FPR was 8 empty panels 'from 0 to 0'."""
    scores = write_synthetic_scores(tmp_path / "s.parquet", rows, seed=2, separation=12.0)
    out = tmp_path / "rep"
    assert main(["evaluate", str(scores), "--out", str(out), *FAST, "--set", "baselines=false"]) == 0
    md = (out / "report.md").read_text()
    m = json.loads((out / "metrics.json").read_text())
    assert "the point above every control" in m["operating_point"]["rule"]
    assert "Detected means score >= " in md and "the point above every control" in md.split("## Selection")[1]
    assert expect in md and not re.search(r"from 0 to 0 across", md)
    if rows == 300:
        assert m["stratified_fpr"] and all(sum(b["k"] for b in v) > 0 for v in m["stratified_fpr"].values())
        assert (out / "figures" / "stratified_fpr.png").is_file()
    else:
        assert m["stratified_fpr"] == {} and not (out / "figures" / "stratified_fpr.png").exists()
