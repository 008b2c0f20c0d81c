"""The scores file's writer: one parquet file (atomic), the provenance in its schema metadata, rows conformed to
the first batch's schema; per-rank files of a torchrun merged into one. Read back by `score.scoresfile`.
Exercise: `dhs score --checkpoint CKPT --data DATA --out scores.parquet`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.errors import DataError
from darkhaloscope.fileio import atomic_path
from darkhaloscope.score.scoresfile import METADATA_KEY, SCORE_COLUMN, read_provenance


def _conform(t: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Reorder / cast `t` to `schema`: absent columns become nulls, extra columns are dropped."""
    arrays = []
    for field in schema:
        if field.name in t.column_names:
            try:
                arrays.append(t[field.name].cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(f"{where}: column {field.name} is {t[field.name].type}, but {field.type} in the "
                                "first file; make the tier's schema consistent") from None
        else:
            arrays.append(pa.nulls(t.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_scores(batches: Iterator[pa.Table], out: Path, provenance: dict) -> tuple[int, int]:
    """Stream tables into one parquet file (atomic); returns (rows, rows with null score)."""
    rows = failed = 0
    writer = None
    first_error = None  # (source_file, source_row, reason) of the first stamp that did not decode
    with atomic_path(out) as tmp:
        try:
            for t in batches:
                if writer is None:
                    schema = t.schema.with_metadata({METADATA_KEY: json.dumps(provenance).encode()})
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                t = _conform(t, writer.schema, str(out))
                writer.write_table(t)
                rows += t.num_rows
                failed += t[SCORE_COLUMN].null_count
                if first_error is None and t[SCORE_COLUMN].null_count:
                    i = t[SCORE_COLUMN].is_null().to_pylist().index(True)
                    first_error = tuple(t[c][i].as_py() for c in ("source_file", "source_row", "decode_error"))
            if writer is None:
                raise DataError(f"no rows to score (empty data or shard); nothing written to {out}")
            if failed == rows:  # nothing a user can use: refuse rather than write a file of empty scores
                f, r, why = first_error
                raise DataError(f"none of the {rows:,} stamps decoded ({f} row {r}: {why}); nothing written to {out}: "
                                "every stamp needs the bands the model was trained on and finite pixels; "
                                "`dhs audit DATA` lists the bad rows")
        finally:
            if writer is not None:
                writer.close()
    return rows, failed


def weights_epoch(meta: dict) -> int | None:
    """The epoch the checkpoint's weights were validated at, counted from 0 as in metrics.csv and the training
    log (a checkpoint's own 'epoch' is the resume cursor: after epoch 7 it reads 8)."""
    best = meta.get("best") or {}
    if best.get("step") is not None and best.get("step") == meta.get("step"):
        return best.get("epoch")
    return meta.get("epoch")


def row_groups(files: Iterable[pq.ParquetFile]) -> Iterator[pa.Table]:
    """The row groups of `files`, in order, one at a time (memory stays one row group)."""
    for pf in files:
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i)


def merge_parts(parts: list[Path], out: Path, shard: tuple[int, int]) -> None:
    """Concatenate per-rank scores files into `out` (atomic) and remove the parts. `shard`: what the merged
    file holds (the --shard asked for; each part recorded its own rank's share)."""
    files = [pq.ParquetFile(p) for p in parts]
    write_scores(row_groups(files), out, read_provenance(files[0].schema_arrow) | {"shard": list(shard)})
    for p in parts:
        p.unlink()
