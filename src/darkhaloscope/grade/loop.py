"""The loop back from grades into training and evaluation: the N-graded candidates as a hard-negative tier
for `dhs train --mined`, and the A/B-graded ones as a cutout folder for `dhs evaluate --known-lenses`.

    dhs grade export --db grades.sqlite --out graded.parquet --negatives-tier graded_neg/ --lenses-folder graded_lenses/
    dhs train --data TIER --out RUN2 --mined=graded_neg --mined_repeat=4        # the graders' false positives
    dhs evaluate RUN2_scores.parquet --out R --known-lenses graded_lenses/ --checkpoint RUN2/best.pt

The negatives tier has `dhs mine`'s layout (score.mining.write_negative_rows: tier rows copied, stamps and all,
into region_split=train/part-00000.parquet, `is_control` 1) with `graded_candidate_id`, `graded_score`,
`graded_mean` and `graded_tag`; candidates of a val or test split are left out (training on them would leak
into what you report) and counted in its manifest.json. The lenses folder holds one npz per lens (named by
its rank, never by the data: `00000.npz` ...), `meta_tier` its consensus letter (the per-grade recall of
`--known-lenses`), `meta_candidate_id` its id, and `lenses.csv` mapping files to candidates.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.grade.consensus import LENS
from darkhaloscope.stamps.schema import NPZ_BAND_KEYS, NPZ_GRADE_KEY

TRAIN_SPLITS = (None, "train")  # candidates of these splits may become training negatives
NEGATIVES_MANIFEST = "manifest.json"


def _one_data(rows: list[dict], data: str | None, what: str) -> str:
    """The data folder every row's stamp is in (`data` overrides what the scores files recorded)."""
    if data is not None:
        return data
    found = sorted({r["data"] for r in rows if r["data"]})
    if len(found) != 1:
        raise UsageError(f"{what}: the candidates' stamps are in {len(found)} data sets "
                         f"({', '.join(found[:3]) or 'none recorded'}); give the one to read with --data")
    return found[0]


def _negatives_plan(rows: list[dict], out, data: str | None) -> tuple[list[dict], int, str]:
    """(the N-graded rows of training splits, how many of val/test were left out, their tier), or the refusal."""
    from darkhaloscope.stamps.tier import is_local_tier

    graded_n = [r for r in rows if r["grade"] == "N"]
    keep = [r for r in graded_n if r["split"] in TRAIN_SPLITS]
    left_out = len(graded_n) - len(keep)
    if not keep:
        raise DataError(f"--negatives-tier {out}: no N-graded candidate of a training split ({len(graded_n)} "
                        f"N-graded, {left_out} of them in val/test); grade more, or score the train split")
    src = _one_data(keep, data, f"--negatives-tier {out}")
    if not Path(src).exists() and "://" not in src:
        raise MissingInputError(f"{src}: the graded stamps' data is not here; point --data at the tier")
    if "://" not in src and not is_local_tier(src):
        raise DataError(f"{src}: not a parquet tier (a cutout folder?); a hard-negative tier copies tier rows: "
                        "pack the cutouts into a tier (`dhs cutouts`), score and grade that")
    return keep, left_out, src


def _lenses_plan(rows: list[dict], out, data: str | None) -> tuple[list[dict], str]:
    """(the A/B-graded rows, their data), or the refusal."""
    lenses = [r for r in rows if r["grade"] in LENS]
    if not lenses:
        raise DataError(f"--lenses-folder {out}: no candidate graded A or B yet")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"--lenses-folder {out} exists and is not an empty folder; choose another")
    src = _one_data(lenses, data, f"--lenses-folder {out}")
    if not Path(src).exists() and "://" not in src:
        raise MissingInputError(f"{src}: the graded stamps' data is not here; point --data at the tier or folder")
    return lenses, src


def check_loop_outputs(rows: list[dict], *, negatives_tier=None, lenses_folder=None, data: str | None = None,
                       overwrite: bool = False) -> None:
    """Every refusal of `write_negatives_tier` / `write_lenses_folder` that needs no writing, so that `dhs grade
    export` says it before writing its export (a refused loop output used to follow a written export)."""
    from darkhaloscope.score.mining import check_mine_destination

    if negatives_tier:
        _, _, src = _negatives_plan(rows, negatives_tier, data)
        if not overwrite:  # (with it, the destination's former files are removed when writing)
            check_mine_destination(src, str(negatives_tier), None, False)
    if lenses_folder:
        _lenses_plan(rows, lenses_folder, data)


def write_negatives_tier(rows: list[dict], out: str | Path, *, data: str | None = None, overwrite: bool = False,
                         argv: list[str] | None = None) -> dict:
    """The N-graded rows of `rows` (grade.export.graded_rows) copied from their tier as a `--mined` tier."""
    import pyarrow as pa

    from darkhaloscope.config import run_info
    from darkhaloscope.fileio import atomic_write_text
    from darkhaloscope.score.mining import check_mine_destination, write_negative_rows
    from darkhaloscope.stamps.tier import open_tier

    keep, left_out, src = _negatives_plan(rows, out, data)
    root = check_mine_destination(src, str(out), None, overwrite)
    tier = open_tier(src)
    extra = {"graded_candidate_id": pa.array([r["candidate_id"] for r in keep], pa.string()),
             "graded_score": pa.array([r["score"] for r in keep], pa.float64()),
             "graded_mean": pa.array([r["grade_mean"] for r in keep], pa.float64()),
             "graded_tag": pa.array([r["tag"] for r in keep], pa.string())}
    n = write_negative_rows(tier, src, [r["source_file"] for r in keep], [int(r["source_row"]) for r in keep],
                            root, "train", extra)
    info = run_info(argv)
    manifest = {"source": "dhs grade export", "data": src, "rows": n, "left_out_val_test": left_out,
                "version": info["version"], "command": info["command"]}
    atomic_write_text(root / NEGATIVES_MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def write_lenses_folder(rows: list[dict], out: str | Path, *, data: str | None = None) -> int:
    """The A/B-graded rows' stamps as npz cutouts with their grade (`meta_tier`); returns how many."""
    from darkhaloscope.fileio import atomic_path, atomic_write_text
    from darkhaloscope.score.sources import open_source

    lenses, src = _lenses_plan(rows, out, data)
    root = Path(out)
    source = open_source(src)
    images = source.fetch([r["source_file"] for r in lenses], [int(r["source_row"]) for r in lenses])
    bad = next(iter(getattr(source, "fetch_errors", {}).items()), None)  # a cutout folder gives zeros for these
    if bad is not None:
        raise DataError(f"{src}: graded cutout {bad[0]} no longer decodes ({bad[1]}); was the folder changed?")
    index = io.StringIO()
    w = csv.writer(index)
    w.writerow(["file", "candidate_id", "grade", "grade_mean", "score"])
    for i, (r, img) in enumerate(zip(lenses, images)):
        name = f"{i:05d}.npz"
        members = {k: np.ascontiguousarray(img[b], np.float32) for b, k in enumerate(NPZ_BAND_KEYS)}
        members |= {NPZ_GRADE_KEY: np.array(r["grade"]), "meta_candidate_id": np.array(r["candidate_id"])}
        with atomic_path(root / name) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **members)
        w.writerow([name, r["candidate_id"], r["grade"], r["grade_mean"], r["score"]])
    atomic_write_text(root / "lenses.csv", index.getvalue())
    return len(lenses)
