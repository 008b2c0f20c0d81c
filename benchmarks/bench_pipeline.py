"""Benchmark of the training input pipeline: rows/s of StampStream (decode, shuffle window, batching) and
of StampStream + prepare_batch (annulus median/MAD + dihedral augmentation, on the CPU here), for a
Phase 4c npz tier and the same tier packed (`dhs pack`), with 0 / 1 / 2 DataLoader workers.

    python benchmarks/bench_pipeline.py                      # 8192 train rows, batch 256, workers 0,1,2
    python benchmarks/bench_pipeline.py --rows 16384 --workers 0,2 --json

The tier is made with tests/tierfactory.py (noise + host + ring: compresses like real stamps) in a
temporary folder. Each figure is one full epoch after one untimed warm-up epoch; worker start-up is
inside the timed epoch, as in training. Rows per CPU-second (this process + its loader workers) is
printed too: unlike wall-clock rows/s it does not depend on other jobs sharing the cores. Compare with what the model consumes: `dhs bench train`.
Results: benchmarks/RESULTS.md, section train, block "pipeline".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tierfactory import make_tier  # noqa: E402

from darkhaloscope.stamps.pack import pack_tier  # noqa: E402
from darkhaloscope.stamps.tier import open_tier  # noqa: E402
from darkhaloscope.train.data import StampStream, make_loader  # noqa: E402
from darkhaloscope.models.preprocess import PreprocessConfig, prepare_batch  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader workers, joined every epoch)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def epoch_rate(stream: StampStream, workers: int, epoch: int, preprocess: PreprocessConfig | None) -> tuple[float, float]:
    """(rows per wall second, rows per CPU second) of one full epoch through make_loader (+ prepare_batch
    when `preprocess` is given). The CPU figure does not depend on what else runs on the machine."""
    gen = torch.Generator().manual_seed(0)
    stream.set_epoch(epoch)
    t0, c0, rows = time.perf_counter(), cpu_seconds(), 0
    for batch in make_loader(stream, num_workers=workers):
        x = batch["image"]
        if preprocess is not None:
            x = prepare_batch(x, preprocess, train=True, generator=gen)
        rows += len(x)
    return rows / (time.perf_counter() - t0), rows / (cpu_seconds() - c0)


def make_tiers(root: Path, rows: int) -> None:
    """root/npz (Phase 4c layout, 2048-row files, 512-row row groups) and root/packed, unless present."""
    if (root / "packed").is_dir() and open_tier(str(root / "npz")).num_rows == rows:
        return
    npz = make_tier(root / "npz", rows_per_split=rows, files_per_split=max(1, rows // 2048),
                    row_group_size=512, splits=("train",), seed=0)
    pack_tier(open_tier(str(npz)), str(root / "packed"))


def run(rows: int, batch_size: int, workers: list[int], root: Path) -> list[dict]:
    make_tiers(root, rows)
    out = []
    for kind in ("npz", "packed"):
        for w in workers:
            stream = StampStream(str(root / kind), "train", batch_size, seed=0, shuffle_buffer=4096)
            epoch_rate(stream, w, 0, None)  # warm-up: page cache, imports
            (wall, cpu), (wall_p, cpu_p) = epoch_rate(stream, w, 1, None), epoch_rate(stream, w, 2, PreprocessConfig())
            out.append({"tier": kind, "workers": w, "rows": stream.num_rows(), "loader_rows_per_s": round(wall),
                        "loader_rows_per_cpu_s": round(cpu), "loader_prepare_rows_per_s": round(wall_p),
                        "loader_prepare_rows_per_cpu_s": round(cpu_p)})
            print(f"{kind:7s} workers={w}: loader {wall:7.0f} rows/s ({cpu:6.0f} per CPU-s), "
                  f"+ prepare_batch {wall_p:7.0f} rows/s ({cpu_p:6.0f} per CPU-s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8192, help="train rows in the benchmark tier")
    p.add_argument("--batch-size", type=int, default=256, help="rows per batch")
    p.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    p.add_argument("--workdir", default=None, help="keep the benchmark tiers here and reuse them (default: a temp dir)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads of the main process (0: torch's default); 1 avoids spinning "
                        "OpenMP threads inflating CPU time when other jobs share the cores")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores", flush=True)
    workers = [int(w) for w in args.workers.split(",")]
    if args.workdir:
        results = run(args.rows, args.batch_size, workers, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="dhs-bench-pipeline-") as tmp:
            results = run(args.rows, args.batch_size, workers, Path(tmp))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
