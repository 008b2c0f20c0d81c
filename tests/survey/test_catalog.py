"""`dhs catalog` on the shared DR10 LRG catalog + lenscat, and on synthetic sweep-like FITS files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sweepfactory import write_sweep

from darkhaloscope.cli import main
from darkhaloscope.survey.catalog import allocate, build_catalog
from darkhaloscope.survey.config import CatalogConfig


@pytest.fixture(scope="module")
def lrg_targets(lrg_catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("cat") / "targets.parquet"
    assert main(["catalog", "--out", str(out), "--negatives", str(lrg_catalog), "--exclude-radius", "2",
                 "--neg-per-pos", "20", "--seed", "7"]) == 0
    return out


def test_known_lenses_excluded(lrg_targets, lrg_catalog):
    """Exactly the 5 LRG rows within 2" of a lenscat entry are dropped (checked here with astropy's matcher)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from darkhaloscope.survey.positives import load_known

    known = load_known(["lenscat"])
    lenses = SkyCoord(known.ra * u.deg, known.dec * u.deg)
    cat = pq.read_table(lrg_catalog, columns=["RA", "DEC"])
    _, sep, _ = SkyCoord(cat["RA"].to_numpy() * u.deg, cat["DEC"].to_numpy() * u.deg).match_to_catalog_sky(lenses)
    assert int((sep.arcsec < 2).sum()) == 5
    m = json.loads(lrg_targets.with_name("targets.manifest.json").read_text())
    assert m["excluded_near_known_lenses"] == 5
    t = pq.read_table(lrg_targets)
    neg = t.filter(pa.compute.equal(t["label"], 0))
    _, sep_out, _ = SkyCoord(neg["ra"].to_numpy() * u.deg, neg["dec"].to_numpy() * u.deg).match_to_catalog_sky(lenses)
    assert sep_out.arcsec.min() >= 2


def test_splits_by_pixel_and_ratio(lrg_targets):
    t = pq.read_table(lrg_targets).to_pandas()
    assert t.groupby("healpix")["split"].nunique().max() == 1
    assert set(t["split"]) <= {"train", "val", "test"} and len(set(t["split"])) >= 2
    m = json.loads(lrg_targets.with_name("targets.manifest.json").read_text())
    assert not m["negative_shortfall"]
    for split, g in t.groupby("split"):
        n_pos = int((g["label"] == 1).sum())
        assert n_pos > 0 and (g["label"] == 0).sum() == 20 * n_pos
        assert m["counts"][split]["positive"] == n_pos
    assert set(t["pool"]) <= {"positive", "random", "confuser"}
    assert (t.loc[t["label"] == 1, "source_catalog"] == "lenscat").all()
    assert t["target_id"].is_unique


def test_deterministic_per_seed(lrg_targets, lrg_catalog, tmp_path):
    kw = dict(negatives=[str(lrg_catalog)], cfg=CatalogConfig(exclude_radius_arcsec=2, neg_per_pos=20), log=lambda s: 0)
    build_catalog(str(tmp_path / "a.parquet"), seed=7, **kw)
    build_catalog(str(tmp_path / "b.parquet"), seed=8, **kw)
    same = pq.read_table(tmp_path / "a.parquet")
    assert same.equals(pq.read_table(lrg_targets))
    assert not same.equals(pq.read_table(tmp_path / "b.parquet"))


def test_sweeps_strata_confusers_and_shards(tmp_path):
    """Full Tractor columns: no degradation note, confuser share as asked, shards add up to the whole."""
    files = [write_sweep(tmp_path / f"sweep-{i}.fits", 3000, seed=i) for i in range(3)]
    lenses = tmp_path / "lenses.csv"
    rng = np.random.default_rng(0)
    lenses.write_text("name,ra,dec,grade\n" + "".join(
        f"L{i},{150 + rng.uniform(0, 2)},{2 + rng.uniform(0, 2)},{'AB'[i % 2]}\n" for i in range(40)))
    notes: list[str] = []
    kw = dict(positives=[str(lenses)], negatives=[str(tmp_path / "sweep-*.fits")], seed=5, log=notes.append,
              cfg=CatalogConfig(neg_per_pos=10, nside=64))
    m = build_catalog(str(tmp_path / "all.parquet"), **kw)
    assert not [n for n in notes if "NOBS_Z" in n or "confuser" in n]
    t = pq.read_table(tmp_path / "all.parquet").to_pandas()
    neg = t[t["label"] == 0]
    assert len(neg) == 10 * (t["label"] == 1).sum()
    assert abs((neg["pool"] == "confuser").mean() - 0.15) < 0.01
    conf = neg[neg["pool"] == "confuser"]
    mag_r = 22.5 - 2.5 * np.log10(conf["flux_r"])
    blue = (-2.5 * np.log10(conf["flux_g"] / conf["flux_r"]) < 0.4) & (mag_r < 20)
    assert ((conf["shape_r"] >= 2) | (np.hypot(conf["shape_e1"], conf["shape_e2"]) >= 0.5)
            | ((conf["sersic"] >= 4) & (mag_r < 19.5)) | blue).all()
    assert (conf["type"] != "PSF").all()
    assert "grade" in t and set(t.loc[t["label"] == 1, "grade"]) == {"A", "B"}
    parts = [build_catalog(str(tmp_path / f"s{k}.parquet"), shard=f"{k}/2", **kw) for k in range(2)]
    rows = pa.concat_tables([pq.read_table(tmp_path / f"s{k}.parquet") for k in range(2)]).to_pandas()
    assert sorted(rows["name"]) == sorted(t["name"]) and sum(p["rows"] for p in parts) == m["rows"]


def test_allocate_is_proportional_and_exact():
    assert allocate(10, np.array([5, 3, 2])).tolist() == [5, 3, 2]
    assert allocate(3, np.array([10, 10, 10])).tolist() == [1, 1, 1]
    assert allocate(7, np.array([100, 1, 0])).sum() == 7


@pytest.mark.parametrize("case", ["unreadable", "no_radec", "no_positives"])
def test_bad_input_one_error_line(case, lrg_catalog, tmp_path, capsys):
    neg = str(lrg_catalog)
    extra: list[str] = []
    if case == "unreadable":
        neg = str(tmp_path / "broken.parquet")
        (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    elif case == "no_radec":
        neg = str(tmp_path / "nocoords.parquet")
        pq.write_table(pa.table({"x": [1.0, 2.0]}), neg)
    else:
        extra = ["--grades", "no-such-grade"]
    out = tmp_path / "targets.parquet"
    rc = main(["catalog", "--out", str(out), "--negatives", neg, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: ") and len([e for e in err if e.startswith("error")]) == 1
    assert (neg in err[-1]) if case != "no_positives" else ("no positives" in err[-1])
    assert not list(tmp_path.glob("targets*"))


def test_a_split_without_positives_is_said_with_a_seed_that_works(lrg_catalog, tmp_path, capsys):
    """Issue #25 4.2: lenscat x the LRG catalog at seed 1 leaves val without a lens (11 positives in 10
    HEALPix pixels) and said nothing; a warning before the second pass names a seed that fills every split,
    and the manifest keeps it. (A warning, not a refusal: a list with few lenses, or for one split, is legal.)"""
    out = tmp_path / "targets.parquet"
    assert main(["catalog", "--out", str(out), "--negatives", str(lrg_catalog), "--seed", "1"]) == 0
    warn = [e for e in capsys.readouterr().err.splitlines() if e.startswith("warning:")]
    assert len(warn) == 1 and "split val gets no positives" in warn[0] and "train 10, val 0, test 1" in warn[0]
    assert "use --seed 2 (it puts positives in every split)" in warn[0]
    assert any("use --seed 2" in n for n in json.loads(out.with_name("targets.manifest.json").read_text())["notes"])
    assert main(["catalog", "--out", str(out), "--negatives", str(lrg_catalog), "--seed", "2"]) == 0
    assert "warning:" not in capsys.readouterr().err
    counts = json.loads(out.with_name("targets.manifest.json").read_text())["counts"]
    assert all(counts[s]["positive"] > 0 for s in ("train", "val", "test"))


def test_seed_filling_splits_by_hand():
    from darkhaloscope.survey.sky import seed_filling_splits, split_of_pixels

    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    pixels = np.arange(6)
    seed = seed_filling_splits(pixels, 0, fractions)
    assert seed is not None and seed > 0
    assert set(split_of_pixels(pixels, seed, fractions)) == set(fractions)
    assert all(len(set(split_of_pixels(pixels, s, fractions))) < 3 for s in range(1, seed))
    assert seed_filling_splits(np.array([5]), 0, fractions) is None  # one pixel cannot fill three splits


def test_missing_lenscat_names_the_survey_extra(monkeypatch):
    """Issue #25 4.10: `--positives lenscat` without lenscat says which extra installs it."""
    import importlib.util

    from darkhaloscope.errors import UsageError
    from darkhaloscope.survey.positives import lenscat_csv

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lenscat" else real(name, *a))
    with pytest.raises(UsageError, match=r"darkhaloscope\[survey\]"):
        lenscat_csv()
