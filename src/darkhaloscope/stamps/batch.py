"""Turn a TierBatch (npz tier or packed tier) into float32 images + labels: the one decode entry point.

Used by the training loader, scoring, the audit's pixel checks and `dhs bench loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from darkhaloscope.errors import StampDecodeError
from darkhaloscope.stamps.codec import decode_batch
from darkhaloscope.stamps.schema import (BANDS, LABEL_COLUMN, LABEL_SOURCE_COLUMN, PACKED_STAMP_COLUMN,
                                          STAMP_COLUMN, STAMP_SIZE, label_from_is_control)
from darkhaloscope.stamps.tier import TierBatch


@dataclass
class StampBatch:
    images: np.ndarray  # (N, 3, 64, 64) float32 nanomaggies
    labels: np.ndarray | None  # (N,) int8: 1 lens/injection, 0 control; None when unknown
    valid: np.ndarray  # (N,) bool: False where the row failed to decode (only with on_error='mask')
    where: list[str]  # "file row i" for every row
    errors: dict[int, str] = field(default_factory=dict)


def stamp_column(columns) -> str:
    """The stamp column of a tier: packed float16 if present, else the Phase 4c npz."""
    return PACKED_STAMP_COLUMN if PACKED_STAMP_COLUMN in columns else STAMP_COLUMN


def labels_of(table: pa.Table) -> np.ndarray | None:
    if LABEL_COLUMN in table.column_names:
        return np.asarray(table[LABEL_COLUMN].to_numpy(zero_copy_only=False), dtype=np.int8)
    if LABEL_SOURCE_COLUMN in table.column_names:
        return label_from_is_control(table[LABEL_SOURCE_COLUMN])
    return None


def decode_packed(column: pa.ChunkedArray | pa.Array, out: np.ndarray | None = None) -> np.ndarray:
    """Packed float16 fixed-size-binary column -> (N, 3, 64, 64) float32 (near memory speed)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    nbytes = len(BANDS) * STAMP_SIZE * STAMP_SIZE * 2
    buf = column.buffers()[1]
    raw = np.frombuffer(buf, dtype=np.float16, count=(column.offset + n) * nbytes // 2)
    raw = raw[column.offset * nbytes // 2:].reshape(n, len(BANDS), STAMP_SIZE, STAMP_SIZE)
    if out is None:
        return raw.astype(np.float32)
    out[...] = raw
    return out


def decode_tier_batch(batch: TierBatch, *, on_error: str = "raise", threads: int = 1,
                      check_finite: bool = True) -> StampBatch:
    """Decode the stamps of `batch` and derive labels (via the schema's single label mapping)."""
    t = batch.table
    col = stamp_column(t.column_names)
    where = [batch.where(i) for i in range(t.num_rows)]
    if col == PACKED_STAMP_COLUMN:
        images = decode_packed(t[col])
        valid = np.isfinite(images).reshape(len(images), -1).all(axis=1) if check_finite else np.ones(len(images), bool)
        errors = {int(i): "NaN/Inf pixels" for i in np.flatnonzero(~valid)}
        if errors and on_error == "raise":
            i = min(errors)
            raise StampDecodeError(errors[i], where=where[i])
        images[~valid] = 0.0
    else:
        res = decode_batch(t[col].combine_chunks(), where=where, on_error=on_error, threads=threads,
                           check_finite=check_finite)
        images, valid, errors = res.images, res.valid, res.errors
    return StampBatch(images, labels_of(t), valid, where, errors)
