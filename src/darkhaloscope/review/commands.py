"""CLI of the review package: `dhs review` (the GO/NO-GO before a long training run).

    dhs review --data s3://bucket/stamps/train_tier/ --out review.md [--run RUN] [--config NAME_OR_FILE
               | --preset NAME] [--planned_rows=10000000] [--quick]                  # exit 0 GO, 3 NO-GO; review.json beside
"""

from __future__ import annotations

import sys
from pathlib import Path

from darkhaloscope.common.report.render import printable
from darkhaloscope.configargs import add_config_arguments, config_from_args, list_presets
from darkhaloscope.errors import MissingInputError, UsageError
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.stamps.fs import add_s3_arguments, is_s3, s3_options_from_args


def register(sub, bench_sub) -> None:
    p = sub.add_parser("review", help="GO / NO-GO for a training run: data, code sanity, throughput, memory, "
                       "checkpoints (and a trained run)",
                       description="Measure on DATA (and RUN) what a reviewer asks before a long training run; "
                       "write Markdown (+ JSON, HTML beside it). Exit 0 GO, 3 NO-GO, 2 usage error.")
    p.add_argument("--data", required=True, help="tier: folder, parquet file or s3://bucket/prefix/")
    p.add_argument("--run", default=None, help="a `dhs train --out` folder: curves, best AUROC, shortcut probes")
    p.add_argument("--config", dest="train_config", default=None, metavar="NAME_OR_FILE",
                   help="the planned run's TrainConfig: a YAML file or a train preset "
                   f"({', '.join(list_presets('train'))}); default RUN/config.yaml with --run, else what "
                   "`dhs train` would use here (its defaults, or the cpu-demo preset without CUDA)")
    p.add_argument("--preset", dest="train_preset", default=None, metavar="NAME",
                   help=f"the planned run's train preset ({', '.join(list_presets('train'))}), as `dhs train "
                   "--preset NAME` would use it (dhs review has no presets of its own)")
    p.add_argument("--out", required=True, help="Markdown report to write (review.json / review.html beside it)")
    p.add_argument("--quick", action="store_true", help="smaller measurements (review config QUICK preset)")
    add_config_arguments(p, ReviewConfig, "review", config_flag="--review-config", preset_flag=False)
    add_s3_arguments(p)
    p.set_defaults(func=cmd_review)


def _train_config(args, say):
    """The planned run: --config / --preset, else RUN/config.yaml, else exactly what `dhs train` would resolve."""
    import argparse

    from darkhaloscope.config import load_config
    from darkhaloscope.configargs import config_source
    from darkhaloscope.train.commands import train_config
    from darkhaloscope.train.config import TrainConfig

    if args.train_config or args.train_preset:
        return load_config(TrainConfig, config_source("train", args.train_config, args.train_preset))
    if args.run and (Path(args.run) / "config.yaml").is_file():
        return load_config(TrainConfig, Path(args.run) / "config.yaml")
    return train_config(argparse.Namespace(), say=say, choose="give --preset=NAME or --config=FILE to plan another run")


def _review_config(args):
    from darkhaloscope.configargs import given_overrides
    from darkhaloscope.review.config import QUICK

    given = given_overrides(args)  # wins over the QUICK sizes
    return config_from_args(args, extra={**QUICK, **given} if args.quick else None)


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
    console = Console(stderr=True)
    tcfg, rcfg = _train_config(args, say=lambda m: console.print(printable(m, keep="\n"), style="dim", markup=False)), _review_config(args)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    rv = run_review(args.data, args.run, tcfg, rcfg, s3=s3_options_from_args(args), out=args.out,
                    info=run_info(argv), say=lambda m: console.print(printable(m, keep="\n"), style="dim", markup=False))
    rv.render(Console())
    md = Path(args.out)
    print(f"wrote {md}, {md.with_suffix('.json')} and {md.with_suffix('.html')} (open the .html in a browser)")
    return rv.exit_code
