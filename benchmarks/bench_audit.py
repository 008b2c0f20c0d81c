"""Benchmark of `dhs audit`: cheap passes vs a naive whole-file read, and peak memory vs tier size.

    python benchmarks/bench_audit.py --work /tmp/dhs_bench_audit          # ~4 min on the dev box

1. builds a 12,000-row tier with `dhs simulate` (2,000-row chunks, so 1,400/300/300-row files, 128-row
   row groups) and a 4x larger copy of it (48,000 rows, host/stamp ids made distinct per copy) re-cut
   into files of 2,470 rows like the Phase 4c train tier's, unless they exist;
2. runs `dhs bench audit` on each: schema + balance + leakage + split passes vs reading every file
   whole, interleaved, median of --repeats (same tier, same run, same page cache);
3. runs `dhs audit -q` and `dhs audit -q --full` on each in a fresh process and reports its peak RSS:
   bounded memory means the peak does not grow with the tier.
Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


ROWS_PER_FILE = 2470  # rows per file of the Phase 4c train tier (6,001 files, ~470 GB)


def build(work: Path) -> tuple[Path, Path]:
    small, big = work / "t12k", work / "t48k"
    if not small.is_dir():
        subprocess.run(["dhs", "simulate", "--out", str(work), "--tier", "t12k", "--rows", "12000", "--seed", "11",
                        "--rows-per-file", "2000", "--workers", "2", "-q"], check=True)
    if not big.is_dir():  # 4 copies with distinct ids, re-cut into Phase 4c-sized files (2,470 rows)
        for split_dir in sorted(small.glob("region_split=*")):
            t = pa.concat_tables(pq.read_table(p) for p in sorted(split_dir.glob("*.parquet")))
            copies = []
            for c in range(4):
                u = t
                for col in ("host_id", "stamp_id"):
                    u = u.set_column(u.schema.get_field_index(col), col, pc.binary_join_element_wise(
                        u[col].cast(pa.string()), pa.scalar(f"-c{c}"), ""))
                copies.append(u)
            t = pa.concat_tables(copies)
            out = big / split_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for k, start in enumerate(range(0, t.num_rows, ROWS_PER_FILE)):
                pq.write_table(t.slice(start, ROWS_PER_FILE), out / f"part-{k:05d}.parquet", row_group_size=128)
    return small, big


def peak_rss_mib(argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS MiB, seconds, exit status) of `argv` run in a fresh child process."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t, rc)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    rss, secs, rc = out.stdout.strip().splitlines()[-1].split()
    return float(rss), float(secs), int(rc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/dhs_bench_audit", help="folder for the tiers (kept between runs)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tiers = build(work)
    rows = []
    for tier in tiers:
        js = work / f"bench_{tier.name}.json"
        subprocess.run(["dhs", "bench", "audit", str(tier), "--repeats", str(args.repeats), "--json", str(js)],
                       check=True, stdout=subprocess.DEVNULL)
        fig = json.loads(js.read_text())
        rss, secs, rc = peak_rss_mib(["dhs", "audit", str(tier), "-q"])
        rss_full, secs_full, _ = peak_rss_mib(["dhs", "audit", str(tier), "-q", "--full"])
        rows.append(f"| {tier.name} | {fig['files']} | {fig['rows']:,} | {fig['tier_mib']:,.0f} | {fig['naive_read_s']:.2f} | "
                    f"{fig['cheap_passes_s']:.3f} | {100 * fig['cheap_fraction_of_naive']:.1f}% | "
                    f"{fig['host_id_pass_s']:.3f} ({100 * fig['host_id_fraction_of_naive']:.1f}%) | {secs:.1f} / {rss:.0f} | "
                    f"{secs_full:.1f} / {rss_full:.0f} | {'GO' if rc == 0 else 'NO-GO'} |")
    print(f"measured {time.strftime('%Y-%m-%d %H:%M')}; 1-min load average {os.getloadavg()[0]:.1f}")
    print("| tier | files | rows | MiB | naive read s | schema+balance+leakage s | / naive | host-id split pass s "
          "| default audit s / peak RSS MiB | --full s / peak RSS MiB | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
