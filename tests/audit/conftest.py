"""Fixtures of the audit tests: one small tier made by `dhs simulate` per session, and `mutate` to make
deliberately broken copies of it with pyarrow."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.stamps.codec import decode_batch, encode_stamp

ROW_GROUP_ROWS = 32


@pytest.fixture(scope="session")
def sim_tier(tmp_path_factory) -> Path:
    """`dhs simulate`: 360 rows (train/val/test 70/15/15, half controls), paired controls, 3 files per split."""
    out = tmp_path_factory.mktemp("sim")
    rc = main(["simulate", "--out", str(out), "--tier", "fair", "--rows", "360", "--seed", "7", "--pair",
               "--rows-per-file", "120", "--set", f"row_group_rows={ROW_GROUP_ROWS}", "--workers", "1", "-q"])
    assert rc == 0
    return out / "fair"


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
