"""The cutout-folder reader behind `dhs score --data FOLDER` (score.sources.CutoutFolderSource): listed as
tiers are, without following symlinks; `fetch` reads only the files it lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tierfactory import fake_stamp

from darkhaloscope.errors import DataError
from darkhaloscope.score.sources import CutoutFolderSource
from darkhaloscope.stamps.codec import encode_stamp


def _stamp(path, seed):
    path.write_bytes(encode_stamp(fake_stamp(np.random.default_rng(seed), True)))


def test_symlinks_inside_the_folder_are_not_followed(tmp_path, capsys):
    folder, outside = tmp_path / "cutouts", tmp_path / "outside"
    folder.mkdir(), outside.mkdir()
    _stamp(folder / "c0.npz", 0)
    _stamp(outside / "secret.npz", 1)
    (folder / "link.npz").symlink_to(outside / "secret.npz")  # a file link out of the folder
    (folder / "again.npz").symlink_to(folder / "c0.npz")  # a second name for a listed file
    (folder / "sub").symlink_to(outside, target_is_directory=True)  # a folder link out of it
    src = CutoutFolderSource(str(folder))
    assert [p.name for p in src.files] == ["c0.npz"] and src.num_rows == 1
    assert "3 symlink(s)" in capsys.readouterr().err
    assert [f for b in src.batches() for f in b.source_file] == ["c0.npz"]
    assert src.fetch(["c0.npz"], [0]).shape == (1, 3, 64, 64)
    for name in ("link.npz", "again.npz", "sub/secret.npz"):
        with pytest.raises(DataError, match="leaves the cutout folder|symlinks are not followed"):
            src.fetch([name], [0])


def test_a_folder_of_only_symlinks_has_no_cutouts(tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    _stamp(tmp_path / "c0.npz", 0)
    (folder / "c0.npz").symlink_to(tmp_path / "c0.npz")
    with pytest.raises(DataError, match="no parquet tier and no"):
        CutoutFolderSource(str(folder))


def test_grade_comes_from_the_npz_meta_tier(tmp_path):
    """The six shared DR10 candidates are grade 'B' (their `meta_tier`); a stamp without one has a null grade."""
    from darkhaloscope.stamps.codec import npz_scalar

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dr10_cutouts"
    if not shared.is_dir():
        pytest.skip(f"real DR10 cutouts not found at {shared} (the ../shared folder is missing)")
    (b,) = CutoutFolderSource(str(shared)).batches()
    assert b.meta["grade"].to_pylist() == ["B"] * 6 and b.valid.all()
    _stamp(tmp_path / "c0.npz", 0)
    (b,) = CutoutFolderSource(str(tmp_path)).batches()
    assert b.meta["grade"].to_pylist() == [None]
    blob = (shared / "sample_cutout.npz").read_bytes()
    assert npz_scalar(blob, "meta_tier") == "B" and npz_scalar(blob, "meta_ra") == pytest.approx(359.85571289)
    assert npz_scalar(blob, "cutout") is None  # not 0-d (and larger than a scalar may be)
    assert npz_scalar(blob, "absent") is None and npz_scalar(b"not a zip", "meta_tier") is None


def test_a_huge_metadata_member_is_not_read(tmp_path):
    """A `meta_tier` that declares more than a scalar can hold (here 8 MB of zeros, deflated to ~8 kB) is None,
    refused from its declared size before inflating."""
    import io

    from darkhaloscope.stamps.codec import npz_scalar

    buf = io.BytesIO()
    np.savez_compressed(buf, meta_tier=np.zeros(1_000_000), meta_psfsize_r=1.3)
    assert npz_scalar(buf.getvalue(), "meta_tier") is None and npz_scalar(buf.getvalue(), "meta_psfsize_r") == 1.3
