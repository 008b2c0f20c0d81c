"""`dhs simulate`: build a Phase 4c tier of injected lenses and controls with the numpy (reference) or the torch
engine (inject/build.py, sim/build.py); `dhs bench simulate`: their speed.

    dhs simulate --out data --tier demo --rows 4000 --seed 1 --workers 2 --preview demo.png
    dhs simulate --out data --tier grid_small --rows 2000 --seed 2 --arc-snr-dist none \\
        --grid theta_e=0.75,1.0,1.5,2.0 src_dmag=1,2,3
    dhs simulate --out data --tier real --rows 600 --seed 3 --hosts ../shared/data/dr10_cutouts
    dhs simulate ... --shard 3/16          # 0-based: one of 16 independent, deterministic slices
    dhs simulate --out data --tier demo --rows 4000 --seed 1 --engine torch [--device cuda]
    dhs bench simulate --engine torch      # torch against numpy rows/s, one run

These commands live above both engines (the torch one is in inject/, a layer above sim/); nothing here imports
torch until a torch build or bench runs.
"""

from __future__ import annotations

import os

from darkhaloscope.config import SEED_MAX, load_config
from darkhaloscope.configargs import add_config_arguments, config_from_args, given_overrides, int_arg
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args

MAX_ROWS = 10**10  # --rows above this is a typo, not a tier (10 billion stamps = ~500 TB)


def register(subparsers, bench_subparsers) -> None:
    p = subparsers.add_parser("simulate", help="build a tier of simulated lenses (SIE+shear, Sersic source) "
                              "and controls, Phase 4c layout")
    p.add_argument("--out", required=True, help="output folder; the tier goes to OUT/TIER/region_split=*/")
    p.add_argument("--tier", required=True, help="tier name (a folder name)")
    p.add_argument("--rows", type=int_arg(1, MAX_ROWS), required=True,
                   help=f"total rows (injections + controls, all splits), 1..{MAX_ROWS:,}")
    p.add_argument("--seed", type=int_arg(0, SEED_MAX), required=True,
                   help=f"random seed, 0..{SEED_MAX}: same seed, same bytes")
    p.add_argument("--workers", type=int_arg(0, 4096), default=0, help="processes (default 0: all local cores)")
    p.add_argument("--shard", default=None, help="K/N: build only slice K (0-based) of N")
    p.add_argument("--grid", nargs="+", default=None, metavar="NAME=V1,V2",
                   help="parameter grid, e.g. theta_e=0.75,1.0,1.5,2.0 src_dmag=1,2 (sets SimConfig grid)")
    p.add_argument("--preview", default=None, help="write a PNG of injections next to their hosts")
    p.add_argument("--overwrite", action="store_true", help="replace this tier (unsharded: also removes part files of an older build)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build given the same arguments: "
                   "its complete chunks are kept (byte-identical to a fresh build's), the rest are rendered")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p, SimConfig, "simulate", skip=("grid",))
    add_s3_arguments(p)
    p.set_defaults(func=run_simulate)
    b = bench_subparsers.add_parser("simulate", help="injection speed vs per-band lenstronomy ImageModel.image, "
                                    "and --workers scaling; --engine torch: torch vs numpy engine")
    b.add_argument("--stamps", type=int, default=200, help="stamps timed per method (default 200)")
    b.add_argument("--workers", type=int, default=0, help="workers for the scaling run (default: all cores)")
    b.add_argument("--tier-rows", dest="tier_rows", type=int, default=2000,
                   help="rows of the end-to-end tier builds (0: skip; default 2000)")
    b.add_argument("--supersample", type=int, default=4, help="supersampling of both methods (default 4)")
    b.add_argument("--engine", choices=("numpy", "torch"), default="numpy",
                   help="numpy: the reference against lenstronomy ImageModel; torch: the torch engine against the "
                   "numpy one, whole rows per core and tier builds, in one run")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the torch engine's device (default cpu)")
    b.add_argument("--json", action="store_true", help="print the figures as one JSON object (benchmarks/gpu_check.sh)")
    b.set_defaults(func=run_bench_simulate)


def sim_config(args):
    """SimConfig: defaults < --config/--preset < --set < --key=value; --grid sets `grid` (and, when it fixes the
    source brightness, arc_snr_dist=none unless given)."""
    extra: dict = {}
    if args.grid is not None:
        extra["grid"] = " ".join(args.grid)
        fixes_brightness = any(g.split("=", 1)[0] in ("src_dmag", "src_mag_r") for g in args.grid)
        if fixes_brightness and "arc_snr_dist" not in given_overrides(args):
            extra["arc_snr_dist"] = "none"  # the grid sets the source brightness: no S/N reshaping
    return config_from_args(args, extra=extra)


def run_simulate(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from darkhaloscope.inject.build import simulate

    cfg = sim_config(args)
    workers = 1 if cfg.device == "cuda" else args.workers if args.workers > 0 else (os.cpu_count() or 1)
    m = simulate(args.out, args.tier, args.rows, args.seed, cfg, workers=workers, shard=args.shard,
                      s3=s3_options_from_args(args), overwrite=args.overwrite, resume=args.resume, progress=not args.quiet,
                      preview=args.preview)
    table = Table(title=f"{escape(args.out)}/{escape(args.tier)} (shard {m['shard']}, seed {m['seed']})")
    for col in ("split", "controls", "injections", "hosts"):
        table.add_column(col, justify="right")
    for split, c in m["counts"].items():
        table.add_row(escape(split), str(c["controls"]), str(c["injections"]), str(c["hosts"]))
    console = Console()
    console.print(table)
    rate = m["rows_rendered"] / max(m["elapsed_s"], 1e-9)
    kept = (f" ({m['rows_written'] - m['rows_rendered']} of them kept from the interrupted build, "
            f"{m['chunks_resumed']} chunk(s))" if m["chunks_resumed"] else "")
    engine = cfg.engine if cfg.engine == "numpy" else f"{cfg.engine} on {cfg.device}"
    console.print(f"{m['rows_written']} stamps{kept} in {m['elapsed_s']:.1f} s ({rate:,.0f} stamps/s, {workers} "
                  f"worker(s), {engine} engine); {len(m['files'])} parquet file(s) + manifest"
                  + (f"; preview {m['preview']}" if "preview" in m else ""))
    return 0


def run_bench_simulate(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from darkhaloscope.sim.bench import run_bench
    from darkhaloscope.sim.simconfig import SimConfig

    cfg = load_config(SimConfig, None, {"supersample": args.supersample})
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    if args.engine == "torch":
        from darkhaloscope.inject.bench import run_compare

        res = run_compare(args.stamps, workers, args.tier_rows, cfg, args.device)
    else:
        res = run_bench(args.stamps, workers, args.tier_rows, cfg)
    if args.json:
        import json

        print(json.dumps(res))
        return 0
    table = Table(title=f"dhs bench simulate --engine {args.engine} (supersample {cfg.supersample}, "
                  f"{os.cpu_count()} cores)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in res.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    Console().print(table)
    return 0
