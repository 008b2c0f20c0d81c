"""Deliberately broken copies of a tier for the audit tests: `mutate` rewrites each file through a function;
`set_column` / `map_stamps` are the usual edits. (A uniquely named module: `from conftest import` is
ambiguous when several test folders have a conftest.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.stamps.codec import decode_batch, encode_stamp

ROW_GROUP_ROWS = 32  # row-group size of the session's simulated tier and of every mutated copy



def mutate(src: Path, dst: Path, fn: Callable[[pa.Table, str], pa.Table | None]) -> Path:
    """Copy tier `src` to `dst`, passing each file's table through `fn(table, relpath)` (None: unchanged)."""
    shutil.copytree(src, dst)
    for p in sorted(dst.rglob("*.parquet")):
        rel = p.relative_to(dst).as_posix()
        new = fn(pq.read_table(p), rel)
        if new is not None:
            pq.write_table(new, p, row_group_size=ROW_GROUP_ROWS)
    return dst


def set_column(t: pa.Table, name: str, values) -> pa.Table:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, t.schema.field(name).type)
    return t.set_column(t.schema.get_field_index(name), name, arr)


def map_stamps(t: pa.Table, fn: Callable[[int, np.ndarray, int], np.ndarray | bytes | None]) -> pa.Table:
    """Replace stamp i by fn(i, image (3, 64, 64), is_control) (an array, raw bytes, or None = keep)."""
    images = decode_batch(t["stamp_npz"]).images
    ctrl = t["is_control"].to_pylist()
    blobs = t["stamp_npz"].to_pylist()
    for i in range(t.num_rows):
        new = fn(i, images[i], ctrl[i])
        if new is not None:
            blobs[i] = new if isinstance(new, bytes) else encode_stamp(new)
    return set_column(t, "stamp_npz", pa.array(blobs, pa.binary()))
