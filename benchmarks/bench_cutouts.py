"""CPU cost of `dhs cutouts` per cutout, outside the wait for the server (issue 11 goal: < 5 ms at 16 requests
in flight).

    python benchmarks/bench_cutouts.py --rows 2000 --concurrency 16

The loopback fake cutout service runs in a separate process (its CPU is not counted); this process builds
the tier (fetch, FITS parse, validation, npz encode, parquet write) and reports its own CPU time
(`time.process_time`, all threads) per cutout, for a cold cache (every cutout fetched) and a warm one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.survey.config import CutoutConfig
from darkhaloscope.survey.cutouts import build_cutout_tier

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dr10_cutouts"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--compress", type=int, default=1)
    a = ap.parse_args()
    srv = subprocess.Popen([sys.executable, "-m", "darkhaloscope.survey.fakeservice", str(SHARED)],
                           stdout=subprocess.PIPE, text=True)
    try:
        url = srv.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            n = a.rows
            pq.write_table(pa.table({"ra": rng.uniform(0, 360, n), "dec": rng.uniform(-20, 20, n),
                                     "label": (np.arange(n) % 100 == 0).astype(np.int8),
                                     "split": np.asarray(["train", "val", "test"])[np.arange(n) % 3].tolist()}),
                           f"{tmp}/t.parquet")
            cfg = CutoutConfig(service_url=url, concurrency=a.concurrency, rate_limit_per_s=0,
                               compress=bool(a.compress))
            for label in ("cold cache", "warm cache"):
                c0, w0 = time.process_time(), time.perf_counter()
                build_cutout_tier([f"{tmp}/t.parquet"], f"{tmp}/tier-{label[:4]}", cfg, cache_dir=f"{tmp}/cache")
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                print(f"{label}: {n} cutouts, concurrency {a.concurrency}, compress {bool(a.compress)}: "
                      f"{1000 * cpu / n:.2f} ms CPU per cutout, {n / wall:.0f} cutouts/s wall; "
                      f"load {os.getloadavg()[0]:.1f}")
    finally:
        srv.kill()


if __name__ == "__main__":
    main()
