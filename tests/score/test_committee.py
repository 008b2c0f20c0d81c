"""Committees: `dhs score --checkpoint A --checkpoint B` (one pass, member logits, spread, mean logit or
rank), refusals of mismatched members, and the committee section of `dhs evaluate`."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.errors import UsageError
from darkhaloscope.score.committee import Member, check_compatible, committee_columns, rank_fractions
from darkhaloscope.evaluate.committee_report import paired_bootstrap
from darkhaloscope.models import create_model
from darkhaloscope.stamps.normalise import PreprocessConfig
from darkhaloscope.train.checkpoint import load_checkpoint, save_checkpoint


def test_columns_mean_spread_and_calibrated_mean():
    z = np.array([[1.0, -2.0, 0.0], [3.0, 2.0, 0.0]])
    c = committee_columns(z, [1.0, 2.0])
    assert np.allclose(c["logit"], [2.0, 0.0, 0.0]) and np.allclose(c["logit_spread"], [1.0, 2.0, 0.0])
    assert np.allclose(c["logit_calibrated"], [(1 + 1.5) / 2, (-2 + 1) / 2, 0.0])
    assert np.array_equal(c["logit_m1"], z[1])
    assert "logit_calibrated" not in committee_columns(z, [1.0, None])
    assert np.allclose(rank_fractions(np.array([5.0, 1.0, 5.0, np.nan])), [4 / 6, 1 / 6, 4 / 6, np.nan], equal_nan=True)


def _member(name, pre=PreprocessConfig(), chans=3, meta=(), bands=("g", "r", "z")):
    return Member(name, create_model("small_cnn", in_chans=chans), pre,
                  {"config": {"meta_columns": list(meta)}, "bands": None if bands is None else list(bands)})


def test_mismatched_members_refused_naming_the_setting():
    assert check_compatible([_member("a"), _member("b")]) is None
    with pytest.raises(UsageError, match=r"differ in preprocess\.norm: a has 'annulus', b has 'stamp'"):
        check_compatible([_member("a"), _member("b", PreprocessConfig(norm="stamp"))])
    with pytest.raises(UsageError, match=r"differ in input bands: a has \['g', 'r', 'z'\], c has \['g', 'r', 'i'\]"):
        check_compatible([_member("a"), _member("b"), _member("c", bands="gri")])  # same channel count, other bands
    with pytest.raises(UsageError, match=r"differ in meta_columns"):
        check_compatible([_member("a"), _member("b", meta=["psfdepth_r"])])


def test_members_without_band_names_compared_by_channel_count():
    """Checkpoints written before band names were recorded: compared by the channel count they have, said."""
    note = check_compatible([_member("a"), _member("old", bands=None)])
    assert note == "committee input bands compared (by channel count: old records no band names, an older checkpoint)"
    with pytest.raises(UsageError, match=r"differ in input bands \(by channel count: c records no band names, an "
                                         r"older checkpoint\): a has 3, c has 1; score them separately"):
        check_compatible([_member("a"), _member("b"), _member("c", chans=1, bands=None)])


@pytest.mark.slow  # trains a second member (the fast tier keeps the committee's unit tests)
def test_committee_scores_in_one_pass(demo, second, tmp_path, capsys):
    out = tmp_path / "c.parquet"
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(second),
                 "--data", str(demo["tier"]), "--out", str(out), "--quiet"]) == 0
    assert "with a committee of 2 (mean logit)" in capsys.readouterr().out
    t, single = pq.read_table(out), pq.read_table(demo["scores"])
    assert t["row_id"].to_pylist() == single["row_id"].to_pylist()
    z0, z1 = t["logit_m0"].to_numpy(), t["logit_m1"].to_numpy()
    assert np.allclose(z0, single["logit"].to_numpy(), atol=1e-5)  # member 0 = the checkpoint scored alone
    assert np.allclose(t["logit"].to_numpy(), (z0 + z1) / 2, atol=1e-5)
    assert np.allclose(t["logit_spread"].to_numpy(), np.abs(z0 - z1) / 2, atol=1e-5)
    t0 = load_checkpoint(demo["checkpoint"])["calibration"]["temperature"]
    assert np.allclose(t["score_calibrated"].to_numpy(), sigmoid((z0 / t0 + z1 / 2.0) / 2), atol=1e-5)
    info = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"darkhaloscope.scores"])
    assert [m["temperature"] for m in info["committee"]["members"]] == [t0, 2.0]

    rank = tmp_path / "r.parquet"
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(second), "--combine", "rank",
                 "--data", str(demo["tier"]), "--out", str(rank), "--quiet"]) == 0
    r = pq.read_table(rank)
    q = (rank_fractions(z0.astype(np.float64)) + rank_fractions(z1.astype(np.float64))) / 2
    assert np.allclose(r["score"].to_numpy(), q, atol=1e-6) and "score_calibrated" not in r.column_names
    assert np.allclose(r["logit"].to_numpy(), np.log(q / (1 - q)), atol=1e-5)  # evaluate ranks by it


@pytest.mark.slow  # trains a second member (the fast tier keeps the committee's unit tests)
def test_committee_refusals(demo, second, tmp_path, capsys):
    args = ["--data", str(demo["tier"]), "--out", str(tmp_path / "x.parquet"), "--quiet"]
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(demo["checkpoint"]), *args]) == 2
    assert "given twice" in capsys.readouterr().err
    ck = load_checkpoint(second)
    ck["config"]["preprocess"]["clip_sigma"] = 5.0
    other = tmp_path / "other.pt"
    save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, other)
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(other), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ in preprocess.clip_sigma" in err[0] and "10.0" in err[0] and "5.0" in err[0]
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(second), "--combine", "rank",
                 "--shard", "0/2", *args]) == 2
    assert not (tmp_path / "x.parquet").exists()
    capsys.readouterr()

    ck = load_checkpoint(second)
    assert ck["bands"] == ["g", "r", "z"]  # recorded by dhs train
    ck["bands"] = ["g", "r", "i"]
    save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, other)
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(other), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{demo['checkpoint']} has ['g', 'r', 'z'], {other} has ['g', 'r', 'i']" in err[0]
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.slow  # trains a second member (the fast tier keeps the committee's unit tests)
def test_committee_with_an_older_checkpoint_says_bands_were_compared_by_count(demo, second, tmp_path, capsys):
    ck = load_checkpoint(second)
    del ck["bands"]  # as written before checkpoints recorded band names
    old = tmp_path / "old.pt"
    save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, old)
    out = tmp_path / "c.parquet"
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(old), "--data",
                 str(demo["tier"]), "--out", str(out), "--quiet"]) == 0
    assert f"note: committee input bands compared (by channel count: {old} records no band names" in capsys.readouterr().err
    members = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"darkhaloscope.scores"])["committee"]["members"]
    assert [m["bands"] for m in members] == [["g", "r", "z"], None]


def _committee_file(path, n=4000, seed=0):
    """Three members = truth + independent noise: their mean has less noise than any one of them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.int8)
    truth = np.where(y == 1, 1.5, -1.5)
    z = np.stack([truth + rng.normal(0, 2.0, n) for _ in range(3)])
    cols = {"score": sigmoid(z.mean(0)).astype(np.float32), "logit": z.mean(0).astype(np.float32), "label": y}
    cols |= {f"logit_m{i}": z[i].astype(np.float32) for i in range(3)} | {"logit_spread": z.std(0).astype(np.float32)}
    info = {"committee": {"combine": "logit", "members": [{"checkpoint": f"run{i}/best.pt", "seed": i,
                                                           "temperature": None} for i in range(3)]}}
    pq.write_table(pa.table(cols).replace_schema_metadata({"darkhaloscope.scores": json.dumps(info)}), path)


@pytest.mark.slow  # a whole dhs evaluate: ~3 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_evaluate_reports_the_committee_against_its_members(tmp_path):
    _committee_file(tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "rep"), "--no-data",
                 "--set", "n_boot=200", "--set", "baselines=false"]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    c = m["committee"]
    assert c["members"] == ["logit_m0", "logit_m1", "logit_m2"] and c["threshold_on"] == "raw"
    assert c["stats"]["committee"]["auroc"] > max(c["stats"][k]["auroc"] for k in c["members"])
    assert c["lower"] and c["ci95_difference"][1] < 0 and 0 < c["recall"] < 1
    assert "logit_m0" not in m.get("selection_function", {}) and "logit_spread" not in m.get("stratified_fpr", {})
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Committee against its members" in md and "(seed 1, run1/best.pt)" in md
    assert any(line.startswith("Committee of 3: FPR") for line in m.get("headline", [])) or "Committee of 3: FPR" in md


def test_paired_bootstrap_of_identical_scores_is_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    v = rng.random(300) + y
    ci = paired_bootstrap(y, v, v.copy(), 0.8, 50, 0)
    assert ci["diff"] == (0.0, 0.0) and ci["a"] == ci["b"] and ci["a"][0] <= ci["a"][1]


def test_a_column_named_like_a_member_with_a_unicode_digit_is_not_a_member(tmp_path):
    """'logit_m\u00b3' passes str.isdigit but not int(): it is a metadata column, not a committee member (it
    crashed the reader: members are sorted by their number)."""
    from darkhaloscope.score.scoresfile import read_scores

    _committee_file(tmp_path / "s.parquet", n=200)
    t = pq.read_table(tmp_path / "s.parquet")
    t = t.append_column("logit_m\u00b3", t["logit_m0"]).replace_schema_metadata(t.schema.metadata)
    pq.write_table(t, tmp_path / "s.parquet")
    s = read_scores(tmp_path / "s.parquet")
    assert list(s.members) == ["logit_m0", "logit_m1", "logit_m2"]
