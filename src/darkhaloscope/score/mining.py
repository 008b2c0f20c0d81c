"""Hard-negative mining: `dhs mine`, and the before/after section of `dhs evaluate --before-mining`.

    dhs mine --checkpoint RUN/best.pt --data NEGATIVES --top 500 --out mined       # NEGATIVES: a tier
    dhs train --data TIER --out RUN2 --mined=mined --mined_repeat=2                # mixed into training
    dhs evaluate RUN2_scores.parquet --out R --before-mining RUN_scores.parquet    # FPR before / after

`mine_tier` scores the negatives of one split (default train: never mine the split you report on) with the
checkpoint, keeps the K highest-scoring (label 0 or unlabelled, usable cutouts; ties by position) and copies
those rows, stamps and all, into `OUT/region_split=<split>/part-00000.parquet` with `mined_score`,
`mined_logit`, `mined_rank`; `is_control` is 1. Their `stamp_id` is kept as `mined_stamp_id`, so the rows get
ids of their own in training (they may repeat rows of the training tier). The scores of every negative stay
in `OUT/_mined_scores.parquet`; `OUT/manifest.json` records the checkpoint, data, K and the score of the K-th.
Refused before any work (exit 2): a split that is not a plain folder name (`--split ../../X` never reaches a
path), an OUT that is the input tier, inside it or holding it, and an OUT already holding files (unless
`--overwrite`, which replaces only what a previous `dhs mine` wrote there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.fileio import atomic_path, atomic_write_text
from darkhaloscope.stamps.schema import LABEL_SOURCE_COLUMN, SPLIT_COLUMN, check_split_name

SCORES_NAME, MANIFEST_NAME, PART_NAME = "_mined_scores.parquet", "manifest.json", "part-00000.parquet"


def check_mine_destination(data: str, out: str, split: str | None, overwrite: bool) -> Path:
    """Refuse (UsageError) a split that is not a plain folder name, an OUT overlapping the input tier, and an
    OUT holding files without `overwrite`; with it, remove the files a previous `dhs mine` wrote (only those)."""
    from darkhaloscope.stamps.fs import is_s3

    if split is not None:
        try:
            check_split_name(split, "--split")
        except DataError as e:
            raise UsageError(str(e).replace("; fix the tier or drop the row", "; give a split of the tier")) from None
    if is_s3(out):
        raise UsageError(f"--out {out}: dhs mine writes a local folder; mine locally, then copy the folder up")
    root = Path(out)
    if not is_s3(data):
        src, dst = Path(data).resolve(), root.resolve()
        if dst == src or src in dst.parents or dst in src.parents:
            raise UsageError(f"--out {out} is the input tier {data}, inside it or holds it: mining would replace "
                             "the rows it reads; choose another --out")
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the mined tier")
    present = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if present and not overwrite:
        raise UsageError(f"--out {out} already holds {', '.join(present[:4])}{' ...' if len(present) > 4 else ''}; "
                         "pass --overwrite to replace a previous `dhs mine` output (or choose another --out)")
    if present:
        ours = [root / SCORES_NAME, root / MANIFEST_NAME, *root.glob(f"{SPLIT_COLUMN}=*/{PART_NAME}")]
        other = [p for p in root.rglob("*") if p.is_file() and p not in ours]
        if other:
            raise UsageError(f"--out {out} holds {other[0].relative_to(root)}, which `dhs mine` did not write; "
                             "--overwrite replaces only a previous mine output: choose another --out")
        for p in ours:
            p.unlink(missing_ok=True)
        for d in root.glob(f"{SPLIT_COLUMN}=*"):
            d.rmdir()
    return root


def write_negative_rows(tier, data: str, files: list[str], rows: list[int], root: Path, split: str,
                        extra: dict[str, pa.Array]) -> int:
    """Copy rows (tier file relpath, row) of `tier`, stamps and all, in this order, into
    ROOT/region_split=SPLIT/part-00000.parquet as hard negatives: `is_control` 1, `stamp_id` kept as
    `mined_stamp_id`, the `extra` columns appended. `dhs mine` and `dhs grade export --negatives-tier` write
    their tiers with it; `dhs train --mined` reads them."""
    by_rel = {f.relpath: f for f in tier.files}
    per_file: dict[str, list[tuple[int, int]]] = {}
    for rank, (rel, row) in enumerate(zip(files, rows)):
        per_file.setdefault(rel, []).append((rank, int(row)))
    parts, ranks = [], []
    for rel, items in per_file.items():  # one file in memory at a time
        if rel not in by_rel:
            raise DataError(f"{data}: scored file {rel} is no longer in the tier; was it rewritten? Score again")
        whole = pq.ParquetFile(by_rel[rel].path, filesystem=tier.fs).read()
        parts.append(whole.take(pa.array([r for _, r in items], pa.int64())))
        ranks += [k for k, _ in items]
    table = pa.concat_tables(parts, promote_options="permissive").take(pa.array(np.argsort(ranks), pa.int64()))
    if SPLIT_COLUMN in table.column_names:
        table = table.drop_columns([SPLIT_COLUMN])
    if "stamp_id" in table.column_names:
        table = table.rename_columns(["mined_stamp_id" if c == "stamp_id" else c for c in table.column_names])
    ones = pa.array(np.ones(len(files), np.int32))
    table = (table.drop_columns([LABEL_SOURCE_COLUMN]) if LABEL_SOURCE_COLUMN in table.column_names else table) \
        .append_column(LABEL_SOURCE_COLUMN, ones)
    for name, values in extra.items():
        table = table.drop_columns([name]) if name in table.column_names else table
        table = table.append_column(name, values)
    with atomic_path(root / f"{SPLIT_COLUMN}={split}" / PART_NAME) as tmp:
        pq.write_table(table, tmp, row_group_size=256)
    return table.num_rows


def mine_tier(checkpoint: str, data: str, top: int, out: str, *, split: str | None = "train", s3=None,
              progress: bool = False, argv: list[str] | None = None, overwrite: bool = False) -> dict:
    from darkhaloscope.config import load_config, run_info
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import score_data
    from darkhaloscope.stamps.tier import open_tier

    if top < 1:
        raise UsageError(f"--top {top}: must be >= 1")
    root = check_mine_destination(data, out, split, overwrite)
    tier = open_tier(data, s3)  # DataError for a folder without parquet: mining copies tier rows
    present = tier.splits() if split is not None else []
    if present and split not in present:  # (said before the output folder is made)
        raise UsageError(f"--split {split}: the tier {data} has no such split; its splits: {', '.join(present)}")
    scores_path = root / SCORES_NAME
    cfg = load_config(ScoreConfig, None, {"cutout_ok_only": True})
    score_data(checkpoint, data, scores_path, cfg, s3=s3, split=split, progress=progress)
    t = pq.read_table(scores_path, columns=["logit", "score", "label", "source_file", "source_row"])
    logit = np.asarray(t["logit"].to_numpy(zero_copy_only=False), float)
    label = t["label"].to_pylist()
    neg = np.flatnonzero(np.asarray([lab != 1 for lab in label]) & np.isfinite(logit))
    if not len(neg):
        raise DataError(f"{data}: no scored negatives{f' in split {split}' if split else ''} to mine")
    pick = neg[np.argsort(-logit[neg], kind="stable")[:top]]
    files, rows = t["source_file"].to_pylist(), t["source_row"].to_pylist()
    score = np.asarray(t["score"].to_numpy(zero_copy_only=False), float)
    write_negative_rows(tier, data, [files[i] for i in pick], [int(rows[i]) for i in pick], root, split or "train",
                        {"mined_logit": pa.array(logit[pick]), "mined_score": pa.array(score[pick]),
                         "mined_rank": pa.array(np.arange(len(pick), dtype=np.int32))})
    info = run_info(argv)
    manifest = {"checkpoint": str(checkpoint), "data": data, "split": split, "top": top, "rows": len(pick),
                "negatives_scored": int(len(neg)), "kth_logit": float(logit[pick[-1]]),
                "scores": scores_path.name, "version": info["version"], "command": info["command"]}
    atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
