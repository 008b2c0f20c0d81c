"""`dhs train`, `dhs bench train` and `dhs bench loader`.

    dhs train --data TIER --out RUN [--preset cpu-demo | --config FILE] [--resume auto] [--lr=1e-3 ...]
    torchrun --nproc_per_node=2 -m darkhaloscope train --data TIER --out RUN --device=cpu
    dhs bench train --model resnet18 --batch-size 256 --precision bf16 [--data TIER] [--json]
    dhs bench train --model all --batch-size 256 --precision bf16      # every registered model
    dhs bench train --model timm:efficientnetv2_rw_s                    # a timm net (the [cuda] extra)

Every TrainConfig key is also a flag (`--lr=1e-3`, `--batch-size 64`, `--preprocess.norm=stamp`, or
`--set lr=1e-3`); `dhs train --help` lists them with their defaults and units. Without --config/--preset
on a machine without CUDA (and no --model/--device=cuda) it trains the cpu-demo preset and says so.
Exit status 3 when a guard refuses (one-class split, label-leaking input column): nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys

from darkhaloscope.configargs import add_config_arguments, add_key_flags, config_from_args, given_argv, given_overrides
from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args


TRAIN_HELP = """Train a lens finder on a tier; writes RUN/best.pt, last.pt, config.yaml, run.json, metrics.csv.

    dhs train --data TIER --out RUN                      # no CUDA: the cpu-demo preset (said in one line)
    dhs train --data TIER --out RUN --preset gpu --epochs=20 --lr=1e-3
    torchrun --nproc_per_node=2 -m darkhaloscope train --data TIER --out RUN --device=cpu

Every TrainConfig key below is a flag (--key=value, --key value, --set key=value), with its default and
unit. Exit 0 done, 1 bad data, 2 usage error, 3 refused (one-class split, label-leaking input column),
4 environment (disk full, S3 unreachable)."""

# `dhs bench loader --norm` choices (train.loader_bench.NORMALISERS holds the functions; a test keeps them equal)
LOADER_NORMS = {"numpy": "batched numpy median/MAD over the whole stamp (the naive path's work)",
                "prepare_batch": "models.preprocess.prepare_batch on CPU torch (annulus default)",
                "none": "decode only (training normalises on the device)"}


def train_config(args, say=None, choose: str | None = None):
    """The TrainConfig of `dhs train` (and of the run `dhs review` plans): --config/--preset, else the
    CPU preset on a machine without CUDA (`train.config.auto_preset`), then the overrides."""
    from darkhaloscope.configargs import given_overrides, preset_path
    from darkhaloscope.train.config import TrainConfig, auto_preset

    default = None
    if not getattr(args, "config", None) and not getattr(args, "preset", None):
        name, why = auto_preset(given_overrides(args), *([choose] if choose else []))
        if name:
            default = preset_path("train", name)
            (say or (lambda m: print(m, file=sys.stderr)))(why)
    return config_from_args(args, default=default, cls=TrainConfig, section="train")


def cmd_train(args) -> int:
    from darkhaloscope.train.loop import train

    cfg = train_config(args)
    argv = ["train", "--out", str(args.out)] + (["--resume", args.resume] if args.resume else []) + \
        (["--overwrite"] if args.overwrite else []) + given_argv(args)
    summary = train(cfg, args.out, argv=argv, resume=args.resume, s3=s3_options_from_args(args),
                    overwrite=args.overwrite)
    if summary["rank"] == 0:
        b = summary["best"]
        auroc = b.get("val_auroc")
        print(f"best val AUROC {'undefined' if auroc is None else f'{auroc:.4f}'} at epoch {b.get('epoch')} "
              f"(step {b.get('step')}); {summary['steps']:,} steps; run folder {summary['run_dir']}")
        t = summary.get("step_times")
        if t:
            print(f"step {t['step_s_mean'] * 1e3:.0f} ms on average: rendering {t['render_s_mean'] * 1e3:.0f} ms "
                  f"({t['render_frac']:.0%} of the step), waiting for the batch {t['wait_s_mean'] * 1e3:.0f} ms, "
                  f"model {t['model_s_mean'] * 1e3:.0f} ms; lens metadata in {summary['paths']['injections']}")
        if b.get("temperature") is not None:
            print(f"temperature {b['temperature']:.3f} fitted on {cfg.val_split} ({b['val_n']:,} stamps), stored in "
                  f"best.pt: ECE {b['val_ece']:.4f} raw -> {b['val_ece_calibrated']:.4f} calibrated")
    return 0


def cmd_bench_loader(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from darkhaloscope.train.loader_bench import bench_loader

    res = bench_loader(args.data, s3_options_from_args(args), rows=args.rows, threads=args.threads,
                       norm=args.norm, naive_data=args.naive_data, naive=not args.no_naive, repeat=args.repeat)
    res["norm_means"] = LOADER_NORMS[res["norm"]]
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    t = Table(title=f"{res['format']} tier, {res['threads']} thread(s), norm={res['norm']}", title_justify="left")
    for c in ("path", "stamps", "stamps/s", "MB/s", "stamps/CPU-s"):
        t.add_column(c, justify="right" if c != "path" else "left")
    t.add_row("darkhaloscope", str(res["stamps"]), f"{res['stamps_per_s']:.0f}", f"{res['mb_per_s']:.1f}",
              f"{res['stamps_per_cpu_s']:.0f}")
    if "naive_stamps_per_s" in res:
        t.add_row("naive", str(res["naive_stamps"]), f"{res['naive_stamps_per_s']:.0f}",
                  f"{res['naive_mb_per_s']:.1f}", f"{res['naive_stamps_per_cpu_s']:.0f}")
    console = Console()
    console.print(t)
    if res.get("ratio"):
        console.print(f"ratio {res['ratio']:.1f}x wall, {res['cpu_ratio']:.1f}x CPU time (naive on "
                      f"{res['naive_data']})", soft_wrap=True)
    return 0


def cmd_bench_train(args) -> int:
    from darkhaloscope.models import list_models
    from darkhaloscope.train.bench import bench_train, format_report

    if args.sim is not None:
        given = " ".join(f"--sim.{kv}" for kv in args.sim) or "--sim.KEY=VALUE"
        raise UsageError(f"dhs bench train takes the simulate settings as dhs train does: {given}")
    sim = {k[len("sim."):]: v for k, v in given_overrides(args).items() if k.startswith("sim.")}
    names = list_models() if args.model == "all" else [args.model]
    results = []
    for name in names:  # one model at a time: each report is printed as soon as it is measured
        r = bench_train(model=name, batch_size=args.batch_size, precision=args.precision,
                        channels_last=args.channels_last, compile=args.compile, steps=args.steps,
                        warmup_steps=args.warmup_steps, device=args.device, data=args.data,
                        num_workers=args.num_workers, s3=s3_options_from_args(args), split=args.split,
                        inject=args.inject, sim=sim)
        results.append(r)
        if not args.json:
            print(format_report(r), flush=True)
    if args.json:
        print(json.dumps(results if args.model == "all" else results[0], indent=2))
    return 0


def register(subparsers, bench_subparsers) -> None:
    from darkhaloscope.train.config import InjectSimConfig, TrainConfig

    p = subparsers.add_parser("train", help="train a lens finder on a tier (CPU or torchrun DDP)",
                              description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder: config.yaml, run.json, metrics.csv, last.pt, best.pt")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="auto: continue from RUN/last.pt, or from the --checkpoint_uri mirror if RUN is empty")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out (without it, or --resume, a non-empty --out is refused)")
    add_config_arguments(p, TrainConfig, "train")
    add_s3_arguments(p)
    p.set_defaults(func=cmd_train)

    b = bench_subparsers.add_parser("train", help="samples/s of the training step: synthetic tensors vs the input pipeline")
    b.add_argument("--model", default="resnet18", help="registered model name (docs/models.md; a wrong "
                   "name lists them), timm:NAME for a timm architecture with its stem adapted to 64x64 (needs "
                   "timm: pip install 'darkhaloscope[cuda]' on a CUDA machine), or all (every registered model "
                   "in turn; --json then prints a list)")
    b.add_argument("--batch-size", type=int, default=256, help="stamps per step")
    b.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    b.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    b.add_argument("--compile", action="store_true", help="torch.compile the model first")
    b.add_argument("--steps", type=int, default=20, help="timed steps (after warm-up)")
    b.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    b.add_argument("--device", default="auto")
    b.add_argument("--data", default=None, help="tier: also time the real input pipeline (decode + transfer + preprocess)")
    b.add_argument("--split", default="train", help="split of --data to read")
    b.add_argument("--num-workers", type=int, default=2, help="loader workers for --data")
    b.add_argument("--inject", default=None, metavar="HOSTS", help="time on-the-fly training instead (dhs train "
                   "--inject HOSTS): each step renders its batch, then steps; render and model seconds per step")
    b.add_argument("--sim", nargs="*", default=None, help=argparse.SUPPRESS)  # the old spelling: a hint
    add_key_flags(b.add_argument_group("simulate settings of --inject, as dhs train takes them (e.g. "
                                       "--sim.confusers=0.5, the demo's)"), InjectSimConfig, "sim.")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    add_s3_arguments(b)
    b.set_defaults(func=cmd_bench_train)

    b = bench_subparsers.add_parser("loader", help="stamps/s of decoding DATA vs the naive per-row np.load loop",
                             description="Measure stamps/s and MB/s of decoding DATA (npz or packed tier) into "
                                         "normalised float32 tensors, and of the naive loop on the same data.")
    b.add_argument("data", metavar="DATA", help="tier: local folder, parquet file or s3://bucket/prefix")
    b.add_argument("--rows", type=int, default=2048, help="stamps per timed pass (default 2048)")
    b.add_argument("--threads", type=int, default=1, help="decode threads of the fast path (default 1 = per core)")
    b.add_argument("--norm", default="numpy", metavar="|".join(LOADER_NORMS),
                   help="fast-path normalisation: " + "; ".join(f"{k}: {v}" for k, v in LOADER_NORMS.items()))
    b.add_argument("--naive-data", default=None, help="tier for the naive pass (default: DATA, or for a packed "
                                                      "DATA the npz tier named in its manifest)")
    b.add_argument("--no-naive", action="store_true", help="skip the naive pass (fast figures only)")
    b.add_argument("--repeat", type=int, default=1, help="passes of each path; the best is kept (default 1)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    add_s3_arguments(b)
    b.set_defaults(func=cmd_bench_loader)

