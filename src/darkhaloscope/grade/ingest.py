"""Candidates for grading from a scores file: the best-scored rows, their ids, score, split, metadata and the
place of their pixels (the data `dhs score` recorded + source_file + source_row), ready for GradeStore.

Ranked by logit when the file has it (float32 probabilities saturate at 1.0), rows that failed to score left
out. Refused: a file without ids (`row_id`), with null or duplicate ids (one error line naming the file and
the first duplicate), or without the stamp locator columns.

    rows = read_candidates("scores.parquet", top=500)       # GradeStore.add_candidates calls this
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.score.scoresfile import (IMAGE_STAT_PREFIX, LOGIT_COLUMN, ROW_ID_COLUMN, SCORE_COLUMN,
                                            SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN, read_scores_table)
from darkhaloscope.stamps.schema import SPLIT_COLUMN

NOT_METADATA = {SCORE_COLUMN, ROW_ID_COLUMN, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN, SPLIT_COLUMN,
                "decode_error"}
HASH_CHARS = 16  # hex characters kept of a checkpoint's sha256 (collisions are no concern at 64 bits)


def read_candidates(path: str | Path, *, top: int | None = None, data: str | None = None) -> list[dict]:
    """The `top` best rows of the scores file at `path` (all when None) as GradeStore candidate dicts.
    `data` replaces the data folder the file recorded (it moved)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path = Path(path)
    if top is not None and int(top) < 1:
        raise UsageError(f"--top {top}: give a positive number of candidates")
    table, prov = read_scores_table(path)
    need = [c for c in (SCORE_COLUMN, ROW_ID_COLUMN, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN) if c not in table.column_names]
    if need:
        raise DataError(f"{path}: no {', '.join(need)} column(s): grading needs an id per row and where its stamp "
                        "is; give a scores file written by `dhs score`")
    ids = table[ROW_ID_COLUMN].cast(pa.string())
    if ids.null_count:
        first = int(np.flatnonzero(~pc.is_valid(ids).to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: row {first} has no {ROW_ID_COLUMN} ({ids.null_count} rows without one); every "
                        "candidate needs an id: re-run `dhs score`")
    counts = pc.value_counts(ids)
    dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(dup):
        first = _first_duplicate(ids.to_pylist())
        raise DataError(f"{path}: duplicate {ROW_ID_COLUMN} {json.dumps(first)} ({len(dup)} id(s) repeated); "
                        "candidate ids must be unique: score each stamp once (or give the stamps a stamp_id)")
    data = data if data is not None else prov.get("data")
    key = LOGIT_COLUMN if LOGIT_COLUMN in table.column_names else SCORE_COLUMN
    value = table[key].cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    finite = np.isfinite(value)
    order = np.flatnonzero(finite)[np.argsort(-value[finite], kind="stable")]
    if top is not None:
        order = order[:int(top)]
    meta_cols = [c for c in table.column_names if c not in NOT_METADATA and not c.startswith(IMAGE_STAT_PREFIX)]
    rows = table.take(pa.array(order, pa.int64())).to_pylist()
    ckpt = checkpoint_hash(prov)
    out = []
    for rank, r in enumerate(rows, start=1):
        meta = {c: _plain(r.get(c)) for c in meta_cols if r.get(c) is not None}
        out.append({"candidate_id": r[ROW_ID_COLUMN], "score": _plain(r[SCORE_COLUMN]), "rank": rank,
                    "checkpoint_hash": ckpt, "split": r.get(SPLIT_COLUMN), "metadata": meta, "data": data,
                    "source_file": r[SOURCE_FILE_COLUMN], "source_row": r[SOURCE_ROW_COLUMN],
                    "scores_file": str(path), "ra": _float_or_none(meta.get("ra")), "dec": _float_or_none(meta.get("dec"))})
    return out


def checkpoint_hash(provenance: dict) -> str | None:
    """sha256 (first HASH_CHARS hex) of the checkpoint file the scores came from when it is here, else of what
    the scores file says about it (path, model, epoch, step); None when it records no checkpoint."""
    ckpt = provenance.get("checkpoint")
    if not ckpt:
        return None
    if isinstance(ckpt, str) and Path(ckpt).is_file():
        h = hashlib.sha256()
        with open(ckpt, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:HASH_CHARS]
    ident = {k: provenance.get(k) for k in ("checkpoint", "model", "epoch", "step")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:HASH_CHARS]


def _first_duplicate(ids: list[str]) -> str:
    seen = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    raise AssertionError("no duplicate")  # only called when value_counts found one


def _plain(v):
    """A JSON-safe value: non-finite floats become None, other non-JSON types their string."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def _float_or_none(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
