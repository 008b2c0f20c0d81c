"""`dhs evaluate` per confuser kind: operating points set on plain controls, each kind's false-positive rate,
recall by source magnitude and theta_E (numbers checked by hand on small arrays)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.evaluate.confusers import confuser_metrics


def _arrays():
    # 100 plain controls at 0..0.99, 10 rings at 0.995 (all above any plain threshold), 10 disks at 0.0 (none),
    # 20 lenses: 10 bright (r 22.5) at 0.999, 10 faint (r 24.5) at 0.5
    plain = np.arange(100) / 100.0
    values = np.concatenate([plain, np.full(10, 0.995), np.zeros(10), np.full(10, 0.999), np.full(10, 0.5)])
    labels = np.concatenate([np.zeros(120), np.ones(20)]).astype(np.int8)
    kinds = np.array([None] * 100 + ["ring"] * 10 + ["disk"] * 10 + [None] * 20, dtype=object)
    mag = np.concatenate([np.full(120, np.nan), np.full(10, 22.5), np.full(10, 24.5)])
    theta = np.concatenate([np.full(120, np.nan), np.full(20, 1.4)])
    return labels, values, kinds, {"src_mag_r": mag, "theta_e_arcsec": theta}


def test_fpr_per_kind_at_the_threshold_set_on_plain_controls():
    labels, values, kinds, cols = _arrays()
    m = confuser_metrics(labels, values, kinds, cols, [0.05])
    k = m["kinds"]
    assert k["plain controls"]["fpr"]["0.05"]["k"] == 5  # 0.95..0.99 pass: 5 of 100, the target
    assert k["ring"]["fpr"]["0.05"]["rate"] == 1.0 and k["disk"]["fpr"]["0.05"]["rate"] == 0.0
    assert k["all confusers"]["fpr"]["0.05"]["rate"] == 0.5 and k["all confusers"]["n"] == 20
    assert k["ring"]["auroc_vs_lenses"] == pytest.approx(0.5)  # 10 lenses above the rings, 10 below
    assert k["disk"]["auroc_vs_lenses"] == pytest.approx(1.0)
    rec = m["recall"]["0.05"]
    assert rec["all"]["rate"] == 0.5
    assert [(b["bin"], b["rate"]) for b in rec["src_mag_r"]] == [("22-23", 1.0), ("24-25.5", 0.0)]
    assert [(b["bin"], b["n"]) for b in rec["theta_e_arcsec"]] == [("1-1.5", 20)]


def test_variants_get_their_own_rows_under_their_kind():
    """With `confuser_variant` the table splits each kind: 5 round rings above every plain control, 5 partial ones
    at the bottom, while the kind's own row stays the whole."""
    labels, values, kinds, cols = _arrays()
    values[105:110] = 0.0
    variants = np.array([None] * 100 + ["full round"] * 5 + ["partial"] * 5 + ["beside"] * 10 + [None] * 20, dtype=object)
    m = confuser_metrics(labels, values, kinds, cols, [0.05], variants)
    k = m["kinds"]
    assert list(k) == ["plain controls", "all confusers", "disk", "disk: beside", "ring", "ring: full round", "ring: partial"]
    assert k["ring: full round"]["fpr"]["0.05"]["k"] == 5 and k["ring: partial"]["fpr"]["0.05"]["k"] == 0
    assert k["ring"]["fpr"]["0.05"]["rate"] == 0.5 and k["ring: full round"]["n"] == 5
    assert confuser_metrics(labels, values, kinds, cols, [0.05])["kinds"].keys() == {
        "plain controls", "all confusers", "disk", "ring"}  # no variant column: kinds only


def test_operating_point_not_resolvable_with_too_few_plain_controls():
    labels, values, kinds, cols = _arrays()
    m = confuser_metrics(labels, values, kinds, cols, [1e-3])
    assert m["operating_points"]["0.001"]["threshold"] is None and "not resolvable" in m["operating_points"]["0.001"]["note"]
    assert m["kinds"]["ring"]["fpr"]["0.001"] is None and m["recall"] == {}


def test_evaluate_report_has_the_confuser_section(tmp_path):
    labels, values, kinds, cols = _arrays()
    path = tmp_path / "scores.parquet"
    variants = [None if k is None else "partial" if k == "ring" else "beside" for k in kinds]
    pq.write_table(pa.table({"score": values, "label": labels, "confuser_kind": pa.array(list(kinds), pa.string()),
                             "confuser_variant": pa.array(variants, pa.string()),
                             "src_mag_r": cols["src_mag_r"], "theta_e_arcsec": cols["theta_e_arcsec"]}), path)
    out = tmp_path / "ev"
    assert main(["evaluate", str(path), "--out", str(out), "--no-data", "--set", "n_boot=20",
                 "--set", "fpr_targets=0.05"]) == 0
    md = (out / "report.md").read_text()
    assert "Confusers and recall by source" in md and "| `ring` | 10 |" in md and "| `ring: partial` | 10 |" in md
    assert "Confusers: 0.5 of 20 pass" in md
    assert "rained with confuser_weight" not in md  # scores without the training's weights: nothing said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["confusers"]["kinds"]["disk"]["fpr"]["0.05"]["rate"] == 0.0


@pytest.mark.parametrize("weights, said", [pytest.param(None, None, marks=pytest.mark.slow),
                                           pytest.param([1.0], None, marks=pytest.mark.slow),
                                           pytest.param([3.0], "trained with confuser_weight 3",
                                                        marks=pytest.mark.slow),
                                           ([1.0, 3.0], "members trained with confuser_weight 1, 3"),
                                           pytest.param("x3", None, marks=pytest.mark.slow)])
# slow: a whole evaluate each (~1.3 s); the wording of every case is test_weights_note_wording's, no weights at
# all is also test_evaluate_report_has_the_confuser_section's case
def test_report_says_when_look_alikes_were_weighted_in_training(tmp_path, weights, said):
    from darkhaloscope.score.scoresfile import METADATA_KEY

    labels, values, kinds, cols = _arrays()
    path = tmp_path / "scores.parquet"
    t = pa.table({"score": values, "label": labels, "confuser_kind": pa.array(list(kinds), pa.string())})
    if weights is not None:
        t = t.replace_schema_metadata({METADATA_KEY: json.dumps({"confuser_weights": weights}).encode()})
    pq.write_table(t, path)
    assert main(["evaluate", str(path), "--out", str(tmp_path / "ev"), "--no-data", "--set", "n_boot=20",
                 "--set", "fpr_targets=0.05"]) == 0
    md = (tmp_path / "ev" / "report.md").read_text()
    headline = next(line for line in md.splitlines() if "Confusers: 0.5 of 20 pass" in line)
    if said is None:
        assert "rained with confuser_weight" not in md  # (the footer quotes argv, which may name the word)
    else:
        assert f"**{said[0].upper() + said[1:]}**: look-alike negatives weighed" in md and f"({said})" in headline


@pytest.mark.parametrize("weights, said", [(None, ""), ([1.0], ""), ("x3", ""), (["x"], ""),
                                           ([3.0], "trained with confuser_weight 3"),
                                           ([1.0, 3.0], "members trained with confuser_weight 1, 3")])
def test_weights_note_wording(weights, said):
    """What the report's look-alike line says, from the scores file's provenance (the rendering is the whole
    evaluate test's above)."""
    from darkhaloscope.evaluate.confusers import _weights_note

    assert _weights_note({} if weights is None else {"confuser_weights": weights}) == said


def test_demo_states_the_confuser_fpr_beside_the_auroc():
    from darkhaloscope.demo.stages import _confuser_line

    labels, values, kinds, cols = _arrays()
    line = _confuser_line({"confusers": confuser_metrics(labels, values, kinds, cols, [0.05])})
    assert line == "; confusers: 10/20 (50%) above the threshold passing 5% of plain controls, AUROC lenses vs confusers 0.750"
    assert _confuser_line({}) == ""
