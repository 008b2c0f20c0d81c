"""Make small Phase 4c tiers for tests without the simulator: random sky + a Gaussian host,
and for injections a faint ring. Not physics: `dhs simulate` is the reference tier builder.

A tier is a pure function of make_tier's arguments: each set of arguments is written once per process (a
template in a temporary folder, removed at exit) and later calls copy it (~3 ms against ~0.15 s CPU to draw and
encode 48 stamps; the hostile tests alone ask for ~50 such tiers)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.stamps.codec import encode_stamp

SPLITS = ("train", "val", "test")


def fake_stamp(rng: np.random.Generator, lens: bool, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size // 2
    r = np.hypot(xx, yy)
    img = rng.normal(0, [[[0.002]], [[0.003]], [[0.008]]], size=(3, size, size))
    img += np.array([0.02, 0.05, 0.08])[:, None, None] * np.exp(-0.5 * (r / 2.5) ** 2)
    if lens:
        radius = rng.uniform(4, 9)
        img += np.array([0.03, 0.03, 0.02])[:, None, None] * np.exp(-0.5 * ((r - radius) / 1.0) ** 2)
    return img.astype(np.float32)


_TEMPLATES: dict[tuple, Path] = {}
_TEMPLATE_DIR: list[Path] = []


def make_tier(root: Path, rows_per_split: int = 24, files_per_split: int = 2, row_group_size: int = 8,
              control_frac: float = 0.5, splits=SPLITS, seed: int = 0, hive: bool = True,
              stamp_fn=fake_stamp) -> Path:
    """Write `root/region_split=<s>/part-XXXXX.parquet` (or flat files with a region_split column): a copy of
    this process's template for the same arguments (files with fresh mtimes), or drawn anew for another
    `stamp_fn`."""
    if stamp_fn is not fake_stamp:
        return _write_tier(root, rows_per_split, files_per_split, row_group_size, control_frac, splits, seed, hive,
                           stamp_fn)
    key = (rows_per_split, files_per_split, row_group_size, control_frac, tuple(splits), seed, hive)
    if key not in _TEMPLATES:
        if not _TEMPLATE_DIR:
            _TEMPLATE_DIR.append(Path(tempfile.mkdtemp(prefix="dhs-test-tiers-")))
            atexit.register(shutil.rmtree, _TEMPLATE_DIR[0], True)
        _TEMPLATES[key] = _write_tier(_TEMPLATE_DIR[0] / f"t{len(_TEMPLATES)}", *key[:4], splits, seed, hive,
                                      fake_stamp)
    shutil.copytree(_TEMPLATES[key], root, copy_function=shutil.copyfile, dirs_exist_ok=True)
    return Path(root)


def _write_tier(root: Path, rows_per_split: int, files_per_split: int, row_group_size: int, control_frac: float,
                splits, seed: int, hive: bool, stamp_fn) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    sid = 0
    for s in splits:
        per_file = np.array_split(np.arange(rows_per_split), files_per_split)
        for k, idx in enumerate(per_file):
            n = len(idx)
            is_control = (rng.random(n) < control_frac).astype(np.int32) if control_frac not in (0, 1) else \
                np.full(n, int(control_frac), np.int32)
            if control_frac not in (0, 1):
                is_control[: n // 2] = 1
                is_control[n // 2:] = 0
                rng.shuffle(is_control)
            stamps = [encode_stamp(stamp_fn(rng, lens=not c)) for c in is_control]
            theta = np.where(is_control == 1, np.nan, rng.uniform(0.5, 3.0, n))
            t = pa.table({
                "stamp_id": [f"{s}-{sid + i:06d}" for i in range(n)],
                "host_id": [f"host-{s}-{sid + i:06d}" for i in range(n)],
                "stamp_npz": pa.array(stamps, pa.binary()),
                "is_control": pa.array(is_control, pa.int32()),
                "cutout_ok": pa.array(np.ones(n, np.int32)),
                "theta_e_arcsec": pa.array(theta, pa.float64()),
                "arc_snr": pa.array(np.where(is_control == 1, 0.0, rng.uniform(2, 50, n))),
                "psf_fwhm_used_r": pa.array(rng.uniform(1.0, 1.5, n)),
                "psfdepth_r": pa.array(rng.uniform(23.0, 23.8, n)),
                **({} if hive else {"region_split": [s] * n}),
            })
            sid += n
            folder = root / f"region_split={s}" if hive else root
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, folder / f"part-{s}-{k:05d}.parquet", row_group_size=row_group_size)
    return root
