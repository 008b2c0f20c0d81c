"""`dhs audit` on a tier made by `dhs simulate` and on deliberately broken copies of it: each finding asserted."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from brokentier import map_stamps, mutate, set_column

from darkhaloscope.audit import AuditConfig, run_audit
from darkhaloscope.cli import main
from darkhaloscope.stamps.codec import encode_stamp


def _messages(report, check, severity):
    return " | ".join(f.message for f in report.find(check, severity))


@pytest.fixture(scope="module")
def fair_report(sim_tier):
    return run_audit(str(sim_tier))


def test_fair_simulated_tier_is_go_without_warnings(fair_report):
    r = fair_report
    assert r.verdict == "GO", r.to_markdown()
    assert r.by_severity("warning") == [] and r.by_severity("error") == []
    # the probe ran and stayed below its thresholds on a fair tier
    probe = r.find("shortcut", "info")[0].details
    assert probe["rows"] == 240 and probe["probe_auroc"] < AuditConfig().shortcut_combo_auroc_warn
    # declared injection metadata separate the classes and are listed as never-a-model-input
    leak = r.find("leakage", "info")[0]
    assert "theta_e_arcsec" in leak.details["columns"] and "arc_snr" in leak.details["columns"]
    assert "psfdepth_r" not in leak.details["columns"]  # observing conditions do not leak in a fair tier
    assert r.find("paired", "info")[0].details["checked"] == 120
    assert "host_id" in _messages(r, "split", "info")


def test_cli_writes_json_and_markdown_and_exits_0(sim_tier, tmp_path, capsys):
    js, md = tmp_path / "a.json", tmp_path / "a.md"
    assert main(["audit", str(sim_tier), "--json", str(js), "--markdown", str(md)]) == 0
    doc = json.loads(js.read_text())
    assert doc["verdict"] == "GO" and doc["counts"]["error"] == 0 and doc["run"]["command"].startswith("dhs audit")
    assert {f["check"] for f in doc["findings"]} >= {"schema", "balance", "usability", "split", "leakage", "shortcut",
                                                     "paired"}
    assert md.read_text().startswith(f"# Audit of {sim_tier}") and "| balance | info |" in md.read_text()
    assert "GO: 0 error(s)" in capsys.readouterr().out


def test_only_injections_is_no_go_naming_split_and_counts(sim_tier, tmp_path, capsys):
    """The smoke test's debug tier: every control dropped."""
    bad = mutate(sim_tier, tmp_path / "t", lambda t, rel: t.filter(pc.equal(t["is_control"], 0)))
    assert main(["audit", str(bad), "-q"]) == 3
    assert "NO-GO" in capsys.readouterr().out
    r = run_audit(str(bad), checks=("balance",))  # the CLI above ran the whole audit
    errors = _messages(r, "balance", "error")
    assert "whole tier has 120 injection(s) and 0 control(s)" in errors
    assert "split 'train' has 84 injection(s) (is_control=0) and 0 control(s)" in errors
    assert "split 'val'" in errors and "split 'test'" in errors


def test_nan_stamps_are_usability_errors_with_row_ids(sim_tier, tmp_path):
    def nan_rows(t, rel):
        if "region_split=val/part-00001" not in rel:
            return None

        def fn(i, img, ctrl):
            if i in (3, 7):
                img = img.copy()
                img[1, 10:12, 10:12] = np.nan
                return img
        return map_stamps(t, fn)
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", nan_rows)), checks=("usability",))
    f = [x for x in r.find("usability", "error") if x.details["kind"] == "nan_inf"]
    assert len(f) == 1 and f[0].details["rows"] == 2, r.to_markdown()
    assert "region_split=val/part-00001.parquet row 3: 4 NaN/Inf pixel(s)" in f[0].message
    assert r.verdict == "NO-GO"


def test_corrupt_npz_and_all_zero_band(sim_tier, tmp_path):
    def corrupt(t, rel):
        if "region_split=train/part-00000" not in rel:
            return None

        def fn(i, img, ctrl):
            if i == 5:
                return t["stamp_npz"][i].as_py()[:-40]  # truncated zip
            if i == 6:
                img = img.copy()
                img[2] = 0.0
                return img
            if i == 7:
                return encode_stamp(img[:2], bands=("g", "r"))  # a g/r-only bandset row
            if i == 8:
                return encode_stamp(img[:, :32, :32])
        return map_stamps(t, fn)
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", corrupt)))
    kinds = {f.details["kind"]: f for f in r.find("usability", "error")}
    assert set(kinds) == {"decode_failure", "all_zero_band", "missing_band", "wrong_shape"}, r.to_markdown()
    assert "row 7: missing band(s) image_z" in kinds["missing_band"].message
    assert "row 8: image_g has shape (32, 32), expected (64, 64)" in kinds["wrong_shape"].message
    assert "region_split=train/part-00000.parquet row 5" in kinds["decode_failure"].message
    assert "row 6: band(s) z all zero" in kinds["all_zero_band"].message


def test_unknown_npz_layout_is_a_schema_error(sim_tier, tmp_path):
    import io

    def odd(t, rel):
        if "region_split=test/part-00000" not in rel:
            return None
        buf = io.BytesIO()
        np.savez(buf, img=np.zeros((64, 64), np.float32))
        return map_stamps(t, lambda i, img, c: buf.getvalue() if i == 0 else None)
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", odd)))
    assert "unknown npz layout (members: img)" in _messages(r, "schema", "error")


def test_missing_column_in_one_file(sim_tier, tmp_path):
    drop = mutate(sim_tier, tmp_path / "t", lambda t, rel: t.drop_columns(["is_control"])
                  if rel == "region_split=val/part-00002.parquet" else None)
    r = run_audit(str(drop), checks=("schema",))
    msg = _messages(r, "schema", "error")
    assert "column 'is_control' (label) missing from 1 of 9 file(s) (region_split=val/part-00002.parquet)" in msg
    assert r.verdict == "NO-GO"


def test_wrong_column_type(sim_tier, tmp_path):
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", lambda t, rel: set_column(
        t, "is_control", pa.array([str(x) for x in t["is_control"].to_pylist()], pa.string())))), checks=("schema",))
    assert "is_control is string, expected integer 0/1 in 9 file(s)" in _messages(r, "schema", "error")


def test_host_in_two_splits(sim_tier, tmp_path):
    stolen = {}

    def leak(t, rel):
        if rel == "region_split=train/part-00000.parquet":
            stolen["id"] = t["host_id"][0].as_py()
        elif rel == "region_split=val/part-00000.parquet":
            return set_column(t, "host_id", [stolen["id"]] + t["host_id"].to_pylist()[1:])
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", leak)), checks=("split",))
    f = r.find("split", "error")
    assert len(f) == 1 and f[0].details["column"] == "host_id" and f[0].details["shared_ids"] == 1
    assert "val: region_split=val/part-00000.parquet row 0" in f[0].message
    assert "train: region_split=train/part-00000.parquet row 0" in f[0].message


def test_duplicated_stamp_across_splits(sim_tier, tmp_path):
    src = {}

    def dup(t, rel):
        if rel == "region_split=train/part-00001.parquet":
            src["blob"] = t["stamp_npz"][2].as_py()
        elif rel == "region_split=val/part-00001.parquet":
            return map_stamps(t, lambda i, img, c: src["blob"] if i == 4 else None)
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", dup)), checks=("split",))
    f = r.find("split", "error")
    assert len(f) == 1 and f[0].details["shared_stamps"] == 1, r.to_markdown()
    assert "val: region_split=val/part-00001.parquet row 4" in f[0].message
    assert "train: region_split=train/part-00001.parquet row 2" in f[0].message


def test_leaking_metadata_columns(sim_tier, tmp_path):
    """An undeclared column that separates the classes, and an observing condition that differs by class."""
    def leak(t, rel):
        ctrl = np.asarray(t["is_control"].to_numpy(), float)
        t = t.append_column("quality_flag", pa.array(np.where(ctrl == 1, 0.2, 0.9) + 0.01 * np.arange(t.num_rows)))
        depth = t["psfdepth_r"].to_numpy() + 0.8 * (1 - ctrl)
        return set_column(t, "psfdepth_r", pa.array(depth))
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", leak)), checks=("leakage",))  # whole audits: the CLI below
    warnings = {f.details["column"]: f for f in r.find("leakage", "warning")}
    assert set(warnings) == {"quality_flag", "psfdepth_r"}, r.to_markdown()
    assert warnings["quality_flag"].details["separation"] > 0.95 and "must never be a model input" in \
        warnings["quality_flag"].message
    assert "observed differently" in warnings["psfdepth_r"].message
    assert r.verdict == "GO"
    small = ["--set", "sample_rows=40", "--set", "min_sample_rows_per_split=8"]  # leakage needs no stamps
    assert main(["audit", str(tmp_path / "t"), "-q", "--fail-on", "warning", *small]) == 3  # strict pipelines
    assert main(["audit", str(tmp_path / "t"), "-q", *small]) == 0


def test_columns_of_one_class_are_one_warning(sim_tier, tmp_path):
    """A real tier's layout (`dhs cutouts`): negatives carry Tractor columns the lenses lack, lenses a grade the
    negatives lack. One warning names them all (was one per column, each telling the user to edit the schema);
    a column that separates by its values is still a warning of its own."""
    def real_like(t, rel):
        ctrl = np.asarray(t["is_control"].to_numpy(), int) == 1
        n = t.num_rows
        for name in ("flux_r", "sersic", "shape_r"):
            t = t.append_column(name, pa.array([1.0 + i if c else None for i, c in enumerate(ctrl)], pa.float64()))
        t = t.append_column("grade", pa.array([None if c else "AB"[i % 2] for i, c in enumerate(ctrl)], pa.string()))
        return t.append_column("quality_flag", pa.array(np.where(ctrl, 0.2, 0.9) + 0.01 * np.arange(n)))
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", real_like)), checks=("leakage",))
    warnings = r.find("leakage", "warning")
    grouped = [f for f in warnings if "filled for one class only" in f.message]
    assert len(grouped) == 1, r.to_markdown()
    assert set(grouped[0].details["columns"]) == {"flux_r", "sersic", "shape_r", "grade"}
    assert "only controls: flux_r, sersic, shape_r" in grouped[0].message
    assert "only injections (lenses): grade" in grouped[0].message and "meta_columns" in grouped[0].message
    single = [f.details["column"] for f in warnings if "column" in f.details]
    assert single == ["quality_flag"], r.to_markdown()


def test_bright_centre_shortcut_warning(sim_tier, tmp_path):
    """Injections much brighter in the centre than controls: separable without looking at arcs."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    blob = np.exp(-0.5 * (xx**2 + yy**2) / 1.5**2).astype(np.float32)

    def brighten(t, rel):
        return map_stamps(t, lambda i, img, c: img + 0.5 * blob if c == 0 else None)
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", brighten)), checks=("shortcut",))
    msg = _messages(r, "shortcut", "warning")
    assert "image statistics alone separate the classes: " in msg and "logistic regression" in msg, r.to_markdown()
    auc = r.find("shortcut", "warning")[0].details["feature_auroc"]
    assert auc["centre_flux_r_nmgy"] > 0.95 and auc["background_mad_r_nmgy"] < 0.7
    assert "centre_flux_r_nmgy AUROC 0.9" in msg


def test_paired_control_violations(sim_tier, tmp_path):
    """Arc flux scaled 1000x (a units bug) in one file; in another the control is a different host."""
    def units(t, rel):
        if rel == "region_split=train/part-00000.parquet":
            ctrl = __import__("darkhaloscope.stamps.codec", fromlist=["x"]).decode_batch(
                [b or t["stamp_npz"][0].as_py() for b in t["ctrl_stamp_npz"].to_pylist()]).images
            return map_stamps(t, lambda i, img, c: ctrl[i] + 1000 * (img - ctrl[i]) if c == 0 else None)
        if rel == "region_split=val/part-00000.parquet":
            blobs = t["ctrl_stamp_npz"].to_pylist()
            first = next(b for b in blobs if b is not None)
            return set_column(t, "ctrl_stamp_npz", pa.array([first if b is not None else None for b in blobs], pa.binary()))
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", units)), checks=("paired",))
    f = r.find("paired", "error")
    assert len(f) == 1, r.to_markdown()
    d = f[0].details
    # most of the 37 injections of train/part-00000 (the 1000x arcs; the other host's rows may add some)
    assert d["flux_mismatch"] >= 30 and d["far_nonzero"] >= 1 and d["checked"] == 120
    assert "disagree with arc_flux_r_nmgy" in f[0].message


def test_packed_tier_from_dhs_pack(sim_tier, tmp_path):
    """`dhs pack` output (float16 `stamp_f16`): same counts, same verdict."""
    assert main(["pack", str(sim_tier), str(tmp_path / "packed")]) == 0
    r = run_audit(str(tmp_path / "packed"))
    assert r.verdict == "GO", r.to_markdown()
    assert "packed float16 stamps" in r.find("schema", "info")[0].message
    assert r.find("balance", "info")[0].details["counts"] == {"test": {0: 18, 1: 18}, "train": {0: 84, 1: 84},
                                                               "val": {0: 18, 1: 18}}


def test_invalid_label_values_and_truncated_file(sim_tier, tmp_path):
    def bad_label(t, rel):
        if rel == "region_split=train/part-00001.parquet":
            vals = t["is_control"].to_pylist()
            vals[37] = 2
            return set_column(t, "is_control", vals)
    r = run_audit(str(mutate(sim_tier, tmp_path / "t", bad_label)), checks=("balance",))
    msg = " ".join(f.message for f in r.find("balance", "error"))
    assert "invalid labels in 1 file(s): region_split=train/part-00001.parquet: is_control must be 0 or 1; " \
           "row 37 has 2" in msg, r.to_markdown()
    victim = tmp_path / "t" / "region_split=val" / "part-00001.parquet"
    victim.write_bytes(victim.read_bytes()[:5000])  # truncated copy: footer gone
    r = run_audit(str(tmp_path / "t"), checks=("schema",))
    assert r.verdict == "NO-GO" and "region_split=val/part-00001.parquet: cannot read parquet footer" in \
        r.find("schema", "error")[0].message


def test_corrupt_row_group_is_reported_and_the_rest_counted(sim_tier, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(sim_tier, tmp_path / "t")
    victim = tmp_path / "t" / "region_split=train" / "part-00000.parquet"
    lost = pq.ParquetFile(victim).metadata.row_group(1).num_rows
    col = pq.ParquetFile(victim).metadata.row_group(1).column(3)
    assert col.path_in_schema == "is_control"
    data = bytearray(victim.read_bytes())
    data[col.data_page_offset:col.data_page_offset + col.total_compressed_size] = bytes(col.total_compressed_size)
    victim.write_bytes(bytes(data))
    r = run_audit(str(tmp_path / "t"), checks=("schema", "balance"))
    msg = " ".join(f.message for f in r.find("schema", "error"))
    assert "region_split=train/part-00000.parquet (row group 1:" in msg, r.to_markdown()
    counts = r.find("balance", "info")[0].details["counts"]
    assert sum(counts["train"].values()) == 168 - lost and counts["val"] == {0: 18, 1: 18}
