"""`dhs candidates`: look at the top-scored stamps. An HTML page (self-contained) + Markdown + JSON and one
g/r/z PNG composite per candidate, with its score, ids and metadata (every string escaped: data is data).

    dhs candidates scores.parquet --top 50 --out cands/       # stamps read from the data `dhs score` recorded
    dhs candidates scores.parquet --top 50 --out cands/ --data TIER_OR_CUTOUT_FOLDER
    dhs candidates CUTOUT_FOLDER --top 50 --out cands/        # a folder of npz / FITS cutouts, no scores

Candidates are ranked by logit (float32 probabilities saturate at 1.0), unscored rows left out. PNG names
come from the rank, never from the data; stamp paths recorded in the scores file must stay inside the
data folder. Every file is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from darkhaloscope.common.report import Figure, Report, Section, Table, fmt_num, write_report
from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.fileio import atomic_path, remove_stale
from darkhaloscope.score.scoresfile import read_provenance, select_split
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, SPLIT_COLUMN, STAMP_SIZE

PNG_UPSCALE = 3  # each 64x64 stamp is drawn as 192x192 px (nearest neighbour)
SHOWN = ("score", "logit", "label", "row_id", "region_split", "source_file", "source_row")  # always first
HIDDEN_PREFIXES = ("img_",)  # image statistics `dhs score` adds: not shown


def _rank(path: Path, split: str) -> tuple[list[dict], str | None, str]:
    """Every scored row of `split` (select_split's rule: 'auto' is the test split when the file has one), best
    first (dicts of its shown columns), the data the file recorded, and which rows those are."""
    if not path.is_file():
        raise MissingInputError(f"{path}: no such scores file; give the parquet file `dhs score --out` wrote, or a folder "
                         "of npz / FITS cutouts")
    try:
        pf = pq.ParquetFile(path)
        t = pf.read()
    except Exception as e:  # pyarrow raises several types for a non-parquet file
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})".splitlines()[0]) from None
    if "score" not in t.column_names or "source_file" not in t.column_names:
        raise DataError(f"{path}: missing column(s) {', '.join(c for c in ('score', 'source_file') if c not in t.column_names)};"
                        " give a scores file written by `dhs score`")
    data = read_provenance(pf.schema_arrow, path).get("data")
    t, note, _ = select_split(t, split, path)
    key = "logit" if "logit" in t.column_names else "score"
    value = np.asarray(t[key].to_numpy(zero_copy_only=False), np.float64)
    order = [int(i) for i in np.argsort(-np.where(np.isfinite(value), value, -np.inf), kind="stable")
             if np.isfinite(value[i])]
    cols = [c for c in SHOWN if c in t.column_names] + \
        [c for c in t.column_names if c not in SHOWN and not c.startswith(HIDDEN_PREFIXES) and c != "decode_error"]
    rows = t.select(cols).take(order).to_pylist() if order else []
    return rows, data, note


def _folder_rows(folder: Path) -> list[dict]:
    from darkhaloscope.score.sources import CutoutFolderSource

    src = CutoutFolderSource(str(folder))
    return [{"source_file": p.relative_to(src.root).as_posix(), "source_row": 0} for p in src.files]


def _fetch(data: str, rows: list[dict], s3=None) -> np.ndarray:
    from darkhaloscope.score.sources import open_source
    from darkhaloscope.stamps.fs import is_s3

    if not is_s3(data) and not Path(data).exists():
        raise MissingInputError(f"the scored data {data} is not here; point --data at the tier or cutout folder")
    src = open_source(data, s3)  # a cutout folder refuses source_file paths that leave it
    images = src.fetch([str(r["source_file"]) for r in rows], [int(r["source_row"] or 0) for r in rows])
    for r in rows:  # a cutout that does not decode stays a row, with its reason (its composite is blank)
        why = getattr(src, "fetch_errors", {}).get(str(r["source_file"]))
        if why:
            r["not_decoded"] = why
    return images


def write_png(image: np.ndarray, path: Path) -> Path:
    """One g/r/z composite (stamps.display.lupton_rgb, the stamp's own sky noise) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from darkhaloscope.stamps.display import lupton_rgb, stamp_noise

    rgb = lupton_rgb(image, stamp_noise(image))[::-1]  # row 0 at the bottom, as in the galleries (origin lower)
    rgb = np.kron(rgb, np.ones((PNG_UPSCALE, PNG_UPSCALE, 1)))
    with atomic_path(path) as tmp:
        plt.imsave(tmp, rgb, format="png")
    return path


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return fmt_num(v, 5)
    return str(v)


def write_candidates(scores: str | Path, out: str | Path, top: int, *, data: str | None = None, s3=None,
                     run: dict | None = None, split: str = "auto") -> dict[str, Path]:
    """The top-`top` candidates of SCORES' `split` (auto: the test split when it has one; or the first cutouts
    of a folder) -> OUT/candidates.{html,md,json} and OUT/png/rank_NNNN.png (those of an earlier, longer
    list removed). Returns the written paths."""
    if top < 1:
        raise UsageError(f"--top {top}: give a number of candidates >= 1")
    scores, out = Path(scores), Path(out)
    if scores.is_dir():
        rows, data, what = _folder_rows(scores)[:top], str(scores), f"the first {top} cutouts of {scores} (no scores)"
    else:
        ranked, recorded, note = _rank(scores, split)
        rows, data = ranked[:top], data or recorded
        what = f"the {min(top, len(ranked)):,} highest-scored of {len(ranked):,} scored stamps in {scores}: {note}"
        seen = sum(r.get(SPLIT_COLUMN) in ("train", "val") for r in rows)
        if seen:
            what += (f"; {seen} of them from the train / val split, which a model trained on ranks high "
                     "(--split test for held-out rows)")
        if not data:
            raise UsageError(f"{scores} records no data to read the stamps from; give --data TIER_OR_CUTOUT_FOLDER")
    images = _fetch(data, rows, s3) if rows else np.zeros((0, 3, 64, 64), np.float32)
    sec = Section("candidates", "Candidates")
    sec.text(f"{what}; stamps read from {data}. Composites: g/r/z as blue/green/red, asinh stretch of each band's "
             f"S/N over its own sky noise; {STAMP_SIZE} px = {STAMP_SIZE * PIXEL_SCALE_ARCSEC:.1f}\".")
    first = [c for c in SHOWN if rows and c in rows[0]]
    header = ["rank", "stamp", *first, "metadata"]
    table, pngs = [], []
    for k, (row, img) in enumerate(zip(rows, images), 1):
        png = write_png(img, out / "png" / f"rank_{k:04d}.png")
        pngs.append(png)
        meta = "; ".join(f"{c} {_cell(v)}" for c, v in row.items() if c not in first)
        table.append([str(k), Figure(png, f"rank {k}")] + [_cell(row[c]) for c in first] + [meta])
    sec.blocks.append(Table(header, table))
    remove_stale(out / "png", "rank_*.png", keep=pngs)  # a rerun with a shorter list into the same --out
    doc = {"scores": str(scores), "data": data, "top": top,
           "candidates": [{"rank": k, "png": f"png/rank_{k:04d}.png", **row} for k, row in enumerate(rows, 1)]}
    rep = Report(f"Candidates: {scores.name}", headline=[what], sections=[sec], data=doc, run=run or {})
    return write_report(rep, out, "candidates")
