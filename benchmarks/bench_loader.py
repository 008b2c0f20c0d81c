"""Loader benchmark behind benchmarks/RESULTS.md (section `loader`): npz (deflate and stored) vs packed.

    python benchmarks/bench_loader.py --rows 2048 --work /tmp/dhs_bench_loader

Builds a 3-split tier of `--tier-rows` stamps written the way the Phase 4c users' were (`np.savez_compressed`,
and `np.savez` for the stored variant; Legacy Surveys DR10 sky noise g/r/z 0.0018/0.0030/0.0080 nmgy,
a Gaussian host, a ring on injections), packs it with `dhs pack` (none and zstd), then runs
`dhs bench loader` on each with 1 and 2 threads and prints one markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.cli import main as dhs
from darkhaloscope.train.loader_bench import bench_loader

SKY_SIGMA_NMGY = np.array([0.0018, 0.0030, 0.0080], np.float32)  # g, r, z per-pixel noise (DR10 cutouts)
HOST_PEAK_NMGY = np.array([0.02, 0.05, 0.08], np.float32)  # g, r, z host-centre flux per pixel


def stamp(rng: np.random.Generator, lens: bool) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64] - 32
    r = np.hypot(xx, yy)
    img = rng.normal(0.0, 1.0, (3, 64, 64)).astype(np.float32) * SKY_SIGMA_NMGY[:, None, None]
    img += HOST_PEAK_NMGY[:, None, None] * np.exp(-0.5 * (r / rng.uniform(2, 4)) ** 2).astype(np.float32)
    if lens:
        img += 0.02 * np.exp(-0.5 * ((r - rng.uniform(4, 11)) / 1.0) ** 2).astype(np.float32)
    return img


def npz_blob(img: np.ndarray, compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, image_g=img[0], image_r=img[1], image_z=img[2])
    return buf.getvalue()


def make_tier(root: Path, rows: int, compressed: bool, files_per_split: int = 2, row_group_rows: int = 256) -> Path:
    rng = np.random.default_rng(0)
    per_file = rows // 3 // files_per_split
    for split in ("train", "val", "test"):
        for k in range(files_per_split):
            is_control = np.tile([1, 0], per_file // 2 + 1)[:per_file].astype(np.int32)
            blobs = [npz_blob(stamp(rng, lens=not c), compressed) for c in is_control]
            t = pa.table({"stamp_id": [f"{split}-{k}-{i}" for i in range(per_file)],
                          "stamp_npz": pa.array(blobs, pa.binary()), "is_control": is_control,
                          "cutout_ok": np.ones(per_file, np.int32)})
            (root / f"region_split={split}").mkdir(parents=True, exist_ok=True)
            pq.write_table(t, root / f"region_split={split}" / f"part-{k:05d}.parquet", row_group_size=row_group_rows)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/dhs_bench_loader", help="scratch folder (rebuilt)")
    ap.add_argument("--tier-rows", type=int, default=3072, help="stamps in each generated tier")
    ap.add_argument("--rows", type=int, default=2048, help="stamps per timed pass")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--repeat", type=int, default=3, help="passes of each path, best kept")
    args = ap.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    deflate = make_tier(work / "npz_deflate", args.tier_rows, compressed=True)
    stored = make_tier(work / "npz_stored", args.tier_rows, compressed=False)
    with contextlib.redirect_stdout(io.StringIO()):  # the manifests: kept in the packed folders
        assert dhs(["pack", str(deflate), str(work / "packed"), "--json"]) == 0
        assert dhs(["pack", str(deflate), str(work / "packed_zstd"), "--compression", "zstd", "--json"]) == 0
    rows = []
    load = os.getloadavg()
    datasets = (("npz deflate (np.savez_compressed)", deflate), ("npz stored (np.savez)", stored),
                ("packed float16, uncompressed", work / "packed"), ("packed float16, zstd-1", work / "packed_zstd"))
    for name, data in datasets:
        for threads in (int(t) for t in args.threads.split(",")):
            for norm in ("numpy", "none"):
                res = bench_loader(str(data), rows=args.rows, threads=threads, norm=norm, repeat=args.repeat,
                                   naive_data=str(deflate) if "packed" in name else None)
                rows.append((name, threads, norm, res))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; rows per pass {args.rows}")
    print(f"load average before: {load}; after: {os.getloadavg()}")
    print("| data | threads | fast-path norm | stamps/s | MB/s | naive stamps/s | naive MB/s | ratio (wall) "
          "| stamps/CPU-s | naive stamps/CPU-s | ratio (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, threads, norm, r in rows:
        print(f"| {name} | {threads} | {norm} | {r['stamps_per_s']:.0f} | {r['mb_per_s']:.0f} | "
              f"{r['naive_stamps_per_s']:.0f} | {r['naive_mb_per_s']:.1f} | {r['ratio']:.1f}x | "
              f"{r['stamps_per_cpu_s']:.0f} | {r['naive_stamps_per_cpu_s']:.0f} | {r['cpu_ratio']:.1f}x |")
    (work / "results.json").write_text(json.dumps([dict(r, name=n) for n, _, _, r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
