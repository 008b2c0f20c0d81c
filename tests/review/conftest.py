"""Fixtures of the review tests: one `dhs demo --quick` per session (its tiers and run are reused by the
review tests), copies of its tier with planted faults, and one torch thread per test (on a shared 2-core
machine two intra-op threads oversubscribe and run a small CNN up to 8x slower)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from darkhaloscope.stamps.codec import decode_batch, encode_stamp


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory, request):
    """`dhs demo --quick` (with the DR10 hosts when present), run once; asserted in test_demo.py."""
    from darkhaloscope.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    hosts = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dr10_cutouts"
    argv = ["demo", "--out", str(out), "--quick", "--workers", "2"] + (["--real-hosts", str(hosts)] if hosts.is_dir() else [])
    rc = main(argv)
    (out / "exit_code").write_text(str(rc))
    yield out
    torch.set_num_threads(before)


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
