"""Benchmarks of the evaluate package (results: benchmarks/RESULTS.md, section evaluate).

    python benchmarks/bench_evaluate.py evaluate --rows 10000000          # goal: < 120 s on the 2-core dev box
    python benchmarks/bench_evaluate.py score --model resnet18 --rows 2000 [--device cuda] [--data TIER]

`evaluate` times `dhs evaluate --no-data` on synthetic scores (no model probes). `score` makes a tier with
`dhs simulate` (unless --data), a checkpoint with a few `dhs train` steps of --model, then times
`dhs score` end to end (decode + preprocessing + forward + parquet) and the forward pass alone on
in-memory stamps, so the limiting stage is visible. On a GPU machine run the `score` mode with
`--device cuda --rows 20000` (called from benchmarks/gpu_check.sh when that script includes it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def bench_evaluate(args) -> dict:
    from darkhaloscope.cli import main
    from darkhaloscope.evaluate.synthetic import write_synthetic_scores

    with tempfile.TemporaryDirectory() as tmp:
        path = write_synthetic_scores(Path(tmp) / "scores.parquet", args.rows, seed=0)
        t0 = time.perf_counter()
        assert main(["evaluate", str(path), "--out", str(Path(tmp) / "rep"), "--no-data"]) == 0
        dt = time.perf_counter() - t0
    return {"what": "dhs evaluate --no-data", "rows": args.rows, "seconds": round(dt, 1),
            "scores_per_s": round(args.rows / dt)}


def bench_score(args) -> dict:
    import numpy as np
    import torch

    from darkhaloscope.cli import main
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import infer, score_data
    from darkhaloscope.runtime.loading import load_for_inference
    from darkhaloscope.runtime.distributed import resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            assert main(["simulate", "--out", str(tmp), "--tier", "t", "--rows", str(args.rows), "--seed", "0",
                         "-q"]) == 0
            data = str(tmp / "t")
        assert main(["train", "--data", data, "--out", str(tmp / "run"), f"--model={args.model}", "--epochs=1",
                     "--max_train_rows=64", "--max_val_rows=64", "--batch_size=32", "--progress=false",
                     f"--device={args.device}", "--num_workers=0"]) == 0
        ckpt = tmp / "run" / "last.pt"
        cfg = ScoreConfig(batch_size=args.batch_size, device=args.device)
        s = score_data(str(ckpt), data, tmp / "scores.parquet", cfg, progress=False)
        device = resolve_device(args.device)
        model, pre, _ = load_for_inference(ckpt, device)
        x = np.random.default_rng(0).normal(0, 0.01, (args.batch_size * 8, 3, 64, 64)).astype(np.float32)
        infer(model, pre, x[: args.batch_size], device, batch_size=args.batch_size)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        infer(model, pre, x, device, batch_size=args.batch_size)
        fwd = len(x) / (time.perf_counter() - t0)
    return {"what": "dhs score", "model": args.model, "device": str(device), "batch_size": args.batch_size,
            "rows": s.rows, "end_to_end_stamps_per_s": round(s.stamps_per_s), "forward_only_stamps_per_s": round(fwd),
            "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("--rows", type=int, default=10_000_000)
    s = sub.add_parser("score")
    s.add_argument("--rows", type=int, default=2000, help="simulated rows when --data is not given")
    s.add_argument("--data", default=None)
    s.add_argument("--model", default="resnet18")
    s.add_argument("--device", default="auto")
    s.add_argument("--batch-size", type=int, default=512)
    args = p.parse_args(argv)
    result = (bench_evaluate if args.mode == "evaluate" else bench_score)(args)
    result.update(machine=f"{platform.node()}, {os.cpu_count()} cores", python=sys.version.split()[0])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
