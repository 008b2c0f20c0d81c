"""`dhs cutouts` against the loopback fake cutout service: faults, kill -9 + resume, bad input, the FITS reader."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.codec import decode_batch
from darkhaloscope.survey.config import CutoutConfig
from darkhaloscope.survey.cutouts import build_cutout_tier
from darkhaloscope.survey.fakeservice import FakeCutoutService
from darkhaloscope.survey.fitsimage import read_fits_image


def write_targets(path, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    split = np.asarray(["train", "val", "test"])[np.arange(n) % 3]
    pq.write_table(pa.table({"target_id": [f"t{i:04d}" for i in range(n)], "ra": 150 + rng.uniform(0, 1, n),
                             "dec": 2 + rng.uniform(0, 1, n), "label": (np.arange(n) % 4 == 0).astype(np.int8),
                             "split": split.tolist(), "type": ["DEV"] * n}), path)
    return path


def ra_key(cfg: CutoutConfig, ra: float) -> str:
    return cfg.url(ra, 0).split("ra=")[1].split("&")[0]


def test_fits_reader_matches_astropy(real_cutouts):
    from astropy.io import fits

    svc = FakeCutoutService(real_cutouts)
    body = svc.cube("1.0", "2.0", 64, "grz")
    cube, header = read_fits_image(body)
    import io
    ref = fits.getdata(io.BytesIO(body))
    assert cube.dtype == np.float32 and np.array_equal(cube, ref) and header["BAND2"] == "z"


def test_faults_recovered_or_recorded(real_cutouts, tmp_path):
    targets = write_targets(tmp_path / "t.parquet", 9)
    t = pq.read_table(targets)
    kinds = ["429", "500", "truncate", "slow", "nan", "two_band"]
    with FakeCutoutService(real_cutouts, slow_s=1.0, fault_times=2) as svc:
        cfg = CutoutConfig(service_url=svc.url, rate_limit_per_s=0, backoff_s=0.05, max_tries=4, rows_per_file=4,
                           timeout_s=0.5)  # the slow replies time out twice, then the third try succeeds
        ras = [ra_key(cfg, r) for r in t["ra"].to_pylist()]
        svc.fault_for = dict(zip(ras[1:], kinds))  # row 0 (the preflight) is clean
        m = build_cutout_tier([str(targets)], str(tmp_path / "tier"), cfg)
        times_429 = svc.times[ras[1]]
        assert all(svc.requests[ras[k]] == 3 for k in (1, 2, 3, 4))  # 429, 500, truncated, timed out: 2 retries
    assert times_429[1] - times_429[0] >= 0.95 and times_429[2] - times_429[1] >= 0.95  # Retry-After: 1
    tier = pa.concat_tables([pq.read_table(tmp_path / "tier" / f) for f in m["files"]]).to_pandas()
    by_id = tier.set_index("stamp_id")
    ids = t["target_id"].to_pylist()
    for i, kind in enumerate(kinds, start=1):
        row = by_id.loc[ids[i]]
        if kind in ("nan", "two_band"):
            assert row["cutout_ok"] == 0 and row["stamp_npz"] is None
            assert ("band g" in row["cutout_reason"]) if kind == "nan" else ("missing band(s) z" in row["cutout_reason"])
        else:
            assert row["cutout_ok"] == 1 and row["cutout_reason"] == "", kind
    assert sum(c["failed"] for c in m["counts"].values()) == 2 and len(m["failure_reasons"]) == 2
    good = tier[tier["cutout_ok"] == 1]
    images = decode_batch(list(good["stamp_npz"])).images
    expect = read_fits_image(FakeCutoutService(real_cutouts).cube(ras[0], by_id.loc[ids[0], "cutout_url"].split(
        "dec=")[1].split("&")[0], 64, "grz"))[0]
    assert np.array_equal(images[list(good["stamp_id"]).index(ids[0])], expect)
    assert set(tier["is_control"]) == {0, 1} and (tier["is_control"] == 1 - t.to_pandas().set_index(
        "target_id").loc[tier["stamp_id"], "label"].to_numpy()).all()


@pytest.mark.slow
def test_kill9_then_rerun_is_identical_without_refetch(real_cutouts, tmp_path):
    targets = write_targets(tmp_path / "t.parquet", 90)
    with FakeCutoutService(real_cutouts, latency_s=0.03) as svc:
        args = [str(targets), "--out", str(tmp_path / "killed"), "--service-url", svc.url, "--concurrency", "2",
                "--rate-limit", "0", "--set", "rows_per_file=10", "-q"]
        proc = subprocess.Popen([sys.executable, "-m", "darkhaloscope", "cutouts", *args], env=dict(os.environ))
        deadline = time.time() + 60
        while not list((tmp_path / "killed").glob("region_split=*/part-*.parquet")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cached = {p.stem for p in (tmp_path / "killed" / "_cache").glob("*/*.fits")}
        assert 0 < len(cached) < 90
        for f in (tmp_path / "killed").rglob("*.parquet"):
            pq.read_metadata(f)  # whole files only
        assert main(["cutouts", *args]) == 0
        cfg = CutoutConfig(service_url=svc.url)
        urls = {ra_key(cfg, ra): cfg.url(ra, dec) for ra, dec in pq.read_table(targets, columns=["ra", "dec"]).to_pandas().to_numpy()}
        was_cached = [ra for ra, url in urls.items() if hashlib.sha256(url.encode()).hexdigest() in cached]
        assert len(was_cached) == len(cached) and all(svc.requests[ra] == 1 for ra in was_cached)  # no refetch
        assert sum(svc.requests.values()) <= 90 + 2  # at most the requests in flight at the kill are repeated
        assert main(["cutouts", *args[:2], str(tmp_path / "whole"), *args[3:]]) == 0
    killed = sorted(p.relative_to(tmp_path / "killed") for p in (tmp_path / "killed").glob("region_split=*/*"))
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").glob("region_split=*/*"))
    assert killed == whole and len(killed) == 9
    for rel in killed:
        assert (tmp_path / "killed" / rel).read_bytes() == (tmp_path / "whole" / rel).read_bytes()


def test_unreachable_service_one_error_line(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    targets = write_targets(tmp_path / "t.parquet", 3)
    url = f"http://127.0.0.1:{port}/fits-cutout"
    rc = main(["cutouts", str(targets), "--out", str(tmp_path / "tier"), "--service-url", url, "--set",
               "backoff_s=0.01", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4 and len(err) == 1 and err[0].startswith("error: cannot reach") and url in err[0]
    assert not (tmp_path / "tier").exists()


def test_target_list_without_label(tmp_path, capsys):
    pq.write_table(pa.table({"ra": [1.0], "dec": [2.0], "split": ["train"]}), tmp_path / "t.parquet")
    assert main(["cutouts", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "tier")]) == 1
    err = capsys.readouterr().err
    assert "no label column" in err and str(tmp_path / "t.parquet") in err and not (tmp_path / "tier").exists()


def test_duplicate_target_ids_refused(tmp_path, capsys):
    t = tmp_path / "t.parquet"
    pq.write_table(pa.table({"target_id": ["a", "a"], "ra": [1.0, 2.0], "dec": [0.0, 0.0], "label": [0, 1],
                             "split": ["train", "train"]}), t)
    assert main(["cutouts", str(t), "--out", str(tmp_path / "tier")]) == 1
    assert "target_id 'a' appears more than once" in capsys.readouterr().err and not (tmp_path / "tier").exists()


def test_out_holding_another_tier_is_refused(tiny_tier, tmp_path, capsys):
    targets = write_targets(tmp_path / "t.parquet", 3)
    before = sorted(p.name for p in tiny_tier.rglob("*.parquet"))
    assert main(["cutouts", str(targets), "--out", str(tiny_tier), "--service-url", "http://127.0.0.1:9/x"]) == 2
    assert "was not written by `dhs cutouts`" in capsys.readouterr().err
    assert sorted(p.name for p in tiny_tier.rglob("*.parquet")) == before


def test_fake_service_refuses_an_unknown_fault_kind():
    """A misspelt fault would inject nothing and a test relying on it could not fail."""
    with pytest.raises(ValueError, match="unknown fault kind"):
        FakeCutoutService(faults={"503": 0.1})
    with pytest.raises(ValueError, match="unknown fault kind"):
        FakeCutoutService(fault_for={"1.0": "timeout"})


def test_a_real_tier_is_imbalanced_by_design_and_train_names_the_catalog_fix(real_cutouts, tmp_path):
    """Issue #25 4.2 / 4.3: a `dhs cutouts` tier records the target list's --neg-per-pos; the audit calls its
    1:10 train split as designed (info), not "imbalanced ... rebalance"; with no lenses in val, `dhs train`
    sends the user back to `dhs catalog`, not to re-simulating. Without the manifest, the old warning."""
    import json

    from darkhaloscope.audit import run_audit
    from darkhaloscope.errors import RefusedError
    from darkhaloscope.stamps.tier import open_tier
    from darkhaloscope.train.guards import check_class_counts

    n = 44  # train: 3 lenses + 30 negatives; val: 11 negatives and no lens
    split = ["train"] * 33 + ["val"] * 11
    label = [int(i < 33 and i % 11 == 0) for i in range(n)]
    rng = np.random.default_rng(1)
    targets = tmp_path / "t.parquet"
    pq.write_table(pa.table({"target_id": [f"t{i:04d}" for i in range(n)], "ra": 150 + rng.uniform(0, 1, n),
                             "dec": 2 + rng.uniform(0, 1, n), "label": label, "split": split}), targets)
    (tmp_path / "t.manifest.json").write_text(json.dumps({"config": {"neg_per_pos": 10.0}}))
    with FakeCutoutService(real_cutouts) as svc:
        m = build_cutout_tier([str(targets)], str(tmp_path / "tier"), CutoutConfig(service_url=svc.url,
                                                                                   rate_limit_per_s=0))
    assert m["tier_kind"] == "survey cutouts" and m["neg_per_pos"] == 10.0
    balance = run_audit(str(tmp_path / "tier")).find("balance")
    assert any(f.severity == "info" and "split 'train': 3 lens(es) vs 30 control(s) (1:10)" in f.message
               and "--neg-per-pos 10" in f.message for f in balance)
    assert not any("rebalance" in f.message for f in balance)
    with pytest.raises(RefusedError) as refused:  # what `dhs train` says (exit 3) before it writes anything
        check_class_counts(open_tier(str(tmp_path / "tier")), "train", "val")
    assert "split 'val' has 0 injection(s)" in str(refused.value) and "`dhs catalog`" in str(refused.value)
    assert "rebuild the tier with controls" not in str(refused.value)
    (tmp_path / "tier" / "manifest.json").unlink()  # a tier of unknown origin: imbalance is worth a warning
    assert any(f.severity == "warning" and "rebalance" in f.message
               for f in run_audit(str(tmp_path / "tier")).find("balance"))


def test_rate_limit_applies_to_a_remote_service_only_unless_set():
    """Issue #25 4.10: an offline trial on the loopback stand-in is not held to the public service's 10/s."""
    assert CutoutConfig().requests_per_s() == 10.0
    assert CutoutConfig(service_url="http://127.0.0.1:8123/fits-cutout").requests_per_s() == 0.0
    assert CutoutConfig(service_url="http://localhost/fits-cutout").requests_per_s() == 0.0
    assert CutoutConfig(service_url="http://127.0.0.1:8123/x", rate_limit_per_s=5).requests_per_s() == 5.0
    assert CutoutConfig(rate_limit_per_s=0).requests_per_s() == 0.0
    with pytest.raises(UsageError, match="must be >= 0"):
        CutoutConfig(rate_limit_per_s=-1).validate()


@pytest.mark.parametrize("kw,words", [({"pixscale": 0}, "--pixscale=0"), ({"pixscale": -1}, "--pixscale=-1"),
                                     ({"bands": "grzz"}, "each once"), ({"size": 100000}, "more than a cutout may hold")])
def test_cutout_geometry_is_checked_before_any_request(kw, words):
    """(--pixscale 0 and -1 and --bands grzz fetched and kept rows; --size 100000 was exit 4, 'cannot reach'.)"""
    with pytest.raises(UsageError, match=re.escape(words)):
        CutoutConfig(**kw).validate()


def test_fake_service_help_prints_help_and_serves_nothing(monkeypatch, capsys):
    from darkhaloscope.survey import fakeservice

    monkeypatch.setattr(fakeservice.FakeCutoutService, "__enter__", lambda self: pytest.fail("it served"))
    with pytest.raises(SystemExit) as ex:
        fakeservice.main(["--help"])
    assert ex.value.code == 0 and "loopback stand-in" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ex:
        fakeservice.main(["/no/such/folder"])
    assert ex.value.code == 2 and "no such folder" in capsys.readouterr().err
