"""A folder of real-lens cutouts: one pixel scale and size (else one error line), duplicates merged and
said, noise-matched operating points in the report (evaluate.knownfolder, evaluate.knownlenses_report)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.evaluate.knownfolder import scan_cutout_folder


def write_lens(path, seed: int, *, sigma=(0.006, 0.010, 0.023), ra=150.0, dec=2.0, scale=0.262, size=72,
               flat_band: int | None = None):
    """A PS1-like cutout (HWC, nanomaggies): a round galaxy and a ring on noise of the given sigma."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size // 2
    r = np.hypot(x, y)
    img = rng.normal(0, 1, (size, size, 3)) * np.asarray(sigma)
    img += (0.2 * np.exp(-r / 2.5))[..., None] + (0.03 * np.exp(-0.5 * ((r - 7) / 1.2) ** 2))[..., None]
    if flat_band is not None:
        img[..., flat_band] = 0.0
    np.savez_compressed(path, cutout=img.astype(np.float32), meta_ra=np.float64(ra), meta_dec=np.float64(dec),
             meta_pixel_scale=np.float64(scale), meta_size=np.int64(size), meta_survey=np.str_("PS1-3pi (SLED)"),
             meta_galaxy_id=np.str_(path.stem))


def test_mixed_pixel_scales_or_sizes_are_one_error_line(tmp_path, capsys):
    write_lens(tmp_path / "a.npz", 0)
    write_lens(tmp_path / "b.npz", 1, ra=151.0, scale=0.25)
    with pytest.raises(Exception, match=r"mixed pixel scales: 0.262 \(1 files, e.g. a.npz\) and 0.25"):
        scan_cutout_folder(tmp_path)
    (tmp_path / "b.npz").unlink()
    write_lens(tmp_path / "c.npz", 2, ra=152.0, size=101)
    with pytest.raises(Exception, match="mixed cutout sizes"):
        scan_cutout_folder(tmp_path)
    # the CLI: exit 1 (data), one error line naming the sizes, before any work (no report folder made)
    rc = main(["evaluate", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "r"), "--known-lenses",
               str(tmp_path), "--checkpoint", "x.pt"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("error:") == 1 and "mixed cutout sizes: 72x72" in err
    assert not (tmp_path / "r").exists()


def test_an_empty_known_lenses_parquet_is_one_line_before_any_work(tmp_path, capsys):
    """(An ArrowInvalid traceback before, and the report's folder left behind; the message named the file twice.)"""
    (tmp_path / "known.parquet").write_bytes(b"")
    rc = main(["evaluate", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "r"), "--known-lenses",
               str(tmp_path / "known.parquet"), "--checkpoint", "x.pt"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("error:") == 1 and f"{tmp_path / 'known.parquet'}: cannot read parquet footer" in err
    assert not (tmp_path / "r").exists()


def test_positions_of_the_shared_layout_merge_duplicates(tmp_path):
    """The shared folders keep positions as meta_ra / meta_dec: a cutout 0.5" from another is the same lens."""
    import pyarrow as pa

    from darkhaloscope.score.sources import CutoutFolderSource, merged_duplicates

    write_lens(tmp_path / "a.npz", 0, ra=10.0, dec=-5.0)
    write_lens(tmp_path / "b.npz", 1, ra=10.0 + 0.5 / 3600, dec=-5.0)  # 0.5" away: the same lens
    write_lens(tmp_path / "c.npz", 2, ra=10.0 + 3.0 / 3600, dec=-5.0)  # 3" away: another lens
    meta = pa.concat_tables([b.meta for b in CutoutFolderSource(str(tmp_path)).batches()])
    assert meta["ra"].to_pylist() == pytest.approx([10.0, 10.0 + 0.5 / 3600, 10.0 + 3.0 / 3600])
    repeat, n, line = merged_duplicates(meta, {})
    assert repeat.tolist() == [False, True, False] and n == 1 and "1 cutout(s) within 1\" of an earlier one" in line


@pytest.mark.slow  # evaluates with the model probes and re-scores the controls (~1 min on a loaded box)
def test_known_lens_folder_noise_matched_in_the_report(demo, tmp_path):
    """With --checkpoint and the control stamps, the section reports recall at thresholds on the controls
    brought to the lenses' noise, labelled beside today's figure; a duplicate is merged and said; a lens with
    a flat band is named as not measurable."""
    folder = tmp_path / "lenses"
    folder.mkdir()
    for i in range(8):
        write_lens(folder / f"L{i}.npz", i, ra=20.0 + i * 0.01, sigma=(0.006, 0.010, 0.023) if i % 2 else
                   (0.003, 0.005, 0.012))
    shutil.copy(folder / "L0.npz", folder / "L0_again.npz")
    write_lens(folder / "flat.npz", 99, ra=30.0, flat_band=1)
    out = tmp_path / "report"
    assert main(["evaluate", str(demo["scores"]), "--out", str(out), "--checkpoint", str(demo["checkpoint"]),
                 "--data", str(demo["tier"]), "--known-lenses", str(folder), "--set", "n_boot=20",
                 "--set", "baselines=false", "--set", "probe_rows=20", "--set", "noise_match_bins=2",
                 "--set", "noise_match_min_per_bin=4",
                 "--set", "split=all"]) == 0
    m = json.loads((out / "metrics.json").read_text())["known_lenses"]
    assert m["n"] == 9 and m["duplicates_merged"] == 1  # L0_again.npz: the same bytes, read once by dhs score
    nm = m["noise_matched"]
    assert nm["unmeasured"] == ["flat.npz:0"] or nm["unmeasured"][0].startswith("flat")
    assert nm["recall"]["all"]["0.1"]["n"] == 8  # the flat one is out of the noise-matched figures only
    assert m["recall"]["all"]["0.01"]["n"] == 9
    # the controls were raised to each bin's noise (r band, within a few percent)
    np.testing.assert_allclose(np.array(nm["achieved_sigma"])[:, 1], np.array(nm["target_sigma"])[:, 1], rtol=0.05)
    md = (out / "report.md").read_text()
    assert "noise-matched, FPR 0.01" in md and "at FPR 0.01 of the evaluated controls" in md
    assert "Duplicates merged, each lens counted once" in md and "not measurable" in md and "flat" in md
    assert "Real lenses: recall" in md and "noise-matched (controls at the lens's own depth)" in md
    # all 60 controls: FPR 0.1 is resolvable (6 may pass), 0.01 is not and quotes no recall
    assert nm["recall"]["all"]["0.01"]["recall"] is None and nm["recall"]["all"]["0.1"]["resolvable"]
    found = sum(r["found_noise_matched"]["0.1"] for r in m["per_lens"])
    assert nm["recall"]["all"]["0.1"]["found"] == found and m["recall"]["all"]["0.01"]["recall"] is None
    # the demo tier's simulated lenses (all of them: fewer than noise_match_sim_lenses) at the lenses' depths
    sd = nm["simulated_at_depth"]
    n_lenses = int((pq.read_table(demo["scores"])["label"].to_numpy() == 1).sum())
    assert sd["n_simulated"] == n_lenses and sd["bin_weights"] == pytest.approx([0.5, 0.5])
    assert set(sd["expected"]) == {"0.01", "0.1"} and 0 <= sd["expected"]["0.1"]["recall"] <= 1
    assert "Simulated lenses at these real lenses' depths" in md and "simulated lenses at their depths" in md


def test_a_folder_scan_passes_over_empty_and_truncated_npz(tmp_path):
    """The scale / size check reads what it can; an undecodable file is left to `dhs score` (its decode_error)."""
    from darkhaloscope.evaluate.knownfolder import scan_cutout_folder

    write_lens(tmp_path / "L0.npz", 0)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "L0.npz").read_bytes()[:500])
    infos = {i.file: i for i in scan_cutout_folder(tmp_path)}
    assert infos["L0.npz"].size == (72, 72) and infos["empty.npz"].size is None and infos["cut.npz"].size is None


@pytest.mark.slow  # a whole evaluate with the known lenses scored (~15 s); fast cover: the folder scan above
def test_undecodable_lens_files_are_counted_as_not_scored(demo, tmp_path, capsys):
    """An empty and a truncated npz among the lenses: kept by `dhs score` with their decode_error, said in the
    headline and the section, counted nowhere else (they raised EOFError / BadZipFile out of evaluate)."""
    folder = tmp_path / "lenses"
    folder.mkdir()
    for i in range(3):
        write_lens(folder / f"L{i}.npz", i, ra=20.0 + i * 0.01)
    (folder / "empty.npz").write_bytes(b"")
    (folder / "cut.npz").write_bytes((folder / "L0.npz").read_bytes()[:500])
    out = tmp_path / "report"
    assert main(["evaluate", str(demo["scores"]), "--out", str(out), "--checkpoint", str(demo["checkpoint"]),
                 "--known-lenses", str(folder), "--set", "n_boot=20", "--set", "baselines=false",
                 "--set", "probe_rows=20", "--set", "noise_match_bins=1", "--set", "noise_match_controls=20",
                 "--set", "noise_match_sim_lenses=0", "--set", "split=all"]) == 0
    m = json.loads((out / "metrics.json").read_text())["known_lenses"]
    assert m["n"] == 3 and m["not_scored"] == 2
    assert "2 not scored" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "2 not scored (undecodable files: decode_error)" in md and "2 more lens file(s) could not be scored" in md
