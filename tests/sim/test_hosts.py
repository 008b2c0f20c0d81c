"""Real hosts (DR10 cutouts, or a tier's controls), grids, the arc S/N distribution and pairing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from darkhaloscope.cli import main
from darkhaloscope.sim.build import simulate_tier
from darkhaloscope.sim.hosts import aperture_mag_r
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.codec import decode_batch
from darkhaloscope.stamps.tier import open_tier


def _table(root):
    return open_tier(str(root)).read_columns(
        ["host_id", "is_control", "stamp_npz", "theta_e_arcsec", "src_dmag", "arc_snr", "src_mag_r",
         "confuser_kind"])


def _hosts_per_split(t: pa.Table) -> dict[str, set]:
    out: dict[str, set] = {}
    for h, s in zip(t["host_id"].to_pylist(), t["region_split"].to_pylist()):
        out.setdefault(s, set()).add(h)
    return out


def test_dr10_hosts_reused_within_one_split_only(tmp_path, dr10_dir):
    rc = main(["simulate", "--out", str(tmp_path), "--tier", "real", "--rows", "36", "--seed", "4", "-q",
               "--workers", "1", "--supersample", "2", "--hosts", str(dr10_dir)])
    assert rc == 0
    t = _table(tmp_path / "real")
    per_split = _hosts_per_split(t)
    assert sum(len(v) for v in per_split.values()) == 6 == len(set().union(*per_split.values()))
    assert {k: len(v) for k, v in per_split.items()} == {"train": 4, "val": 1, "test": 1}
    # a plain control is the real cutout itself (centre 64x64), untouched; a confuser control carries
    # unlensed light on top of it (tests/sim/test_confusers.py)
    cutouts = {p.stem: np.moveaxis(np.load(p)["cutout"], 2, 0)[:, 18:82, 18:82] for p in dr10_dir.glob("*.npz")}
    imgs = decode_batch(t["stamp_npz"]).images
    ctrl = np.asarray(t["is_control"]) == 1
    plain = ctrl & np.asarray([k is None for k in t["confuser_kind"].to_pylist()])
    assert plain.sum() >= 1
    for img, h in zip(imgs[plain], np.asarray(t["host_id"].to_pylist())[plain]):
        np.testing.assert_array_equal(img, cutouts[h])
    for img, h in zip(imgs[ctrl & ~plain], np.asarray(t["host_id"].to_pylist())[ctrl & ~plain]):
        assert np.abs(img - cutouts[h]).max() > 0  # confuser light was added
    for img, h in zip(imgs[~ctrl], np.asarray(t["host_id"].to_pylist())[~ctrl]):
        assert (img - cutouts[h]).sum() > 0  # an arc was added


def test_a_tiers_controls_become_hosts(tmp_path, tiny_tier):
    m = simulate_tier(tmp_path, "from_tier", rows=30, seed=1, config=SimConfig(hosts=str(tiny_tier), supersample=1))
    src = open_tier(str(tiny_tier)).read_columns(["host_id", "is_control"])
    src_ctrl_hosts = {h for h, c in zip(src["host_id"].to_pylist(), src["is_control"].to_pylist()) if c == 1}
    t = _table(tmp_path / "from_tier")
    assert set(t["host_id"].to_pylist()) <= src_ctrl_hosts
    assert m["hosts"] == str(tiny_tier)
    per_split = _hosts_per_split(t)
    assert not (per_split["train"] & per_split["val"]) and not (per_split["train"] & per_split["test"])


def test_grid_cycles_over_the_product(tmp_path):
    rc = main(["simulate", "--out", str(tmp_path), "--tier", "g", "--rows", "40", "--seed", "1", "-q",
               "--workers", "1", "--supersample", "1", "--grid", "theta_e=0.75,1.5", "src_dmag=1,2.5"])
    assert rc == 0
    t = _table(tmp_path / "g")
    inj = np.asarray(t["is_control"]) == 0
    pairs = {(round(a, 6), round(b, 6)) for a, b, k in
             zip(t["theta_e_arcsec"].to_pylist(), t["src_dmag"].to_pylist(), inj) if k}
    assert pairs == {(0.75, 1.0), (0.75, 2.5), (1.5, 1.0), (1.5, 2.5)}


@pytest.mark.slow
def test_arc_snr_distribution_reshapes_the_sample(tmp_path):
    cfg = SimConfig(supersample=1, arc_snr_dist="loguniform:5:20", controls=0.2)
    simulate_tier(tmp_path, "s", rows=60, seed=3, config=cfg)
    t = _table(tmp_path / "s")
    snr = np.array([v for v in t["arc_snr"].to_pylist() if v is not None])
    assert np.mean((snr >= 5 * 0.999) & (snr <= 20 * 1.001)) >= 0.9
    assert np.median(snr) == pytest.approx(10.0, rel=0.35)  # log-uniform on [5, 20]: median 10
    mags = np.array([v for v in t["src_mag_r"].to_pylist() if v is not None])
    assert mags.min() >= 20.0 and mags.max() <= 25.0
    tgt = open_tier(str(tmp_path / "s")).read_columns(["arc_snr", "arc_snr_target"])
    pairs = [(a, b) for a, b in zip(tgt["arc_snr"].to_pylist(), tgt["arc_snr_target"].to_pylist()) if a is not None]
    met = np.mean([abs(a / b - 1) < 1e-6 for a, b in pairs])
    assert met >= 0.9  # the target is met unless it needs a source outside src_mag_r
    cfg_none = SimConfig(supersample=1, arc_snr_dist="none", controls=0.2)
    simulate_tier(tmp_path, "n", rows=60, seed=3, config=cfg_none)
    snr_none = np.array([v for v in _table(tmp_path / "n")["arc_snr"].to_pylist() if v is not None])
    assert snr_none.max() > 40  # drawn 20-25 mag sources: many arcs far brighter than S/N 20


@pytest.mark.slow
def test_pairing_and_no_central_flux_shortcut(tmp_path):
    """Controls and injections share the host population: their central flux (arc removed) agrees."""
    cfg = SimConfig(supersample=1, pair=True, rows_per_file=200, neighbours_mean=0.0, stars_mean=0.0)
    simulate_tier(tmp_path, "p", rows=200, seed=9, config=cfg)
    tier = open_tier(str(tmp_path / "p"))
    t = tier.read_columns(["is_control", "stamp_npz", "ctrl_stamp_npz"])
    ctrl = np.asarray(t["is_control"]) == 1
    assert all(v is None for v, c in zip(t["ctrl_stamp_npz"].to_pylist(), ctrl) if c)
    blobs = [v for v, c in zip(t["ctrl_stamp_npz"].to_pylist(), ctrl) if not c]
    hosts_of_inj = decode_batch(blobs).images
    controls = decode_batch([v for v, c in zip(t["stamp_npz"].to_pylist(), ctrl) if c]).images
    f_inj = np.median([10 ** (-0.4 * (aperture_mag_r(x) - 22.5)) for x in hosts_of_inj])
    f_ctl = np.median([10 ** (-0.4 * (aperture_mag_r(x) - 22.5)) for x in controls])
    assert f_inj == pytest.approx(f_ctl, rel=0.2)
    injected = decode_batch([v for v, c in zip(t["stamp_npz"].to_pylist(), ctrl) if not c]).images
    assert ((injected - hosts_of_inj)[:, 1].sum(axis=(1, 2)) > 0).all()  # the difference is the arc


def test_hosts_from_a_tier_on_s3(tmp_path, tiny_tier, s3_bucket):
    from s3util import upload_folder

    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, tiny_tier, "tiers/tiny")
    rc = main(["simulate", "--out", str(tmp_path), "--tier", "s3hosts", "--rows", "12", "--seed", "2", "-q",
               "--workers", "1", "--supersample", "1", "--hosts", uri, "--s3-endpoint-url", endpoint])
    assert rc == 0
    t = _table(tmp_path / "s3hosts")
    assert all(h.startswith("host-") for h in t["host_id"].to_pylist())  # ids come from the source tier
