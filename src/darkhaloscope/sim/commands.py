"""`dhs simulate`: build a Phase 4c tier of injected lenses and controls (see sim/build.py).

    dhs simulate --out data --tier demo --rows 4000 --seed 1 --workers 2 --preview demo.png
    dhs simulate --out data --tier grid_small --rows 2000 --seed 2 --arc-snr-dist none \\
        --grid theta_e=0.75,1.0,1.5,2.0 src_dmag=1,2,3
    dhs simulate --out data --tier real --rows 600 --seed 3 --hosts ../shared/data/dr10_cutouts
    dhs simulate ... --shard 3/16          # 0-based: one of 16 independent, deterministic slices
"""

from __future__ import annotations

import os

from darkhaloscope.config import load_config
from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args

# command-line flag (argparse dest) -> SimConfig key it overrides
FLAG_TO_KEY = {"controls": "controls", "hosts": "hosts", "arc_snr_dist": "arc_snr_dist", "psf": "psf",
               "bands": "bands", "splits": "splits", "supersample": "supersample",
               "rows_per_file": "rows_per_file", "confusers": "confusers"}


def register(subparsers, bench_subparsers) -> None:
    p = subparsers.add_parser("simulate", help="build a tier of simulated lenses (SIE+shear, Sersic source) "
                              "and controls, Phase 4c layout")
    p.add_argument("--out", required=True, help="output folder; the tier goes to OUT/TIER/region_split=*/")
    p.add_argument("--tier", required=True, help="tier name (a folder name)")
    p.add_argument("--rows", type=int, required=True, help="total rows (injections + controls, all splits)")
    p.add_argument("--seed", type=int, required=True, help="random seed: same seed, same bytes")
    p.add_argument("--config", default=None, help="YAML config (defaults: configs/simulate.yaml values)")
    p.add_argument("--controls", type=float, default=None, help="control fraction per split (default 0.5)")
    p.add_argument("--confusers", type=float, default=None, metavar="F",
                   help="fraction of controls carrying unlensed arc look-alikes (rings, spirals, blue companions, "
                   "disks, tidal tails), in [0, 1) (default 0.3)")
    p.add_argument("--workers", type=int, default=0, help="processes (default 0: all local cores)")
    p.add_argument("--shard", default=None, help="K/N: build only slice K (0-based) of N")
    p.add_argument("--hosts", default=None, help="real hosts: folder of DR10 npz cutouts, or a tier (controls)")
    p.add_argument("--grid", nargs="+", default=None, metavar="NAME=V1,V2",
                   help="parameter grid, e.g. theta_e=0.75,1.0,1.5,2.0 src_dmag=1,2")
    p.add_argument("--arc-snr-dist", dest="arc_snr_dist", default=None,
                   help="target peak arc S/N: none | loguniform:LO:HI | uniform:LO:HI (default loguniform:5:100)")
    p.add_argument("--psf", default=None, choices=("moffat", "gaussian"), help="PSF profile (default moffat)")
    p.add_argument("--bands", default=None, help="bands written, e.g. g,r,z (default)")
    p.add_argument("--splits", default=None, help="e.g. train=0.7,val=0.15,test=0.15 (default)")
    p.add_argument("--supersample", type=int, default=None, help="sub-pixels per side for the arc (default 4)")
    p.add_argument("--rows-per-file", dest="rows_per_file", type=int, default=None,
                   help="rows per chunk/file (default 500)")
    p.add_argument("--pair", action="store_true", help="injections also carry the host without arc "
                   "(ctrl_stamp_npz)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any SimConfig key, e.g. --set theta_e_arcsec=0.8,2.5 (repeatable)")
    p.add_argument("--preview", default=None, help="write a PNG of injections next to their hosts")
    p.add_argument("--overwrite", action="store_true", help="replace this tier (unsharded: also removes part files of an older build)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_s3_arguments(p)
    p.set_defaults(func=run_simulate)
    b = bench_subparsers.add_parser("simulate", help="injection speed vs per-band lenstronomy ImageModel.image, "
                                    "and --workers scaling")
    b.add_argument("--stamps", type=int, default=200, help="stamps timed per method (default 200)")
    b.add_argument("--workers", type=int, default=0, help="workers for the scaling run (default: all cores)")
    b.add_argument("--tier-rows", dest="tier_rows", type=int, default=2000,
                   help="rows of the end-to-end tier builds (0: skip; default 2000)")
    b.add_argument("--supersample", type=int, default=4, help="supersampling of both methods (default 4)")
    b.set_defaults(func=run_bench_simulate)


def config_from_args(args):
    from darkhaloscope.sim.simconfig import SimConfig

    overrides: dict = {}
    for item in args.overrides:
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r} must look like KEY=VALUE")
        overrides[k.strip().lstrip("-").replace("-", "_")] = v
    for flag, key in FLAG_TO_KEY.items():
        v = getattr(args, flag)
        if v is not None:
            overrides[key] = v
    if args.grid is not None:
        overrides["grid"] = " ".join(args.grid)
        fixes_brightness = any(g.split("=", 1)[0] in ("src_dmag", "src_mag_r") for g in args.grid)
        if fixes_brightness and args.arc_snr_dist is None:
            overrides["arc_snr_dist"] = "none"  # the grid sets the source brightness: no S/N reshaping
    if args.pair:
        overrides["pair"] = True
    return load_config(SimConfig, args.config, overrides)


def run_simulate(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from darkhaloscope.sim.build import simulate_tier

    cfg = config_from_args(args)
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    m = simulate_tier(args.out, args.tier, args.rows, args.seed, cfg, workers=workers, shard=args.shard,
                      s3=s3_options_from_args(args), overwrite=args.overwrite, progress=not args.quiet,
                      preview=args.preview)
    table = Table(title=f"{escape(args.out)}/{escape(args.tier)} (shard {m['shard']}, seed {m['seed']})")
    for col in ("split", "controls", "injections", "hosts"):
        table.add_column(col, justify="right")
    for split, c in m["counts"].items():
        table.add_row(escape(split), str(c["controls"]), str(c["injections"]), str(c["hosts"]))
    console = Console()
    console.print(table)
    rate = m["rows_written"] / max(m["elapsed_s"], 1e-9)
    console.print(f"{m['rows_written']} stamps in {m['elapsed_s']:.1f} s ({rate:,.0f} stamps/s, {workers} "
                  f"worker(s)); {len(m['files'])} parquet file(s) + manifest"
                  + (f"; preview {m['preview']}" if "preview" in m else ""))
    return 0


def run_bench_simulate(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from darkhaloscope.sim.bench import run_bench
    from darkhaloscope.sim.simconfig import SimConfig

    cfg = load_config(SimConfig, None, {"supersample": args.supersample})
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    res = run_bench(args.stamps, workers, args.tier_rows, cfg)
    table = Table(title=f"dhs bench simulate (supersample {cfg.supersample}, {os.cpu_count()} cores)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in res.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    Console().print(table)
    return 0
