"""Real-target pipeline end to end on the loopback service: catalog -> cutouts -> audit (GO) -> train -> score ->
evaluate with the real-lens section. Tiny sizes: 60 lenses, 2 negatives each, a 1-epoch small CNN."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sweepfactory import write_sweep

from darkhaloscope.cli import main
from darkhaloscope.survey.fakeservice import FakeCutoutService

TRAIN_TINY = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
              "--batch_size=32", "--progress=false", "--epochs=1"]


@pytest.mark.slow
def test_catalog_cutouts_audit_train_score_evaluate(real_cutouts, tmp_path):
    write_sweep(tmp_path / "sweep.fits", 3000, seed=1)
    rng = np.random.default_rng(0)
    (tmp_path / "lenses.csv").write_text("name,ra,dec,grade\n" + "".join(
        f"L{i},{150 + rng.uniform(0, 2)},{2 + rng.uniform(0, 2)},{'AB'[i % 2]}\n" for i in range(60)))
    targets, tier = tmp_path / "targets.parquet", tmp_path / "tier"
    assert main(["catalog", "--out", str(targets), "--positives", str(tmp_path / "lenses.csv"), "--negatives",
                 str(tmp_path / "sweep.fits"), "--neg-per-pos", "2", "--nside", "64", "--seed", "2"]) == 0
    with FakeCutoutService(real_cutouts, faults={"500": 0.05, "two_band": 0.02}) as svc:
        assert main(["cutouts", str(targets), "--out", str(tier), "--service-url", svc.url, "--rate-limit", "0",
                     "--set", "backoff_s=0.01", "-q"]) == 0
    manifest = json.loads((tier / "manifest.json").read_text())
    assert set(manifest["counts"]) == {"train", "val", "test"}
    assert main(["audit", str(tier), "--json", str(tmp_path / "audit.json")]) == 0  # GO
    assert main(["train", "--data", str(tier), "--out", str(tmp_path / "run"), *TRAIN_TINY]) == 0
    scores = tmp_path / "scores.parquet"
    assert main(["score", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(tier), "--out",
                 str(scores), "--quiet"]) == 0
    out = tmp_path / "report"
    assert main(["evaluate", str(scores), "--out", str(out), "--no-data", "--known-lenses", str(scores),
                 "--set", "n_boot=20", "--set", "baselines=false"]) == 0
    known = json.loads((out / "metrics.json").read_text())["known_lenses"]
    ok_lenses = sum(c["lenses_ok"] for c in manifest["counts"].values())
    assert known["n"] == ok_lenses and set(known["recall"]) == {"all", "grade A", "grade B"}
    assert "## Real lenses" in (out / "report.md").read_text()
