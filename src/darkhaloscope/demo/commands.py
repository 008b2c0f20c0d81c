"""CLI of the demo package: `dhs demo` (the whole toolkit on data it simulates, on CPU).

    dhs demo --out demo_out [--quick] [--real-hosts ../shared/data/dr10_cutouts] [--workers N] [--confuser-weight W]
"""

from __future__ import annotations

DEMO_TIMES = ("measured 2026-12-07 on a 2-core box with the box to itself (load 1.2-1.8): "
              "full demo (12,000 stamps, polar_fourier, 8 epochs, the PS1 lenses) 437 s (simulate 58 s, train "
              "294 s); --quick 36 s at load 1.2 (2026-12-02); "
              "benchmarks/RESULTS.md")  # the figures of benchmarks/RESULTS.md


def register(sub, bench_sub) -> None:
    d = sub.add_parser("demo", help="simulate tiers, catch a broken one, train, score, evaluate, review (CPU)",
                       description=f"The whole pipeline on data it simulates ({DEMO_TIMES}). Leaves DIR/run/best.pt, "
                       "DIR/report/ (report.html, review.md) and DIR/demo_summary.json. Exit 0 when all is as expected.")
    d.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--quick", action="store_true", help="tiny tiers with bright arcs, 3 epochs: a smoke test")
    d.add_argument("--real-hosts", default=None, metavar="PATH",
                   help="folder of DR10 npz cutouts: also inject into these real hosts and score them")
    d.add_argument("--real-candidates", default=None, metavar="PATH",
                   help="folder of real lens-candidate cutouts scored for the report's real-lens recall (default "
                   "../shared/data/dr10_cutouts when it exists)")
    d.add_argument("--real-lenses", default=None, metavar="PATH",
                   help="folder of confirmed real-lens cutouts: how many the model finds at thresholds on the test "
                   "controls brought to each lens's noise (default ../shared/data/ps1_sled_lenses when it exists)")
    d.add_argument("--workers", type=int, default=0, help="simulation processes (default: all cores)")
    d.add_argument("--confuser-weight", type=float, default=1.0, metavar="W",
                   help="loss weight of look-alike negatives (dhs train --confuser_weight; default 1): W > 1 puts fewer "
                   "look-alikes above the threshold and finds fewer real lenses there (measured: docs/models.md)")
    d.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from pathlib import Path

    from darkhaloscope.demo.run import REAL_CANDIDATES, REAL_LENSES, run_demo
    from darkhaloscope.errors import UsageError

    if args.real_candidates and not Path(args.real_candidates).is_dir():
        raise UsageError(f"--real-candidates {args.real_candidates}: not a folder; give a folder of DR10 cutouts of "
                         "lens candidates (e.g. ../shared/data/dr10_cutouts)")
    if args.real_lenses and not Path(args.real_lenses).is_dir():
        raise UsageError(f"--real-lenses {args.real_lenses}: not a folder; give a folder of real-lens cutouts "
                         "(e.g. ../shared/data/ps1_sled_lenses)")
    return run_demo(args.out, quick=args.quick, real_hosts=args.real_hosts, workers=args.workers,
                    real_candidates=args.real_candidates or REAL_CANDIDATES, confuser_weight=args.confuser_weight,
                    real_lenses=args.real_lenses or REAL_LENSES)
