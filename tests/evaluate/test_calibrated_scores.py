"""Temperature calibration end to end: `dhs train` stores T (fitted on val) in the checkpoint and the
metrics rows, `dhs score` writes score_calibrated beside score, `dhs evaluate` says which score its
thresholds use and reports the ECE of both."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.train.checkpoint import load_checkpoint


@pytest.mark.slow
def test_checkpoint_metrics_and_scores_carry_the_temperature(demo):
    ck = load_checkpoint(demo["checkpoint"])
    cal = ck["calibration"]
    assert cal["step"] == ck["step"] and cal["split"] == "val" and cal["n"] > 0 and cal["temperature"] > 0
    rows = [json.loads(line) for line in (demo["root"] / "run" / "metrics.jsonl").read_text().splitlines()]
    best = next(r for r in rows if r["step"] == ck["step"])
    assert best["temperature"] == cal["temperature"] and best["val_ece"] == cal["ece_raw"]
    assert best["val_ece_calibrated"] == cal["ece_calibrated"]  # T minimises the NLL; the ECE usually follows
    t = pq.read_table(demo["scores"])
    z = t["logit"].to_numpy()
    assert np.allclose(t["score_calibrated"].to_numpy(), sigmoid(z / cal["temperature"]), atol=1e-6)
    assert np.allclose(t["logit_calibrated"].to_numpy(), z / cal["temperature"], rtol=1e-5, atol=1e-6)
    info = json.loads(pq.ParquetFile(demo["scores"]).schema_arrow.metadata[b"darkhaloscope.scores"])
    assert info["calibration"]["temperature"] == cal["temperature"]


@pytest.mark.slow
def test_evaluate_names_the_thresholded_score(demo, tmp_path):
    fast = ["--no-data", "--set", "n_boot=20", "--set", "baselines=false", "--set", "split=all"]
    assert main(["evaluate", str(demo["scores"]), "--out", str(tmp_path / "cal"), *fast]) == 0
    m = json.loads((tmp_path / "cal" / "metrics.json").read_text())
    assert m["threshold"]["score_column"] == "score_calibrated" == m["calibration"]["score_column"]
    assert m["calibration"]["ece_raw"] >= 0 and m["calibration"]["temperature"] > 0
    md = (tmp_path / "cal" / "report.md").read_text()
    assert "Thresholds are on the calibrated score (score_calibrated = sigmoid(logit / T), T = " in md
    assert main(["evaluate", str(demo["scores"]), "--out", str(tmp_path / "raw"), *fast, "--set", "score=raw"]) == 0
    m_raw = json.loads((tmp_path / "raw" / "metrics.json").read_text())
    assert m_raw["threshold"]["score_column"] == "score" and "ece_raw" not in m_raw["calibration"]
    assert m_raw["calibration"]["ece"] == m["calibration"]["ece_raw"]
    assert m_raw["auroc"]["value"] == m["auroc"]["value"]  # one temperature: the ranking is unchanged
    assert "Thresholds are on the raw score (score = sigmoid(logit), not calibrated)" in \
        (tmp_path / "raw" / "report.md").read_text()
