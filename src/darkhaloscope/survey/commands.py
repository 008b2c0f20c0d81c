"""`dhs catalog` and `dhs cutouts`: real targets (known lenses + DR10 galaxies) and their cutouts as a tier.

    dhs catalog --out targets.parquet --negatives 'sweeps/sweep-*.fits' --grades confident --seed 1
    dhs catalog --out targets.parquet --positives lenscat my_lenses.csv --negatives cat.parquet --neg-per-pos 100
"""

from __future__ import annotations

import sys

from darkhaloscope.config import SEED_MAX
from darkhaloscope.configargs import add_config_arguments, config_from_args, int_arg
from darkhaloscope.survey.config import CatalogConfig, CutoutConfig

CUTOUT_FLAGS = {"service_url": "service_url", "layer": "layer", "concurrency": "concurrency",
                "rate_limit": "rate_limit_per_s"}
CATALOG_FLAGS = {"neg_per_pos": "neg_per_pos", "exclude_radius": "exclude_radius_arcsec", "nside": "nside",
                 "splits": "splits", "confuser_frac": "confuser_frac"}


def register(subparsers, bench_subparsers) -> None:
    p = subparsers.add_parser("catalog", help="target list: known lenses (lenscat / your lists) + DR10 Tractor "
                              "negatives N:1, hard confusers, HEALPix sky splits")
    p.add_argument("--out", required=True, help="output .parquet (a .manifest.json is written beside it)")
    p.add_argument("--positives", nargs="+", default=["lenscat"], metavar="lenscat|FILE",
                   help="lenscat (the installed package's catalog) and/or CSV/FITS/parquet lists with ra, dec "
                   "(name, grade optional); default lenscat")
    p.add_argument("--negatives", nargs="+", default=[], metavar="FILE_OR_GLOB", required=True,
                   help="DR10 Tractor catalogs (sweep FITS or parquet), read one file at a time")
    p.add_argument("--grades", default="", help="keep positives of these grades, e.g. confident or A,B")
    p.add_argument("--types", default="", help="keep positives of these lenscat types, e.g. galaxy")
    p.add_argument("--neg-per-pos", dest="neg_per_pos", type=float, default=None,
                   help="negatives per positive in every split (default 100)")
    p.add_argument("--exclude-radius", dest="exclude_radius", type=float, default=None,
                   help="arcsec: no negative this close to a known lens or candidate (default 5)")
    p.add_argument("--nside", type=int, default=None, help="HEALPix nside of the sky splits (default 128)")
    p.add_argument("--splits", default=None, help="pixel fractions, default train=0.7,val=0.15,test=0.15")
    p.add_argument("--confuser-frac", dest="confuser_frac", type=float, default=None,
                   help="fraction of negatives from the hard-confuser pool (default 0.15)")
    p.add_argument("--positives-anywhere", action="store_true",
                   help="keep positives outside the negatives' footprint (default: dropped)")
    p.add_argument("--seed", type=int_arg(0, SEED_MAX), default=0, help="seed of the splits and the sampling (default 0)")
    p.add_argument("--shard", default=None, help="K/N: sample negatives from input files i %% N == K only")
    add_config_arguments(p, CatalogConfig, "catalog", skip=(*CATALOG_FLAGS.values(), "positives_in_footprint"))
    p.set_defaults(func=run_catalog)
    c = subparsers.add_parser("cutouts", help="fetch Legacy Surveys g/r/z cutouts of a target list into a Phase 4c "
                              "tier (concurrent, rate-limited, retried, cached, resumable)")
    c.add_argument("targets", nargs="+", help="target list(s) from `dhs catalog` (parquet/CSV/FITS with ra, dec, "
                   "label, split)")
    c.add_argument("--out", required=True, help="tier folder: OUT/region_split=<split>/part-*.parquet + manifest.json")
    c.add_argument("--service-url", dest="service_url", default=None,
                   help="cutout endpoint (default https://www.legacysurvey.org/viewer/fits-cutout)")
    c.add_argument("--layer", default=None, help="survey layer (default ls-dr10)")
    c.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 8)")
    c.add_argument("--rate-limit", dest="rate_limit", type=float, default=None,
                   help="requests per second, all together (default 10 for a remote service, no limit on 127.0.0.1 / "
                   "localhost; 0: no limit)")
    c.add_argument("--cache", default=None, help="cache folder of fetched cutouts (default OUT/_cache)")
    add_config_arguments(c, CutoutConfig, "cutouts", skip=tuple(CUTOUT_FLAGS.values()))
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_cutouts)


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def run_catalog(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from darkhaloscope.survey.catalog import POOLS, build_catalog

    extra = {key: getattr(args, flag) for flag, key in CATALOG_FLAGS.items() if getattr(args, flag) is not None}
    if args.positives_anywhere:
        extra["positives_in_footprint"] = False
    cfg = config_from_args(args, extra=extra)
    m = build_catalog(args.out, args.positives, args.negatives, args.seed, cfg, _csv(args.grades), _csv(args.types),
                      args.shard, argv=sys.argv[1:], log=lambda s: print(s, file=sys.stderr))
    table = Table(title=f"{escape(args.out)} (seed {m['seed']}, shard {m['shard']})")
    for col in ("split",) + POOLS:
        table.add_column(col, justify="right")
    for split, c in sorted(m["counts"].items()):
        table.add_row(escape(split), *(str(c[p]) for p in POOLS))
    console = Console()
    console.print(table)
    console.print(f"{m['rows']} targets; {m['excluded_near_known_lenses']} negative(s) dropped within "
                  f"{cfg.exclude_radius_arcsec:g}\" of a known lens or candidate", highlight=False)
    for split, n in m["negative_shortfall"].items():
        print(f"note: split {split}: {n} negative(s) short of {cfg.neg_per_pos:g} per positive (the catalogs hold "
              "too few usable rows there)", file=sys.stderr)
    return 0


def run_cutouts(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from darkhaloscope.survey.cutouts import build_cutout_tier

    cfg = config_from_args(args, extra={key: getattr(args, flag) for flag, key in CUTOUT_FLAGS.items()
                                        if getattr(args, flag) is not None})
    m = build_cutout_tier(args.targets, args.out, cfg, cache_dir=args.cache, progress=not args.quiet,
                          argv=sys.argv[1:])
    table = Table(title=f"{escape(args.out)}")
    cols = ("lenses", "lenses_ok", "controls", "controls_ok", "failed")
    for col in ("split",) + cols:
        table.add_column(col, justify="right")
    for split, c in m["counts"].items():
        table.add_row(split, *(str(c[k]) for k in cols))
    console = Console()
    console.print(table)
    f = m["fetch"]
    console.print(f"{f['fetched']} fetched, {f['cached']} from the cache, {f['retries']} retries; "
                  f"{m['chunks_written']} of {len(m['files'])} file(s) written in {m['elapsed_s']:.1f} s", highlight=False)
    for why, n in m["failure_reasons"].items():
        console.print(f"  cutout_ok=0: {n} x {escape(why)}", highlight=False)
    return 0
