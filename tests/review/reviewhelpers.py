"""Helpers of the review tests (a uniquely named module: `from conftest import` is ambiguous when several
test folders are collected together)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.stamps.codec import decode_batch, encode_stamp


def copy_tier(src: Path, dst: Path, fn) -> Path:
    """Copy tier `src` to `dst`, passing each file's table through fn(table) -> table."""
    shutil.copytree(src, dst)
    for p in sorted(dst.rglob("*.parquet")):
        pq.write_table(fn(pq.read_table(p)), p, row_group_size=128)
    return dst


def brighten_injection_centres(table: pa.Table, peak_nmgy: float = 0.5) -> pa.Table:
    """Plant the shortcut: add a Gaussian blob (sigma 1.5 px, peak `peak_nmgy` per pixel, ~7 nmgy in all) at the
    centre of every injection, in every band: separable without looking at any arc."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    blob = (peak_nmgy * np.exp(-0.5 * (xx ** 2 + yy ** 2) / 1.5 ** 2)).astype(np.float32)
    images = decode_batch(table["stamp_npz"]).images
    ctrl = table["is_control"].to_pylist()
    blobs = table["stamp_npz"].to_pylist()
    for i in range(table.num_rows):
        if ctrl[i] == 0:
            blobs[i] = encode_stamp(images[i] + blob)
    return table.set_column(table.schema.get_field_index("stamp_npz"), "stamp_npz", pa.array(blobs, pa.binary()))
