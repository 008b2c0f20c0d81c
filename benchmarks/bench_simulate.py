"""Benchmark of `dhs simulate` (issue 3 goals): injection stamps/s per core vs a straightforward per-band
lenstronomy `ImageModel.image` call at the same supersampling (goal >= 2.5x), and `--workers` scaling.

    python benchmarks/bench_simulate.py                  # = dhs bench simulate --stamps 200 --tier-rows 2000
    python benchmarks/bench_simulate.py --workers 2 --supersample 4

Results (machine, date) are recorded in benchmarks/RESULTS.md, section `simulate`.
"""

from __future__ import annotations

import sys

from darkhaloscope.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "simulate", *sys.argv[1:]]))
