"""Tier tests for `dhs simulate`: both classes in every split, host/split integrity, determinism,
shards concatenating to the unsharded build, atomic writes, and the Phase 4c readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.errors import UsageError
from darkhaloscope.sim.build import simulate_tier
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.batch import decode_tier_batch
from darkhaloscope.stamps.counts import class_counts, one_class_splits
from darkhaloscope.stamps.schema import INJECTION_METADATA_COLUMNS, SPLITS
from darkhaloscope.stamps.tier import open_tier

FAST = SimConfig(supersample=2, rows_per_file=16)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _table(root: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(root.rglob("*.parquet"))])


def test_cli_tier_has_both_classes_everywhere_and_reads_back(tmp_path):
    rc = main(["simulate", "--out", str(tmp_path), "--tier", "debug", "--rows", "40", "--seed", "3",
               "--workers", "1", "-q", "--supersample", "2", "--rows-per-file", "16"])
    assert rc == 0
    root = tmp_path / "debug"
    tier = open_tier(str(root))
    assert sorted(tier.splits()) == sorted(SPLITS)
    counts = class_counts(tier)
    assert one_class_splits(counts, tier.splits()) == []
    for s in SPLITS:
        assert counts[s][0] >= 1 and counts[s][1] >= 1
    manifest = json.loads((root / "manifest.json").read_text())
    assert sum(c["controls"] + c["injections"] for c in manifest["counts"].values()) == 40
    assert manifest["seed"] == 3 and manifest["version"]
    for b in tier.iter_batches(["stamp_npz", "is_control"], split="train"):
        sb = decode_tier_batch(b)
        assert sb.images.shape[1:] == (3, 64, 64) and np.isfinite(sb.images).all()
    t = _table(root)
    assert "region_split" not in t.column_names  # the split is the hive partition only
    ctrl = np.asarray(t["is_control"]) == 1
    for c in ("theta_e_arcsec", "arc_snr", "src_dmag", "magnification"):
        vals = t[c].to_pylist()
        assert all(v is None for v, k in zip(vals, ctrl) if k)  # controls: null injection metadata
        assert all(v is not None and np.isfinite(v) for v, k in zip(vals, ctrl) if not k)
    for c in ("psf_fwhm_used_r", "psfdepth_r", "host_id", "stamp_id"):
        assert t[c].null_count == 0
    assert set(INJECTION_METADATA_COLUMNS) - {"injection_seed"} <= set(t.column_names)


def test_tiny_tier_gets_controls_in_every_split(tmp_path):
    m = simulate_tier(tmp_path, "t", rows=6, seed=0, config=SimConfig(supersample=1, controls=0.9))
    for s in SPLITS:
        assert m["counts"][s]["controls"] == 1 and m["counts"][s]["injections"] == 1


def test_no_host_in_two_splits_with_reused_hosts(tmp_path):
    cfg = SimConfig(supersample=1, rows_per_file=30, host_reuse=4)
    simulate_tier(tmp_path, "t", rows=60, seed=5, config=cfg)
    tier = open_tier(str(tmp_path / "t"))
    t = tier.read_columns(["host_id"])
    split_of: dict[str, set] = {}
    for h, s in zip(t["host_id"].to_pylist(), t["region_split"].to_pylist()):
        split_of.setdefault(h, set()).add(s)
    assert max(len(v) for v in split_of.values()) == 1
    assert max(list(t["host_id"].to_pylist()).count(h) for h in split_of) > 1  # hosts really reused


@pytest.mark.slow  # three builds: ~2.5 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_same_seed_byte_identical_and_different_seed_differs(tmp_path):
    a = simulate_tier(tmp_path / "a", "t", rows=24, seed=7, config=FAST)
    simulate_tier(tmp_path / "b", "t", rows=24, seed=7, config=FAST, workers=2)
    simulate_tier(tmp_path / "c", "t", rows=24, seed=8, config=FAST)
    fa, fb, fc = (_files(tmp_path / x / "t") for x in "abc")
    assert fa == fb and len(fa) == len(a["files"])
    assert fa != fc


@pytest.mark.slow  # three builds: ~2.5 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_shards_concatenate_to_the_unsharded_tier(tmp_path):
    full = _files(Path(simulate_tier(tmp_path / "full", "t", rows=40, seed=2, config=FAST) and
                       tmp_path / "full" / "t"))
    shards: dict[str, bytes] = {}
    for k in range(3):
        m = simulate_tier(tmp_path / "sh", "t", rows=40, seed=2, config=FAST, shard=f"{k}/3")
        assert m["shard"] == f"{k}/3"
    shards = _files(tmp_path / "sh" / "t")
    assert shards == full
    assert len(list((tmp_path / "sh" / "t").glob("manifest-shard-*.json"))) == 3


def test_interrupted_run_leaves_no_partial_file(tmp_path, monkeypatch):
    import darkhaloscope.sim.build as build

    real = build.render_row
    calls = {"n": 0}

    def flaky(ctx, i, keep_ctrl=False):
        calls["n"] += 1
        if calls["n"] == 20:  # inside the second chunk
            raise KeyboardInterrupt
        return real(ctx, i, keep_ctrl)

    monkeypatch.setattr(build, "render_row", flaky)
    with pytest.raises(KeyboardInterrupt):
        simulate_tier(tmp_path, "t", rows=40, seed=1, config=FAST)
    root = tmp_path / "t"
    leftovers = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in leftovers if p.name.endswith(".tmp")]
    assert not (root / "manifest.json").exists()
    parts = [p for p in leftovers if p.suffix == ".parquet"]
    assert {p.name for p in leftovers} - {p.name for p in parts} == {"simulate-plan.json"}  # the build's fingerprint
    for p in parts:  # whatever was written is whole and readable
        assert pq.read_table(p).num_rows > 0
    assert len(parts) >= 1  # the first chunk finished before the interrupt


@pytest.mark.slow  # three builds: ~2.5 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_resume_continues_an_interrupted_build_byte_identically(tmp_path, monkeypatch):
    """A killed build (here: interrupted inside its third chunk) continued with --resume keeps its whole
    chunks untouched and ends byte-identical to an uninterrupted build, manifest included."""
    import darkhaloscope.sim.build as build

    fresh = simulate_tier(tmp_path / "fresh", "t", rows=40, seed=3, config=FAST)
    real, calls = build.render_row, {"n": 0}

    def flaky(ctx, i, keep_ctrl=False):
        calls["n"] += 1
        if calls["n"] == 36:  # warm-up row + 2 chunks of 16 done, inside the third
            raise KeyboardInterrupt
        return real(ctx, i, keep_ctrl)

    monkeypatch.setattr(build, "render_row", flaky)
    with pytest.raises(KeyboardInterrupt):
        simulate_tier(tmp_path / "cut", "t", rows=40, seed=3, config=FAST)
    monkeypatch.setattr(build, "render_row", real)
    root = tmp_path / "cut" / "t"
    kept = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    assert kept and not (root / "manifest.json").exists()
    with pytest.raises(UsageError, match="--resume continues it"):  # without --resume: refused, says how
        simulate_tier(tmp_path / "cut", "t", rows=40, seed=3, config=FAST)
    with pytest.raises(UsageError, match="seed: was 3, now 4"):  # another build: refused, names the difference
        simulate_tier(tmp_path / "cut", "t", rows=40, seed=4, config=FAST, resume=True)
    with pytest.raises(UsageError, match="config.supersample"):
        simulate_tier(tmp_path / "cut", "t", rows=40, seed=3, config=SimConfig(supersample=1, rows_per_file=16),
                      resume=True)
    m = simulate_tier(tmp_path / "cut", "t", rows=40, seed=3, config=FAST, resume=True)
    assert m["chunks_resumed"] == 2 and m["rows_rendered"] == 8
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the whole chunks were not rewritten
    assert _files(root) == _files(tmp_path / "fresh" / "t")
    strip = lambda d: {k: v for k, v in d.items() if k not in ("command", "elapsed_s")}  # noqa: E731
    assert strip(json.loads((root / "manifest.json").read_text())) == strip(
        json.loads((tmp_path / "fresh" / "t" / "manifest.json").read_text()))
    assert fresh["files"] == m["files"]


def test_resume_without_an_earlier_build_is_refused(tmp_path):
    rc = main(["simulate", "--out", str(tmp_path), "--tier", "t", "--rows", "12", "--seed", "2", "-q", "--resume"])
    assert rc == 2 and not (tmp_path / "t").exists()
    with pytest.raises(UsageError, match="contradict"):
        simulate_tier(tmp_path, "t", rows=12, seed=2, config=FAST, resume=True, overwrite=True)


def test_refuses_to_overwrite_existing_files(tmp_path, capsys):
    """A finished tier is called finished (issue #25 4.9: it was called "an interrupted build")."""
    simulate_tier(tmp_path, "t", rows=12, seed=1, config=FAST)
    before = _files(tmp_path / "t")
    argv = ["simulate", "--out", str(tmp_path), "--tier", "t", "--rows", "12", "-q", "--supersample", "2",
            "--rows-per-file", "16"]
    assert main([*argv, "--seed", "2"]) == 2 and _files(tmp_path / "t") == before
    err = capsys.readouterr().err
    assert "a finished build of other arguments" in err and "interrupted" not in err
    assert main([*argv, "--seed", "1"]) == 2 and _files(tmp_path / "t") == before
    assert "a finished build of these same arguments: use it as it is" in capsys.readouterr().err


def test_overwrite_replaces_the_whole_tier(tmp_path):
    simulate_tier(tmp_path, "t", rows=24, seed=1, config=FAST)  # 5 files: 2 more than the 12-row build's 3
    m = simulate_tier(tmp_path, "t", rows=12, seed=2, config=FAST, overwrite=True)
    on_disk = sorted(str(p.relative_to(tmp_path / "t")) for p in (tmp_path / "t").rglob("*.parquet"))
    assert on_disk == m["files"] and _table(tmp_path / "t").num_rows == 12


def test_band_subset_and_gaussian_psf(tmp_path):
    from darkhaloscope.stamps.codec import decode_batch

    cfg = SimConfig(supersample=1, bands=("g", "r"), psf="gaussian")
    simulate_tier(tmp_path, "gr", rows=6, seed=1, config=cfg)
    t = _table(tmp_path / "gr")
    assert "psf_fwhm_used_r" in t.column_names and "psf_fwhm_used_z" not in t.column_names
    assert t["psf_moffat_beta"].null_count == 6  # no Moffat beta for a Gaussian PSF
    imgs = decode_batch(t["stamp_npz"], bands=("g", "r")).images
    assert imgs.shape == (6, 2, 64, 64) and np.isfinite(imgs).all()
    with pytest.raises(Exception, match="image_z"):
        decode_batch(t["stamp_npz"])  # no z band stored


def test_stamps_are_stored_in_zstd_parquet_unless_deflated_and_decode_the_same(tmp_path):
    """Default: npz members stored, the Parquet file zstd-compressed (the same size on disk as deflated
    members, ~5x cheaper to write: RESULTS.md); `npz_deflate` writes the Phase 4c tiers' deflated members."""
    import io
    import zipfile

    from darkhaloscope.stamps.codec import decode_batch

    tiers = {}
    for deflate in (False, True):  # (deflated: snappy, the files of the builds before, byte for byte)
        simulate_tier(tmp_path / f"deflate{int(deflate)}", "t", rows=8, seed=1,
                      config=SimConfig(supersample=1, pair=True, npz_deflate=deflate))
        root = tmp_path / f"deflate{int(deflate)}" / "t"
        files = sorted(root.rglob("*.parquet"))
        meta = pq.ParquetFile(files[0]).metadata
        assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == \
            {"SNAPPY" if deflate else "ZSTD"}
        t = _table(root)
        methods = {m.compress_type for b in t["stamp_npz"].to_pylist() + t["ctrl_stamp_npz"].to_pylist()
                   if b is not None for m in zipfile.ZipFile(io.BytesIO(b)).infolist()}
        assert methods == {zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED}
        tiers[deflate] = (t, sum(p.stat().st_size for p in files))
    (stored, stored_bytes), (deflated, deflated_bytes) = tiers[False], tiers[True]
    assert stored.drop(["stamp_npz", "ctrl_stamp_npz"]).equals(deflated.drop(["stamp_npz", "ctrl_stamp_npz"]))
    assert np.array_equal(decode_batch(stored["stamp_npz"]).images, decode_batch(deflated["stamp_npz"]).images)
    assert stored_bytes < 1.05 * deflated_bytes


def test_a_build_from_before_stored_stamps_resumes_with_npz_deflate(tmp_path, capsys):
    """An interrupted build whose fingerprint predates `npz_deflate` deflated its stamps: `--resume` continues it
    with `--npz_deflate=true`, and without it names the difference."""
    argv = ["simulate", "--out", str(tmp_path), "--tier", "t", "--rows", "12", "--seed", "2", "--workers", "1",
            "-q", "--supersample=1", "--rows-per-file", "4", "--npz_deflate=true"]
    assert main(argv) == 0
    root = tmp_path / "t"
    whole = _files(root)
    plan = json.loads((root / "simulate-plan.json").read_text())
    del plan["config"]["npz_deflate"]  # as written before the setting existed
    (root / "simulate-plan.json").write_text(json.dumps(plan))
    (root / "manifest.json").unlink()
    last = max(root.rglob("part-00002.parquet"))
    last.unlink()  # the interrupted build had not written its last chunk
    assert main(argv[:-1] + ["--resume"]) == 2
    assert "config.npz_deflate: was True, now False" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0 and _files(root) == whole
