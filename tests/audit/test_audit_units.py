"""Audit building blocks checked by hand: AUROC, cross-split keys, the verdict, config validation, the
statistics-only balance path, and that the cheap pass never reads a stamp column."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from tierfactory import make_tier

from darkhaloscope.audit import AuditConfig, AuditReport, Finding, run_audit
from darkhaloscope.audit.checks_split import cross_split, duplicates_within
from darkhaloscope.audit.scan import scan_tier
from darkhaloscope.audit.stats import auroc, column_leakage, feature_names, image_features
from darkhaloscope.config import load_config
from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.tier import open_tier


def test_auroc_by_hand():
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(np.array([0, 1, 0, 1]), np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.5)  # ties count 1/2
    assert np.isnan(auroc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_column_leakage_null_pattern():
    y = np.array([0] * 10 + [1] * 10)
    v = np.where(y == 1, np.linspace(1, 2, 20), np.nan)  # null for every control: leaks via its null pattern
    r = column_leakage(v, y)
    assert r["null_frac_controls"] == 1.0 and r["null_frac_injections"] == 0.0 and r["null_frac_diff"] == 1.0
    assert np.isnan(r["auroc"])


def test_image_features_by_hand():
    img = np.zeros((1, 3, 64, 64), np.float32)
    img[0, 1, 31:33, 31:33] = 1.0  # 4 nmgy in r at the centre
    img[0, 2, 31:33, 31:33] = 0.25  # 1 nmgy in z
    f = dict(zip(feature_names(), image_features(img)[0]))
    assert f["centre_flux_r_nmgy"] == pytest.approx(4.0) and f["total_flux_z_nmgy"] == pytest.approx(1.0)
    assert f["centre_colour_r_z_mag"] == pytest.approx(-2.5 * np.log10(4.0))  # brighter in r: r - z < 0
    assert f["background_mad_g_nmgy"] == 0.0


def test_cross_split_and_duplicates():
    keys = np.array([1, 2, 3, 1, 2, 2])
    splits = np.array(["train", "train", "val", "val", "train", "train"], dtype=object)
    idx, n = cross_split(keys, splits)
    assert n == 1 and sorted(idx.tolist()) == [0, 3]
    assert duplicates_within(keys, splits) == 2  # key 2 three times in train


def test_verdict_and_fail_on():
    r = AuditReport("x", [Finding("balance", "warning", "w")])
    assert r.verdict == "GO" and r.exit_code == 0
    r.fail_on = "warning"
    assert r.verdict == "NO-GO" and r.exit_code == 3
    r.findings.append(Finding("schema", "error", "e", {"v": float("nan"), "n": np.int64(3)}))
    assert '"v": null' in r.to_json() and '"n": 3' in r.to_json()  # JSON-safe
    with pytest.raises(ValueError):
        Finding("x", "fatal", "bad severity")


@pytest.mark.parametrize("override", ["fail_on=sometimes", "leak_auroc=0.3", "sample_rows=0", "probe_bands=g,y",
                                      "max_class_ratio=0.5", "nonsense=1"])
def test_config_rejects_bad_values(override):
    with pytest.raises(UsageError):
        load_config(AuditConfig, None, [f"--{override}"])


def _record_reads(monkeypatch, read: list) -> None:
    """Record the columns of every parquet data read (ParquetFile.read_row_group(s), read)."""
    for name in ("read_row_group", "read_row_groups", "read"):
        orig = getattr(pq.ParquetFile, name)

        def spy(self, *a, columns=None, _orig=orig, **kw):
            read.append(columns)
            return _orig(self, *a, columns=columns, **kw)
        monkeypatch.setattr(pq.ParquetFile, name, spy)


def test_balance_from_parquet_statistics_without_reading(tmp_path, monkeypatch):
    """Single-class row groups and no id columns (host_id, stamp_id): every count comes from the footer
    statistics."""
    root = make_tier(tmp_path / "t", rows_per_split=32, files_per_split=1, row_group_size=8)
    for p in root.rglob("*.parquet"):  # sort by class so each 8-row group holds one class; drop host ids
        t = pq.read_table(p).drop_columns(["host_id", "stamp_id"]).sort_by("is_control")
        pq.write_table(t, p, row_group_size=8)
    read = []
    _record_reads(monkeypatch, read)
    tier = open_tier(str(root))
    scan = scan_tier(tier, leakage_max_rows=1)  # leakage sample: (almost) no row groups
    assert scan.counts() == {"test": [16, 16], "train": [16, 16], "val": [16, 16]}
    assert sum(f.rg_from_stats for f in scan.files) >= 8 and sum(f.rg_read for f in scan.files) <= 4
    assert len(read) <= 1  # at most the one file picked for the leakage sample
    assert all("stamp_npz" not in (c or ["stamp_npz"]) for c in read)


def test_cheap_pass_never_reads_stamps(tiny_tier, monkeypatch):
    read = []
    _record_reads(monkeypatch, read)
    scan = scan_tier(open_tier(str(tiny_tier)))
    assert read and all(c is not None and "stamp_npz" not in c for c in read)
    assert scan.counts() == {s: [12, 12] for s in ("test", "train", "val")}


def test_imbalance_inverted_splits_and_one_class_files(tmp_path):
    root = tmp_path / "t"
    make_tier(root, rows_per_split=16, files_per_split=2, row_group_size=8, splits=("train",), seed=1)
    make_tier(root, rows_per_split=64, files_per_split=2, row_group_size=8, splits=("val",), seed=2)
    for p in (root / "region_split=val").glob("*.parquet"):  # keep 16 controls + 4 injections per file
        t = pq.read_table(p)
        ctrl = t["is_control"].to_numpy()
        keep = np.flatnonzero(ctrl == 1).tolist() + np.flatnonzero(ctrl == 0)[:4].tolist()
        pq.write_table(t.take(sorted(keep)), p, row_group_size=8)
    make_tier(root, rows_per_split=8, files_per_split=1, row_group_size=8, splits=("test",), seed=3, control_frac=1)
    # seed-distinct host ids: the factory names hosts by split, so no cross-split host here
    r = run_audit(str(root), AuditConfig(probe_min_per_class=5))
    errs = " | ".join(f.message for f in r.find("balance", "error"))
    assert "split 'test' has 0 injection(s) (is_control=0) and 8 control(s)" in errs
    warn = " | ".join(f.message for f in r.by_severity("warning"))
    assert "split 'val' (40 rows) is larger than train (16 rows) by 2.50x" in warn
    assert "split 'val' is imbalanced: 8 injection(s) vs 32 control(s) (ratio 4.00 > 3)" in warn
    assert "1 of 5 file(s) hold one class only: region_split=test/part-test-00000.parquet (0 inj / 8 ctrl)" in warn
    assert r.verdict == "NO-GO"


def test_missing_required_split_and_unknown_name(tmp_path):
    root = make_tier(tmp_path / "t", rows_per_split=16, files_per_split=1, splits=("train", "validation"))
    r = run_audit(str(root))
    assert "required split(s) val missing (found: train, validation)" in r.find("schema", "error")[0].message
    assert "unexpected validation" in r.find("schema", "warning")[0].message


def test_unsplit_tier_and_nonexistent_path(tmp_path, capsys):
    from darkhaloscope.cli import main

    root = make_tier(tmp_path / "t", rows_per_split=8, files_per_split=1, hive=True, splits=("train",))
    flat = tmp_path / "flat.parquet"
    pq.write_table(pq.read_table(next(root.rglob("*.parquet"))), flat)  # no partition, no split column
    r = run_audit(str(flat))
    assert "no split for 1 file(s) (flat.parquet)" in " ".join(f.message for f in r.find("schema", "error"))
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_importable_without_torch():
    """`dhs review` / `dhs demo` and CPU-only data machines use the audit without torch."""
    import subprocess
    import sys

    code = ("import sys, darkhaloscope.audit, darkhaloscope.audit.commands; "
            "from darkhaloscope.audit import run_audit; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_audit_command(tiny_tier, tmp_path):
    import json

    from darkhaloscope.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "audit", str(tiny_tier), "--repeats", "1", "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert fig["rows"] == 72 and fig["files"] == 6 and fig["naive_read_s"] > 0
    assert fig["cheap_fraction_of_naive"] > 0 and fig["host_id_pass_s"] > 0 and fig["rows_decoded"] == 72


def test_a_selection_of_checks_runs_only_those_and_pixel_free_ones_decode_nothing(tmp_path):
    root = make_tier(tmp_path / "t", rows_per_split=16, files_per_split=1)
    r = run_audit(str(root), checks=("leakage", "balance"))
    assert {f.check for f in r.findings} == {"balance", "leakage"} and r.summary["rows_decoded"] == 0
    r = run_audit(str(root), checks=("usability",))
    assert {f.check for f in r.findings} == {"usability"} and r.summary["rows_decoded"] > 0
    with pytest.raises(ValueError, match="unknown audit check.*nope"):
        run_audit(str(root), checks=("balance", "nope"))
