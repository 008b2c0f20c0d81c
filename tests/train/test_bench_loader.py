"""`dhs bench loader`: both passes run, do the same work, and report the agreed JSON keys."""

import json

import numpy as np
import pytest

from darkhaloscope.cli import main
from darkhaloscope.stamps.batch import decode_tier_batch
from darkhaloscope.train.loader_bench import _naive_stamp, bench_loader
from darkhaloscope.stamps.robust import normalize_median_mad, normalize_median_mad_one
from darkhaloscope.stamps.tier import open_tier


def test_fast_and_naive_paths_compute_the_same_tensors(tiny_tier):
    b = next(open_tier(str(tiny_tier)).iter_batches(["stamp_npz"]))
    fast = normalize_median_mad(decode_tier_batch(b).images)
    slow = np.stack([normalize_median_mad_one(_naive_stamp(blob, packed=False))
                     for blob in b.table["stamp_npz"].to_pylist()])
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)


def test_bench_loader_json_keys(tiny_tier, capsys):
    assert main(["bench", "loader", str(tiny_tier), "--rows", "24", "--json", "--threads", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("stamps_per_s", "naive_stamps_per_s", "ratio", "mb_per_s", "naive_mb_per_s"):
        assert res[key] > 0, key
    assert res["ratio"] == pytest.approx(res["stamps_per_s"] / res["naive_stamps_per_s"])
    assert res["format"] == "npz" and res["threads"] == 2 and res["stamps"] >= 24


def test_bench_loader_packed_uses_its_npz_source_for_the_naive_pass(tiny_tier, tmp_path, capsys):
    assert main(["pack", str(tiny_tier), str(tmp_path / "p"), "--json"]) == 0
    capsys.readouterr()
    assert main(["bench", "loader", str(tmp_path / "p"), "--rows", "16"]) == 0
    out = capsys.readouterr().out
    assert "darkhaloscope" in out and "naive" in out and "the npz tier DATA was packed from" in out
    res = bench_loader(str(tmp_path / "p"), rows=16, naive_data=str(tmp_path / "p"), norm="none")
    assert res["format"] == "packed" and res["naive_data"] == str(tmp_path / "p") and res["ratio"] > 0


def test_loader_norm_help_names_the_implemented_normalisers():
    from darkhaloscope.train.commands import LOADER_NORMS
    from darkhaloscope.train.loader_bench import NORMALISERS

    assert list(LOADER_NORMS) == list(NORMALISERS)


def test_bench_loader_with_training_preprocessing(tiny_tier):
    res = bench_loader(str(tiny_tier), rows=8, norm="prepare_batch", naive=False)
    assert res["stamps"] >= 8 and "ratio" not in res


def test_bench_loader_bad_arguments(tiny_tier, capsys):
    assert main(["bench", "loader", str(tiny_tier), "--rows", "0"]) == 2
    assert main(["bench", "loader", str(tiny_tier), "--norm", "nope"]) == 2
    assert main(["bench"]) == 2
    capsys.readouterr()


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("darkhaloscope ")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "pack" in out and "bench" in out
