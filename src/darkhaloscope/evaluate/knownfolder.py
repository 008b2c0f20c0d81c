"""A folder of real-lens cutouts read before it is scored: one pixel scale and one size, its survey.

- `scan_cutout_folder`: each npz's pixel scale (`meta_pixel_scale`), cutout size and survey (`meta_survey`);
  FITS files are listed with what they say (no pixel scale read). A folder mixing pixel scales or sizes is refused in one `error:` line naming a
  file of each kind: a stamp resampled differently is a different image to the model, and its noise is not
  comparable either.
Duplicates (same bytes, same position) are merged by `dhs score` and `score.sources.merged_duplicates`.
Exercise: `dhs evaluate SCORES --known-lenses FOLDER --checkpoint CKPT`.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkhaloscope.errors import DataError


@dataclass(frozen=True)
class CutoutInfo:
    file: str  # relative to the folder, as the scores file's source_file
    pixel_scale: float | None
    size: tuple[int, ...] | None  # the cutout's (H, W)
    survey: str | None


def _scalar(z, key: str):
    if key not in z.files:
        return None
    v = z[key]
    return v.item() if v.shape == () else None


def _read(path: Path, rel: str) -> CutoutInfo:
    if path.suffix != ".npz":
        return CutoutInfo(rel, None, None, None)
    try:
        with np.load(path, allow_pickle=False) as z:
            cut = z["cutout"] if "cutout" in z.files else None
            scale, survey = _scalar(z, "meta_pixel_scale"), _scalar(z, "meta_survey")
            size = tuple(cut.shape[:2]) if cut is not None else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # empty, truncated, not a zip: no scale or size
        return CutoutInfo(rel, None, None, None)  # to check; `dhs score` keeps its row with the decode error

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    return CutoutInfo(rel, num(scale), size, None if survey is None else str(survey))


def scan_cutout_folder(folder: str | Path) -> list[CutoutInfo]:
    """Every cutout of `folder` (the files `dhs score` reads), refused when pixel scales or sizes are mixed."""
    from darkhaloscope.score.sources import CUTOUT_SUFFIXES
    from darkhaloscope.stamps.tier import cutout_files

    root = Path(folder)
    infos = [_read(p, p.relative_to(root).as_posix()) for p in cutout_files(root, CUTOUT_SUFFIXES)]
    for what, key in (("pixel scales", lambda i: None if i.pixel_scale is None else round(i.pixel_scale, 4)),
                      ("cutout sizes", lambda i: None if i.size is None else "x".join(map(str, i.size)))):
        kinds = Counter(key(i) for i in infos if key(i) is not None)
        if len(kinds) > 1:
            example = {k: next(i.file for i in infos if key(i) == k) for k in kinds}
            listed = " and ".join(f"{k} ({n} files, e.g. {example[k]})" for k, n in kinds.most_common())
            raise DataError(f"{folder}: mixed {what}: {listed}; a known-lens folder holds one pixel scale and one "
                            "size: put each kind in its own folder and evaluate them one at a time")
    return infos
