"""evaluate.hostrange: the real lenses' hosts against the controls' brightness range (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.evaluate.hostrange import INSIDE_HOSTS, host_range, spearman


def test_spearman_by_hand_and_its_refusals():
    a = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    b = np.array([2.0, 1, 4, 3, 6, 5, 8, 7, 10, 9])  # ranks off by one pair each: 1 - 6 * 10 / (10 * 99)
    assert spearman(a, b) == pytest.approx(1 - 6 * 10 / (10 * 99))
    assert spearman(a[:9], b[:9]) is None  # fewer than 10 finite pairs
    assert spearman(np.append(a, np.nan), np.append(b, 1.0)) == pytest.approx(spearman(a, b))


def test_lenses_outside_the_controls_range_get_their_own_rows():
    rng = np.random.default_rng(0)
    ctrl_flux = rng.uniform(1.0, 2.0, 1000)
    ctrl_values = ctrl_flux + rng.normal(0, 0.1, 1000)  # the score rises with host brightness
    lens_flux = np.array([0.5, 1.5, 1.6, 3.0, 4.0, np.nan])
    hr = host_range(lens_flux, ctrl_flux, ctrl_values)
    assert hr.low == pytest.approx(np.percentile(ctrl_flux, 5)) and hr.high == pytest.approx(np.percentile(ctrl_flux, 95))
    assert hr.brighter.tolist() == [False, False, False, True, True, False]
    assert hr.fainter.tolist() == [True, False, False, False, False, False]
    g = hr.groups()
    assert g[INSIDE_HOSTS].tolist() == [False, True, True, False, False, False]  # unmeasured: in no host row
    assert g["hosts brighter than 95% of the controls"].sum() == 2 and g["hosts fainter than 95% of the controls"].sum() == 1
    assert [hr.place(i) for i in range(6)] == ["fainter", "inside", "inside", "brighter", "brighter", None]
    assert hr.rho > 0.9
    note = hr.note("logit")
    assert "2 of the 6 real lenses have brighter hosts, 1 fainter" in note
    assert "brighter hosts may owe part of their score to the host, fainter ones be held back" in note
    assert "like-for-like" in note
    d = hr.as_dict()
    assert d["n_brighter"] == 2 and d["n_fainter"] == 1 and d["statistic"] == "img_core_flux_r"


def test_hosts_all_inside_add_no_rows_and_no_caveat():
    rng = np.random.default_rng(1)
    ctrl = rng.uniform(1.0, 2.0, 500)
    hr = host_range(np.array([1.4, 1.5]), ctrl, rng.normal(size=500))
    assert not hr.outside and hr.groups() == {}
    assert "like-for-like" not in hr.note("logit")


def test_no_statistic_in_either_file_is_no_check():
    assert host_range(None, np.ones(100), np.ones(100)) is None
    assert host_range(np.ones(3), None, np.ones(100)) is None
    assert host_range(np.ones(3), np.ones(5), np.ones(5)) is None  # too few controls for a 5-95% range


def test_the_real_lens_section_splits_recall_by_host_brightness(tmp_path):
    """known_lens_metrics on synthetic files: 200 controls whose logit rises with host flux, 30 real lenses of
    which 10 sit on hosts brighter than every control: the recall table gains the three host rows, the per-lens
    records say where each host lies, and metrics.json carries the check."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from darkhaloscope.config import load_config
    from darkhaloscope.evaluate.config import EvaluateConfig
    from darkhaloscope.evaluate.knownlenses import known_lens_metrics
    from darkhaloscope.score.scoresfile import read_scores

    rng = np.random.default_rng(2)
    flux = rng.uniform(1.0, 3.0, 200)
    logit = 2 * flux + rng.normal(0, 0.3, 200)
    ev = pa.table({"score": 1 / (1 + np.exp(-logit)), "logit": logit, "label": np.zeros(200, np.int8),
                   "row_id": [f"c{i}" for i in range(200)], "img_core_flux_r": flux})
    pq.write_table(ev, tmp_path / "scores.parquet")
    lens_flux = np.r_[rng.uniform(1.2, 2.8, 20), rng.uniform(10, 20, 10)]
    lens_logit = np.r_[rng.normal(4, 0.5, 20), rng.normal(9, 0.5, 10)]
    known = pa.table({"score": 1 / (1 + np.exp(-lens_logit)), "logit": lens_logit, "label": np.ones(30, np.int8),
                      "row_id": [f"L{i}" for i in range(30)], "img_core_flux_r": lens_flux})
    m = known_lens_metrics(known, read_scores(tmp_path / "scores.parquet"), load_config(EvaluateConfig),
                           source="known", scores_file="known.parquet")
    assert set(m.recall) == {"all", INSIDE_HOSTS, "hosts brighter than 95% of the controls"}
    assert m.recall[INSIDE_HOSTS]["0.01"].n == 20 - int((lens_flux[:20] > m.host.high).sum() + (lens_flux[:20] < m.host.low).sum())
    assert m.recall["hosts brighter than 95% of the controls"]["0.01"].found >= 10  # the bright hosts clear it
    places = {r["id"]: r["host_vs_controls"] for r in m.per_lens}
    assert all(places[f"L{i}"] == "brighter" for i in range(20, 30))
    d = m.as_dict()["host_brightness"]
    assert d["n_brighter"] >= 10 and d["spearman_value_vs_host_on_controls"] > 0.8
    # rendered as `dhs evaluate` renders it (the fast tier's real-lens section; the whole `dhs evaluate
    # --known-lenses` run, figures and gallery included, is tests/evaluate/test_known_lenses.py, slow)
    from darkhaloscope.evaluate.knownlenses_report import render
    from darkhaloscope.evaluate.report import Evaluation, write_report

    ev = Evaluation()
    render(m, read_scores(tmp_path / "scores.parquet"), ev, "known.parquet")
    write_report(ev, tmp_path / "report", run={"command": "test"})
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Real lenses" in md and f"| {INSIDE_HOSTS} |" in md and "| hosts brighter than 95% of the controls |" in md
    assert "Host brightness (central r flux within 4 px" in md and "like-for-like" in md
    assert "The FPR at which each real lens would be found" in md
    line = next(h for h in ev.headline if h.startswith("Real lenses: recall"))
    assert "hosts outside the controls' 5-95% brightness range:" in line and "Spearman +0.9" in line


def _scores_file(path, slope: float):
    """400 lenses and 400 controls; the controls' logit rises with their central flux at `slope`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 400
    label = np.r_[np.zeros(n, np.int8), np.ones(n, np.int8)]
    flux = rng.uniform(1.0, 3.0, 2 * n)
    logit = np.where(label == 1, 2.0, -2.0) + slope * (flux - 2.0) * (label == 0) + rng.normal(0, 1.0, 2 * n)
    pq.write_table(pa.table({"score": 1 / (1 + np.exp(-logit)), "logit": logit, "label": label,
                             "row_id": [f"r{i}" for i in range(2 * n)], "img_core_flux_r": flux}), path)
    return path


@pytest.mark.parametrize("slope, warned", [(3.0, True), (0.0, False)])
def test_the_shortcut_section_warns_when_the_controls_scores_follow_their_brightness(tmp_path, slope, warned):
    """`dhs evaluate`'s shortcut section (analysis.baseline_section calls it) states the controls' score vs
    their central r flux, and warns (BRIGHT CENTRES) only when the false positives favour bright centres."""
    from darkhaloscope.evaluate.analysis import _control_brightness
    from darkhaloscope.evaluate.report import Evaluation, write_report
    from darkhaloscope.score.scoresfile import read_scores

    ev = Evaluation()
    _control_brightness(read_scores(_scores_file(tmp_path / "s.parquet", slope)), ev, ev.add_section("b", "B"))
    rho = ev.metrics["control_score_vs_central_flux"]["spearman"]
    assert (rho > 0.6) if warned else (abs(rho) < 0.15)
    assert any(w.startswith("BRIGHT CENTRES") for w in ev.warnings) == warned
    write_report(ev, tmp_path / "rep", run={"command": "test"})
    assert "against their central r flux" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.slow  # (~1-3 s: a whole `dhs evaluate` with its figures; the section alone: the test above)
def test_dhs_evaluate_warns_about_bright_centres(tmp_path):
    import json

    from darkhaloscope.cli import main

    assert main(["evaluate", str(_scores_file(tmp_path / "s.parquet", 3.0)), "--out", str(tmp_path / "rep"),
                 "--no-data", "--set", "n_boot=20"]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["control_score_vs_central_flux"]["spearman"] > 0.6
    assert any(w.startswith("BRIGHT CENTRES") for w in m["warnings"])
