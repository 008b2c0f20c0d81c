"""`dhs catalog` on hostile lists (issue #26 items 11-13): text NOBS_Z, numeric zlens / lens_type columns in
the negatives, |Dec| > 90 and RA outside [0, 360), the same lenses listed twice. Each ends in a whole target
list with a `note:` saying what was cleaned, or one `error:` line; never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hostilehelpers import dhs


def negatives(path, n: int = 400, seed: int = 0, **override) -> str:
    rng = np.random.default_rng(seed)
    cols = {"RA": 150 + rng.uniform(0, 2, n), "DEC": 2 + rng.uniform(0, 2, n),
            "TYPE": rng.choice(["DEV", "EXP", "REX"], n).tolist(), "NOBS_Z": rng.integers(1, 14, n),
            "FLUX_G": rng.lognormal(0.5, 1, n), "FLUX_R": rng.lognormal(1.2, 1, n)}
    cols.update(override)
    pq.write_table(pa.table(cols), path)
    return str(path)


def lenses(path, ras, decs) -> str:
    path.write_text("name,ra,dec,grade\n" + "".join(f"L{i},{r},{d},A\n" for i, (r, d) in enumerate(zip(ras, decs))))
    return str(path)


def catalog(capsys, out, pos: list[str], neg: list[str], *extra):
    return dhs(capsys, "catalog", "--out", out, "--positives", *pos, "--negatives", *neg, "--neg-per-pos", "5",
               "--nside", "16", "--positives-anywhere", *extra)


def five_lenses(tmp_path) -> str:
    rng = np.random.default_rng(1)
    return lenses(tmp_path / "lenses.csv", 150 + rng.uniform(0, 2, 5), 2 + rng.uniform(0, 2, 5))


@pytest.mark.parametrize("nobs,ok", [(["3", " 7", "12", ""] * 100, True), (["3", "abc", "5", "9"] * 100, False)])
def test_text_nobs_z_is_read_as_numbers_or_refused_in_one_line(nobs, ok, tmp_path, capsys):
    neg = negatives(tmp_path / "neg.parquet", NOBS_Z=nobs)
    rc, _, err = catalog(capsys, tmp_path / "t.parquet", [five_lenses(tmp_path)], [neg])
    if ok:
        assert rc == 0 and "column NOBS_Z holds numbers as text: read as numbers" in err, err
        assert pq.read_table(tmp_path / "t.parquet").num_rows == 30
    else:
        assert rc == 1 and "column NOBS_Z row 1: 'abc' is not a number" in err
        assert not (tmp_path / "t.parquet").exists()


def test_numeric_zlens_and_lens_type_in_negatives_are_kept_apart(tmp_path, capsys):
    neg = negatives(tmp_path / "neg.parquet", zlens=np.full(400, 0.5), lens_type=np.arange(400), ref=np.ones(400))
    rc, _, err = catalog(capsys, tmp_path / "t.parquet", [five_lenses(tmp_path)], [neg])
    assert rc == 0, err
    t = pq.read_table(tmp_path / "t.parquet")
    assert t.schema.field("zlens").type == pa.string() and t.schema.field("cat_zlens").type == pa.float64()
    assert t.filter(pa.compute.equal(t["label"], 0))["cat_lens_type"].null_count == 0


def test_bad_declinations_dropped_and_ra_wrapped_with_counts(tmp_path, capsys):
    rng = np.random.default_rng(2)
    dec = 2 + rng.uniform(0, 2, 400)
    dec[:49] = 95.0 + np.arange(49)
    ra = 150 + rng.uniform(0, 2, 400)
    ra[49:59] += 360  # the same sky, written past 360
    neg = negatives(tmp_path / "neg.parquet", RA=ra, DEC=dec)
    pos = lenses(tmp_path / "lenses.csv", [150.5 + 360, 151.0 - 360, 150.2], [2.5, 3.0, 3.5])
    rc, _, err = catalog(capsys, tmp_path / "t.parquet", [pos], [neg])
    assert rc == 0, err
    assert "49 row(s) with |DEC| > 90 dropped" in err and "neg.parquet: 10 RA value(s) outside [0, 360)" in err
    assert "lenses.csv: 2 RA value(s) outside [0, 360) wrapped" in err
    t = pq.read_table(tmp_path / "t.parquet").to_pandas()
    assert t["dec"].abs().max() <= 90 and t["ra"].between(0, 360, inclusive="left").all()
    assert sorted(t.loc[t["label"] == 1, "ra"].round(6)) == [150.2, 150.5, 151.0]


def test_the_same_lenses_listed_twice_are_merged_and_counted(tmp_path, capsys):
    pos = five_lenses(tmp_path)
    again = tmp_path / "again.csv"  # the same lenses, 0.2" off (another catalog's rounding), under other names
    rows = [line.split(",") for line in (tmp_path / "lenses.csv").read_text().splitlines()[1:]]
    again.write_text("name,ra,dec\n" + "".join(f"X{n},{float(r) + 0.2 / 3600},{d}\n" for n, r, d, _ in rows))
    rc, _, err = catalog(capsys, tmp_path / "t.parquet", [pos, pos, str(again)], [negatives(tmp_path / "n.parquet")])
    assert rc == 0, err
    assert "10 positive(s) within 1\" of an earlier one merged" in err
    t = pq.read_table(tmp_path / "t.parquet").to_pandas()
    assert sorted(t.loc[t["label"] == 1, "name"]) == [f"L{i}" for i in range(5)]
    assert json.loads((tmp_path / "t.manifest.json").read_text())["positives_merged"] == 10
