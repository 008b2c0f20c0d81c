"""The loop end to end: simulate -> train (tiny) -> score -> grade (scripted through the store; the browser
version is in the web-app tests) -> export (negatives tier, lenses folder) -> retrain with the graded negatives:
the false-positive rate on them falls. Then `dhs evaluate --known-lenses` reads the graded lenses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gradefactory import write_scores  # noqa: E402

from darkhaloscope.cli import main  # noqa: E402
from darkhaloscope.grade.store import open_store  # noqa: E402

TRAIN_FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
              "--batch_size=32", "--lr=3e-3", "--progress=false", "--val_batch_size=64", "--epochs=2", "--seed=5"]


def _logits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(path, columns=["logit", "label"])
    return np.asarray(t["logit"].to_numpy(zero_copy_only=False), float), \
        np.asarray(t["label"].to_numpy(zero_copy_only=False), float)


def _fpr_on(negatives_scores: Path, test_scores: Path) -> float:
    """Share of the graded negatives above the threshold that finds half of the test-split lenses."""
    neg, _ = _logits(negatives_scores)
    test, label = _logits(test_scores)
    threshold = float(np.median(test[label == 1]))
    return float((neg > threshold).mean())


@pytest.mark.slow
def test_score_grade_export_retrain_lowers_fpr_on_graded_negatives(tmp_path, capsys):
    tier = tmp_path / "t"
    assert main(["simulate", "--out", str(tmp_path), "--tier", "t", "--rows", "240", "--seed", "3", "--pair",
                 "--workers", "1", "--rows-per-file", "40", "-q", "--supersample=1", "--photon_noise=false",
                 "--src_knots=0,0"]) == 0
    assert main(["train", "--data", str(tier), "--out", str(tmp_path / "run1"), *TRAIN_FAST]) == 0
    ckpt1 = tmp_path / "run1" / "best.pt"
    cands = tmp_path / "train_scores.parquet"
    assert main(["score", "--checkpoint", str(ckpt1), "--data", str(tier), "--split", "train", "--out", str(cands),
                 "--quiet"]) == 0

    db = tmp_path / "grades.sqlite"
    assert main(["grade", "add", str(cands), "--db", str(db), "--top", "40"]) == 0
    with open_store(db, create=False) as store:  # two graders who know the truth; one calls some lenses C
        for grader in ("ana", "bo"):
            for i, cid in enumerate(store.queue(grader, "score")):
                lens = store.candidate(cid)["metadata"]["label"] == 1
                key = ("A" if grader == "ana" or i % 3 else "C") if lens else "N"
                store.grade(cid, grader, key, tag=None if lens else "other")
        graded_n = sum(r["grade"] == "N" and r["grader"] == "ana" for r in store.latest_grades())
        lenses = sum(r["grade"] == "A" and r["grader"] == "ana" for r in store.latest_grades())
    assert graded_n >= 5 and lenses >= 5

    neg, found = tmp_path / "graded_neg", tmp_path / "graded_lenses"
    assert main(["grade", "export", "--db", str(db), "--out", str(tmp_path / "graded.parquet"), "--negatives-tier",
                 str(neg), "--lenses-folder", str(found)]) == 0
    t = pq.read_table(neg / "region_split=train" / "part-00000.parquet")
    assert t.num_rows == graded_n and set(t["is_control"].to_pylist()) == {1}
    assert json.loads((neg / "manifest.json").read_text())["left_out_val_test"] == 0
    assert len(list(found.glob("*.npz"))) == lenses

    assert main(["train", "--data", str(tier), "--out", str(tmp_path / "run2"), *TRAIN_FAST, f"--mined={neg}",
                 "--mined_repeat=8"]) == 0
    ckpt2 = tmp_path / "run2" / "best.pt"
    fpr = {}
    for name, ckpt in (("before", ckpt1), ("after", ckpt2)):
        ns, ts = tmp_path / f"neg_{name}.parquet", tmp_path / f"test_{name}.parquet"
        assert main(["score", "--checkpoint", str(ckpt), "--data", str(neg), "--out", str(ns), "--quiet"]) == 0
        assert main(["score", "--checkpoint", str(ckpt), "--data", str(tier), "--split", "test", "--out", str(ts),
                     "--quiet"]) == 0
        fpr[name] = _fpr_on(ns, ts)
    assert fpr["before"] > 0.2 and fpr["after"] < fpr["before"], fpr

    rep = tmp_path / "eval"
    assert main(["evaluate", str(tmp_path / "test_after.parquet"), "--out", str(rep), "--known-lenses", str(found),
                 "--checkpoint", str(ckpt2)]) == 0
    known = json.loads((rep / "metrics.json").read_text())["known_lenses"]
    assert known["n"] == lenses and set(known["recall"]) >= {"all", "grade A"}
    rep1 = tmp_path / "eval1"  # the export itself: its recorded scores are ckpt1's, so evaluate ckpt1's scores
    assert main(["evaluate", str(tmp_path / "test_before.parquet"), "--out", str(rep1), "--known-lenses",
                 str(tmp_path / "graded.parquet")]) == 0
    known1 = json.loads((rep1 / "metrics.json").read_text())["known_lenses"]
    graded = pq.read_table(tmp_path / "graded.parquet").to_pylist()
    assert known1["n"] == lenses and {r["id"] for r in known1["per_lens"]} == \
        {r["candidate_id"] for r in graded if r["grade"] in ("A", "B")}
    assert "graded A or B (a dhs grade export)" in (rep1 / "report.md").read_text()
    print(f"FPR on the graded negatives at the half-recall threshold: {fpr}")


def test_graded_export_as_known_lenses_and_its_refusals(tmp_path, capsys):
    """The export itself as --known-lenses (A/B are the lenses, whatever the label), and the loop's refusals."""
    scores = write_scores(tmp_path / "s.parquet", 10)
    db = tmp_path / "g.sqlite"
    with open_store(db, create=True) as s:
        s.add_candidates(scores)
        for i, k in enumerate("ABNNC"):
            s.grade(f"c{i:03d}", "ana", k)
    out = tmp_path / "graded.parquet"
    assert main(["grade", "export", "--db", str(db), "--out", str(out)]) == 0
    from darkhaloscope.evaluate.knownlenses import is_scores_file

    assert is_scores_file(str(out))
    t = pq.read_table(out)
    assert t["logit"].to_pylist()[0] == pytest.approx(4.0)  # the model's logit travels with the export
    capsys.readouterr()  # every candidate is of the test split: no training negatives from them
    assert main(["grade", "export", "--db", str(db), "--out", str(out), "--negatives-tier", str(tmp_path / "n")]) == 1
    assert "2 of them in val/test" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
    # the candidates' data ("tier") is not here
    assert main(["grade", "export", "--db", str(db), "--out", str(out), "--lenses-folder", str(tmp_path / "l")]) == 2
    assert "the graded stamps' data is not here" in capsys.readouterr().err
    assert main(["grade", "export", "--db", str(db), "--out", str(out), "--lenses-folder", str(tmp_path / "l"),
                 "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
