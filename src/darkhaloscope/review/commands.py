"""CLI of the review package: `dhs review` (the GO/NO-GO before a long training run).

    dhs review --data s3://bucket/stamps/train_tier/ --out review.md [--run RUN] [--config configs/train.yaml]
               [--set planned_rows=10000000] [--quick]              # exit 0 GO, 3 NO-GO; review.json beside
"""

from __future__ import annotations

import sys
from pathlib import Path

from darkhaloscope.errors import MissingInputError, UsageError
from darkhaloscope.stamps.fs import add_s3_arguments, is_s3, s3_options_from_args

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"  # repository configs/ (YAML defaults)


def register(sub, bench_sub) -> None:
    p = sub.add_parser("review", help="GO / NO-GO for a training run: data, code sanity, throughput, memory, "
                       "checkpoints (and a trained run)",
                       description="Measure on DATA (and RUN) what a reviewer asks before a long training run; "
                       "write Markdown (+ JSON, HTML beside it). Exit 0 GO, 3 NO-GO, 2 usage error.")
    p.add_argument("--data", required=True, help="tier: folder, parquet file or s3://bucket/prefix/")
    p.add_argument("--run", default=None, help="a `dhs train --out` folder: curves, best AUROC, shortcut probes")
    p.add_argument("--config", default=None, help="TrainConfig YAML of the planned run (default: RUN/config.yaml "
                   "with --run, else configs/train.yaml)")
    p.add_argument("--out", required=True, help="Markdown report to write (review.json / review.html beside it)")
    p.add_argument("--quick", action="store_true", help="smaller measurements (review config QUICK preset)")
    p.add_argument("--review-config", default=None, help="YAML of ReviewConfig keys (default configs/review.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ReviewConfig key, e.g. --set planned_rows=10000000 (repeatable)")
    add_s3_arguments(p)
    p.set_defaults(func=cmd_review)


def _train_config(args):
    from darkhaloscope.config import load_config
    from darkhaloscope.train.config import TrainConfig

    path = args.config
    if path is None and args.run and (Path(args.run) / "config.yaml").is_file():
        path = Path(args.run) / "config.yaml"
    if path is None and (CONFIG_DIR / "train.yaml").is_file():
        path = CONFIG_DIR / "train.yaml"
    return load_config(TrainConfig, path, {})


def _review_config(args):
    from darkhaloscope.config import load_config, parse_overrides
    from darkhaloscope.review.config import QUICK, ReviewConfig

    default = CONFIG_DIR / "review.yaml"
    path = args.review_config or (default if default.is_file() else None)
    overrides = {**(QUICK if args.quick else {}), **parse_overrides(args.set)}
    return load_config(ReviewConfig, path, overrides)


def cmd_review(args) -> int:
    from rich.console import Console

    from darkhaloscope.config import run_info
    from darkhaloscope.review.review import run_review

    if not is_s3(args.data) and not Path(args.data).exists():
        raise MissingInputError(f"--data {args.data} does not exist; give a tier folder, a parquet file or an s3:// prefix")
    if args.run and not Path(args.run).is_dir():
        raise UsageError(f"--run {args.run} is not a folder; give the folder `dhs train --out RUN` wrote")
    if not str(args.out).endswith(".md"):
        raise UsageError(f"--out {args.out}: name a Markdown file, e.g. review.md (review.json is written beside it)")
    tcfg, rcfg = _train_config(args), _review_config(args)
    console = Console(stderr=True)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    rv = run_review(args.data, args.run, tcfg, rcfg, s3=s3_options_from_args(args), out=args.out,
                    info=run_info(argv), say=lambda m: console.print(m, style="dim", markup=False))
    rv.render(Console())
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return rv.exit_code
