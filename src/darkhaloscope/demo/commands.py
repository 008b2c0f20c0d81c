"""CLI of the demo package: `dhs demo` (the whole toolkit on data it simulates, on CPU).

    dhs demo --out demo_out [--quick] [--real-hosts ../shared/data/dr10_cutouts] [--workers N]
"""

from __future__ import annotations

DEMO_TIMES = ("measured on a shared 2-core box: full demo 717 s at load ~4-6, --quick 160 s at load ~7; "
              "see benchmarks/RESULTS.md")  # updated by the measurements in benchmarks/RESULTS.md


def register(sub, bench_sub) -> None:
    d = sub.add_parser("demo", help="simulate tiers, catch a broken one, train, score, evaluate, review (CPU)",
                       description=f"The whole pipeline on data it simulates ({DEMO_TIMES}). Leaves DIR/run/best.pt, "
                       "DIR/report/ (report.html, review.md) and DIR/demo_summary.json. Exit 0 when all is as expected.")
    d.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--quick", action="store_true", help="tiny tiers with bright arcs, 3 epochs: a smoke test")
    d.add_argument("--real-hosts", default=None, metavar="PATH",
                   help="folder of DR10 npz cutouts: also inject into these real hosts and score them")
    d.add_argument("--workers", type=int, default=0, help="simulation processes (default: all cores)")
    d.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from darkhaloscope.demo.run import run_demo

    return run_demo(args.out, quick=args.quick, real_hosts=args.real_hosts, workers=args.workers)
