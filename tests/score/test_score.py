"""`dhs score`: one row per stamp with ids and metadata, the training preprocessing, shards, cutout folders,
stamps that fail to decode; then `dhs evaluate --checkpoint --data` with galleries and model probes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from darkhaloscope.cli import main
from darkhaloscope.score.scoresfile import METADATA_KEY
from darkhaloscope.stamps.tier import open_tier


def test_scores_file_has_every_row_id_and_metadata(demo):
    t = pq.read_table(demo["scores"])
    tier = open_tier(str(demo["tier"]))
    assert t.num_rows == tier.num_rows == 120
    for col in ("score", "logit", "label", "row_id", "region_split", "source_file", "source_row", "theta_e_arcsec",
                "arc_snr", "psf_fwhm_used_r", "host_id", "img_core_frac_r", "img_total_g_r"):
        assert col in t.column_names, col
    assert "stamp_npz" not in t.column_names and "ctrl_stamp_npz" not in t.column_names
    assert sorted(pc.unique(t["region_split"]).to_pylist()) == ["test", "train", "val"]
    assert len(set(t["row_id"].to_pylist())) == 120  # stamp_id of the simulated tier
    lab = t["label"].to_numpy()
    assert np.array_equal(lab, 1 - t["is_control"].to_numpy())  # schema mapping, not re-derived
    s, z = t["score"].to_numpy(), t["logit"].to_numpy()
    assert np.allclose(s, 1 / (1 + np.exp(-z.astype(np.float64))), atol=1e-6)
    info = json.loads(pq.ParquetFile(demo["scores"]).schema_arrow.metadata[METADATA_KEY])
    assert info["data"] == str(demo["tier"]) and info["checkpoint"].endswith("best.pt")


def test_scores_use_the_training_preprocessing(demo):
    from darkhaloscope.stamps.batch import decode_tier_batch
    from darkhaloscope.runtime.loading import load_for_inference
    from darkhaloscope.models.preprocess import prepare_batch

    model, pre, _ = load_for_inference(demo["checkpoint"])
    tier = open_tier(str(demo["tier"]))
    f = tier.files[0]
    b = tier.read_row_group(f, 0, ["stamp_npz", "is_control"])
    with torch.no_grad():
        want = model(prepare_batch(torch.from_numpy(decode_tier_batch(b).images), pre, train=False)).numpy()
    t = pq.read_table(demo["scores"])
    mine = t.filter(pc.equal(t["source_file"], f.relpath))
    got = dict(zip(mine["source_row"].to_pylist(), mine["logit"].to_pylist()))
    assert np.allclose([got[int(r)] for r in b.row_index], want, atol=1e-4)


def test_shards_cover_the_data_exactly_once(demo, tmp_path, capsys):
    parts = []
    for k in range(3):
        out = tmp_path / f"s{k}.parquet"
        assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]), "--out", str(out),
                     "--shard", f"{k}/3", "--quiet", "--set", "image_stats=false"]) == 0
        parts.append(pq.read_table(out))
        # issue #25 4.8: scoring every split of a tier says that rows a model trained on are among them
        assert "note: scored every split (test " in capsys.readouterr().err
    ids = [i for p in parts for i in p["row_id"].to_pylist()]
    assert len(ids) == len(set(ids)) == 120
    assert "img_core_frac_r" not in parts[0].column_names
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]),
                 "--out", str(tmp_path / "x.parquet"), "--shard", "3/3"]) == 2


def test_cutout_folders_npz_and_fits(demo, dr10_dir, tmp_path, capsys):
    from astropy.io import fits

    from darkhaloscope.stamps.codec import decode_batch

    folder = tmp_path / "cutouts"
    folder.mkdir()
    npz = sorted(dr10_dir.glob("*.npz"))[:3]
    for p in npz:
        (folder / p.name).write_bytes(p.read_bytes())
    ref = decode_batch(pa.array([npz[0].read_bytes()], pa.binary())).images[0]
    cube = np.pad(ref, ((0, 0), (5, 5), (5, 5)), mode="edge")  # (3, 74, 74): centre crop gives ref back
    fits.PrimaryHDU(cube).writeto(folder / "a_chw.fits")
    fits.PrimaryHDU(np.moveaxis(cube, 0, -1)).writeto(folder / "b_hwc.fits")
    fits.PrimaryHDU(np.zeros((3, 20, 20), np.float32)).writeto(folder / "c_small.fits")
    out = tmp_path / "s.parquet"
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", str(folder), "--out", str(out), "--quiet"]) == 0
    t = pq.read_table(out)
    assert t.num_rows == 6 and t["label"].null_count == 6
    by = dict(zip(t["source_file"].to_pylist(), t["logit"].to_pylist()))
    assert by["a_chw.fits"] == pytest.approx(by[npz[0].name], abs=1e-5) == pytest.approx(by["b_hwc.fits"], abs=1e-5)
    bad = t.filter(pc.equal(t["source_file"], "c_small.fits"))
    assert bad["score"].null_count == 1 and "smaller than 64x64" in bad["decode_error"][0].as_py()
    assert "1 failed to decode" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--out", str(tmp_path / "rep"), "--no-data"]) == 1
    assert "no labelled rows" in capsys.readouterr().err


@pytest.mark.slow
def test_undecodable_stamp_is_kept_with_reason_and_left_out_by_evaluate(demo, tmp_path, capsys):
    from tierfactory import make_tier

    tier = make_tier(tmp_path / "tier", rows_per_split=16, files_per_split=1, row_group_size=8, splits=("test",))
    f = next(tier.rglob("*.parquet"))
    t = pq.read_table(f)
    blobs = t["stamp_npz"].to_pylist()
    blobs[3] = blobs[3][:40]  # truncated npz
    pq.write_table(t.set_column(t.column_names.index("stamp_npz"), "stamp_npz", pa.array(blobs, pa.binary())), f)
    out = tmp_path / "s.parquet"
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", str(tier), "--out", str(out), "--quiet"]) == 0
    s = pq.read_table(out)
    assert s.num_rows == 16 and s["score"].null_count == 1 and s["decode_error"][3].as_py()
    assert main(["evaluate", str(out), "--out", str(tmp_path / "rep"), "--no-data", "--set", "n_boot=50",
                 "--set", "baselines=false"]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["n_rows"] == 15 and "1 row(s) whose stamp failed to decode" in m["rows"]


def test_data_of_which_no_stamp_decodes_is_refused(demo, tmp_path, capsys):
    """Stamps without the model's z band (a g/r tier): exit 1, one error line naming the file, row and reason,
    and no scores file (it was a file of 16 empty scores, exit 0)."""
    from darkhaloscope.stamps.codec import encode_stamp
    from tierfactory import make_tier

    tier = make_tier(tmp_path / "tier", rows_per_split=16, files_per_split=1, row_group_size=8, splits=("test",))
    f = next(tier.rglob("*.parquet"))
    t = pq.read_table(f)
    gr = [encode_stamp(np.zeros((2, 64, 64), np.float32), bands=("g", "r")) for _ in range(t.num_rows)]
    pq.write_table(t.set_column(t.column_names.index("stamp_npz"), "stamp_npz", pa.array(gr, pa.binary())), f)
    out = tmp_path / "s.parquet"
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", str(tier), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "none of the 16 stamps decoded" in err and "row 0" in err and "image_z" in err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_evaluate_with_model_probes_and_galleries(demo, tmp_path):
    out = tmp_path / "rep"
    assert main(["evaluate", str(demo["scores"]), "--out", str(out), "--checkpoint", str(demo["checkpoint"]),
                 "--data", str(demo["tier"]), "--set", "split=all", "--set", "n_boot=50", "--set", "gallery_size=3",
                 "--set", "baselines=false"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    p = m["probes"]
    assert any("include the training split" in w for w in m["warnings"])  # split=all: optimistic, said so
    assert p["rescore_max_abs_logit_diff"] < 1e-4  # same checkpoint + preprocessing as the scores file
    assert p["core_masked"]["auroc_full"]["value"] is not None and "auroc_drop" in p["core_masked"]
    assert set(p["paired"]) == {"injection (host + arc)", "host alone (paired control)", "arc alone on sky noise",
                                "controls (for reference)"}
    assert p["paired"]["injection (host + arc)"]["n"] == p["paired"]["host alone (paired control)"]["n"] > 0
    for name in ("gallery_0", "gallery_1", "gallery_2", "paired"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    html = (out / "report.html").read_text()
    assert "Model probes" in html and "Occlusion maps" in html


def test_evaluate_checkpoint_without_reachable_data_is_a_usage_error(demo, tmp_path, capsys):
    t = pq.read_table(demo["scores"]).drop_columns(["source_file", "source_row"])
    pq.write_table(t, tmp_path / "s.parquet")
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r"),
                 "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"])]) == 2
    assert "no source_file/source_row columns" in capsys.readouterr().err


def test_score_reads_an_s3_tier(demo, s3_bucket, tmp_path):
    import boto3

    endpoint, bucket = s3_bucket
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for p in sorted(demo["tier"].rglob("*.parquet")):
        client.upload_file(str(p), bucket, f"tiers/t/{p.relative_to(demo['tier']).as_posix()}")
    uri = f"s3://{bucket}/tiers/t"
    out = tmp_path / "s3.parquet"
    assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", uri, "--out", str(out), "--quiet",
                 "--split", "test", "--s3-endpoint-url", endpoint]) == 0
    s3 = pq.read_table(out)
    local = pq.read_table(demo["scores"])
    want = dict(zip(local["row_id"].to_pylist(), local["logit"].to_pylist()))
    assert s3.num_rows == sum(1 for s in local["region_split"].to_pylist() if s == "test") > 0
    assert all(abs(want[i] - z) < 1e-6 for i, z in zip(s3["row_id"].to_pylist(), s3["logit"].to_pylist()))
