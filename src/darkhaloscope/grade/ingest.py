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
    ids = _cast(table, ROW_ID_COLUMN, pa.string(), path, "text")
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
    if data is not None and not isinstance(data, str):
        raise DataError(f"{path}: the data it records is {json.dumps(data)[:80]}, not a path; give the stamps' "
                        "folder or tier with --data")
    key = LOGIT_COLUMN if LOGIT_COLUMN in table.column_names else SCORE_COLUMN
    value = _cast(table, key, pa.float64(), path, "numbers").fill_null(np.nan).to_numpy(zero_copy_only=False)
    _check_source_rows(table, path)
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


def _cast(table, name: str, to, path: Path, what: str):
    """Column `name` as type `to`, or a DataError naming the file and column (text that is not UTF-8, a number
    column of text)."""
    import pyarrow as pa

    try:
        return table[name].cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(f"{path}: column {name} cannot be read as {what} ({str(e).splitlines()[0][:120]}); give a "
                        "scores file written by `dhs score`") from None


def _check_source_rows(table, path: Path) -> None:
    """source_row says which row of source_file holds the stamp: whole numbers >= 0, one per row."""
    import pyarrow as pa

    col = table[SOURCE_ROW_COLUMN]
    if not pa.types.is_integer(col.type):
        raise DataError(f"{path}: column {SOURCE_ROW_COLUMN} is {col.type}, not whole numbers; give a scores file "
                        "written by `dhs score`")
    rows = _cast(table, SOURCE_ROW_COLUMN, pa.int64(), path, "64-bit row numbers")
    values = rows.to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~np.asarray(rows.is_valid().to_numpy(zero_copy_only=False), bool)) if rows.null_count \
        else np.flatnonzero(values < 0)
    if len(bad):
        raise DataError(f"{path}: row {int(bad[0])} has {SOURCE_ROW_COLUMN} "
                        f"{'null' if rows.null_count else int(values[bad[0]])} ({len(bad)} such row(s)); each "
                        "candidate's stamp is row source_row (>= 0) of its source_file: re-run `dhs score`")


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
    if isinstance(v, int) and not isinstance(v, bool) and not -2 ** 63 <= v < 2 ** 63:
        return str(v)  # beyond SQLite's (and Arrow's int64) integers: kept as its digits
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def _float_or_none(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
