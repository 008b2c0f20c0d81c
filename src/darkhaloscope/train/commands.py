"""`dhs train` and `dhs bench train`.

    dhs train --data TIER --out RUN [--config configs/train.yaml] [--resume auto] [--lr=1e-3 ...]
    torchrun --nproc_per_node=2 -m darkhaloscope train --data TIER --out RUN --device=cpu
    dhs bench train --model resnet18 --batch-size 256 --precision bf16 [--data TIER] [--json]

Every TrainConfig key is also a flag (`--lr=1e-3`, `--batch-size 64`, `--preprocess.norm=stamp`); its
help text is the comment of the field. Exit status 3 when a guard refuses (one-class split, label-leaking
input column): nothing is written then.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import typing

from darkhaloscope.config import load_config
from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args


def _field_comments(cls) -> dict[str, str]:
    """{field: its trailing '# comment'} read from the dataclass source (the documentation of each key)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):[^#\n]*#\s*(.*)$", src, re.M)}


def add_config_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    """One `--key` flag per dataclass field (nested dataclasses as `--section.key`); value kept as text
    and typed later by `load_config`. Unset flags are absent from the namespace (default SUPPRESS)."""
    comments = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} keys (also settable in --config YAML)") if not prefix else parser
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            add_config_arguments(group, hints[f.name], prefix=f"{prefix}{f.name}.")
            continue
        name = prefix + f.name
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        group.add_argument(*flags, dest=f"cfg:{name}", default=argparse.SUPPRESS, metavar="V",
                           help=comments.get(f.name, ""))


def config_overrides(args: argparse.Namespace) -> dict[str, str]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}


def cmd_train(args) -> int:
    from darkhaloscope.train.config import TrainConfig
    from darkhaloscope.train.loop import train

    overrides = config_overrides(args)
    cfg = load_config(TrainConfig, args.config, overrides)
    argv = ["train", "--out", str(args.out)] + (["--config", args.config] if args.config else []) + \
        (["--resume", args.resume] if args.resume else []) + (["--overwrite"] if args.overwrite else []) + [f"--{k}={v}" for k, v in overrides.items()]
    summary = train(cfg, args.out, argv=argv, resume=args.resume, s3=s3_options_from_args(args),
                    overwrite=args.overwrite)
    if summary["rank"] == 0:
        b = summary["best"]
        print(f"best val AUROC {b.get('val_auroc')} at epoch {b.get('epoch')} (step {b.get('step')}); "
              f"{summary['steps']} steps; run folder {summary['run_dir']}")
    return 0


def cmd_bench_train(args) -> int:
    from darkhaloscope.train.bench import bench_train, format_report

    result = bench_train(model=args.model, batch_size=args.batch_size, precision=args.precision,
                         channels_last=args.channels_last, compile=args.compile, steps=args.steps,
                         warmup_steps=args.warmup_steps, device=args.device, data=args.data,
                         num_workers=args.num_workers, s3=s3_options_from_args(args), split=args.split)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


def register(subparsers, bench_subparsers) -> None:
    from darkhaloscope.train.config import TrainConfig

    p = subparsers.add_parser("train", help="train a lens finder on a tier (CPU or torchrun DDP)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder: config.yaml, run.json, metrics.csv, last.pt, best.pt")
    p.add_argument("--config", default=None, help="YAML of TrainConfig keys (e.g. configs/train_cpu_demo.yaml)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="auto: continue from RUN/last.pt, or from the --checkpoint_uri mirror if RUN is empty")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out (without it, or --resume, a non-empty --out is refused)")
    add_config_arguments(p, TrainConfig)
    add_s3_arguments(p)
    p.set_defaults(func=cmd_train)

    b = bench_subparsers.add_parser("train", help="samples/s of the training step: synthetic tensors vs the input pipeline")
    b.add_argument("--model", default="resnet18", help="registered model name")
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
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    add_s3_arguments(b)
    b.set_defaults(func=cmd_bench_train)
